//! `halb run` puts VRRP and BFD on threads of their own, scheduled as keepalived schedules its
//! VRRP and BFD processes: `vrrp_rt_priority` (SCHED_RR), `vrrp_rlimit_rttime`,
//! `bfd_priority` (nice). Read back from `/proc/PID/task/TID/stat` and `/proc/PID/limits` of
//! the running daemon; a SIGTERM then stops it as before (VIP removed, exit 0). Needs root.

mod support;

use std::time::Duration;

use support::vrrp_lab::{wait_for, Daemon, Lab, VIP};

/// One thread of a process: its name and its (policy, rt priority, nice).
#[derive(Debug)]
struct Task {
    name: String,
    policy: u32,
    rt_priority: u32,
    nice: i32,
}

fn tasks(pid: i32) -> Vec<Task> {
    let mut tasks = Vec::new();
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the daemon's threads");
    for entry in dir.flatten() {
        let path = entry.path();
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("stat")),
        ) else {
            continue; // a thread that just ended
        };
        // The fields after the command name (which may hold spaces); field 3 is fields[0].
        let fields: Vec<&str> = stat[stat.rfind(')').expect("(comm)") + 2..]
            .split(' ')
            .collect();
        let field = |n: usize| fields[n - 3];
        tasks.push(Task {
            name: name.trim().to_string(),
            policy: field(41).parse().expect("policy"),
            rt_priority: field(40).parse().expect("rt_priority"),
            nice: field(19).parse().expect("nice"),
        });
    }
    tasks
}

#[test]
fn vrrp_and_bfd_threads_get_keepalived_scheduling() {
    let lab = Lab::new("thread");
    let config = lab.write(
        "a.conf",
        &format!(
            "global_defs {{\n    vrrp_rt_priority 10\n    vrrp_rlimit_rttime 40000\n    \
             bfd_priority -5\n}}\n\
             bfd_instance PEER {{\n    neighbor_ip {}\n    min_rx 50\n    min_tx 50\n}}\n\
             vrrp_instance VI_1 {{\n    state MASTER\n    interface eth0\n    \
             virtual_router_id 51\n    priority 100\n    advert_int 0.05\n    version 3\n    \
             virtual_ipaddress {{\n        {VIP}\n    }}\n}}\n",
            lab.b.ipv4
        ),
    );
    let mut halb = Daemon::halb(&lab.a.ns, &config, lab.dir.path().join("halb.log"));
    if wait_for(Duration::from_secs(10), || lab.a.has(VIP)).is_none() {
        panic!("halb never became MASTER:\n{}", halb.log_text());
    }
    let pid = halb.pid();
    let threads = tasks(pid);
    let named = |name: &str| {
        threads
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no thread {name} in {threads:?}"))
    };
    let vrrp = named("halb-vrrp");
    assert_eq!(
        (vrrp.policy, vrrp.rt_priority),
        (libc::SCHED_RR as u32, 10),
        "{threads:?}\n{}",
        halb.log_text()
    );
    let bfd = named("halb-bfd");
    assert_eq!(
        (bfd.policy, bfd.rt_priority, bfd.nice),
        (libc::SCHED_OTHER as u32, 0, -5),
        "{threads:?}"
    );
    // Everything else, the data plane's workers among them, as it was.
    for other in threads
        .iter()
        .filter(|t| t.name != "halb-vrrp" && t.name != "halb-bfd")
    {
        assert_eq!(
            (other.policy, other.rt_priority),
            (libc::SCHED_OTHER as u32, 0),
            "{other:?}"
        );
        assert_ne!(other.nice, -5, "{other:?}");
    }
    // RLIMIT_RTTIME: keepalived's half as the soft limit (SIGXCPU), all as the hard one.
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let rttime = limits
        .lines()
        .find(|l| l.starts_with("Max realtime timeout"))
        .expect("an RLIMIT_RTTIME line");
    let words: Vec<&str> = rttime.split_whitespace().collect();
    assert_eq!(words[3..5], ["20000", "40000"], "{rttime}");
    let log = halb.log_text();
    assert!(
        log.contains("vrrp thread at real-time priority 10 (SCHED_RR, vrrp_rt_priority)"),
        "{log}"
    );
    assert!(
        log.contains("bfd thread at nice -5 (bfd_priority)"),
        "{log}"
    );

    // Stopping is as before: the VIP goes and the daemon exits cleanly.
    let status = halb.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        halb.log_text()
    );
    assert!(!lab.a.has(VIP), "the VIP stayed:\n{}", halb.log_text());
}
