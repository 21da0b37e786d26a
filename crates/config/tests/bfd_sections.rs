//! `bfd_instance` blocks, read as keepalived 2.2.7's bfd_parser.c reads them.

use halb_config::model::BfdInstance;
use halb_config::{load_str, LoadOptions, Loaded};
use std::net::IpAddr;

fn read(text: &str) -> Loaded {
    let opts = LoadOptions {
        config_id: "bfd-test".into(),
        interfaces: None,
        max_lines: 100_000,
        script_search_path: None,
    };
    load_str("test.conf", text, &opts)
}

fn messages(loaded: &Loaded) -> Vec<String> {
    loaded
        .diagnostics
        .iter()
        .map(|d| d.message.clone())
        .collect()
}

#[test]
fn defaults_and_every_keyword() {
    let loaded = read(
        "bfd_instance DEFAULTS {\n  neighbor_ip 192.168.66.1\n}\n\
         bfd_instance ALL {\n  neighbour_ip 192.168.66.2\n  source_ip 192.168.66.10\n  \
         min_rx 50\n  min_tx 1.5\n  idle_tx 2000\n  multiplier 3\n  passive\n  ttl 250\n  \
         max_hops 5\n  weight -20 reverse\n  vrrp\n}\n",
    );
    assert!(messages(&loaded).is_empty(), "{:?}", messages(&loaded));
    let bfd = &loaded.config.bfd;
    assert_eq!(bfd.len(), 2);
    assert_eq!(
        bfd[0],
        BfdInstance {
            name: "DEFAULTS".into(),
            neighbor_ip: "192.168.66.1".parse::<IpAddr>().unwrap(),
            source_ip: None,
            min_rx_us: 10_000,
            min_tx_us: 10_000,
            idle_tx_us: 1_000_000,
            multiplier: 5,
            passive: false,
            ttl: 255,
            max_hops: 0,
            weight: 0,
            weight_reverse: false,
            vrrp: true,
            checker: true,
        }
    );
    let all = &bfd[1];
    assert_eq!(all.source_ip, Some("192.168.66.10".parse().unwrap()));
    assert_eq!(
        (all.min_rx_us, all.min_tx_us, all.idle_tx_us),
        (50_000, 1_500, 2_000_000)
    );
    assert_eq!(
        (all.multiplier, all.passive, all.ttl, all.max_hops),
        (3, true, 250, 5)
    );
    assert_eq!((all.weight, all.weight_reverse), (-20, true));
    assert_eq!((all.vrrp, all.checker), (true, false));
    assert!(all.accepts_ttl(245) && !all.accepts_ttl(244));
    // The blocks are written back as they were read.
    let again = read(&loaded.config.to_keepalived_conf());
    assert_eq!(again.config, loaded.config);
}

#[test]
fn keepalived_ignores_these_instances() {
    let loaded = read(
        "bfd_instance NO_NEIGHBOUR {\n  min_rx 50\n}\n\
         bfd_instance BAD {\n  neighbor_ip 192.168.66.300\n}\n\
         bfd_instance MIXED {\n  neighbor_ip 192.168.66.1\n  source_ip fe80::1\n}\n\
         bfd_instance FIRST {\n  neighbor_ip 192.168.66.1\n}\n\
         bfd_instance FIRST {\n  neighbor_ip 192.168.66.9\n}\n\
         bfd_instance SAME_PEER {\n  neighbor_ip 192.168.66.1\n}\n\
         bfd_instance A_NAME_THAT_IS_LONGER_THAN_31_CHARS {\n  neighbor_ip 192.168.66.7\n}\n",
    );
    let names: Vec<&str> = loaded.config.bfd.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["FIRST"]);
    let m = messages(&loaded).join("\n");
    for expected in [
        "BFD instance NO_NEIGHBOUR has no neighbor address set, disabling instance",
        "BFD instance BAD has malformed neighbor address 192.168.66.300, ignoring instance",
        "are not of the same family, disabling instance",
        "BFD instance FIRST already configured - ignoring",
        "BFD instance SAME_PEER has duplicate neighbor address 192.168.66.1",
        "name too long (maximum length is 31 characters)",
    ] {
        assert!(m.contains(expected), "{expected:?} not in\n{m}");
    }
}

#[test]
fn out_of_range_values_keep_the_defaults() {
    let loaded = read(
        "bfd_instance B {\n  neighbor_ip 192.168.66.1\n  min_rx 0\n  idle_tx 500\n  \
         multiplier 256\n  max_hops 300\n}\n",
    );
    let b = &loaded.config.bfd[0];
    assert_eq!(
        (b.min_rx_us, b.idle_tx_us, b.multiplier, b.max_hops),
        (10_000, 1_000_000, 5, 0)
    );
    assert_eq!(messages(&loaded).len(), 4, "{:?}", messages(&loaded));
    // Each message points at its line.
    for d in loaded.diagnostics.iter() {
        assert!(d.span.is_some(), "{d:?}");
    }
}
