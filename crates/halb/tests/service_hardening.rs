//! `halb run` as a service in a hostile environment: signals it does not implement yet do not
//! kill it. Needs root (each test builds its own segment, see `support::vrrp_lab`).

mod support;

use std::path::Path;
use std::time::Duration;

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
fn hup_and_usr_signals_are_logged_and_leave_the_master_serving() {
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
    for (signal, name) in [
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGUSR2, "SIGUSR2"),
    ] {
        // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(halb.pid(), signal) }, 0, "kill {name}");
        assert!(
            wait_for(Duration::from_secs(5), || halb
                .log_text()
                .contains(&format!("{name} received")))
            .is_some(),
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
    let log = halb.log_text();
    assert_eq!(
        log.matches("received:").count(),
        3,
        "one warning per signal:\n{log}"
    );
    assert!(halb.terminate(Duration::from_secs(10)).is_some());
}
