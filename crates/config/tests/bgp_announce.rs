//! halb's `bgp_announce`: its keywords and defaults, the diagnostics at file:line:col for what
//! cannot work (no neighbour, a VIP no virtual server has, BFD without a neighbour address, a
//! tracked instance that does not exist, …), the round trip through `to_keepalived_conf`, and
//! keepalived's own verdict on a file that uses it (warnings, not errors).

use halb_config::diagnostic::{Format, Severity};
use halb_config::model::*;
use halb_config::{load_str, LoadOptions, Loaded};

fn read(text: &str) -> Loaded {
    let opts = LoadOptions {
        config_id: "bgp-test".into(),
        interfaces: None,
        max_lines: 100_000,
        script_search_path: None,
    };
    load_str("test.conf", text, &opts)
}

fn short(l: &Loaded) -> String {
    l.diagnostics.render(&l.sources, Format::Short, false)
}

const VS: &str = r#"
vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 100
    virtual_ipaddress {
        192.168.66.251
    }
}
vrrp_instance VI_2 {
    state BACKUP
    interface eth0
    virtual_router_id 52
    priority 100
    virtual_ipaddress {
        192.168.66.252
    }
}
vrrp_sync_group G1 {
    group {
        VI_1
        VI_2
    }
}
virtual_server 192.168.66.251 80 {
    lb_algo mh
    lb_kind DR
    protocol TCP
    real_server 192.168.66.253 80 {
        TCP_CHECK {
            connect_timeout 3
        }
    }
}
"#;

const FULL: &str = r#"
bgp_announce {
    local_as 65001
    router_id 10.0.0.2
    hold_time 6
    bfd
    bfd_interval 0.05
    bfd_multiplier 4
    drain_timeout 30
    bird_binary /usr/local/sbin/bird
    neighbor 10.0.0.1 {
        remote_as 65000
        source_address 10.0.0.2
    }
    neighbor 10.0.1.1 {
        remote_as 65000
        bfd off
        port 1179
        multihop 2
    }
    announce 192.168.66.251 {
        track_instance VI_1
        track_group G1
    }
}
"#;

fn with_vs(bgp: &str) -> String {
    format!("{VS}{bgp}")
}

#[test]
fn reads_every_keyword() {
    let l = read(&with_vs(FULL));
    assert!(l.diagnostics.is_clean(), "{}", short(&l));
    let a = l.config.bgp.as_ref().expect("bgp_announce read");
    assert_eq!(a.local_as, 65001);
    assert_eq!(a.router_id, Some("10.0.0.2".parse().unwrap()));
    assert_eq!(a.hold_time_s, 6);
    assert!(a.bfd);
    assert_eq!(a.bfd_interval_us, 50_000);
    assert_eq!(a.bfd_multiplier, 4);
    assert_eq!(a.drain_timeout_us, 30_000_000);
    assert_eq!(
        a.bird,
        BirdControl::Supervised {
            binary: "/usr/local/sbin/bird".into()
        }
    );
    assert_eq!(a.neighbors.len(), 2);
    let n0 = &a.neighbors[0];
    assert_eq!(n0.address, "10.0.0.1".parse::<std::net::IpAddr>().unwrap());
    assert_eq!(n0.remote_as, 65000);
    assert!(n0.bfd(a), "inherits the block's bfd");
    assert_eq!(n0.source_address, Some("10.0.0.2".parse().unwrap()));
    assert_eq!(n0.port, 179);
    let n1 = &a.neighbors[1];
    assert!(!n1.bfd(a));
    assert_eq!((n1.port, n1.multihop), (1179, Some(2)));
    assert_eq!(a.routes.len(), 1);
    assert_eq!(a.routes[0].prefix(), "192.168.66.251/32");
    assert_eq!(a.routes[0].track_instances, ["VI_1"]);
    assert_eq!(a.routes[0].track_groups, ["G1"]);
}

#[test]
fn defaults() {
    let l = read(&with_vs(
        "bgp_announce {\n local_as 65001\n neighbor 10.0.0.1 {\n  remote_as 65000\n }\n announce 192.168.66.251\n}\n",
    ));
    assert!(l.diagnostics.is_clean(), "{}", short(&l));
    let a = l.config.bgp.as_ref().unwrap();
    assert_eq!(a.hold_time_s, 3);
    assert!(!a.bfd);
    assert_eq!(a.bfd_interval_us, 100_000);
    assert_eq!(a.bfd_multiplier, 5);
    assert_eq!(a.drain_timeout_us, 300_000_000);
    assert_eq!(
        a.bird,
        BirdControl::Supervised {
            binary: "/usr/sbin/bird".into()
        }
    );
    assert!(a.routes[0].track_instances.is_empty());
}

/// Every diagnostic as `line:col: severity: message`.
fn located(l: &Loaded) -> Vec<String> {
    short(l)
        .lines()
        .map(|s| s.trim_start_matches("test.conf:").to_string())
        .collect()
}

fn has(l: &Loaded, prefix: &str, needle: &str) {
    let all = located(l);
    assert!(
        all.iter()
            .any(|d| d.starts_with(prefix) && d.contains(needle)),
        "no diagnostic at {prefix} with '{needle}' in:\n{}",
        all.join("\n")
    );
}

#[test]
fn vip_without_a_virtual_server_is_located_and_not_announced() {
    let text = with_vs(
        "bgp_announce {\n local_as 65001\n neighbor 10.0.0.1 {\n  remote_as 65000\n }\n announce 192.168.66.251\n announce 192.168.66.99\n}\n",
    );
    let l = read(&text);
    let line = VS.lines().count() + 7;
    has(
        &l,
        &format!("{line}:11: warning"),
        "announce 192.168.66.99/32: no virtual_server has this address",
    );
    let a = l.config.bgp.as_ref().unwrap();
    assert_eq!(a.routes.len(), 1, "only the VIP of a virtual server stays");
}

#[test]
fn vip_inside_a_group_range_or_an_announced_prefix_counts() {
    let text = r#"
virtual_server_group WEB {
    192.168.66.240-250 80
}
virtual_server group WEB {
    lb_algo mh
    protocol TCP
    real_server 192.168.66.253 80 {
    }
}
bgp_announce {
    local_as 65001
    neighbor 10.0.0.1 {
        remote_as 65000
    }
    announce 192.168.66.245
    announce 192.168.66.0/24
}
"#;
    let l = read(text);
    let a = l.config.bgp.as_ref().unwrap();
    assert_eq!(a.routes.len(), 2, "{}", short(&l));
}

#[test]
fn no_neighbor_is_an_error() {
    let l = read(&with_vs(
        "bgp_announce {\n local_as 65001\n announce 192.168.66.251\n}\n",
    ));
    let line = VS.lines().count() + 1;
    has(&l, &format!("{line}:1: error"), "without a 'neighbor'");
    assert!(l.config.bgp.is_none());
    assert_eq!(l.diagnostics.worst(), Some(Severity::Error));
}

#[test]
fn missing_as_numbers_are_errors() {
    let l = read(&with_vs(
        "bgp_announce {\n neighbor 10.0.0.1 {\n  remote_as 65000\n }\n}\n",
    ));
    let line = VS.lines().count() + 1;
    has(&l, &format!("{line}:1: error"), "without 'local_as'");
    let l = read(&with_vs(
        "bgp_announce {\n local_as 1\n neighbor 10.0.0.1 {\n }\n neighbor 10.0.0.5 {\n  remote_as 2\n }\n announce 192.168.66.251\n}\n",
    ));
    let line = VS.lines().count() + 3;
    has(
        &l,
        &format!("{line}:2: error"),
        "neighbor 10.0.0.1 without 'remote_as'",
    );
    assert_eq!(l.config.bgp.as_ref().unwrap().neighbors.len(), 1);
}

#[test]
fn bad_neighbor_address_is_located() {
    let l = read(&with_vs(
        "bgp_announce {\n local_as 1\n neighbor 10.0.0.x {\n  remote_as 2\n }\n neighbor 127.0.0.1 {\n  remote_as 2\n }\n neighbor 10.0.0.1 {\n  remote_as 2\n }\n announce 192.168.66.251\n}\n",
    ));
    let base = VS.lines().count();
    has(
        &l,
        &format!("{}:11: warning", base + 3),
        "'10.0.0.x' is not an IP address",
    );
    has(
        &l,
        &format!("{}:11: error", base + 6),
        "neighbor 127.0.0.1: not an address a BGP peer can have",
    );
    assert_eq!(l.config.bgp.as_ref().unwrap().neighbors.len(), 1);
}

#[test]
fn bfd_without_a_neighbor_address_warns() {
    let l = read(&with_vs(
        "bgp_announce {\n local_as 1\n bird_socket /run/bird/bird.ctl\n bfd\n announce 192.168.66.251\n}\n",
    ));
    let line = VS.lines().count() + 4;
    has(
        &l,
        &format!("{line}:2: warning"),
        "bfd asked without a neighbor address",
    );
    let a = l.config.bgp.as_ref().unwrap();
    assert!(!a.bfd);
    assert_eq!(
        a.bird,
        BirdControl::Existing {
            socket: "/run/bird/bird.ctl".into()
        }
    );
}

#[test]
fn unknown_tracked_names_and_keywords_are_located() {
    let l = read(&with_vs(
        "bgp_announce {\n local_as 1\n neighbor 10.0.0.1 {\n  remote_as 2\n  hold 3\n }\n announce 192.168.66.251 {\n  track_instance VI_9\n  track_group G9\n }\n router_id ::1\n hold_time 1\n}\n",
    ));
    let base = VS.lines().count();
    has(
        &l,
        &format!("{}:3: warning", base + 5),
        "unknown keyword 'hold'",
    );
    has(
        &l,
        &format!("{}:18: warning", base + 8),
        "track_instance VI_9 doesn't exist",
    );
    has(
        &l,
        &format!("{}:15: warning", base + 9),
        "track_group G9 doesn't exist",
    );
    has(&l, &format!("{}:12: warning", base + 11), "must be an IPv4");
    has(
        &l,
        &format!("{}:12: warning", base + 12),
        "outside range [3, 65535]",
    );
    assert!(l.config.bgp.as_ref().unwrap().routes.is_empty());
}

#[test]
fn neighbor_inside_an_announced_prefix_warns() {
    let l = read(&with_vs(
        "bgp_announce {\n local_as 1\n neighbor 192.168.66.1 {\n  remote_as 2\n }\n announce 192.168.66.0/24\n}\n",
    ));
    let line = VS.lines().count() + 3;
    has(
        &l,
        &format!("{line}:2: warning"),
        "inside the announced 192.168.66.0/24",
    );
}

#[test]
fn round_trip_through_keepalived_conf() {
    let first = read(&with_vs(FULL));
    let text = first.config.to_keepalived_conf();
    let back = read(&text);
    assert!(back.diagnostics.is_clean(), "{}\n{text}", short(&back));
    assert_eq!(back.config.bgp, first.config.bgp, "{text}");
}

/// keepalived reads a file with `bgp_announce` as it reads any other halb addition: it warns
/// about the block's keywords (exit 5, not the 4 of an error) and reads the rest.
#[test]
fn keepalived_warns_and_goes_on() {
    let Some(keepalived) = ["/usr/sbin/keepalived", "/sbin/keepalived"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        eprintln!("skipped: keepalived is not installed (scripts/deps.sh installs it)");
        return;
    };
    let dir = std::env::temp_dir().join(format!("halb-bgp-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("keepalived.conf");
    std::fs::write(&file, with_vs(FULL)).unwrap();
    let out = std::process::Command::new(keepalived)
        .arg("-t")
        .arg("-f")
        .arg(&file)
        .output()
        .expect("keepalived -t runs");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("Unknown keyword 'bgp_announce'"),
        "{stderr}"
    );
}
