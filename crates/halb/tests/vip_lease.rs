//! A killed MASTER's VIP, halb against keepalived in one run: SIGKILL of the MASTER director
//! (halb, then keepalived, each with a keepalived BACKUP), while a client connects to the VIP
//! every 10 ms. The service on the VIP dies with the director (as halb's proxy does), so for
//! as long as the dead director keeps the VIP and the client's ARP entry points at it, the
//! client's connections are refused by the dead director's kernel.
//!
//! halb's VIP carries a lease it renews while it runs (see the daemon's `vip_lease`): after
//! the kill it leaves the dead director by itself. keepalived's stays until something removes
//! it. The figures are printed; what is asserted is only the difference in kind (halb's VIP
//! goes, keepalived's stays, the BACKUP answers in both cases).
//! Needs root and keepalived.

mod support;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::vrrp_lab::{seed_vrrp, wait_for, Banner, Daemon, Lab, VIP};

/// The service on the VIP: on its own port, so that only the listeners of this test answer.
const SERVICE_PORT: u16 = 3307;

/// How long after the kill the client keeps trying.
const WINDOW: Duration = Duration::from_secs(8);

#[derive(Debug, Default)]
struct Figures {
    /// From the kill until the VIP was no longer on the dead director.
    vip_gone: Option<Duration>,
    /// From the kill until the client first reached the BACKUP.
    backup_answers: Option<Duration>,
    refused: u32,
    timed_out: u32,
    attempts: u32,
}

#[derive(Clone, Copy, PartialEq)]
enum Master {
    Halb,
    Keepalived,
}

fn kill_the_master(master: Master) -> Figures {
    let tag = match master {
        Master::Halb => "lh",
        Master::Keepalived => "lk",
    };
    let lab = Lab::new(tag);
    let master_conf = lab.write("master.conf", &seed_vrrp("MASTER", 100));
    let backup_conf = lab.write("backup.conf", &seed_vrrp("BACKUP", 90));
    let backup = Daemon::keepalived(
        &lab.b.ns,
        &backup_conf,
        lab.dir.path(),
        lab.dir.path().join("backup.log"),
    );
    let mut daemon = match master {
        Master::Halb => Daemon::halb(&lab.a.ns, &master_conf, lab.dir.path().join("halb.log")),
        Master::Keepalived => Daemon::keepalived(
            &lab.a.ns,
            &master_conf,
            lab.dir.path(),
            lab.dir.path().join("master.log"),
        ),
    };
    let service_a = Banner::start_on(&lab.a.ns, SERVICE_PORT);
    let _service_b = Banner::start_on(&lab.b.ns, SERVICE_PORT);
    let a_name = lab.a.ns.name().to_string();
    let b_name = lab.b.ns.name().to_string();

    assert!(
        wait_for(Duration::from_secs(8), || lab.a.has(VIP) && !lab.b.has(VIP)).is_some(),
        "A did not become MASTER\n{}{}",
        daemon_log(&daemon),
        daemon_log(&backup)
    );
    // Longer than halb's lease of three adverts: a running MASTER keeps renewing it.
    std::thread::sleep(Duration::from_millis(4500));
    assert!(
        lab.a.has(VIP),
        "the running MASTER lost its VIP\n{}",
        daemon_log(&daemon)
    );
    assert_eq!(
        lab.client.ns.run_in(|| connect(VIP)),
        Outcome::Answered(a_name),
        "the client reaches A"
    );

    let killed = Instant::now();
    daemon.kill();
    drop(service_a);
    let client = {
        let b_name = b_name.clone();
        lab.client.ns.spawn(move || async move {
            let mut figures = Figures::default();
            while killed.elapsed() < WINDOW {
                let outcome = tokio::task::spawn_blocking(|| connect(VIP))
                    .await
                    .expect("the client's connect");
                figures.attempts += 1;
                match outcome {
                    Outcome::Refused => figures.refused += 1,
                    Outcome::TimedOut => figures.timed_out += 1,
                    Outcome::Answered(name) => {
                        if name == b_name && figures.backup_answers.is_none() {
                            figures.backup_answers = Some(killed.elapsed());
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            figures
        })
    };
    let vip_gone = wait_for(WINDOW, || !lab.a.has(VIP)).map(|_| killed.elapsed());
    let mut figures = client.join().expect("the client thread");
    figures.vip_gone = vip_gone;
    assert!(
        figures.backup_answers.is_some(),
        "the client never reached the BACKUP: {figures:?}\n{}",
        daemon_log(&backup)
    );
    figures
}

fn daemon_log(daemon: &Daemon) -> String {
    format!("--- {} log:\n{}", daemon.what, daemon.log_text())
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Answered(String),
    Refused,
    TimedOut,
}

/// One connection to the service on `address`, as a client with a short timeout sees it.
fn connect(address: &str) -> Outcome {
    let to = SocketAddr::new(address.parse().expect("an address"), SERVICE_PORT);
    match TcpStream::connect_timeout(&to, Duration::from_millis(100)) {
        Ok(mut stream) => {
            let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
            let mut banner = String::new();
            let _ = stream.read_to_string(&mut banner);
            Outcome::Answered(banner.trim().to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Outcome::Refused,
        Err(_) => Outcome::TimedOut,
    }
}

fn show(what: &str, f: &Figures) -> String {
    let ms = |d: Option<Duration>| {
        d.map(|d| format!("{} ms", d.as_millis()))
            .unwrap_or_else(|| format!("still there after {} s", WINDOW.as_secs()))
    };
    format!(
        "{what:>10} MASTER killed: VIP gone from it {}, BACKUP answers after {}, \
         {} of {} connections refused, {} timed out",
        ms(f.vip_gone),
        ms(f.backup_answers),
        f.refused,
        f.attempts,
        f.timed_out
    )
}

#[test]
fn a_killed_masters_vip_leaves_with_halb_and_stays_with_keepalived() {
    use halb_test_support::skip::{installed, is_root, skip};
    if !is_root() {
        return skip("needs root (network namespaces, raw sockets)");
    }
    if !installed("keepalived") {
        return skip("keepalived is not installed (scripts/deps.sh installs it)");
    }
    let halb = kill_the_master(Master::Halb);
    let keepalived = kill_the_master(Master::Keepalived);
    eprintln!("{}", show("halb", &halb));
    eprintln!("{}", show("keepalived", &keepalived));
    assert!(
        halb.vip_gone.is_some(),
        "halb's VIP stayed on the killed director: {halb:?}"
    );
    assert!(
        keepalived.vip_gone.is_none(),
        "keepalived's VIP left the killed director: {keepalived:?}"
    );
}
