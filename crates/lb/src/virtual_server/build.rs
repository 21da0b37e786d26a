//! From the configuration model to the virtual servers' initial state: which IPVS services
//! each virtual server makes (a `virtual_server_group` gives one per address and fwmark),
//! keepalived's names for them, and each checker's starting verdict.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use halb_config::model::{
    Checker, GroupEntry, IpFamily, LvsConfig, Protocol, RealServer, VirtualServer, VirtualServerKey,
};

use halb_config::names;

use super::output::Output;
use super::state::{
    CheckerState, ConnectionDrops, RealServerState, ServiceSpec, ServiceTemplate, SorryState,
    VsState,
};
use super::vs_event::{VsEvent, VsRef};
use crate::table::{Persistence, ProtocolKey, ServiceKey};

/// The most addresses one group entry expands to. keepalived has no limit, but an IPv4
/// `/8` would ask IPVS for sixteen million services: the rest are left out, with a warning.
pub const MAX_RANGE_ADDRESSES: u32 = 65536;

/// Builds every virtual server's state, and the warnings the expansion gave.
pub(crate) fn build(lvs: &LvsConfig) -> (Vec<VsState>, Vec<Output>) {
    let mut warnings = Vec::new();
    // keepalived names a group's virtual servers `[GROUP]:N`, N counting the virtual servers
    // that use the group, in file order.
    let mut group_members: HashMap<&str, u32> = HashMap::new();
    let vss = lvs
        .virtual_servers
        .iter()
        .enumerate()
        .map(|(index, vs)| {
            let member = match &vs.key {
                VirtualServerKey::Group(name) => {
                    let n = group_members.entry(name.as_str()).or_insert(0);
                    let member = *n;
                    *n += 1;
                    member
                }
                _ => 0,
            };
            build_vs(lvs, index, vs, member, &mut warnings)
        })
        .collect();
    (vss, warnings)
}

fn protocol_key(vs: &VirtualServer) -> ProtocolKey {
    // keepalived's validation sets UDP when an address service has none (the kernel's
    // default); the model normally carries it already.
    vs.protocol.unwrap_or(Protocol::Udp).into()
}

fn build_vs(
    lvs: &LvsConfig,
    index: usize,
    vs: &VirtualServer,
    group_member: u32,
    warnings: &mut Vec<Output>,
) -> VsState {
    // An address service's protocol as IPVS gets it (UDP when none is set), the others'
    // as configured.
    let protocol = vs.protocol.unwrap_or(Protocol::Udp);
    let name = names::virtual_server(&vs.key, Some(protocol), group_member);
    let vs_ref = || VsRef {
        index,
        name: name.clone(),
    };
    let inet6 = vs.ip_family == Some(IpFamily::Inet6);
    let services = match &vs.key {
        VirtualServerKey::Addr { ip, port } => {
            let key = ServiceKey::Addr {
                protocol: protocol_key(vs),
                addr: SocketAddr::new(*ip, *port),
            };
            vec![ServiceSpec { key, port: *port }]
        }
        VirtualServerKey::Fwmark(mark) => {
            let key = ServiceKey::Fwmark { mark: *mark, inet6 };
            vec![ServiceSpec { key, port: 0 }]
        }
        VirtualServerKey::Group(group) => match lvs.group(group) {
            Some(g) => group_services(vs, &g.entries, &vs_ref(), warnings),
            None => {
                warnings.push(Output::Event(VsEvent::GroupMissing {
                    vs: vs_ref(),
                    group: group.clone(),
                }));
                Vec::new()
            }
        },
    };
    let persistence = vs.persistence_timeout.map(|timeout_s| Persistence {
        timeout_s,
        granularity: vs.persistence_granularity,
    });
    let sorry = vs.sorry_server.as_ref().map(|s| SorryState {
        ip: s.ip,
        port: s.port,
        inhibit: s.inhibit,
        forwarding: *s.forwarding(vs),
        active: false,
    });
    VsState {
        index,
        name,
        protocol: vs.protocol,
        template: ServiceTemplate {
            scheduler: vs.sched,
            flags: vs.sched_flags,
            persistence,
            persistence_engine: vs.persistence_engine.clone(),
        },
        quorum: vs.quorum,
        hysteresis: vs.hysteresis,
        // keepalived decides quorum before any real server is alive, so every virtual server
        // starts without it; `init` then gains it or brings in the sorry server.
        quorum_up: false,
        quorum_up_script: vs.quorum_up.clone(),
        quorum_down_script: vs.quorum_down.clone(),
        omega: vs.omega,
        // keepalived clears ha_suspend on firewall-mark services: without an address there is
        // nothing whose presence could resume the checkers.
        ha_suspend: vs.ha_suspend
            && services
                .iter()
                .any(|s| matches!(s.key, ServiceKey::Addr { .. })),
        local_addresses: 0,
        checkers_enabled: true,
        sorry,
        real_servers: vs
            .real_servers
            .iter()
            .map(|rs| real_server(vs, rs))
            .collect(),
        drops: ConnectionDrops::from(vs.connection_fencing()),
        services,
    }
}

fn real_server(vs: &VirtualServer, rs: &RealServer) -> RealServerState {
    let checkers: Vec<CheckerState> = rs
        .checkers
        .iter()
        .map(|c| {
            let file = matches!(c, Checker::File(_));
            // keepalived's alpha mode: the checker starts failed, so the real server waits
            // for its first success. A tracked file's state is known at once (check_file.c
            // clears alpha and marks the checker as run); its value arrives through
            // `VirtualServers::set_file_status`.
            let alpha = !file && rs.effective_checker_alpha(vs, c);
            CheckerState {
                kind: c.kind_name(),
                counted: true,
                timed: c.kind().has_timing(),
                alpha,
                up: !alpha,
                has_run: file,
                weight_delta: 0,
            }
        })
        .collect();
    let alive = checkers.iter().all(|c| !c.counted || c.up);
    RealServerState {
        ip: rs.ip,
        port: rs.port,
        weight: rs.weight,
        effective_weight: i64::from(rs.weight),
        forwarding: *rs.forwarding(vs),
        uthreshold: rs.uthreshold,
        lthreshold: rs.lthreshold,
        inhibit: rs.effective_inhibit_on_failure(vs),
        notify_up: rs.notify_up.clone(),
        notify_down: rs.notify_down.clone(),
        alive,
        checkers,
    }
}

/// One service per address of each range, and one per fwmark (`ipvs_group_cmd()`).
fn group_services(
    vs: &VirtualServer,
    entries: &[GroupEntry],
    vs_ref: &VsRef,
    warnings: &mut Vec<Output>,
) -> Vec<ServiceSpec> {
    let mut services = Vec::new();
    for entry in entries {
        match entry {
            GroupEntry::Range { first, last, port } => {
                let (addrs, truncated) = expand_range(*first, *last);
                if truncated {
                    warnings.push(Output::Event(VsEvent::GroupRangeTruncated {
                        vs: vs_ref.clone(),
                        first: *first,
                        last: *last,
                        kept: MAX_RANGE_ADDRESSES,
                    }));
                }
                services.extend(addrs.into_iter().map(|ip| ServiceSpec {
                    key: ServiceKey::Addr {
                        protocol: protocol_key(vs),
                        addr: SocketAddr::new(ip, *port),
                    },
                    port: *port,
                }));
            }
            GroupEntry::Fwmark { mark, family } => {
                // An entry without a family takes the virtual server's, else IPv4, as
                // keepalived does.
                let family = family.or(vs.ip_family).unwrap_or(IpFamily::Inet);
                services.push(ServiceSpec {
                    key: ServiceKey::Fwmark {
                        mark: *mark,
                        inet6: family == IpFamily::Inet6,
                    },
                    port: 0,
                });
            }
        }
    }
    services
}

/// The addresses of a group range, as keepalived walks them: an IPv4 range counts the whole
/// address up to `last`; an IPv6 range counts only the last 16-bit group (keepalived's
/// `s6_addr16[7]`), from `first`'s to `last`'s. The flag says the range was cut at
/// [`MAX_RANGE_ADDRESSES`].
pub(crate) fn expand_range(first: IpAddr, last: IpAddr) -> (Vec<IpAddr>, bool) {
    match (first, last) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let (start, end) = (u32::from(a), u32::from(b).max(u32::from(a)));
            let count = u64::from(end - start) + 1;
            let take = count.min(u64::from(MAX_RANGE_ADDRESSES));
            let addrs = (0..take)
                // `take` ≤ 65536 and start + i ≤ end: neither conversion nor sum overflows.
                .map(|i| IpAddr::V4(Ipv4Addr::from(start + i as u32)))
                .collect();
            (addrs, count > take)
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mut segs = a.segments();
            let start = segs[7];
            let end = b.segments()[7].max(start);
            let addrs = (start..=end)
                .map(|g| {
                    segs[7] = g;
                    IpAddr::V6(Ipv6Addr::from(segs))
                })
                .collect();
            (addrs, false)
        }
        // The reader never mixes families in a range; the first address alone is the safe
        // reading.
        _ => (vec![first], false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn ipv4_ranges_count_the_whole_address() {
        let (addrs, cut) = expand_range(ip("10.0.0.254"), ip("10.0.1.1"));
        assert_eq!(
            addrs,
            vec![
                ip("10.0.0.254"),
                ip("10.0.0.255"),
                ip("10.0.1.0"),
                ip("10.0.1.1")
            ]
        );
        assert!(!cut);
        let (addrs, cut) = expand_range(ip("10.0.0.0"), ip("10.255.255.255"));
        assert_eq!(addrs.len(), MAX_RANGE_ADDRESSES as usize);
        assert!(cut);
    }

    #[test]
    fn ipv6_ranges_count_the_last_group() {
        let (addrs, _) = expand_range(ip("2001:db8::fffe"), ip("2001:db8::1:ffff"));
        assert_eq!(addrs, vec![ip("2001:db8::fffe"), ip("2001:db8::ffff")]);
        let (addrs, _) = expand_range(ip("2001:db8::"), ip("2001:db8::ffff:ffff:ffff:ffff"));
        assert_eq!(addrs.len(), 65536);
    }

    #[test]
    fn a_single_address_is_itself() {
        assert_eq!(
            expand_range(ip("10.0.0.1"), ip("10.0.0.1")),
            (vec![ip("10.0.0.1")], false)
        );
    }
}
