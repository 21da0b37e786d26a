//! bird.conf for a supervised BIRD, written from `bgp_announce`.
//!
//! Each announced route is a `protocol static` of its own (`halb_r0`, `halb_r1`, …) holding one
//! blackhole route; each BGP session exports exactly the routes of those protocols. Announcing
//! is `enable halb_rN` on BIRD's control socket and withdrawing is `disable halb_rN`: BIRD drops
//! the route from its table at once and sends the withdrawal in the next UPDATE, without reading
//! its configuration again (a `configure` parses the whole file and may restart protocols). The
//! file names every route that is withdrawn at the time of writing as `disabled`, so a BIRD
//! (re)started by halb announces nothing halb has not decided.

use std::fmt::Write as _;
use std::net::IpAddr;

use halb_config::model::BgpAnnounce;

/// The name of the static protocol holding route `index` of `bgp_announce`.
pub fn static_protocol(index: usize) -> String {
    format!("halb_r{index}")
}

/// The name of the BGP protocol of neighbour `index`.
pub fn bgp_protocol(index: usize) -> String {
    format!("halb_n{index}")
}

/// bird.conf for `cfg`, with route `i` enabled when `announced(i)`.
pub fn render(cfg: &BgpAnnounce, announced: &dyn Fn(usize) -> bool) -> String {
    let mut c = String::new();
    let _ = writeln!(
        c,
        "# Written by halb from bgp_announce; halb rewrites it each time it starts BIRD."
    );
    let router_id = cfg.router_id.or_else(|| {
        cfg.neighbors.iter().find_map(|n| match n.source_address {
            Some(IpAddr::V4(v4)) => Some(v4),
            _ => None,
        })
    });
    if let Some(id) = router_id {
        let _ = writeln!(c, "router id {id};");
    }
    let _ = writeln!(c, "log stderr {{ warning, error, fatal }};");
    // Interfaces, for the directly connected neighbours' next hops; no kernel protocol: the
    // director's own routing table is not BIRD's to change.
    let _ = writeln!(c, "protocol device {{ scan time 10; }}");
    for (i, r) in cfg.routes.iter().enumerate() {
        let channel = if r.vip.is_ipv4() { "ipv4" } else { "ipv6" };
        let disabled = if announced(i) { "" } else { " disabled;" };
        let _ = writeln!(
            c,
            "protocol static {} {{ {channel};{disabled} route {} blackhole; }}",
            static_protocol(i),
            r.prefix()
        );
    }
    let bfd = cfg.neighbors.iter().any(|n| n.bfd(cfg));
    if bfd {
        let ms = (cfg.bfd_interval_us / 1000).max(1);
        let _ = writeln!(
            c,
            "protocol bfd halb_bfd {{ interface \"*\" {{ interval {ms} ms; multiplier {}; }}; }}",
            cfg.bfd_multiplier
        );
    }
    for (i, n) in cfg.neighbors.iter().enumerate() {
        let _ = writeln!(c, "protocol bgp {} {{", bgp_protocol(i));
        match n.source_address {
            Some(src) => {
                let _ = writeln!(c, "    local {src} as {};", cfg.local_as);
            }
            None => {
                let _ = writeln!(c, "    local as {};", cfg.local_as);
            }
        }
        let port = if n.port == 179 {
            String::new()
        } else {
            format!(" port {}", n.port)
        };
        let _ = writeln!(c, "    neighbor {}{port} as {};", n.address, n.remote_as);
        match n.multihop {
            Some(ttl) => {
                let _ = writeln!(c, "    multihop {ttl};");
            }
            None => {
                let _ = writeln!(c, "    direct;");
            }
        }
        // A short hold time finds a silent peer; quick retries bring a session back soon
        // after the peer returns (BIRD's defaults wait 120 s before reconnecting).
        let _ = writeln!(
            c,
            "    hold time {}; keepalive time {}; connect delay time 1; connect retry time 2; error wait time 1, 10;",
            cfg.hold_time_s,
            (cfg.hold_time_s / 3).max(1)
        );
        if n.bfd(cfg) {
            let _ = writeln!(c, "    bfd on;");
        }
        let channel = if n.address.is_ipv4() { "ipv4" } else { "ipv6" };
        let _ = writeln!(
            c,
            "    {channel} {{ import none; export where proto ~ \"halb_r*\"; next hop self; }};"
        );
        let _ = writeln!(c, "}}");
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use halb_config::model::{AnnouncedRoute, BgpNeighbor, BirdControl};

    #[test]
    fn routes_neighbours_and_bfd() {
        let cfg = BgpAnnounce {
            local_as: 65001,
            router_id: None,
            hold_time_s: 3,
            bfd: true,
            bfd_interval_us: 100_000,
            bfd_multiplier: 5,
            drain_timeout_us: 0,
            bird: BirdControl::Supervised {
                binary: "/usr/sbin/bird".into(),
            },
            neighbors: vec![BgpNeighbor {
                address: "10.0.0.1".parse().unwrap(),
                remote_as: 65000,
                bfd: None,
                source_address: Some("10.0.0.2".parse().unwrap()),
                port: 179,
                multihop: None,
            }],
            routes: vec![
                AnnouncedRoute {
                    vip: "192.168.66.251".parse().unwrap(),
                    prefix_len: 32,
                    track_instances: vec![],
                    track_groups: vec![],
                },
                AnnouncedRoute {
                    vip: "192.168.66.252".parse().unwrap(),
                    prefix_len: 32,
                    track_instances: vec![],
                    track_groups: vec![],
                },
            ],
        };
        let text = render(&cfg, &|i| i == 1);
        assert!(text.contains("router id 10.0.0.2;"), "{text}");
        assert!(text.contains(
            "protocol static halb_r0 { ipv4; disabled; route 192.168.66.251/32 blackhole; }"
        ));
        assert!(
            text.contains("protocol static halb_r1 { ipv4; route 192.168.66.252/32 blackhole; }")
        );
        assert!(text.contains("interval 100 ms; multiplier 5;"));
        assert!(text.contains("local 10.0.0.2 as 65001;"));
        assert!(text.contains("neighbor 10.0.0.1 as 65000;"));
        assert!(text.contains("bfd on;"));
        assert!(text.contains("export where proto ~ \"halb_r*\""));
    }
}
