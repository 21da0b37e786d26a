//! `halb run` with `track_file`: the file's value moves the instance's priority (weight ×
//! value) and, tracked with weight 0, a non-zero value puts it in FAULT; a real keepalived
//! peer takes MASTER each time halb's instance falls behind it. The file is rewritten in
//! place, renamed into place and removed, as operators do. Needs root.

mod support;

use std::path::Path;
use std::time::Duration;

use support::vrrp_lab::{wait_for, Daemon, Lab, Node, VIP};

fn instance(state: &str, priority: u8, top: &str, extra: &str) -> String {
    format!(
        "{top}\nvrrp_instance INT {{\n    state {state}\n    interface eth0\n    virtual_router_id 201\n    priority {priority}\n    advert_int 1\n    authentication {{\n        auth_type PASS\n        auth_pass lvs50tes\n    }}\n    virtual_ipaddress {{\n        {VIP}\n    }}\n{extra}\n}}\n"
    )
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

/// Writes `value` the way a tool that replaces files does: a new file renamed over the old.
fn rename_into(path: &Path, value: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, value).expect("write the new file");
    std::fs::rename(&tmp, path).expect("rename it into place");
}

fn wait_log(daemon: &Daemon, text: &str, timeout: Duration) {
    if wait_for(timeout, || daemon.log_text().contains(text)).is_none() {
        panic!(
            "{} never logged {text:?}:\n{}",
            daemon.what,
            daemon.log_text()
        );
    }
}

#[test]
fn track_file_value_moves_priority_and_weight_0_faults_against_keepalived() {
    let lab = Lab::new("track-file");
    let prio = lab.dir.path().join("prio");
    let down = lab.dir.path().join("down");
    // `down` does not exist yet: `init_file` creates it holding 0.
    std::fs::write(&prio, "0\n").expect("create prio");
    let top = format!(
        "track_file prio {{\n    file {}\n    weight 10\n}}\ntrack_file down {{\n    file {}\n    init_file\n}}\n",
        prio.display(),
        down.display()
    );
    let a_conf = lab.write(
        "a.conf",
        &instance(
            "MASTER",
            100,
            &top,
            "    track_file {\n        prio\n        down weight 0\n    }\n",
        ),
    );
    let b_conf = lab.write("b.conf", &instance("BACKUP", 90, "", ""));
    let halb = Daemon::halb(&lab.a.ns, &a_conf, lab.dir.path().join("halb.log"));
    wait_vip(&lab.a, true, Duration::from_secs(10), &[&halb]);
    assert_eq!(
        std::fs::read_to_string(&down).expect("init_file created it"),
        "0\n"
    );
    let keepalived = Daemon::keepalived(
        &lab.b.ns,
        &b_conf,
        lab.dir.path(),
        lab.dir.path().join("keepalived.log"),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(lab.a.has(VIP) && !lab.b.has(VIP));
    let both = [&halb, &keepalived];

    // -2 × 10: 100 - 20 = 80 < 90, keepalived preempts.
    std::fs::write(&prio, "-2\n").expect("write prio");
    wait_vip(&lab.b, true, Duration::from_secs(8), &both);
    wait_vip(&lab.a, false, Duration::from_secs(3), &both);
    wait_log(
        &halb,
        "Changing effective priority from 100 to 80",
        Duration::from_secs(1),
    );

    // Renamed into place, 0x2 (strtol's hex) × 10: 120 > 90, halb preempts back.
    rename_into(&prio, "0x2");
    wait_vip(&lab.a, true, Duration::from_secs(10), &both);
    wait_vip(&lab.b, false, Duration::from_secs(3), &both);
    wait_log(
        &halb,
        "Changing effective priority from 80 to 120",
        Duration::from_secs(1),
    );

    // Garbage reads as 0 (100 > 90): halb stays MASTER.
    std::fs::write(&prio, "up\n").expect("write prio");
    wait_log(
        &halb,
        "Changing effective priority from 120 to 100",
        Duration::from_secs(5),
    );
    assert!(lab.a.has(VIP));

    // Weight 0: any non-zero value is FAULT, and keepalived takes over.
    std::fs::write(&down, "1\n").expect("write down");
    wait_vip(&lab.b, true, Duration::from_secs(8), &both);
    wait_vip(&lab.a, false, Duration::from_secs(3), &both);
    wait_log(&halb, "Entering FAULT STATE", Duration::from_secs(1));

    // Removed, the file reads as 0: out of FAULT, and MASTER again by preemption.
    std::fs::remove_file(&down).expect("remove down");
    wait_vip(&lab.a, true, Duration::from_secs(10), &both);
    wait_vip(&lab.b, false, Duration::from_secs(3), &both);

    // A reload that turns prio's weight to -10 with the file at 2: 100 - 20 = 80, and the
    // instance keeps running (no restart: it goes BACKUP, it does not start over).
    std::fs::write(&prio, "2\n").expect("write prio");
    wait_log(
        &halb,
        "Changing effective priority from 100 to 120",
        Duration::from_secs(5),
    );
    let text = std::fs::read_to_string(&a_conf).expect("a.conf");
    std::fs::write(&a_conf, text.replace("weight 10", "weight -10")).expect("rewrite a.conf");
    let socket = lab.dir.path().join("halb.sock");
    let reload = lab
        .a
        .ns
        .command(env!("CARGO_BIN_EXE_halb"))
        .args(["reload", "--control-socket"])
        .arg(&socket)
        .output()
        .expect("run halb reload");
    assert!(
        reload.status.success(),
        "halb reload: {}{}",
        String::from_utf8_lossy(&reload.stdout),
        String::from_utf8_lossy(&reload.stderr)
    );
    wait_vip(&lab.b, true, Duration::from_secs(8), &both);
    wait_vip(&lab.a, false, Duration::from_secs(3), &both);
    wait_log(
        &halb,
        "Changing effective priority from 120 to 80",
        Duration::from_secs(1),
    );
    let said = String::from_utf8_lossy(&reload.stdout);
    assert!(
        !said.contains("(INT) added"),
        "the instance was started anew: {said}"
    );
}
