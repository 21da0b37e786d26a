//! sysctl values and network namespaces: a thread that entered a namespace reads and writes
//! that namespace's `/proc/sys/net`, and the previous value comes back for undoing; the
//! namespace commands say which command failed where, and what `ip` said.

mod common;

use common::*;
use halb_sys::sysctl::{self, SysctlKey};
use halb_sys::{interface_index, netns, Error};

#[test]
fn write_returns_the_previous_value_and_stays_in_the_namespace() {
    let pair = Pair::new("sysctl");
    let key = SysctlKey::interface("ipv4", A_IF, "arp_ignore");
    let (previous, now) = netns::run_in(&pair.a.path(), {
        let key = key.clone();
        move || {
            let previous = sysctl::write(&key, "1").expect("write");
            (previous, sysctl::read(&key).expect("read"))
        }
    })
    .expect("in A");
    assert_eq!(previous, "0");
    assert_eq!(now, "1");
    let seen = pair
        .a
        .run(&["cat", "/proc/sys/net/ipv4/conf/a0/arp_ignore"]);
    assert_eq!(seen.trim(), "1", "the write reached namespace A");
    // a0 exists only in A: the test thread, still in the root namespace, cannot see it.
    assert!(sysctl::read(&key).is_err());
    let back = netns::run_in(&pair.a.path(), move || sysctl::write(&key, &previous))
        .expect("in A")
        .expect("restore");
    assert_eq!(back, "1");
}

#[test]
fn errors_say_which_key() {
    let error = sysctl::read(&SysctlKey::new("net.ipv4.conf.nope0.arp_ignore"))
        .expect_err("no such interface");
    assert!(
        error.to_string().contains("net.ipv4.conf.nope0.arp_ignore"),
        "{error}"
    );
    assert_eq!(error.raw_os_error(), Some(libc::ENOENT));
}

#[test]
fn run_in_executes_inside_the_namespace() {
    let pair = Pair::new("netns");
    let index = netns::run_in(&pair.b.path(), || interface_index(B_IF)).expect("in B");
    assert!(index.is_ok(), "b0 is visible in B");
    assert!(matches!(
        interface_index(B_IF),
        Err(Error::NoSuchInterface { .. })
    ));
    let missing = netns::run_in(&netns::named("halbt-sys-absent-0"), || ());
    assert!(
        missing.is_err(),
        "entering a namespace that does not exist fails"
    );
}

#[test]
fn a_failed_command_names_itself_its_namespace_and_what_ip_said() {
    let ns = new_netns("cmd");
    let error = netns::ip(ns.name(), &["link", "set", "nope0", "up"]).expect_err("no nope0");
    assert!(matches!(error, Error::Command { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains(&format!("ip -n {} link set nope0 up", ns.name())),
        "{text}"
    );
    assert!(text.contains("nope0"), "ip's stderr is in {text}");
    let error = netns::run(ns.name(), &["false"]).expect_err("false fails");
    assert!(
        error
            .to_string()
            .starts_with(&format!("false in namespace {} failed", ns.name())),
        "{error}"
    );
}

#[test]
fn pids_lists_what_runs_inside_and_delete_removes_the_namespace() {
    let ns = new_netns("pids");
    let name = ns.name();
    assert_eq!(netns::pids(name).expect("pids"), Vec::<u32>::new());
    let mut sleeper = halb_test_support::ChildGuard::spawn(netns::command(name, "sleep").arg("30"))
        .expect("start sleep inside");
    let pid = sleeper.pid().expect("running");
    wait_for_pids(name, &[pid]);
    sleeper.kill();
    netns::delete(name).expect("delete");
    assert!(!netns::named(name).exists(), "{name} is gone");
    netns::delete(name).expect("deleting it again is fine");
    assert_eq!(netns::pids(name).expect("pids of none"), Vec::<u32>::new());
}

/// Waits until `ip netns pids NAME` lists exactly `pids` (a child started with `ip netns exec`
/// is `ip` until it has replaced itself by the program; same pid either way).
fn wait_for_pids(name: &str, pids: &[u32]) {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let now = netns::pids(name).expect("pids");
        if now == pids {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name}: pids {now:?}, not {pids:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
