//! `halb run` as a service in a hostile environment: SIGHUP reloads and the signals it does
//! not implement yet do not kill it; under a low open files limit the proxy turns clients away instead of blaming the
//! real servers; a burst of clients to dead servers does not flood the log. Needs root (each
//! test builds its own segment, see `support::vrrp_lab` and `support::lvs_lab`).

mod support;

use std::path::Path;
use std::time::Duration;

use support::lvs_lab::{Backend, LvsLab, VIP as LVS_VIP};
use support::vrrp_lab::{seed_vrrp, wait_for, Daemon, Lab, VIP};

/// `halb status --json` against `socket`: the JSON, or why it failed.
fn status_json(socket: &Path) -> Result<String, String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_halb"))
        .args(["status", "--json", "--control-socket"])
        .arg(socket)
        .output()
        .map_err(|e| format!("running halb status: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn hup_reloads_and_usr_signals_write_dumps_and_leave_the_master_serving() {
    let lab = Lab::new("hard-sig");
    let config = lab.write("a.conf", &seed_vrrp("MASTER", 150));
    let log = lab.dir.path().join("halb.log");
    let socket = log.with_extension("sock");
    let mut halb = Daemon::halb(&lab.a.ns, &config, log);
    assert!(
        wait_for(Duration::from_secs(10), || lab.a.has(VIP)).is_some(),
        "the VIP never came up:\n{}",
        halb.log_text()
    );
    for (signal, name, line) in [
        (libc::SIGHUP, "SIGHUP", "Reload finished"),
        (libc::SIGUSR1, "SIGUSR1", "Printing VRRP data on signal"),
        (libc::SIGUSR2, "SIGUSR2", "Printing VRRP stats on signal"),
    ] {
        // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(halb.pid(), signal) }, 0, "kill {name}");
        assert!(
            wait_for(Duration::from_secs(5), || halb.log_text().contains(line)).is_some(),
            "no log line for {name}:\n{}",
            halb.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            halb.exited().is_none(),
            "{name} killed halb:\n{}",
            halb.log_text()
        );
        assert!(lab.a.has(VIP), "the VIP left after {name}");
        let status = status_json(&socket).unwrap_or_else(|e| panic!("after {name}: {e}"));
        assert!(
            status.contains("MASTER"),
            "not MASTER after {name}:\n{status}"
        );
    }
    // keepalived's files, in $TMPDIR (the lab's directory): what the signals are for.
    for file in ["keepalived.data", "keepalived.stats"] {
        let path = lab.dir.path().join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", path.display(), halb.log_text()));
        assert!(
            text.contains("INT"),
            "{file} does not name the instance:\n{text}"
        );
    }
    assert!(halb.terminate(Duration::from_secs(10)).is_some());
}

/// The seed's segment with one VRRP instance holding the VIP and one virtual server on
/// VIP:3306 whose real servers are `real_servers` (each a `real_server` block).
fn lvs_config(real_servers: &str) -> String {
    format!(
        "vrrp_instance VI_1 {{\n    state MASTER\n    interface eth0\n    virtual_router_id 51\n    priority 150\n    advert_int 1\n    virtual_ipaddress {{\n        {LVS_VIP}/24\n    }}\n}}\n\nvirtual_server {LVS_VIP} 3306 {{\n    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n{real_servers}}}\n"
    )
}

fn vip_3306() -> std::net::SocketAddr {
    std::net::SocketAddr::new(LVS_VIP.parse().expect("the VIP"), 3306)
}

/// `halb run --dataplane proxy` in the director's namespace, with `prefix` before it (a
/// `prlimit`); its control socket is the log's path with `.sock`.
fn proxy_halb(lab: &LvsLab, config: &Path, prefix: &[&str], extra: &[&str]) -> Daemon {
    let log = lab.dir.path().join("halb.log");
    let socket = log.with_extension("sock");
    let mut argv: Vec<&str> = prefix.to_vec();
    argv.extend([
        env!("CARGO_BIN_EXE_halb"),
        "run",
        "-f",
        config.to_str().expect("a UTF-8 path"),
        "--control-socket",
        socket.to_str().expect("a UTF-8 path"),
        "--dataplane",
        "proxy",
    ]);
    argv.extend(extra);
    Daemon::spawn(&lab.director.ns, &argv, log, "halb")
}

/// Under a low open files limit, clients beyond what fits are closed at once, while the real
/// server keeps its health (no failed connect is blamed on it) and the control socket answers.
#[test]
fn clients_beyond_the_descriptor_capacity_are_refused_without_blaming_the_real_server() {
    let lab = LvsLab::new("hard-fd");
    let a = Backend::start(&lab.rs_a.ns, 3306, "A");
    let config = lab.write(
        "halb.conf",
        &lvs_config(
            "    real_server 192.168.66.253 3306 {\n        weight 1\n        TCP_CHECK {\n            connect_timeout 1\n        }\n    }\n",
        ),
    );
    // 256 descriptors: 128 kept in reserve, room for 64 client connections.
    let mut halb = proxy_halb(&lab, &config, &["prlimit", "--nofile=256:256", "--"], &[]);
    let socket = halb.log.with_extension("sock");
    assert!(
        wait_for(Duration::from_secs(20), || lab
            .connect(vip_3306())
            .is_ok_and(|(_, g)| g == "A"))
        .is_some(),
        "the VIP never served A:\n{}",
        halb.log_text()
    );
    let log = halb.log_text();
    assert!(
        log.contains("at most 64 client connections"),
        "no capacity line:\n{log}"
    );

    // A connection's slot comes back when both sides have closed: the backend keeps a copy
    // of each socket until asked which are still open.
    std::thread::sleep(Duration::from_millis(500));
    a.open_connections();
    std::thread::sleep(Duration::from_millis(500));
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..160 {
        match lab.connect(vip_3306()) {
            Ok((stream, greeting)) => {
                assert_eq!(greeting, "A");
                held.push(stream);
            }
            Err(_) => refused += 1,
        }
    }
    println!("held {}, refused {refused}", held.len());
    // Up to the capacity (a probe's relay may still be ending), and no more.
    assert!(
        (62..=64).contains(&held.len()),
        "{} clients served, the capacity is 64",
        held.len()
    );
    assert_eq!(held.len() + refused, 160, "every client beyond it refused");
    // The checker still runs (it needs descriptors too) and the control socket answers.
    std::thread::sleep(Duration::from_secs(3));
    let status = status_json(&socket).unwrap_or_else(|e| panic!("status at capacity: {e}"));
    assert!(
        status.contains("192.168.66.253"),
        "the real server left the table:\n{status}"
    );
    drop(held);
    assert!(
        wait_for(Duration::from_secs(5), || {
            a.open_connections();
            lab.connect(vip_3306()).is_ok_and(|(_, g)| g == "A")
        })
        .is_some(),
        "not served again once the clients left:\n{}",
        halb.log_text()
    );
    let log = halb.log_text();
    let blamed: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("192.168.66.253") && (l.contains("failed") || l.contains("Removing"))
        })
        .collect();
    assert!(
        blamed.is_empty(),
        "the real server was blamed for this host's shortage:\n{}",
        blamed.join("\n")
    );
    assert!(
        log.contains("the most the open files limit allows"),
        "no line for the clients turned away:\n{log}"
    );
    assert!(halb.terminate(Duration::from_secs(10)).is_some());
}

/// A burst of clients against real servers that all refuse: a few lines a second with the
/// count of what was left out, not one line per client.
#[test]
fn a_burst_of_clients_to_dead_real_servers_is_logged_at_a_bounded_rate() {
    let lab = LvsLab::new("hard-log");
    // Nothing listens on 3307: every connect is refused. No checker, no passive failover: as
    // with IPVS, every client's connect is tried and fails.
    let config = lab.write(
        "halb.conf",
        &lvs_config(
            "    real_server 192.168.66.253 3307 {\n        weight 1\n    }\n    real_server 192.168.66.254 3307 {\n        weight 1\n    }\n",
        ),
    );
    let mut halb = proxy_halb(&lab, &config, &[], &["--no-passive"]);
    assert!(
        wait_for(Duration::from_secs(20), || halb
            .log_text()
            .contains("Entering MASTER STATE"))
        .is_some(),
        "never MASTER:\n{}",
        halb.log_text()
    );
    std::thread::sleep(Duration::from_millis(500));
    let before = halb.log_text().lines().count();
    let to = vip_3306();
    let (clients, elapsed) = lab.client.ns.run_in(move || {
        let start = std::time::Instant::now();
        let mut clients = 0u32;
        while clients < 1000 || start.elapsed() < Duration::from_millis(2500) {
            if let Ok(mut stream) =
                std::net::TcpStream::connect_timeout(&to, Duration::from_secs(1))
            {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                let mut sink = Vec::new();
                let _ = std::io::Read::read_to_end(&mut stream, &mut sink);
            }
            clients += 1;
        }
        (clients, start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(1200));
    let log = halb.log_text();
    let burst: Vec<&str> = log.lines().skip(before).collect();
    println!(
        "{clients} clients in {:.1} s: {} log lines",
        elapsed.as_secs_f64(),
        burst.len()
    );
    // Two destinations, at most one line a second each, plus the summaries' rounding.
    let bound = 2 * (elapsed.as_secs() as usize + 2);
    assert!(
        burst.len() <= bound,
        "{} lines for {clients} clients (bound {bound}):\n{}",
        burst.len(),
        burst.join("\n")
    );
    assert!(
        burst
            .iter()
            .any(|l| l.contains("similar messages suppressed")),
        "no count of the suppressed lines:\n{}",
        burst.join("\n")
    );
    assert!(halb.terminate(Duration::from_secs(10)).is_some());
}
