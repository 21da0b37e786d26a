//! The seed's two configurations (`shared/seed/`) read to the values the seed describes.

use halb_config::diagnostic::Severity;
use halb_config::summary::{
    CheckerSummary, InstanceSummary, RealServerSummary, VirtualServerSummary,
};
use halb_config::{load, LoadOptions, Loaded};

fn seed(name: &str) -> Loaded {
    let path = halb_test_support::seed_path(name);
    let opts = LoadOptions {
        interfaces: Some(vec!["lo".into(), "eth0".into()]),
        ..LoadOptions::default()
    };
    load(&path, &opts)
}

fn virtual_server(port: u16) -> VirtualServerSummary {
    VirtualServerSummary {
        key: format!("192.168.66.251:{port}"),
        protocol: "TCP".into(),
        sched: "wrr".into(),
        persistence_timeout: Some(120),
        delay_loop_us: 20_000_000,
        quorum: 1,
        sorry_server: Some(format!("192.168.66.254:{port}")),
        real_servers: vec![RealServerSummary {
            addr: format!("192.168.66.253:{port}"),
            weight: 1,
            forwarding: "DR".into(),
            checkers: vec![CheckerSummary {
                kind: "TCP_CHECK".into(),
                connect_timeout_us: Some(5_000_000),
                // `nb_get_retry 3`, read as `retry 3` (keepalived 2.2.7 ignores it: 1).
                retry: 3,
                delay_before_retry_us: 3_000_000,
                delay_loop_us: 20_000_000,
            }],
        }],
    }
}

/// (line, severity, a fragment of the message) of each diagnostic, sorted by line.
fn diagnostics(loaded: &Loaded) -> Vec<(u32, Severity, String)> {
    let mut v: Vec<_> = loaded
        .diagnostics
        .iter()
        .map(|d| {
            (
                d.span.map(|s| s.line).unwrap_or(0),
                d.severity,
                d.message.clone(),
            )
        })
        .collect();
    v.sort_by_key(|d| d.0);
    v
}

fn check(name: &str, state: &str, priority: u8) {
    let loaded = seed(name);
    let summary = loaded.config.summary();
    assert_eq!(
        summary.vrrp_instances,
        vec![InstanceSummary {
            name: "INT".into(),
            interface: Some("eth0".into()),
            vrid: 200,
            priority,
            version: 2,
            advert_int_us: 1_000_000,
            // keepalived starts a non-owner MASTER of a sync group as BACKUP (its dump's
            // "Wantstate"); it becomes MASTER when no advert arrives within Master_Down_Interval.
            initial_state: "BACKUP".into(),
            vips: vec!["192.168.66.251/32".into()],
        }]
    );
    assert_eq!(
        summary.virtual_servers,
        vec![virtual_server(3306), virtual_server(3308)]
    );

    assert_eq!(
        loaded.config.vrrp.instances[0].state.as_str(),
        state,
        "configured state"
    );

    let diags = diagnostics(&loaded);
    let at = |line: u32, needle: &str| {
        diags
            .iter()
            .any(|(l, s, m)| *l == line && *s == Severity::Warning && m.contains(needle))
    };
    assert!(
        at(19, "auth_pass"),
        "auth_pass truncation warning at line 19: {diags:#?}"
    );
    assert!(
        at(37, "nb_get_retry"),
        "nb_get_retry note at line 37: {diags:#?}"
    );
    assert!(
        at(55, "nb_get_retry"),
        "nb_get_retry note at line 55: {diags:#?}"
    );
    assert!(
        at(13, "lvs_sync_daemon"),
        "lvs_sync_daemon_interface deprecation at 13: {diags:#?}"
    );
    assert!(
        !loaded.diagnostics.has_errors(),
        "the seed runs: no errors expected: {diags:#?}"
    );
    assert!(
        !diags
            .iter()
            .any(|(_, _, m)| m.starts_with("unknown keyword")),
        "every keyword of the seed is known: {diags:#?}"
    );
    // keepalived folds the instance's 1.x `lvs_sync_daemon_interface` into the global setting.
    let sync = loaded
        .config
        .global
        .lvs_sync_daemon
        .as_ref()
        .expect("lvs_sync_daemon folded");
    assert_eq!(sync.interface, "eth0");
    assert_eq!(sync.instance.as_deref(), Some("INT"));
    assert_eq!(loaded.config.global.router_id.as_deref(), Some("lvs50"));
}

#[test]
fn seed_master_reads_as_the_seed_describes() {
    check("keepalived-master.conf", "MASTER", 100);
}

#[test]
fn seed_backup_reads_as_the_seed_describes() {
    check("keepalived-backup.conf", "BACKUP", 90);
}
