//! `halb lab up` and `halb lab down` as a user drives them: the lab is built and detached, its
//! state saved; then the user restarts a director's halb and a mariadbd by hand inside the lab's
//! namespaces, as the README tells; `down` must end those too (they are in the lab's own
//! namespaces), say so, and leave nothing behind.
//!
//! Needs root, iproute2, mariadb-server and mariadb-client (`scripts/deps.sh`); run under
//! `flock /tmp/halb-integration.lock`.

mod support;

use anyhow::{Context, Result};
use halb_seed_lab::topology::{process_alive, LabState, Topology, TopologyOptions};
use halb_test_support::halb_binary;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{assert_nothing_left, namespaces_with};

/// Stops `pid` (SIGTERM) and waits until it is gone.
fn stop(pid: u32) {
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let until = Instant::now() + Duration::from_secs(30);
    while process_alive(pid) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!process_alive(pid), "pid {pid} did not stop");
}

/// The argument vector `pid` was started with.
fn command_line(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).expect("read a process's cmdline");
    raw.split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Starts `argv` inside namespace `ns`, as a user would with `ip netns exec`, detached from
/// this process's group; the child is this test's, so it can tell whether it ended.
fn start_in(ns: &str, argv: &[String]) -> Result<Child> {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {argv:?} in {ns}"))
}

/// Waits for `child` to end (it must, once `down` returned).
fn ended(child: &mut Child) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn down_ends_what_was_restarted_by_hand_inside_the_lab() -> Result<()> {
    let halb = halb_binary();
    let mut up = TopologyOptions::new(&halb);
    up.prefix = format!("halb-lab-t{}-up", std::process::id());
    let t = Instant::now();
    let lab = Topology::build(&up)?;
    let state_dir = tempfile::tempdir()?;
    let state_path = state_dir.path().join("state.json");
    lab.detach().save(&state_path)?;
    let state = LabState::load(&state_path)?;
    assert_eq!(state.processes.len(), 6, "{state:?}");
    assert_eq!(state.namespaces.len(), 6, "{state:?}");
    assert!(state.processes.iter().all(|p| process_alive(p.pid)));
    assert_eq!(namespaces_with(&up.prefix).len(), 6);
    eprintln!("up: {:?}", t.elapsed());

    // The user restarts d1's halb and MariaDB 253:3306 by hand, with the same command lines.
    let d1 = &state.directors[0];
    let d1_halb = state
        .processes
        .iter()
        .find(|p| p.program == "halb")
        .context("no halb in the state")?;
    let halb_argv = command_line(d1_halb.pid);
    stop(d1_halb.pid);
    let mut restarted_halb = start_in(&d1.ns, &halb_argv)?;

    let db = &state.databases[0];
    let db_host = state
        .hosts
        .iter()
        .find(|h| std::net::IpAddr::V4(h.ip) == db.addr.ip())
        .context("no host for the first database")?;
    let mariadbd = state
        .processes
        .iter()
        .find(|p| p.what == format!("MariaDB {}", db.label))
        .context("no mariadbd for the first database")?;
    let mariadbd_argv = command_line(mariadbd.pid);
    stop(mariadbd.pid);
    let mut restarted_mariadbd = start_in(&db_host.ns, &mariadbd_argv)?;
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        matches!(restarted_halb.try_wait(), Ok(None)),
        "the restarted halb exited at once"
    );
    assert!(
        matches!(restarted_mariadbd.try_wait(), Ok(None)),
        "the restarted mariadbd exited at once"
    );

    let report = state.teardown();
    println!("{report:?}");
    assert!(ended(&mut restarted_halb), "the restarted halb runs on");
    assert!(
        ended(&mut restarted_mariadbd),
        "the restarted mariadbd runs on"
    );
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // The four recorded processes still running, and the two started by hand.
    assert_eq!(report.stopped, 4, "{report:?}");
    assert_eq!(report.strays.len(), 2, "{report:?}");
    for (program, ns) in [("halb", &d1.ns), ("mariadbd", &db_host.ns)] {
        assert!(
            report
                .strays
                .iter()
                .any(|s| s.starts_with(program) && s.ends_with(&format!("in namespace {ns}"))),
            "{program} in {ns} is not named: {report:?}"
        );
    }
    assert_eq!(report.namespaces_removed, 6, "{report:?}");
    assert!(state.processes.iter().all(|p| !process_alive(p.pid)));
    assert!(state.dirs.iter().all(|d| !d.exists()), "{:?}", state.dirs);
    assert_nothing_left(&up.prefix, "a detached lab after its teardown");
    eprintln!("up and down: {:?}", t.elapsed());
    Ok(())
}
