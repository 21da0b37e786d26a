//! `halb realserver` in a network namespace of its own: the VIPs on `lo`, the ARP sysctls set
//! and put back, idempotent start and stop. Needs root (network namespaces).

use std::path::Path;
use std::process::Output;

use halb_test_support::Netns;

const HALB: &str = env!("CARGO_BIN_EXE_halb");
const SYSCTLS: [&str; 4] = [
    "net/ipv4/conf/lo/arp_ignore",
    "net/ipv4/conf/lo/arp_announce",
    "net/ipv4/conf/all/arp_ignore",
    "net/ipv4/conf/all/arp_announce",
];

fn halb(ns: &Netns, args: &[&str]) -> Output {
    ns.command(HALB)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run halb {args:?} in {}: {e}", ns.name()))
}

fn halb_ok(ns: &Netns, args: &[&str]) -> String {
    let out = halb(ns, args);
    assert!(
        out.status.success(),
        "halb {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sysctls(ns: &Netns) -> Vec<String> {
    SYSCTLS
        .iter()
        .map(|s| {
            ns.run(&["cat", &format!("/proc/sys/{s}")])
                .trim()
                .to_string()
        })
        .collect()
}

/// `lo`'s addresses other than the loopback ones, as `ip -o addr` shows them.
fn vips_on_lo(ns: &Netns) -> Vec<String> {
    let out = ns.ip(&["-o", "addr", "show", "dev", "lo"]);
    let mut vips: Vec<String> = out
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "inet" || *w == "inet6")?;
            words.next().map(str::to_string)
        })
        .filter(|a| a != "127.0.0.1/8" && a != "::1/128")
        .collect();
    vips.sort();
    vips
}

#[test]
fn start_is_idempotent_and_stop_restores_what_was_there() {
    let ns = Netns::new("realsrv");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("realserver.json");
    let state_arg = state.to_str().unwrap();

    // A value other than the kernel's default, to see that stop restores it rather than 0.
    ns.run(&[
        "sh",
        "-c",
        "echo 1 > /proc/sys/net/ipv4/conf/all/arp_announce",
    ]);
    let before = sysctls(&ns);
    assert_eq!(before, ["0", "0", "0", "1"]);

    let start = [
        "realserver",
        "start",
        "--vip",
        "192.168.66.251",
        "--vip",
        "fd66::251",
        "--state-file",
        state_arg,
    ];
    let first = halb_ok(&ns, &start);
    assert!(first.contains("added 192.168.66.251/32 to lo"), "{first}");
    let after_first = (vips_on_lo(&ns), sysctls(&ns));
    assert_eq!(
        after_first,
        (
            vec!["192.168.66.251/32".to_string(), "fd66::251/128".to_string()],
            vec!["1".into(), "2".into(), "1".into(), "2".into()]
        )
    );
    let recorded = std::fs::read_to_string(&state).unwrap();

    let second = halb_ok(&ns, &start);
    assert!(second.contains("already on lo"), "{second}");
    assert_eq!((vips_on_lo(&ns), sysctls(&ns)), after_first);
    // The values to restore are still the original ones, not those of the first start.
    assert_eq!(std::fs::read_to_string(&state).unwrap(), recorded);
    let state_json: serde_json::Value = serde_json::from_str(&recorded).unwrap();
    assert_eq!(
        state_json["previous"]["net.ipv4.conf.all.arp_announce"],
        "1"
    );
    assert_eq!(state_json["previous"]["net.ipv4.conf.lo.arp_ignore"], "0");

    let status = halb(&ns, &["realserver", "status", "--state-file", state_arg]);
    let status_text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(0), "{status_text}");
    assert!(
        status_text.contains("VIP fd66::251/128 on lo"),
        "{status_text}"
    );

    // Stopping one VIP keeps the ARP settings for the other.
    halb_ok(
        &ns,
        &[
            "realserver",
            "stop",
            "--vip",
            "fd66::251",
            "--state-file",
            state_arg,
        ],
    );
    assert_eq!(vips_on_lo(&ns), ["192.168.66.251/32"]);
    assert_eq!(sysctls(&ns), ["1", "2", "1", "2"]);

    // Stopping the rest restores the sysctls and forgets the state.
    halb_ok(&ns, &["realserver", "stop", "--state-file", state_arg]);
    assert!(vips_on_lo(&ns).is_empty(), "{:?}", vips_on_lo(&ns));
    assert_eq!(sysctls(&ns), before);
    assert!(!Path::new(&state).exists());

    // Once more: nothing to do, nothing fails.
    halb_ok(
        &ns,
        &[
            "realserver",
            "stop",
            "--vip",
            "192.168.66.251",
            "--state-file",
            state_arg,
        ],
    );
    assert_eq!(sysctls(&ns), before);

    let status = halb(
        &ns,
        &[
            "realserver",
            "status",
            "--vip",
            "192.168.66.251",
            "--state-file",
            state_arg,
        ],
    );
    assert_eq!(status.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&status.stdout).contains("VIP 192.168.66.251 missing from lo"));
}

#[test]
fn a_corrupt_state_file_is_reported_not_overwritten() {
    let ns = Netns::new("realsrv-bad");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("realserver.json");
    std::fs::write(&state, "not json").unwrap();
    let out = halb(
        &ns,
        &[
            "realserver",
            "start",
            "--vip",
            "192.168.66.251",
            "--state-file",
            state.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a halb realserver state file"));
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "not json");
    assert!(vips_on_lo(&ns).is_empty());
}
