//! What a reload keeps: which parts of the running configuration the new one continues, decided
//! from the two configurations alone (keepalived's `reload_config()` with its `clear_diff_*`
//! functions). The shells apply it: `daemon.rs` keeps the matched VRRP instances' state
//! machines, `lvs.rs` builds the new virtual servers with the matched state and changes only
//! what differs in the data plane.
//!
//! - A VRRP instance is the same instance when its VRID, address family, interface and (for a
//!   unicast instance) source address are the same: keepalived's `vrrp_exist()`.
//! - A virtual server is the same when its key (address and port, fwmark or group) and
//!   protocol are; a real server of it, when its address and port are.
//! - A checker keeps its verdict and retries when nothing that defines its probe changed: its
//!   own settings, and the timings, alpha and virtual host it inherits.

use std::collections::BTreeSet;
use std::net::IpAddr;

use halb_config::model::{LvsConfig, RealServer, VirtualServer};
use halb_config::names::CheckerId;
use halb_lb::virtual_server::Carried;
use halb_sys::IpFamily;

use crate::vrrp_map::MappedInstance;

/// What identifies a VRRP instance across a reload.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct InstanceKey {
    vrid: u8,
    v6: bool,
    interface: String,
    unicast_source: Option<IpAddr>,
}

fn instance_key(m: &MappedInstance) -> InstanceKey {
    InstanceKey {
        vrid: m.config.vrid,
        v6: m.family == IpFamily::V6,
        interface: m.interface.clone(),
        unicast_source: m.config.is_unicast().then_some(m.config.source_address),
    }
}

/// For each new instance, the running instance it continues, if any.
pub fn match_instances(old: &[MappedInstance], new: &[MappedInstance]) -> Vec<Option<usize>> {
    let mut taken = BTreeSet::new();
    new.iter()
        .map(|n| {
            let key = instance_key(n);
            let found = old
                .iter()
                .enumerate()
                .position(|(i, o)| !taken.contains(&i) && instance_key(o) == key);
            if let Some(i) = found {
                taken.insert(i);
            }
            found
        })
        .collect()
}

/// The running instances no new instance continues: they stop (a MASTER among them sends its
/// priority 0 advert and removes its own addresses, nobody else's).
pub fn removed_instances(matches: &[Option<usize>], old_count: usize) -> Vec<usize> {
    let kept: BTreeSet<usize> = matches.iter().flatten().copied().collect();
    (0..old_count).filter(|i| !kept.contains(i)).collect()
}

/// Which virtual servers, real servers and checkers of `new` continue those of `old`.
pub fn carried_services(old: &LvsConfig, new: &LvsConfig) -> Carried {
    let mut carried = Carried::default();
    let mut taken = BTreeSet::new();
    for (n, vs) in new.virtual_servers.iter().enumerate() {
        let Some(o) = old
            .virtual_servers
            .iter()
            .enumerate()
            .position(|(i, ovs)| !taken.contains(&i) && same_vs(ovs, vs))
        else {
            continue;
        };
        taken.insert(o);
        carried.virtual_servers.insert(n, o);
        let old_vs = &old.virtual_servers[o];
        let mut rs_taken = BTreeSet::new();
        for (r, rs) in vs.real_servers.iter().enumerate() {
            let Some(or) = old_vs.real_servers.iter().enumerate().position(|(i, ors)| {
                !rs_taken.contains(&i) && (ors.ip, ors.port) == (rs.ip, rs.port)
            }) else {
                continue;
            };
            rs_taken.insert(or);
            carried.real_servers.insert((n, r), or);
            let old_rs = &old_vs.real_servers[or];
            let mut c_taken = BTreeSet::new();
            for c in 0..rs.checkers.len() {
                let found = (0..old_rs.checkers.len()).find(|&oc| {
                    !c_taken.contains(&oc) && same_checker(old_vs, old_rs, oc, vs, rs, c)
                });
                if let Some(oc) = found {
                    c_taken.insert(oc);
                    carried
                        .checkers
                        .insert(CheckerId::new(n, r, c), CheckerId::new(o, or, oc));
                }
            }
        }
    }
    carried
}

fn same_vs(a: &VirtualServer, b: &VirtualServer) -> bool {
    a.key == b.key && a.protocol == b.protocol && a.ip_family == b.ip_family
}

/// Whether checker `oc` of `old_rs` and checker `c` of `rs` probe the same way.
fn same_checker(
    old_vs: &VirtualServer,
    old_rs: &RealServer,
    oc: usize,
    vs: &VirtualServer,
    rs: &RealServer,
    c: usize,
) -> bool {
    let (was, is) = (&old_rs.checkers[oc], &rs.checkers[c]);
    was == is
        && old_rs.effective_checker_timing(old_vs, was) == rs.effective_checker_timing(vs, is)
        && old_rs.effective_checker_alpha(old_vs, was) == rs.effective_checker_alpha(vs, is)
        && old_rs.virtualhost.as_ref().or(old_vs.virtualhost.as_ref())
            == rs.virtualhost.as_ref().or(vs.virtualhost.as_ref())
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use halb_config::model::Config;
    use halb_config::{load_str, LoadOptions};

    use super::*;

    fn lvs(text: &str) -> LvsConfig {
        let loaded = load_str("test.conf", text, &LoadOptions::default());
        assert!(
            !loaded.diagnostics.has_errors(),
            "{}",
            loaded.diagnostics.render(
                &loaded.sources,
                halb_config::diagnostic::Format::Human,
                false
            )
        );
        let config: Config = loaded.config;
        config.lvs
    }

    const VS: &str = "
virtual_server 192.168.66.251 3306 {
    delay_loop 2
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    real_server 192.168.66.11 3306 {
        weight 1
        TCP_CHECK { connect_timeout 1 }
    }
    real_server 192.168.66.12 3306 {
        weight 1
        TCP_CHECK { connect_timeout 1 }
    }
}
";

    #[test]
    fn the_same_file_carries_everything() {
        let c = carried_services(&lvs(VS), &lvs(VS));
        assert_eq!(c.virtual_servers.len(), 1);
        assert_eq!(c.real_servers.len(), 2);
        assert_eq!(c.checkers.len(), 2);
    }

    #[test]
    fn a_weight_change_keeps_the_checkers() {
        let changed = VS.replacen("weight 1", "weight 5", 1);
        let c = carried_services(&lvs(VS), &lvs(&changed));
        assert_eq!(c.checkers.len(), 2);
    }

    #[test]
    fn a_checker_timing_change_starts_that_checker_afresh() {
        let changed = VS.replacen(
            "TCP_CHECK { connect_timeout 1 }",
            "TCP_CHECK { connect_timeout 2 }",
            1,
        );
        let c = carried_services(&lvs(VS), &lvs(&changed));
        assert_eq!(
            c.checkers.keys().copied().collect::<Vec<_>>(),
            vec![CheckerId::new(0, 1, 0)]
        );
        // delay_loop is inherited from the virtual server: every checker changes.
        let changed = VS.replacen("delay_loop 2", "delay_loop 3", 1);
        assert!(carried_services(&lvs(VS), &lvs(&changed))
            .checkers
            .is_empty());
    }

    #[test]
    fn a_removed_real_server_shifts_the_others_but_they_keep_their_state() {
        let without_first = VS.replacen(
            "    real_server 192.168.66.11 3306 {
        weight 1
        TCP_CHECK { connect_timeout 1 }
    }
",
            "",
            1,
        );
        let c = carried_services(&lvs(VS), &lvs(&without_first));
        assert_eq!(c.real_servers.get(&(0, 0)), Some(&1));
        assert_eq!(
            c.checkers.get(&CheckerId::new(0, 0, 0)),
            Some(&CheckerId::new(0, 1, 0))
        );
    }

    #[test]
    fn a_new_virtual_server_in_front_is_not_confused_with_the_old_one() {
        let more = format!(
            "virtual_server 192.168.66.251 80 {{
    lb_kind NAT
    protocol TCP
    real_server 192.168.66.11 80 {{ TCP_CHECK {{ }} }}
}}
{VS}"
        );
        let c = carried_services(&lvs(VS), &lvs(&more));
        assert_eq!(c.virtual_servers.get(&1), Some(&0));
        assert!(!c.virtual_servers.contains_key(&0));
        assert_eq!(
            c.checkers.get(&CheckerId::new(1, 1, 0)),
            Some(&CheckerId::new(0, 1, 0))
        );
    }

    fn mapped(vrid: u8, interface: &str, unicast: Option<u8>) -> MappedInstance {
        let source = IpAddr::V4(Ipv4Addr::new(192, 168, 66, 10));
        let mut config = halb_vrrp::InstanceConfig::new(
            format!("VI_{vrid}"),
            vrid,
            source,
            halb_vrrp::packet::AddressList::ipv4([Ipv4Addr::new(192, 168, 66, 251)])
                .expect("one address"),
        );
        if let Some(peer) = unicast {
            config.unicast_peers = vec![IpAddr::V4(Ipv4Addr::new(192, 168, 66, peer))];
        }
        MappedInstance {
            files: Vec::new(),
            config,
            interface: interface.into(),
            family: IpFamily::V4,
            multicast_group: None,
            vips: Vec::new(),
            garp_interval: std::time::Duration::ZERO,
        }
    }

    #[test]
    fn instances_match_on_vrid_family_and_interface_not_on_order_or_name() {
        let old = vec![mapped(51, "eth0", None), mapped(52, "eth0", None)];
        let mut renamed = mapped(51, "eth0", None);
        renamed.config.name = "writer".into();
        renamed.config.priority = 200;
        let new = vec![mapped(53, "eth0", None), renamed, mapped(52, "eth1", None)];
        let m = match_instances(&old, &new);
        assert_eq!(m, vec![None, Some(0), None]);
        assert_eq!(removed_instances(&m, old.len()), vec![1]);
    }

    #[test]
    fn removing_one_instance_keeps_the_others() {
        let old = vec![
            mapped(51, "eth0", None),
            mapped(52, "eth0", None),
            mapped(53, "eth0", None),
        ];
        let new = vec![mapped(51, "eth0", None), mapped(53, "eth0", None)];
        let m = match_instances(&old, &new);
        assert_eq!(m, vec![Some(0), Some(2)]);
        assert_eq!(removed_instances(&m, old.len()), vec![1]);
    }

    #[test]
    fn a_unicast_instance_with_another_source_is_another_instance() {
        let old = vec![mapped(51, "eth0", Some(20))];
        let mut moved = mapped(51, "eth0", Some(20));
        moved.config.source_address = IpAddr::V4(Ipv4Addr::new(192, 168, 66, 11));
        assert_eq!(match_instances(&old, &[moved]), vec![None]);
        // Another peer, same source: the same instance.
        assert_eq!(
            match_instances(&old, &[mapped(51, "eth0", Some(21))]),
            vec![Some(0)]
        );
    }
}
