//! Upgrading halb is not a failover: `halb run --takeover` replaces the running MASTER
//! director's halb (the proxy data plane, a keepalived BACKUP as the peer) several times while
//! a client opens a connection through the VIP every 10 ms and holds a few long ones.
//!
//! Figures printed: connections that failed (goal 0), VRRP transitions the keepalived peer
//! saw (goal 0), long connections that finished normally (goal: all). All three are asserted.
//! Each old process drains and exits by itself, and the VIP never leaves director A.
//! Needs root and keepalived.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::vrrp_lab::{seed_vrrp, wait_for, Daemon, Lab, VIP};

/// The virtual server's port on the VIP.
const SERVICE_PORT: u16 = 3307;
/// The real server's echo port on director B's address (any host on the segment would do).
const ECHO_PORT: u16 = 3310;
/// How many times the running halb is replaced.
const UPGRADES: usize = 10;
/// Long connections held across every upgrade.
const LONG: usize = 4;

fn halb_config() -> String {
    format!(
        "{}
virtual_server {VIP} {SERVICE_PORT} {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 192.168.66.12 {ECHO_PORT} {{
        weight 1
        TCP_CHECK {{
            connect_timeout 1
        }}
    }}
}}
",
        seed_vrrp("MASTER", 100)
    )
}

fn halb(lab: &Lab, config: &Path, n: usize, takeover: bool) -> Daemon {
    let socket = lab.dir.path().join("halb.sock");
    let mut argv = vec![
        env!("CARGO_BIN_EXE_halb").to_string(),
        "run".into(),
        "-f".into(),
        config.display().to_string(),
        "--control-socket".into(),
        socket.display().to_string(),
        "--dataplane".into(),
        "proxy".into(),
        "--drain-timeout".into(),
        "60".into(),
    ];
    if takeover {
        argv.push("--takeover".into());
    }
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    Daemon::spawn(
        &lab.a.ns,
        &argv,
        lab.dir.path().join(format!("halb-{n}.log")),
        &format!("halb #{n}"),
    )
}

/// An echo server in `ns` on `port`, each connection on a thread of its own; stops accepting
/// when `stop` is set.
fn echo_server(ns: &halb_test_support::Netns, port: u16, stop: Arc<AtomicBool>) {
    let path = ns.path();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        halb_sys::netns::enter(&path).expect("enter the real server's namespace");
        let listener = TcpListener::bind(("0.0.0.0", port)).expect("bind the echo port");
        listener.set_nonblocking(true).expect("non-blocking");
        let _ = ready_tx.send(());
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    std::thread::spawn(move || {
                        let mut reader = stream.try_clone().expect("clone");
                        let _ = std::io::copy(&mut reader, &mut stream);
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the echo server started");
}

/// One short exchange through the VIP: connect, send, read the echo, close.
fn exchange(to: SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"ping\n")?;
    let mut echo = [0u8; 5];
    stream.read_exact(&mut echo)?;
    if &echo != b"ping\n" {
        return Err(std::io::Error::other("wrong echo"));
    }
    Ok(())
}

/// A long connection: an exchange every 100 ms until `stop`, then a clean close (half-close,
/// then the server's end). True when every exchange and the close went as they should.
fn long_connection(to: SocketAddr, stop: &AtomicBool) -> Result<u32, String> {
    let mut stream =
        TcpStream::connect_timeout(&to, Duration::from_secs(1)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let mut rounds = 0;
    while !stop.load(Ordering::Relaxed) {
        stream
            .write_all(b"long\n")
            .map_err(|e| format!("round {rounds}: {e}"))?;
        let mut echo = [0u8; 5];
        stream
            .read_exact(&mut echo)
            .map_err(|e| format!("round {rounds}: {e}"))?;
        rounds += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    stream
        .shutdown(std::net::Shutdown::Write)
        .map_err(|e| e.to_string())?;
    let mut rest = Vec::new();
    stream
        .read_to_end(&mut rest)
        .map_err(|e| format!("closing: {e}"))?;
    Ok(rounds)
}

#[test]
fn replacing_the_running_halb_is_not_a_failover() {
    use halb_test_support::skip::{installed, is_root, skip};
    if !is_root() {
        return skip("needs root (network namespaces, raw sockets)");
    }
    if !installed("keepalived") {
        return skip("keepalived is not installed (scripts/deps.sh installs it)");
    }
    let lab = Lab::new("up");
    let stop_echo = Arc::new(AtomicBool::new(false));
    echo_server(&lab.b.ns, ECHO_PORT, stop_echo.clone());
    let config = lab.write("halb.conf", &halb_config());
    let backup_conf = lab.write("backup.conf", &seed_vrrp("BACKUP", 90));
    let keepalived = Daemon::keepalived(
        &lab.b.ns,
        &backup_conf,
        lab.dir.path(),
        lab.dir.path().join("keepalived.log"),
    );
    let mut running = halb(&lab, &config, 0, false);
    assert!(
        wait_for(Duration::from_secs(10), || lab.a.has(VIP)
            && !lab.b.has(VIP))
        .is_some(),
        "halb did not become MASTER\n{}",
        running.log_text()
    );
    let to = SocketAddr::new(VIP.parse().unwrap(), SERVICE_PORT);
    assert!(
        wait_for(Duration::from_secs(10), || lab
            .client
            .ns
            .run_in(move || exchange(to).is_ok()))
        .is_some(),
        "no echo through the VIP\n{}",
        running.log_text()
    );
    let keepalived_masters_before = masters_entered(&keepalived.log_text());

    // The client: a new connection every 10 ms, and the long ones.
    let stop_client = Arc::new(AtomicBool::new(false));
    let (attempts, failures) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let short = {
        let (stop, attempts, failures) = (stop_client.clone(), attempts.clone(), failures.clone());
        lab.client.ns.spawn(move || async move {
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                attempts.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = tokio::task::spawn_blocking(move || exchange(to))
                    .await
                    .expect("a connection")
                {
                    failures.fetch_add(1, Ordering::Relaxed);
                    errors.push(e.to_string());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            errors
        })
    };
    let stop_long = Arc::new(AtomicBool::new(false));
    let long: Vec<_> = (0..LONG)
        .map(|_| {
            let stop = stop_long.clone();
            lab.client
                .ns
                .spawn(move || async move { long_connection(to, &stop) })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    let mut old = Vec::new();
    for n in 1..=UPGRADES {
        let next = halb(&lab, &config, n, true);
        let handed = wait_for(Duration::from_secs(15), || {
            next.log_text().contains("The previous halb let go")
        });
        assert!(
            handed.is_some(),
            "halb #{n} did not take over\n--- new:\n{}\n--- old:\n{}",
            next.log_text(),
            running.log_text()
        );
        old.push(std::mem::replace(&mut running, next));
        // Adverts from the new process, traffic through it for a while.
        std::thread::sleep(Duration::from_millis(1500));
        assert!(lab.a.has(VIP), "the VIP left director A at upgrade {n}");
        assert!(!lab.b.has(VIP), "the peer took the VIP at upgrade {n}");
    }
    // Every old process without long connections has drained and exited, leaving the VIP.
    for (n, process) in old.iter_mut().enumerate().skip(1) {
        let exited = wait_for(Duration::from_secs(10), || process.exited().is_some());
        assert!(
            exited.is_some(),
            "halb #{} did not exit after handing over\n{}",
            n + 1,
            process.log_text()
        );
    }

    stop_long.store(true, Ordering::Relaxed);
    let long: Vec<Result<u32, String>> = long
        .into_iter()
        .map(|t| t.join().expect("a long connection"))
        .collect();
    stop_client.store(true, Ordering::Relaxed);
    let errors = short.join().expect("the client");
    // The first process held the long connections; with them closed it exits too.
    let first = &mut old[0];
    assert!(
        wait_for(Duration::from_secs(10), || first.exited().is_some()).is_some(),
        "halb #0 did not exit once its connections were done\n{}",
        first.log_text()
    );
    assert!(lab.a.has(VIP), "the VIP is on director A at the end");
    let transitions = masters_entered(&keepalived.log_text()) - keepalived_masters_before;
    let finished = long.iter().filter(|r| r.is_ok()).count();
    eprintln!(
        "{UPGRADES} upgrades: {} of {} client connections failed, keepalived peer transitions \
         {transitions}, long connections finished normally {finished} of {LONG} ({:?} rounds)",
        failures.load(Ordering::Relaxed),
        attempts.load(Ordering::Relaxed),
        long
    );
    let logs = || {
        old.iter()
            .chain([&running])
            .map(|d| format!("--- {}:\n{}", d.what, d.log_text()))
            .collect::<String>()
    };
    assert!(
        errors.is_empty(),
        "failed connections: {errors:?}\n{}",
        logs()
    );
    assert_eq!(transitions, 0, "{}", keepalived.log_text());
    assert_eq!(finished, LONG, "{long:?}\n{}", logs());
    for (n, process) in old.iter().enumerate() {
        let log = process.log_text();
        for line in [
            "A new halb takes over: handing over 1 listening socket(s)",
            "Handing over: VRRP stops here, VIPs stay",
            "Drained; exiting",
        ] {
            assert!(log.contains(line), "halb #{n} did not log {line:?}\n{log}");
        }
        assert!(
            !log.contains("sent 0 priority"),
            "halb #{n}: priority 0\n{log}"
        );
    }
    let last = running.log_text();
    for line in [
        "on the socket handed over by the previous process",
        "(INT) Entering MASTER STATE",
    ] {
        assert!(
            last.contains(line),
            "the last halb did not log {line:?}\n{last}"
        );
    }
    assert!(
        !last.contains("sent 0 priority"),
        "no priority 0 advert at a hand-over\n{last}"
    );
    stop_echo.store(true, Ordering::Relaxed);
}

/// How many times keepalived entered MASTER state.
fn masters_entered(log: &str) -> usize {
    log.matches("Entering MASTER STATE").count()
}
