//! `halb run` running keepalived's scripts for real: notify scripts and the notify FIFO on
//! state changes, and `vrrp_script` checks that fault an instance or lower its priority.
//! Each test builds its own segment (see `support::vrrp_lab`). Needs root.

mod support;

use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::vrrp_lab::{wait_for, Daemon, Lab, Node, VIP};

/// One instance on `eth0` (VRID 200, the seed's VIP), outside any sync group so that
/// `state MASTER` starts as MASTER; `extra` goes inside the instance, `top` before it.
fn instance(state: &str, priority: u8, top: &str, extra: &str) -> String {
    format!(
        "{top}\nvrrp_instance INT {{\n    state {state}\n    interface eth0\n    virtual_router_id 200\n    priority {priority}\n    advert_int 1\n    authentication {{\n        auth_type PASS\n        auth_pass lvs50tes\n    }}\n    virtual_ipaddress {{\n        {VIP}\n    }}\n{extra}\n}}\n"
    )
}

/// A shell script that appends its arguments as one line to `out`.
fn logger(lab: &Lab, name: &str, out: &Path) -> PathBuf {
    let path = lab.write(
        name,
        &format!("#!/bin/sh\necho \"$@\" >> {}\n", out.display()),
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn wait_for_line(path: &Path, line: &str, timeout: Duration, daemon: &Daemon) {
    if wait_for(timeout, || read(path).lines().any(|l| l == line)).is_none() {
        panic!(
            "{} never got the line {line:?}; it has:\n{}\n--- {} log ---\n{}",
            path.display(),
            read(path),
            daemon.what,
            daemon.log_text()
        );
    }
}

fn wait_vip(node: &Node, present: bool, timeout: Duration, logs: &[&Daemon]) {
    if wait_for(timeout, || node.has(VIP) == present).is_none() {
        let mut text = String::new();
        for d in logs {
            text.push_str(&format!("--- {} ---\n{}\n", d.what, d.log_text()));
        }
        panic!(
            "the VIP was expected {} {}:\n{text}",
            if present { "on" } else { "off" },
            node.ns.name()
        );
    }
}

#[test]
fn notify_scripts_and_fifo_follow_master_and_stop() {
    let lab = Lab::new("scripts-notify");
    let events = lab.dir.path().join("events");
    let generic = logger(&lab, "generic.sh", &events);
    let own = logger(&lab, "own.sh", &events);
    let fifo = lab.dir.path().join("notify.fifo");
    let config = lab.write(
        "a.conf",
        &instance(
            "MASTER",
            100,
            &format!("global_defs {{\n    vrrp_notify_fifo {}\n}}\n", fifo.display()),
            &format!(
                "    notify_master \"{own} master\"\n    notify_backup \"{own} backup\"\n    notify_stop \"{own} stop\"\n    notify {generic}\n",
                own = own.display(),
                generic = generic.display()
            ),
        ),
    );
    let mut halb = Daemon::halb(&lab.a.ns, &config, lab.dir.path().join("halb.log"));
    // halb creates the FIFO (it does not exist before); read it without blocking.
    assert!(
        wait_for(Duration::from_secs(5), || fifo.exists()).is_some(),
        "halb did not create the notify FIFO:\n{}",
        halb.log_text()
    );
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .expect("open the FIFO");

    wait_vip(&lab.a, true, Duration::from_secs(10), &[&halb]);
    wait_for_line(&events, "master", Duration::from_secs(5), &halb);
    wait_for_line(
        &events,
        "INSTANCE INT MASTER 100",
        Duration::from_secs(5),
        &halb,
    );
    // As keepalived (vrrp_init_state): `state MASTER` below 255 starts as BACKUP for one
    // advert interval, and notifies it.
    let text = read(&events);
    let position = |line: &str| text.lines().position(|l| l == line);
    assert!(
        position("INSTANCE INT BACKUP 100") < position("INSTANCE INT MASTER 100"),
        "BACKUP (init) comes before MASTER:\n{text}"
    );
    let log = halb.log_text();
    assert!(
        log.contains("Running script") && log.contains("own.sh master"),
        "no log line for the notify script run:\n{log}"
    );

    // Every run was reaped: no zombie child of halb's.
    std::thread::sleep(Duration::from_millis(300));
    let zombies = zombie_children(halb.pid());
    assert!(zombies.is_empty(), "zombie children of halb: {zombies:?}");

    assert!(halb.terminate(Duration::from_secs(10)).is_some());
    wait_for_line(&events, "stop", Duration::from_secs(5), &halb);
    wait_for_line(
        &events,
        "INSTANCE INT STOP 100",
        Duration::from_secs(5),
        &halb,
    );

    let mut lines = String::new();
    let _ = reader.read_to_string(&mut lines);
    assert!(
        lines.contains("INSTANCE \"INT\" MASTER 100\n"),
        "FIFO lines: {lines:?}"
    );
    assert!(
        lines.contains("INSTANCE \"INT\" STOP 100\n"),
        "FIFO lines: {lines:?}"
    );
}

/// The pids of `parent`'s children that are zombies (state `Z` in /proc/PID/stat).
fn zombie_children(parent: i32) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // "pid (comm) S ppid ...": the fields after the last ')' are safe to split.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") && fields.get(1) == Some(&parent.to_string().as_str()) {
            found.push(pid);
        }
    }
    found
}

/// A `vrrp_script` whose result is the existence of `flag`.
fn flag_script(flag: &Path, weight: i32) -> String {
    format!(
        "vrrp_script chk {{\n    script \"/bin/sh -c 'test -e {}'\"\n    interval 1\n    timeout 1\n    fall 2\n    rise 2\n    weight {weight}\n}}\n",
        flag.display()
    )
}

#[test]
fn unweighted_vrrp_script_failure_faults_the_instance() {
    let lab = Lab::new("scripts-fault");
    let flag = lab.dir.path().join("healthy");
    std::fs::write(&flag, "").expect("create the flag");
    let events = lab.dir.path().join("events");
    let generic = logger(&lab, "generic.sh", &events);
    let config = lab.write(
        "a.conf",
        &instance(
            "MASTER",
            100,
            &flag_script(&flag, 0),
            &format!(
                "    track_script {{\n        chk\n    }}\n    notify {}\n",
                generic.display()
            ),
        ),
    );
    let halb = Daemon::halb(&lab.a.ns, &config, lab.dir.path().join("halb.log"));
    wait_vip(&lab.a, true, Duration::from_secs(10), &[&halb]);

    std::fs::remove_file(&flag).expect("remove the flag");
    // fall 2 at interval 1: two failed runs, so about 2 s; allow for scheduling.
    wait_vip(&lab.a, false, Duration::from_secs(5), &[&halb]);
    wait_for_line(
        &events,
        "INSTANCE INT FAULT 100",
        Duration::from_secs(5),
        &halb,
    );
    let log = halb.log_text();
    assert!(log.contains("VRRP_Script(chk) failed"), "{log}");
    assert!(log.contains("Entering FAULT STATE"), "{log}");

    std::fs::write(&flag, "").expect("restore the flag");
    // rise 2, then BACKUP and the Master_Down_Timer (about 3 s) before MASTER again.
    wait_vip(&lab.a, true, Duration::from_secs(10), &[&halb]);
    assert!(halb.log_text().contains("VRRP_Script(chk) succeeded"));
}

#[test]
fn weighted_vrrp_script_failure_hands_over_to_a_keepalived_backup() {
    let lab = Lab::new("scripts-weight");
    let flag = lab.dir.path().join("healthy");
    std::fs::write(&flag, "").expect("create the flag");
    let a_conf = lab.write(
        "a.conf",
        &instance(
            "MASTER",
            100,
            &flag_script(&flag, -20),
            "    track_script {\n        chk\n    }\n",
        ),
    );
    let b_conf = lab.write("b.conf", &instance("BACKUP", 90, "", ""));
    let halb = Daemon::halb(&lab.a.ns, &a_conf, lab.dir.path().join("halb.log"));
    wait_vip(&lab.a, true, Duration::from_secs(10), &[&halb]);
    let keepalived = Daemon::keepalived(
        &lab.b.ns,
        &b_conf,
        lab.dir.path(),
        lab.dir.path().join("keepalived.log"),
    );
    // keepalived settles as BACKUP behind halb's 100.
    std::thread::sleep(Duration::from_secs(2));
    assert!(lab.a.has(VIP) && !lab.b.has(VIP));

    std::fs::remove_file(&flag).expect("remove the flag");
    // 100 - 20 = 80 < 90: keepalived preempts.
    wait_vip(&lab.b, true, Duration::from_secs(8), &[&halb, &keepalived]);
    wait_vip(&lab.a, false, Duration::from_secs(3), &[&halb, &keepalived]);
    let log = halb.log_text();
    assert!(
        log.contains("Changing effective priority from 100 to 80"),
        "{log}"
    );

    std::fs::write(&flag, "").expect("restore the flag");
    // Back to 100 > 90: halb preempts.
    wait_vip(&lab.a, true, Duration::from_secs(10), &[&halb, &keepalived]);
    wait_vip(&lab.b, false, Duration::from_secs(3), &[&halb, &keepalived]);
    assert!(halb
        .log_text()
        .contains("Changing effective priority from 80 to 100"));
}
