//! The VRRP part of a configuration, turned into what the daemon runs: one
//! [`halb_vrrp::InstanceConfig`] per `vrrp_instance`, with the interface, socket and virtual
//! addresses it needs, and the sync groups by member index.
//!
//! Pure: what the host has (links, their state and addresses) comes in as a [`HostView`]
//! gathered by the shell, so the mapping is testable without a network.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use halb_config::model::{
    AuthType, Broadcast as ConfBroadcast, Config, GlobalDefs, VirtualAddress as ConfVip,
    VrrpConfig, VrrpInstance, VrrpScript, VrrpState,
};
use halb_sys::addresses::parse_scope;
use halb_sys::{Broadcast, IpFamily, VirtualAddress};
use halb_vrrp::packet::{AddressList, Auth, Version};
use halb_vrrp::{GarpPolicy, InitialState, InstanceConfig, TrackerConfig, TrackerStatus};

use crate::track_file::effect::{vrrp_effect, VrrpEffect};
use crate::track_file::Tracking;

/// One interface as the shell found it at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkView {
    /// Administratively up and running.
    pub up: bool,
    /// The addresses in the kernel's order (the primary first).
    pub addresses: Vec<IpAddr>,
}

/// The host's interfaces by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostView {
    pub links: BTreeMap<String, LinkView>,
    /// The value of each `track_file` now, by its name (a file not listed reads as 0).
    pub track_files: BTreeMap<String, i64>,
}

/// A virtual address and the interface it goes on (`dev`, or the instance's interface).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedVip {
    pub interface: String,
    pub vip: VirtualAddress,
}

/// One instance, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedInstance {
    pub config: InstanceConfig,
    /// The `track_file`s the instance tracks, by name, and how (its trackers are named by
    /// [`file_tracker_name`]).
    pub files: Vec<(String, Tracking)>,
    /// The interface adverts go out of and come in on.
    pub interface: String,
    pub family: IpFamily,
    /// The group the socket must join; `None` for a unicast instance.
    pub multicast_group: Option<IpAddr>,
    /// `virtual_ipaddress` then `virtual_ipaddress_excluded`, with their options.
    pub vips: Vec<PlacedVip>,
    /// Pause between gratuitous ARPs / unsolicited NAs (`vrrp_garp_interval` /
    /// `vrrp_gna_interval`).
    pub garp_interval: Duration,
}

/// A `vrrp_sync_group`, with its members as indices into [`VrrpPlan::instances`] (ascending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedSyncGroup {
    pub name: String,
    pub members: Vec<usize>,
}

/// Everything the VRRP shell runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpPlan {
    pub instances: Vec<MappedInstance>,
    pub sync_groups: Vec<MappedSyncGroup>,
    /// The `vrrp_script`s some instance tracks (each run once, whoever tracks it); their
    /// trackers in the instances carry the script's name.
    pub scripts: Vec<VrrpScript>,
    /// Settings halb reads but does not carry out yet, one line each, for the log.
    pub unsupported: Vec<String>,
}

/// Why an instance cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapError {
    pub instance: String,
    pub problem: String,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vrrp_instance {}: {}", self.instance, self.problem)
    }
}

impl std::error::Error for MapError {}

/// Maps every `vrrp_instance` and `vrrp_sync_group` of `config`.
pub fn map(config: &Config, host: &HostView) -> Result<VrrpPlan, MapError> {
    let mut unsupported = Vec::new();
    let instances = config
        .vrrp
        .instances
        .iter()
        .map(|i| {
            let mut mapped = map_instance(i, &config.vrrp, &config.global, host, &mut unsupported)?;
            let bfd = crate::track_bfd::trackers(i, &config.bfd, &mut unsupported);
            mapped.config.trackers.extend(bfd);
            Ok(mapped)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let sync_groups = config
        .vrrp
        .sync_groups
        .iter()
        .map(|g| {
            let mut members: Vec<usize> = config
                .vrrp
                .instances
                .iter()
                .enumerate()
                .filter(|(_, i)| g.group.contains(&i.name))
                .map(|(n, _)| n)
                .collect();
            members.sort_unstable();
            if !g.track_script.is_empty()
                || !g.track_interface.is_empty()
                || !g.track_file.is_empty()
            {
                unsupported.push(format!(
                    "vrrp_sync_group {}: track_interface / track_script / track_file of a sync group are not run yet",
                    g.name
                ));
            }
            MappedSyncGroup {
                name: g.name.clone(),
                members,
            }
        })
        .collect();
    let scripts = config
        .vrrp
        .scripts
        .iter()
        .filter(|s| {
            config
                .vrrp
                .instances
                .iter()
                .any(|i| i.track_script.iter().any(|t| t.name == s.name))
        })
        .cloned()
        .collect();
    Ok(VrrpPlan {
        instances,
        sync_groups,
        scripts,
        unsupported,
    })
}

fn map_instance(
    i: &VrrpInstance,
    vrrp: &VrrpConfig,
    global: &GlobalDefs,
    host: &HostView,
    unsupported: &mut Vec<String>,
) -> Result<MappedInstance, MapError> {
    let fail = |problem: String| MapError {
        instance: i.name.clone(),
        problem,
    };
    let interface = i.interface.clone().ok_or_else(|| {
        fail("has no interface; halb runs only instances with `interface` so far".into())
    })?;
    let link = host.links.get(&interface).ok_or_else(|| {
        fail(format!(
            "interface {interface} does not exist on this host (check `interface`, or create it first)"
        ))
    })?;
    let version = match i.effective_version(global.vrrp_version) {
        3 => Version::V3,
        _ => Version::V2,
    };
    let ipv6 = i.is_ipv6();
    let family = if ipv6 { IpFamily::V6 } else { IpFamily::V4 };

    let vip_addresses: Vec<IpAddr> = i.virtual_ipaddress.iter().map(|a| a.address).collect();
    let virtual_addresses = AddressList::from_ips(&vip_addresses)
        .map_err(|e| fail(format!("virtual_ipaddress: {e}")))?;

    let source_address = match i.unicast_src_ip.or(i.mcast_src_ip) {
        Some(a) => a,
        None => primary_address(link, family, &vip_addresses).ok_or_else(|| {
            fail(format!(
                "interface {interface} has no {} address to send adverts from; add one or set unicast_src_ip / mcast_src_ip",
                if ipv6 { "link-local IPv6" } else { "IPv4" }
            ))
        })?,
    };

    let auth = match &i.authentication {
        None => Auth::None,
        Some(a) if a.auth_type == AuthType::Pass => Auth::pass(&a.auth_pass),
        Some(_) => {
            return Err(fail(
                "auth_type AH is not supported by halb yet; use PASS or none".into(),
            ))
        }
    };
    // keepalived's wantstate after `vrrp_complete_init`: a MASTER in a sync group with a
    // member that is not an address owner wants BACKUP (its `-d` dump of the seed says
    // "Wantstate = BACKUP", and it takes the full Master_Down_Interval to become MASTER).
    let initial_state = match vrrp.start_state(i) {
        VrrpState::Master => InitialState::Master,
        VrrpState::Backup => InitialState::Backup,
    };

    let garp = garp_policy(i, global);
    let multicast_group = (!i.is_unicast()).then(|| {
        i.mcast_dst_ip
            .or(if ipv6 {
                global.vrrp_mcast_group6
            } else {
                global.vrrp_mcast_group4
            })
            .unwrap_or_else(|| family.vrrp_group())
    });

    let mut trackers: Vec<TrackerConfig> = i
        .track_interface
        .iter()
        .map(|t| TrackerConfig {
            name: t.name.clone(),
            weight: t.weight,
            reverse: t.reverse,
            initial: match host.links.get(&t.name) {
                Some(l) if l.up => TrackerStatus::Up,
                _ => TrackerStatus::Down,
            },
        })
        .collect();
    for tracked in &i.track_script {
        match vrrp.script(&tracked.name) {
            Some(script) => trackers.push(script_tracker(tracked, script)),
            // keepalived: "track_script %s not found, ignoring".
            None => unsupported.push(format!(
                "vrrp_instance {}: track_script {} not found, ignoring",
                i.name, tracked.name
            )),
        }
    }
    let mut files = Vec::new();
    for tracked in &i.track_file {
        match vrrp.track_file(&tracked.name) {
            Some(file) => {
                let tracking = Tracking {
                    weight: tracked.weight.unwrap_or(file.weight),
                    reverse: tracked.reverse.unwrap_or(file.weight_reverse),
                };
                let value = host.track_files.get(&file.name).copied().unwrap_or(0);
                let (weight, initial) = file_tracker(value, tracking);
                files.push((file.name.clone(), tracking));
                trackers.push(TrackerConfig {
                    name: file_tracker_name(&file.name),
                    weight,
                    reverse: false,
                    initial,
                });
            }
            None => unsupported.push(format!(
                "({}) track file {} not found, ignoring...",
                i.name, tracked.name
            )),
        }
    }
    if i.use_vmac.is_some() {
        unsupported.push(format!(
            "vrrp_instance {}: use_vmac is not supported yet; adverts use the interface's own MAC",
            i.name
        ));
    }

    let mut config = InstanceConfig::new(
        i.name.clone(),
        i.virtual_router_id,
        source_address,
        virtual_addresses,
    );
    config.version = version;
    config.priority = i.priority;
    config.initial_state = initial_state;
    config.advert_interval = Duration::from_micros(i.effective_advert_int_us(version.number()));
    config.preempt = !i.nopreempt;
    config.preempt_delay = Duration::from_micros(i.preempt_delay_us);
    config.auth = auth;
    config.excluded_addresses = i
        .virtual_ipaddress_excluded
        .iter()
        .map(|a| a.address)
        .collect();
    config.unicast_peers = i.unicast_peer.iter().map(|p| p.address).collect();
    config.check_unicast_source = i.effective_check_unicast_src(global);
    config.multicast_group = multicast_group;
    config.garp = garp;
    config.lower_prio_no_advert = i.effective_lower_prio_no_advert(global);
    config.higher_prio_send_advert = i.effective_higher_prio_send_advert(global);
    config.down_timer_adverts = i.effective_down_timer_adverts(global);
    config.trackers = trackers;
    config.interface_up = link.up;

    let vips = i
        .virtual_ipaddress
        .iter()
        .chain(&i.virtual_ipaddress_excluded)
        .map(|a| PlacedVip {
            interface: a.dev.clone().unwrap_or_else(|| interface.clone()),
            vip: to_sys_vip(a),
        })
        .collect();
    let garp_interval = Duration::from_micros(if ipv6 {
        global.vrrp_gna_interval_us
    } else {
        global.vrrp_garp_interval_us
    });

    Ok(MappedInstance {
        config,
        files,
        interface,
        family,
        multicast_group,
        vips,
        garp_interval,
    })
}

/// The tracker of `track_file` NAME in an instance: "file NAME", apart from interfaces and
/// scripts of the same name.
pub fn file_tracker_name(name: &str) -> String {
    format!("file {name}")
}

/// A `track_file`'s value as a tracker's weight and result: what the value adds to the
/// priority becomes the weight (up when positive, down when negative, so that it counts
/// either way); FAULT is an unweighted tracker that is down.
pub fn file_tracker(value: i64, tracking: Tracking) -> (i32, TrackerStatus) {
    match vrrp_effect(value, tracking) {
        VrrpEffect::Fault => (0, TrackerStatus::Down),
        VrrpEffect::Priority(p) if p < 0 => (p, TrackerStatus::Down),
        VrrpEffect::Priority(p) => (p, TrackerStatus::Up),
    }
}

/// A `track_script` line as a tracker named after its script: the line's weight and
/// `reverse` override the script's. Until its first run an unweighted script holds the
/// instance back (keepalived's SCRIPT_INIT_STATE_INIT); `init_fail` starts it failed.
fn script_tracker(tracked: &halb_config::model::TrackScript, script: &VrrpScript) -> TrackerConfig {
    TrackerConfig {
        name: script.name.clone(),
        weight: tracked.weight.unwrap_or(script.weight),
        reverse: tracked.reverse.unwrap_or(script.weight_reverse),
        initial: if script.init_fail {
            TrackerStatus::Down
        } else {
            TrackerStatus::Pending
        },
    }
}

/// keepalived's source of adverts without `unicast_src_ip`/`mcast_src_ip`: the interface's
/// primary IPv4 address, or its IPv6 link-local one. Our own VIPs never count (a predecessor
/// may have left them).
fn primary_address(link: &LinkView, family: IpFamily, vips: &[IpAddr]) -> Option<IpAddr> {
    link.addresses
        .iter()
        .copied()
        .filter(|a| !vips.contains(a))
        .find(|a| match (family, a) {
            (IpFamily::V4, IpAddr::V4(_)) => true,
            (IpFamily::V6, IpAddr::V6(v6)) => (v6.segments()[0] & 0xffc0) == 0xfe80,
            _ => false,
        })
}

/// The instance's `garp_*` values, else the global `vrrp_garp_*` ones; the lower priority
/// values default to the master ones (vrrp.c `vrrp_complete_init`).
fn garp_policy(i: &VrrpInstance, g: &GlobalDefs) -> GarpPolicy {
    let master_delay = i
        .garp_master_delay_us
        .unwrap_or(g.vrrp_garp_master_delay_us);
    let master_repeat = i.garp_master_repeat.unwrap_or(g.vrrp_garp_master_repeat);
    let refresh = i
        .garp_master_refresh_us
        .unwrap_or(g.vrrp_garp_master_refresh_us);
    GarpPolicy {
        master_delay: Duration::from_micros(master_delay),
        master_repeat,
        master_refresh: (refresh > 0).then(|| Duration::from_micros(refresh)),
        master_refresh_repeat: i
            .garp_master_refresh_repeat
            .unwrap_or(g.vrrp_garp_master_refresh_repeat),
        lower_prio_delay: Duration::from_micros(
            i.garp_lower_prio_delay_us
                .or(g.vrrp_garp_lower_prio_delay_us)
                .unwrap_or(master_delay),
        ),
        lower_prio_repeat: i
            .garp_lower_prio_repeat
            .or(g.vrrp_garp_lower_prio_repeat)
            .unwrap_or(master_repeat),
    }
}

/// A `virtual_ipaddress` line as the kernel is to get it.
pub fn to_sys_vip(a: &ConfVip) -> VirtualAddress {
    let mut vip = VirtualAddress::new(a.address, a.prefix);
    vip.peer = a.peer;
    vip.broadcast = a.broadcast.map(|b| match b {
        ConfBroadcast::Plus => Broadcast::HostBitsSet,
        ConfBroadcast::Minus => Broadcast::HostBitsClear,
        ConfBroadcast::Address(addr) => Broadcast::Address(addr),
    });
    vip.scope = a.scope.as_deref().and_then(parse_scope);
    vip.label = a.label.clone();
    let mut options = a.options.iter();
    while let Some(option) = options.next() {
        match option.as_str() {
            "-nodad" => vip.flags.no_dad = false,
            "home" => vip.flags.home = true,
            "mngtmpaddr" => vip.flags.manage_temp_addr = true,
            "noprefixroute" => vip.flags.no_prefix_route = true,
            "autojoin" => vip.flags.autojoin = true,
            "preferred_lft" => {
                vip.preferred_lifetime = options.next().and_then(|v| v.parse().ok());
            }
            // no_track, use_vmac: about tracking and VMACs, not the address itself.
            _ => {}
        }
    }
    vip
}

#[cfg(test)]
mod tests {
    use super::*;
    use halb_config::{load_str, LoadOptions};
    use std::net::Ipv4Addr;

    fn seed_master() -> String {
        halb_test_support::seed_text("keepalived-master.conf")
    }

    fn host() -> HostView {
        let mut links = BTreeMap::new();
        links.insert(
            "lo".to_string(),
            LinkView {
                up: true,
                addresses: vec!["127.0.0.1".parse().unwrap()],
            },
        );
        links.insert(
            "eth0".to_string(),
            LinkView {
                up: true,
                addresses: vec![
                    "192.168.66.251".parse().unwrap(), // left behind by a killed predecessor
                    "192.168.66.11".parse().unwrap(),
                    "fe80::1".parse().unwrap(),
                ],
            },
        );
        HostView {
            links,
            ..HostView::default()
        }
    }

    fn plan(text: &str) -> VrrpPlan {
        let loaded = load_str("test.conf", text, &LoadOptions::default());
        assert!(!loaded.diagnostics.has_errors(), "{:?}", loaded.diagnostics);
        map(&loaded.config, &host()).unwrap()
    }

    #[test]
    fn the_seed_instance() {
        let plan = plan(&seed_master());
        assert_eq!(plan.instances.len(), 1);
        let int = &plan.instances[0];
        let c = &int.config;
        assert_eq!(c.name, "INT");
        assert_eq!(c.vrid, 200);
        assert_eq!(c.priority, 100);
        assert_eq!(c.version, Version::V2);
        assert_eq!(c.auth, Auth::pass("lvs50tes"));
        assert_eq!(c.advert_interval, Duration::from_secs(1));
        // `state MASTER`, but in the seed's one-member sync group: keepalived's wantstate is
        // BACKUP (its own dump of the seed says so).
        assert_eq!(c.initial_state, InitialState::Backup);
        assert!(c.preempt);
        assert_eq!(
            c.virtual_addresses,
            AddressList::ipv4([Ipv4Addr::new(192, 168, 66, 251)]).unwrap()
        );
        assert_eq!(c.source_address, "192.168.66.11".parse::<IpAddr>().unwrap());
        assert_eq!(
            c.advert_destinations(),
            ["224.0.0.18".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(c.garp, GarpPolicy::default());
        assert_eq!(int.interface, "eth0");
        assert_eq!(int.family, IpFamily::V4);
        assert_eq!(int.multicast_group, Some("224.0.0.18".parse().unwrap()));
        assert_eq!(
            int.vips,
            [PlacedVip {
                interface: "eth0".into(),
                vip: VirtualAddress::new("192.168.66.251".parse().unwrap(), 32),
            }]
        );
        assert_eq!(
            plan.sync_groups,
            [MappedSyncGroup {
                name: "VG1".into(),
                members: vec![0]
            }]
        );
    }

    #[test]
    fn global_defaults_and_instance_overrides() {
        let plan = plan(
            "global_defs {\n vrrp_version 3\n vrrp_garp_master_delay 2\n vrrp_garp_master_repeat 3\n vrrp_garp_interval 0.01\n vrrp_garp_master_refresh 60\n}\n\
             vrrp_instance A {\n interface eth0\n virtual_router_id 7\n priority 150\n advert_int 0.5\n nopreempt\n garp_master_repeat 2\n\
              unicast_src_ip 192.168.66.11\n unicast_peer {\n  192.168.66.12\n }\n\
              virtual_ipaddress {\n  192.168.66.251/24 dev eth0 brd + label eth0:vip scope link\n }\n\
              virtual_ipaddress_excluded {\n  192.168.66.252\n }\n}\n",
        );
        let a = &plan.instances[0];
        let c = &a.config;
        assert_eq!(c.version, Version::V3);
        assert_eq!(c.advert_interval, Duration::from_millis(500));
        assert!(!c.preempt);
        assert_eq!(c.initial_state, InitialState::Backup);
        assert_eq!(c.garp.master_delay, Duration::from_secs(2));
        assert_eq!(c.garp.master_repeat, 2);
        assert_eq!(c.garp.lower_prio_repeat, 2, "the master value");
        assert_eq!(c.garp.master_refresh, Some(Duration::from_secs(60)));
        assert_eq!(a.garp_interval, Duration::from_millis(10));
        assert_eq!(a.multicast_group, None);
        assert_eq!(
            c.unicast_peers,
            ["192.168.66.12".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            c.excluded_addresses,
            ["192.168.66.252".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(a.vips.len(), 2);
        let vip = &a.vips[0].vip;
        assert_eq!(vip.prefix_len, 24);
        assert_eq!(vip.broadcast, Some(Broadcast::HostBitsSet));
        assert_eq!(vip.label.as_deref(), Some("eth0:vip"));
        assert_eq!(vip.scope, Some(253));
    }

    #[test]
    fn ipv6_instances_use_the_link_local_source_and_vrrpv3() {
        let plan = plan(
            "vrrp_instance V6 {\n interface eth0\n virtual_router_id 9\n virtual_ipaddress {\n  fd66::251/64\n }\n}\n",
        );
        let c = &plan.instances[0].config;
        assert_eq!(c.version, Version::V3);
        assert_eq!(c.source_address, "fe80::1".parse::<IpAddr>().unwrap());
        assert_eq!(plan.instances[0].family, IpFamily::V6);
        assert_eq!(
            plan.instances[0].multicast_group,
            Some("ff02::12".parse().unwrap())
        );
        assert_eq!(plan.instances[0].vips[0].vip.preferred_lifetime, None);
        assert!(plan.instances[0].vips[0].vip.flags.no_dad);
    }

    #[test]
    fn state_master_outside_a_sync_group_wants_master() {
        let without_group =
            seed_master().replace("vrrp_sync_group VG1", "vrrp_sync_group_unused VG1");
        let loaded = load_str("t.conf", &without_group, &LoadOptions::default());
        let plan = map(&loaded.config, &host()).unwrap();
        assert_eq!(plan.instances[0].config.initial_state, InitialState::Master);
        assert!(plan.sync_groups.is_empty());
    }

    #[test]
    fn a_missing_interface_is_an_error_that_names_it() {
        let loaded = load_str(
            "t.conf",
            "vrrp_instance X {\n interface eth9\n virtual_router_id 9\n virtual_ipaddress {\n  192.168.66.251\n }\n}\n",
            &LoadOptions::default(),
        );
        let e = map(&loaded.config, &host()).unwrap_err();
        assert!(e.to_string().contains("eth9"), "{e}");
    }

    #[test]
    fn track_interface_starts_from_the_link_state() {
        let plan = plan(
            "vrrp_instance X {\n interface eth0\n virtual_router_id 9\n track_interface {\n  lo weight -20\n  eth1\n }\n virtual_ipaddress {\n  192.168.66.251\n }\n}\n",
        );
        let t = &plan.instances[0].config.trackers;
        assert_eq!(t[0].name, "lo");
        assert_eq!(t[0].initial, TrackerStatus::Up);
        assert_eq!(t[0].weight, -20);
        assert_eq!(t[1].initial, TrackerStatus::Down, "eth1 does not exist");
    }

    #[test]
    fn track_script_becomes_a_tracker_named_after_the_script() {
        let plan = plan(
            "vrrp_script chk {\n script \"/bin/true\"\n interval 1\n weight -20\n}\n\
             vrrp_script unused {\n script \"/bin/false\"\n}\n\
             vrrp_instance X {\n interface eth0\n virtual_router_id 9\n track_script {\n  chk\n }\n virtual_ipaddress {\n  192.168.66.251\n }\n}\n",
        );
        let t = &plan.instances[0].config.trackers;
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].name, "chk");
        assert_eq!(t[0].weight, -20);
        assert_eq!(t[0].initial, TrackerStatus::Pending);
        assert_eq!(plan.scripts.len(), 1, "only the tracked script runs");
        assert_eq!(plan.scripts[0].name, "chk");
    }

    #[test]
    fn advert_policy_comes_from_the_instance_else_global_defs() {
        let plan = plan(
            "global_defs {\n vrrp_lower_prio_no_advert\n vrrp_higher_prio_send_advert true\n vrrp_down_timer_adverts 5\n vrrp_check_unicast_src\n}\n\
             vrrp_instance A {\n interface eth0\n virtual_router_id 7\n virtual_ipaddress {\n  192.168.66.251\n }\n}\n\
             vrrp_instance B {\n interface eth0\n virtual_router_id 8\n lower_prio_no_advert false\n higher_prio_send_advert off\n down_timer_adverts 10\n virtual_ipaddress {\n  192.168.66.252\n }\n}\n",
        );
        let a = &plan.instances[0].config;
        assert!(a.lower_prio_no_advert && a.higher_prio_send_advert);
        assert_eq!(a.down_timer_adverts, 5);
        assert!(a.check_unicast_source);
        let b = &plan.instances[1].config;
        assert!(
            !b.lower_prio_no_advert && !b.higher_prio_send_advert,
            "an instance's own value wins over the global one, as in keepalived"
        );
        assert_eq!(b.down_timer_adverts, 10);
    }

    #[test]
    fn strict_mode_fixes_the_advert_policy() {
        let plan = plan(
            "global_defs {\n vrrp_higher_prio_send_advert\n}\n\
             vrrp_instance A {\n interface eth0\n virtual_router_id 7\n strict_mode\n virtual_ipaddress {\n  192.168.66.251\n }\n}\n",
        );
        let a = &plan.instances[0].config;
        assert!(a.lower_prio_no_advert);
        assert!(!a.higher_prio_send_advert);
        assert_eq!(a.down_timer_adverts, 3);
    }
}
