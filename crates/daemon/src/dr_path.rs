//! Where halb adds its DR-path check on its own.
//!
//! With direct routing the director forwards the client's packet to VIP:port unchanged, only
//! addressed to the real server's MAC. A real server whose VIP is gone from `lo` drops those
//! packets, while keepalived's TCP_CHECK to RIP:port still succeeds: the seed's case 4.3.2,
//! which nobody noticed. So every direct-routing real server of an IPv4 TCP service gets a
//! `DR_PATH_CHECK`, which sends what forwarding sends, unless the file already gives it one or
//! `--no-dr-path-check` says not to. Its timing is the virtual server's, as for any checker
//! that sets none of its own.

use halb_config::model::{Checker, Forwarding, LvsConfig, Protocol, TcpCheck, VirtualServerKey};
use std::net::IpAddr;

/// Adds the checks; returns how many.
pub fn add_checks(lvs: &mut LvsConfig) -> usize {
    let mut added = 0;
    for vs in &mut lvs.virtual_servers {
        // A fwmark or a group has no single VIP:port to send to; IPv6 would need NDP.
        let VirtualServerKey::Addr {
            ip: IpAddr::V4(_),
            port,
        } = vs.key
        else {
            continue;
        };
        if port == 0 || vs.protocol != Some(Protocol::Tcp) {
            continue;
        }
        let vs_forwarding = vs.forwarding;
        for rs in &mut vs.real_servers {
            let forwarding = rs.lvs_method.as_ref().unwrap_or(&vs_forwarding);
            let wanted = matches!(forwarding, Forwarding::Dr)
                && rs.ip.is_ipv4()
                && !rs.checkers.iter().any(|c| matches!(c, Checker::DrPath(_)));
            if wanted {
                rs.checkers.push(Checker::DrPath(TcpCheck::default()));
                added += 1;
            }
        }
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;
    use halb_config::{load_str, LoadOptions};

    fn lvs(text: &str) -> LvsConfig {
        let opts = LoadOptions {
            config_id: "d1".into(),
            interfaces: None,
            max_lines: 10_000,
            script_search_path: None,
        };
        load_str("/t/keepalived.conf", text, &opts).config.lvs
    }

    #[test]
    fn only_direct_routing_ipv4_tcp_services() {
        let mut l = lvs("
virtual_server 10.0.0.100 80 {
    lb_kind DR
    protocol TCP
    real_server 10.0.0.21 80 { TCP_CHECK { } }
    real_server 10.0.0.22 80 { }
    real_server 10.0.0.23 80 { lvs_method NAT }
    real_server 10.0.0.24 80 { DR_PATH_CHECK { connect_timeout 2 } }
}
virtual_server 10.0.0.100 53 {
    lb_kind DR
    protocol UDP
    real_server 10.0.0.21 53 { }
}
virtual_server 10.0.0.101 80 {
    lb_kind NAT
    protocol TCP
    real_server 10.0.0.21 80 { }
}
virtual_server fwmark 7 {
    lb_kind DR
    protocol TCP
    real_server 10.0.0.21 80 { }
}
virtual_server 2001:db8::1 80 {
    lb_kind DR
    protocol TCP
    real_server 2001:db8::21 80 { }
}
");
        assert_eq!(add_checks(&mut l), 2);
        let dr = |vs: usize, rs: usize| {
            l.virtual_servers[vs].real_servers[rs]
                .checkers
                .iter()
                .filter(|c| matches!(c, Checker::DrPath(_)))
                .count()
        };
        assert_eq!([dr(0, 0), dr(0, 1), dr(0, 2), dr(0, 3)], [1, 1, 0, 1]);
        assert_eq!([dr(1, 0), dr(2, 0), dr(3, 0), dr(4, 0)], [0, 0, 0, 0]);
        // The file's own check keeps its settings.
        let own = &l.virtual_servers[0].real_servers[3].checkers[0];
        assert_eq!(
            own.common().and_then(|c| c.connect_timeout_us),
            Some(2_000_000)
        );
    }
}
