//! sysctl values and network namespaces: a thread that entered a namespace reads and writes
//! that namespace's `/proc/sys/net`, and the previous value comes back for undoing.

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
