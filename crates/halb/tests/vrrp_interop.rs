//! halb and the real keepalived (Debian's 2.2.7) sharing the seed's virtual router.
//!
//! Each test builds its own segment (two directors and a client in network namespaces, see
//! `support::vrrp_lab`), runs the seed's VRRP part on both directors with the state and
//! priority each one has in the seed, and checks where the VIP is (`ip -j addr` on both),
//! that the client reaches it at the right MAC address, and what each side logged.
//! Needs root.

mod support;

use std::time::Duration;

use support::vrrp_lab::{seed_vrrp, wait_for, Daemon, Lab, Node, VIP, VIP6};

/// keepalived's log lines that would mean it did not like halb's adverts (its remarks on
/// the configuration, which name the file and line, are not about halb).
fn complaints(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| !l.contains(".conf: Line "))
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            ["bad", "auth", "invalid", "wrong"]
                .iter()
                .any(|w| l.contains(w))
        })
        .collect()
}

/// Waits until the VIP is on `holder` and not on `other`; panics with both logs otherwise.
fn vip_moves_to(holder: &Node, other: &Node, timeout: Duration, logs: &[&Daemon]) -> Duration {
    address_moves_to(VIP, holder, other, timeout, logs)
}

fn address_moves_to(
    vip: &str,
    holder: &Node,
    other: &Node,
    timeout: Duration,
    logs: &[&Daemon],
) -> Duration {
    wait_for(timeout, || holder.has(vip) && !other.has(vip)).unwrap_or_else(|| {
        panic!(
            "{vip} not (only) on {} within {timeout:?}: {} has {:?}, {} has {:?}\n{}",
            holder.ns.name(),
            holder.ns.name(),
            holder.addresses(),
            other.ns.name(),
            other.addresses(),
            dump(logs)
        )
    })
}

fn dump(logs: &[&Daemon]) -> String {
    logs.iter()
        .map(|d| format!("--- {} log:\n{}", d.what, d.log_text()))
        .collect()
}

fn assert_logged(daemon: &Daemon, line: &str, logs: &[&Daemon]) {
    let found = wait_for(Duration::from_secs(3), || daemon.log_text().contains(line));
    assert!(
        found.is_some(),
        "{} did not log {line:?}\n{}",
        daemon.what,
        dump(logs)
    );
}

/// Master_Down_Interval of the VRRPv2 backup at priority 90 with a 1 s interval, plus the
/// time the test needs to see it.
/// A (the master) holds the VIP, B does not, over a few adverts, and the client reaches A.
fn a_keeps_the_vip(lab: &Lab, logs: &[&Daemon]) {
    std::thread::sleep(Duration::from_millis(2500));
    assert!(lab.a.has(VIP) && !lab.b.has(VIP), "{}", dump(logs));
    assert_eq!(
        lab.client_reaches(VIP),
        Some(lab.a.ns.name().to_string()),
        "client → VIP → A"
    );
}

/// SIGKILL of the master on A (no priority 0 advert): the backup on B takes the VIP after
/// Master_Down_Interval. Returns how long that took.
fn kill_master(lab: &Lab, master: &mut Daemon, backup: &Daemon) -> Duration {
    master.kill();
    wait_for(TAKEOVER, || lab.b.has(VIP)).unwrap_or_else(|| {
        panic!(
            "the backup did not take the VIP within {TAKEOVER:?}\n{}",
            dump(&[backup])
        )
    })
}

const TAKEOVER: Duration = Duration::from_millis(3 * 1000 + 650 + 1200);

#[test]
fn halb_master_keepalived_backup() {
    let lab = Lab::new("v2h");
    let halb_conf = lab.write("halb.conf", &seed_vrrp("MASTER", 100));
    let keepalived_conf = lab.write("keepalived.conf", &seed_vrrp("BACKUP", 90));
    let mut keepalived = Daemon::keepalived(
        &lab.b.ns,
        &keepalived_conf,
        lab.dir.path(),
        lab.dir.path().join("keepalived.log"),
    );
    let mut halb = Daemon::halb(&lab.a.ns, &halb_conf, lab.dir.path().join("halb.log"));

    // Start: halb (priority 100, state MASTER) takes the VIP, keepalived stays BACKUP.
    let took = vip_moves_to(
        &lab.a,
        &lab.b,
        Duration::from_secs(8),
        &[&halb, &keepalived],
    );
    eprintln!("halb MASTER after {took:?}");
    assert_logged(&halb, "(INT) Entering MASTER STATE", &[&halb, &keepalived]);
    assert_logged(
        &halb,
        "Sending gratuitous ARP on eth0 for 192.168.66.251",
        &[&halb, &keepalived],
    );
    assert_logged(
        &keepalived,
        "(INT) Entering BACKUP STATE",
        &[&halb, &keepalived],
    );
    // It stays that way over a few adverts.
    a_keeps_the_vip(&lab, &[&halb, &keepalived]);

    // SIGKILL: no priority 0 advert; keepalived takes over after Master_Down_Interval.
    let took = kill_master(&lab, &mut halb, &keepalived);
    eprintln!("keepalived took over {took:?} after SIGKILL of halb");
    assert_logged(&keepalived, "(INT) Entering MASTER STATE", &[&keepalived]);
    // The client follows the gratuitous ARPs to B.
    let b = Some(lab.b.ns.name().to_string());
    assert!(
        wait_for(Duration::from_secs(3), || lab.client_reaches(VIP) == b).is_some(),
        "client does not reach the VIP at B"
    );

    // The killed halb's VIP leaves A by itself once its lease runs out (see vip_lease.rs).
    assert!(
        wait_for(Duration::from_secs(6), || !lab.a.has(VIP)).is_some(),
        "the killed halb's VIP stayed on A: {:?}",
        lab.a.addresses()
    );

    // Restart: halb preempts keepalived.
    let log2 = lab.dir.path().join("halb-2.log");
    let mut halb = Daemon::halb(&lab.a.ns, &halb_conf, log2);
    let took = vip_moves_to(
        &lab.a,
        &lab.b,
        Duration::from_secs(8),
        &[&halb, &keepalived],
    );
    eprintln!("restarted halb preempted keepalived after {took:?}");
    assert_logged(
        &keepalived,
        "(INT) Master received advert from 192.168.66.11 with higher priority 100, ours 90",
        &[&halb, &keepalived],
    );
    let a = Some(lab.a.ns.name().to_string());
    assert!(
        wait_for(Duration::from_secs(3), || lab.client_reaches(VIP) == a).is_some(),
        "client does not reach the VIP at A again"
    );

    // A clean stop: priority 0, keepalived takes over after Skew_Time (0.65 s), not 3.65 s.
    std::thread::sleep(Duration::from_millis(1500));
    let handover = std::time::Instant::now();
    let status = halb.terminate(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "halb exits 0 on SIGTERM: {status:?}\n{}",
        halb.log_text()
    );
    assert!(!lab.a.has(VIP), "halb removed its VIP on SIGTERM");
    let took = wait_for(Duration::from_millis(2000), || lab.b.has(VIP));
    assert!(
        took.is_some(),
        "keepalived did not take over within 2 s of halb's priority 0 advert\n{}",
        dump(&[&halb, &keepalived])
    );
    eprintln!(
        "keepalived took over {:?} after SIGTERM of halb",
        handover.elapsed()
    );
    assert_logged(&halb, "(INT) sent 0 priority", &[&halb]);
    assert_logged(
        &keepalived,
        "(INT) Backup received priority 0 advertisement",
        &[&keepalived],
    );

    let log = keepalived.log_text();
    assert!(
        complaints(&log).is_empty(),
        "keepalived complained about halb's adverts: {:?}\n{log}",
        complaints(&log)
    );
    assert!(keepalived.exited().is_none(), "keepalived is still running");
}

#[test]
fn keepalived_master_halb_backup() {
    let lab = Lab::new("v2k");
    let keepalived_conf = lab.write("keepalived.conf", &seed_vrrp("MASTER", 100));
    let halb_conf = lab.write("halb.conf", &seed_vrrp("BACKUP", 90));
    let mut halb = Daemon::halb(&lab.b.ns, &halb_conf, lab.dir.path().join("halb.log"));
    let mut keepalived = Daemon::keepalived(
        &lab.a.ns,
        &keepalived_conf,
        lab.dir.path(),
        lab.dir.path().join("keepalived.log"),
    );

    let took = vip_moves_to(
        &lab.a,
        &lab.b,
        Duration::from_secs(8),
        &[&halb, &keepalived],
    );
    eprintln!("keepalived MASTER after {took:?}");
    assert_logged(&halb, "(INT) Entering BACKUP STATE", &[&halb, &keepalived]);
    a_keeps_the_vip(&lab, &[&halb, &keepalived]);

    // SIGKILL of keepalived (its whole process group): halb takes over.
    let took = kill_master(&lab, &mut keepalived, &halb);
    eprintln!("halb took over {took:?} after SIGKILL of keepalived");
    for line in [
        "(INT) Receive advertisement timeout",
        "(INT) Entering MASTER STATE",
        "(INT) setting VIPs.",
        "Sending gratuitous ARP on eth0 for 192.168.66.251",
    ] {
        assert_logged(&halb, line, &[&halb]);
    }
    let b = Some(lab.b.ns.name().to_string());
    assert!(
        wait_for(Duration::from_secs(3), || lab.client_reaches(VIP) == b).is_some(),
        "client does not reach the VIP at B"
    );

    // keepalived comes back (its leftover VIP is still on A) and preempts halb.
    let mut keepalived = Daemon::keepalived(
        &lab.a.ns,
        &keepalived_conf,
        lab.dir.path(),
        lab.dir.path().join("keepalived-2.log"),
    );
    let took = vip_moves_to(
        &lab.a,
        &lab.b,
        Duration::from_secs(8),
        &[&halb, &keepalived],
    );
    eprintln!("restarted keepalived preempted halb after {took:?}");
    assert_logged(
        &halb,
        "(INT) Master received advert from 192.168.66.11 with higher priority 100, ours 90",
        &[&halb, &keepalived],
    );
    assert_logged(&halb, "(INT) removing VIPs.", &[&halb]);

    // A clean stop of keepalived: halb takes over after Skew_Time.
    std::thread::sleep(Duration::from_millis(1500));
    let handover = std::time::Instant::now();
    keepalived.terminate(Duration::from_secs(5));
    let took = wait_for(Duration::from_millis(2000), || lab.b.has(VIP));
    assert!(
        took.is_some(),
        "halb did not take over within 2 s of keepalived's priority 0 advert\n{}",
        dump(&[&halb, &keepalived])
    );
    eprintln!(
        "halb took over {:?} after SIGTERM of keepalived",
        handover.elapsed()
    );
    assert_logged(
        &halb,
        "(INT) Backup received priority 0 advertisement",
        &[&halb],
    );

    // halb stops as MASTER: priority 0, VIP removed, exit 0.
    let status = halb.terminate(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "halb exits 0 on SIGTERM: {status:?}"
    );
    assert!(!lab.b.has(VIP), "halb removed its VIP on SIGTERM");
    let log = halb.log_text();
    assert!(
        !log.contains(" WARN ") && !log.contains("ERROR"),
        "halb warned about keepalived's adverts or failed an action:\n{log}"
    );
}

/// An IPv6 instance (so VRRPv3) with a 200 ms interval: VRID 66, fd66::251/64.
fn ipv6_instance(state: &str, priority: u8) -> String {
    format!(
        "vrrp_instance V6 {{\n    state {state}\n    interface eth0\n    virtual_router_id 66\n    priority {priority}\n    advert_int 0.2\n    virtual_ipaddress {{\n        {VIP6}/64\n    }}\n}}\n"
    )
}

#[test]
fn vrrpv3_ipv6_halb_master_keepalived_backup() {
    let lab = Lab::new("v3h");
    let halb_conf = lab.write("halb.conf", &ipv6_instance("MASTER", 100));
    let keepalived_conf = lab.write("keepalived.conf", &ipv6_instance("BACKUP", 90));
    let keepalived = Daemon::keepalived(
        &lab.b.ns,
        &keepalived_conf,
        lab.dir.path(),
        lab.dir.path().join("keepalived.log"),
    );
    let mut halb = Daemon::halb(&lab.a.ns, &halb_conf, lab.dir.path().join("halb.log"));
    let logs = |h: &Daemon, k: &Daemon| dump(&[h, k]);

    let took = address_moves_to(
        VIP6,
        &lab.a,
        &lab.b,
        Duration::from_secs(5),
        &[&halb, &keepalived],
    );
    eprintln!("halb MASTER (VRRPv3, IPv6) after {took:?}");
    assert_logged(
        &keepalived,
        "(V6) Entering BACKUP STATE",
        &[&halb, &keepalived],
    );
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        lab.a.has(VIP6) && !lab.b.has(VIP6),
        "{}",
        logs(&halb, &keepalived)
    );
    let a = Some(lab.a.ns.name().to_string());
    assert!(
        wait_for(Duration::from_secs(3), || lab.client_reaches(VIP6) == a).is_some(),
        "client does not reach [{VIP6}] at A"
    );

    // Master_Down_Interval: 3 × 0.2 s + (256 − 90) × 0.2 s / 256 ≈ 0.73 s.
    halb.kill();
    let took = wait_for(Duration::from_millis(2000), || lab.b.has(VIP6)).unwrap_or_else(|| {
        panic!(
            "keepalived did not take [{VIP6}]\n{}",
            keepalived.log_text()
        )
    });
    eprintln!("keepalived took over {took:?} after SIGKILL of halb");
    let b = Some(lab.b.ns.name().to_string());
    assert!(
        wait_for(Duration::from_secs(3), || lab.client_reaches(VIP6) == b).is_some(),
        "client does not reach [{VIP6}] at B (unsolicited NA)"
    );

    let mut halb = Daemon::halb(&lab.a.ns, &halb_conf, lab.dir.path().join("halb-2.log"));
    address_moves_to(
        VIP6,
        &lab.a,
        &lab.b,
        Duration::from_secs(5),
        &[&halb, &keepalived],
    );
    assert_logged(
        &keepalived,
        "with higher priority 100, ours 90",
        &[&halb, &keepalived],
    );

    let status = halb.terminate(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "halb exits 0: {status:?}"
    );
    assert!(!lab.a.has(VIP6), "halb removed its VIP on SIGTERM");
    let took = wait_for(Duration::from_millis(1000), || lab.b.has(VIP6));
    assert!(
        took.is_some(),
        "priority 0 hand-over\n{}",
        keepalived.log_text()
    );
    let log = keepalived.log_text();
    assert!(
        complaints(&log).is_empty(),
        "keepalived complained: {:?}\n{log}",
        complaints(&log)
    );
}

#[test]
fn vrrpv3_ipv6_keepalived_master_halb_backup() {
    let lab = Lab::new("v3k");
    let keepalived_conf = lab.write("keepalived.conf", &ipv6_instance("MASTER", 100));
    let halb_conf = lab.write("halb.conf", &ipv6_instance("BACKUP", 90));
    let mut keepalived = Daemon::keepalived(
        &lab.a.ns,
        &keepalived_conf,
        lab.dir.path(),
        lab.dir.path().join("keepalived.log"),
    );
    let mut halb = Daemon::halb(&lab.b.ns, &halb_conf, lab.dir.path().join("halb.log"));

    let took = address_moves_to(
        VIP6,
        &lab.a,
        &lab.b,
        Duration::from_secs(5),
        &[&halb, &keepalived],
    );
    eprintln!("keepalived MASTER (VRRPv3, IPv6) after {took:?}");
    assert_logged(&halb, "(V6) Entering BACKUP STATE", &[&halb, &keepalived]);
    // The client learns A's address for the VIP; after the takeover only halb's unsolicited
    // NA can move it (A keeps the address: SIGKILL removes nothing).
    let a = Some(lab.a.ns.name().to_string());
    assert!(
        wait_for(Duration::from_secs(3), || lab.client_reaches(VIP6) == a).is_some(),
        "client does not reach [{VIP6}] at A"
    );

    // SIGKILL of keepalived: halb takes over after Master_Down_Interval (≈ 0.73 s).
    keepalived.kill();
    let took = wait_for(Duration::from_millis(2000), || lab.b.has(VIP6))
        .unwrap_or_else(|| panic!("halb did not take [{VIP6}]\n{}", halb.log_text()));
    eprintln!("halb took over {took:?} after SIGKILL of keepalived");
    let b = Some(lab.b.ns.name().to_string());
    assert!(
        wait_for(Duration::from_secs(3), || lab.client_reaches(VIP6) == b).is_some(),
        "client does not reach [{VIP6}] at B (halb's unsolicited NA)"
    );

    // keepalived comes back with the higher priority and preempts halb.
    let keepalived = Daemon::keepalived(
        &lab.a.ns,
        &keepalived_conf,
        lab.dir.path(),
        lab.dir.path().join("keepalived-2.log"),
    );
    address_moves_to(
        VIP6,
        &lab.a,
        &lab.b,
        Duration::from_secs(5),
        &[&halb, &keepalived],
    );
    assert_logged(
        &halb,
        "with higher priority 100, ours 90",
        &[&halb, &keepalived],
    );
    let status = halb.terminate(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "halb exits 0: {status:?}"
    );
    let log = halb.log_text();
    assert!(
        !log.contains(" WARN ") && !log.contains("ERROR"),
        "halb warned about keepalived's adverts or failed an action:\n{log}"
    );
}

/// VRRPv3 over IPv4 by unicast, with preemption: VRID 88, adverts every 0.2 s.
fn unicast_v3(state: &str, priority: u8, me: &Node, peer: &Node) -> String {
    format!(
        "vrrp_instance U3 {{\n    state {state}\n    version 3\n    interface eth0\n    virtual_router_id 88\n    priority {priority}\n    advert_int 0.2\n    unicast_src_ip {}\n    unicast_peer {{\n        {}\n    }}\n    virtual_ipaddress {{\n        {VIP}/24\n    }}\n}}\n",
        me.ipv4, peer.ipv4
    )
}

#[test]
fn unicast_vrrpv3_ipv4_halb_master_keepalived_backup() {
    let lab = Lab::new("u3");
    let halb_conf = lab.write("halb.conf", &unicast_v3("MASTER", 100, &lab.a, &lab.b));
    let keepalived_conf = lab.write("keepalived.conf", &unicast_v3("BACKUP", 90, &lab.b, &lab.a));
    let keepalived = Daemon::keepalived(
        &lab.b.ns,
        &keepalived_conf,
        lab.dir.path(),
        lab.dir.path().join("keepalived.log"),
    );
    let mut halb = Daemon::halb(&lab.a.ns, &halb_conf, lab.dir.path().join("halb.log"));
    let took = vip_moves_to(
        &lab.a,
        &lab.b,
        Duration::from_secs(5),
        &[&halb, &keepalived],
    );
    eprintln!("halb MASTER (unicast VRRPv3) after {took:?}");
    assert_logged(
        &keepalived,
        "(U3) Entering BACKUP STATE",
        &[&halb, &keepalived],
    );
    a_keeps_the_vip(&lab, &[&halb, &keepalived]);

    // Master_Down_Interval: 3 × 0.2 s + (256 − 90) × 0.2 s / 256 ≈ 0.73 s.
    halb.kill();
    let took = wait_for(Duration::from_millis(2000), || lab.b.has(VIP))
        .unwrap_or_else(|| panic!("keepalived did not take over\n{}", keepalived.log_text()));
    eprintln!("keepalived took over {took:?} after SIGKILL of halb (unicast VRRPv3)");

    // halb returns with the higher priority and takes the VIP back.
    let mut halb = Daemon::halb(&lab.a.ns, &halb_conf, lab.dir.path().join("halb-2.log"));
    vip_moves_to(
        &lab.a,
        &lab.b,
        Duration::from_secs(5),
        &[&halb, &keepalived],
    );
    let status = halb.terminate(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "halb exits 0: {status:?}"
    );
    assert!(
        wait_for(Duration::from_millis(1500), || lab.b.has(VIP)).is_some(),
        "priority 0 hand-over by unicast\n{}",
        keepalived.log_text()
    );
    let log = keepalived.log_text();
    assert!(
        complaints(&log).is_empty(),
        "keepalived complained: {:?}\n{log}",
        complaints(&log)
    );
}

/// VRRPv2 by unicast, both directors BACKUP with `nopreempt`: VRID 77.
fn unicast_nopreempt(priority: u8, me: &Node, peer: &Node) -> String {
    format!(
        "vrrp_instance U {{\n    state BACKUP\n    nopreempt\n    interface eth0\n    virtual_router_id 77\n    priority {priority}\n    advert_int 1\n    unicast_src_ip {}\n    unicast_peer {{\n        {}\n    }}\n    authentication {{\n        auth_type PASS\n        auth_pass unicast1\n    }}\n    virtual_ipaddress {{\n        {VIP}/24\n    }}\n}}\n",
        me.ipv4, peer.ipv4
    )
}

#[test]
fn unicast_nopreempt_keepalived_master_halb_higher_priority() {
    let lab = Lab::new("uni");
    let keepalived_conf = lab.write("keepalived.conf", &unicast_nopreempt(100, &lab.a, &lab.b));
    let halb_conf = lab.write("halb.conf", &unicast_nopreempt(150, &lab.b, &lab.a));
    let mut keepalived = Daemon::keepalived(
        &lab.a.ns,
        &keepalived_conf,
        lab.dir.path(),
        lab.dir.path().join("keepalived.log"),
    );
    vip_moves_to(&lab.a, &lab.b, Duration::from_secs(8), &[&keepalived]);

    // halb has the higher priority but `nopreempt`: keepalived stays MASTER.
    let halb = Daemon::halb(&lab.b.ns, &halb_conf, lab.dir.path().join("halb.log"));
    assert_logged(&halb, "(U) Entering BACKUP STATE", &[&halb, &keepalived]);
    std::thread::sleep(Duration::from_millis(5000));
    assert!(
        lab.a.has(VIP) && !lab.b.has(VIP),
        "nopreempt: the VIP stays with keepalived\n{}",
        dump(&[&halb, &keepalived])
    );

    // Losing the master is the only way over.
    keepalived.kill();
    let took = wait_for(TAKEOVER, || lab.b.has(VIP))
        .unwrap_or_else(|| panic!("halb did not take over\n{}", halb.log_text()));
    eprintln!("halb (unicast) took over {took:?} after SIGKILL of keepalived");
    let b = Some(lab.b.ns.name().to_string());
    assert!(
        wait_for(Duration::from_secs(3), || lab.client_reaches(VIP) == b).is_some(),
        "client does not reach the VIP at B"
    );
    let log = halb.log_text();
    assert!(
        !log.contains(" WARN ") && !log.contains("ERROR"),
        "halb warned:\n{log}"
    );
    let log = keepalived.log_text();
    assert!(complaints(&log).is_empty(), "keepalived complained:\n{log}");
}

#[test]
fn link_down_faults_halb_and_keepalived_takes_over() {
    let lab = Lab::new("flt");
    let halb_conf = lab.write("halb.conf", &seed_vrrp("MASTER", 100));
    let keepalived_conf = lab.write("keepalived.conf", &seed_vrrp("BACKUP", 90));
    let keepalived = Daemon::keepalived(
        &lab.b.ns,
        &keepalived_conf,
        lab.dir.path(),
        lab.dir.path().join("keepalived.log"),
    );
    let halb = Daemon::halb(&lab.a.ns, &halb_conf, lab.dir.path().join("halb.log"));
    vip_moves_to(
        &lab.a,
        &lab.b,
        Duration::from_secs(8),
        &[&halb, &keepalived],
    );

    lab.a.ns.ip(&["link", "set", "eth0", "down"]);
    assert_logged(&halb, "Netlink reports eth0 down", &[&halb]);
    assert_logged(&halb, "(INT) Entering FAULT STATE", &[&halb]);
    vip_moves_to(&lab.b, &lab.a, TAKEOVER, &[&halb, &keepalived]);

    lab.a.ns.ip(&["link", "set", "eth0", "up"]);
    assert_logged(&halb, "Netlink reports eth0 up", &[&halb]);
    // Back to BACKUP, then it preempts keepalived's lower priority.
    let took = vip_moves_to(
        &lab.a,
        &lab.b,
        Duration::from_secs(8),
        &[&halb, &keepalived],
    );
    eprintln!("halb back as MASTER {took:?} after link up");
}
