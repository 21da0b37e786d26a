//! What keepalived checks and fixes once an instance is read: `vrrp_end_handler` (at the
//! closing brace), `chk_min_cfg` and `vrrp_complete_instance` (reported without a line by
//! keepalived; halb reports them at the instance's name line), `check_vrid_conflicts`, and the
//! rules on tracking weights of address owners and sync group members.

use super::model::{
    AuthType, Authentication, SyncGroup, TrackFile, VrrpConfig, VrrpInstance, VrrpScript,
    VrrpState, DEFAULT_DOWN_TIMER_ADVERTS, DEFAULT_PRIORITY, OWNER_PRIORITY,
};
use super::pending::{check_advert_int, Report};
use super::pending::{Pending, VridKey};
use crate::read::Ctx;
use crate::source::Span;
use std::net::IpAddr;

/// What the keywords of an instance said before keepalived's completion decides the values.
#[derive(Debug, Default)]
pub struct Seen {
    pub state: Option<VrrpState>,
    pub priority: Option<u8>,
    pub auth_type: Option<AuthType>,
    pub auth_pass: Option<String>,
    /// A keyword that makes keepalived consider the instance unicast (`unicast_src_ip`, ...).
    pub unicast_keyword: bool,
    pub fault_no_peer: bool,
    /// keepalived 1.x `lvs_sync_daemon_interface`.
    pub lvs_sync_daemon_interface: Option<String>,
}

/// keepalived's `vrrp_end_handler`, at the closing brace.
pub fn end_of_block(inst: &mut VrrpInstance, seen: &Seen, at: Span, report: &mut Report) {
    let name = inst.name.clone();
    let ipvlan = inst.other.iter().any(|s| s.keyword == "use_ipvlan");
    if seen.unicast_keyword && (inst.use_vmac.is_some() || ipvlan) {
        if inst.interface.is_none() {
            report.warn(
                at,
                format!(
                    "({name}): Cannot use VMAC/ipvlan with unicast and no interface - clearing use_vmac"
                ),
            );
            inst.use_vmac = None;
            inst.other.retain(|s| s.keyword != "use_ipvlan");
        } else if !inst.vmac_xmit_base {
            report.warn(
                at,
                format!("({name}) unicast with use_vmac requires vmac_xmit_base - setting"),
            );
            inst.vmac_xmit_base = true;
        }
    }
    if inst.unicast_peer.is_empty() && inst.unicast_ttl.is_some() {
        report.warn(
            at,
            format!("({name}): Cannot use unicast_ttl without unicast peers - resetting"),
        );
        inst.unicast_ttl = None;
    }
}

/// keepalived's `chk_min_cfg` and `vrrp_complete_instance`. Checks that depend on
/// `global_defs` (an unset version or strict mode) assume keepalived's defaults here and are
/// completed by `settle`.
pub fn complete(
    inst: &mut VrrpInstance,
    seen: &Seen,
    vrrp: &VrrpConfig,
    at: Span,
    report: &mut Report,
) {
    let name = inst.name.clone();
    if inst.virtual_router_id == 0 {
        report.warn_help(
            at,
            format!("({name}) the virtual router id must be set"),
            "add `virtual_router_id 1..255`; without it the instance is dropped, as keepalived does",
        );
    }
    // keepalived 2.2.7 checks this before it marks unicast instances as such, so a unicast
    // instance needs an interface too.
    if inst.interface.is_none() {
        // keepalived -t only warns, but its VRRP process then exits at start ("permanent
        // error CONFIG"), as seen in the kernel lab: the configuration cannot run.
        report.error_help(
            at,
            format!("({name}) Unknown interface!"),
            "set `interface`: keepalived 2.2 needs one, also with unicast_peer, and does not start without it",
        );
    }
    let strict = inst.strict_mode == Some(true);
    let v6 = inst.is_ipv6();
    let version = inst.effective_version(2);
    if inst.virtual_ipaddress.is_empty() {
        let need = if version == 3 || strict {
            "required"
        } else {
            "sensible"
        };
        report.warn(
            at,
            format!("({name}) No VIP specified; at least one is {need}"),
        );
    }
    resolve_priority_and_state(inst, seen);
    resolve_authentication(inst, seen, version, at, report);
    if strict {
        apply_strict(inst, version, at, report);
    }
    check_unicast(inst, seen, at, report);
    check_preemption(inst, at, report);
    if inst.version.is_some() || v6 {
        check_advert_int(inst, version, at, report);
    }
    check_own_interface(inst, at, report);
    if inst.priority == OWNER_PRIORITY {
        let tracked = Tracked {
            scripts: &vrrp.scripts,
            files: &vrrp.track_files,
            pending: &vrrp.pending,
        };
        drop_weighted_tracking(inst, None, &tracked, at, report);
    }
}

/// Without `priority`, state MASTER means the address owner (255); without `state`, the owner
/// starts as MASTER.
fn resolve_priority_and_state(inst: &mut VrrpInstance, seen: &Seen) {
    let priority = seen.priority.unwrap_or(match seen.state {
        Some(VrrpState::Master) => OWNER_PRIORITY,
        _ => DEFAULT_PRIORITY,
    });
    inst.priority = priority;
    inst.state = seen.state.unwrap_or(if priority == OWNER_PRIORITY {
        VrrpState::Master
    } else {
        VrrpState::Backup
    });
}

fn resolve_authentication(
    inst: &mut VrrpInstance,
    seen: &Seen,
    version: u8,
    at: Span,
    report: &mut Report,
) {
    let name = inst.name.clone();
    let Some(auth_type) = seen.auth_type else {
        return;
    };
    let pass = seen.auth_pass.clone().unwrap_or_default();
    let auth = Authentication {
        auth_type,
        auth_pass: pass.clone(),
    };
    if inst.strict_mode == Some(true) {
        // apply_strict reports and drops it.
        inst.authentication = Some(auth);
    } else if version == 3 {
        report.warn(
            at,
            format!("({name}) VRRP version 3 does not support authentication. Ignoring."),
        );
    } else if pass.is_empty() {
        report.warn(
            at,
            format!("({name}) Authentication specified but no password given. Ignoring"),
        );
    } else if inst.is_ipv6() && auth_type == AuthType::Ah {
        report.warn(
            at,
            format!("({name}) Cannot use AH authentication with IPv6. ignoring"),
        );
    } else {
        if auth_type == AuthType::Ah
            && inst.state == VrrpState::Master
            && inst.priority != OWNER_PRIORITY
        {
            report.warn(
                at,
                format!(
                    "({name}) Initial state master is incompatible with AH authentication - clearing"
                ),
            );
            inst.state = VrrpState::Backup;
        }
        inst.authentication = Some(auth);
    }
}

fn check_unicast(inst: &mut VrrpInstance, seen: &Seen, at: Span, report: &mut Report) {
    let name = inst.name.clone();
    if seen.unicast_keyword && inst.unicast_peer.is_empty() && !seen.fault_no_peer {
        report.warn_help(
            at,
            format!(
                "({name}) A unicast keyword has been specified without any unicast peers. Defaulting to multicast. This usage is deprecated - please update your configuration."
            ),
            "add unicast_peer { ... }, or unicast_fault_no_peer",
        );
    }
    if inst.is_unicast() && inst.mcast_dst_ip.take().is_some() {
        report.warn(
            at,
            format!("({name}) multicast destination specified with unicast - ignoring"),
        );
    }
}

fn check_preemption(inst: &mut VrrpInstance, at: Span, report: &mut Report) {
    let name = inst.name.clone();
    if inst.priority == OWNER_PRIORITY && inst.nopreempt {
        report.warn(
            at,
            format!(
                "({name}) nopreempt is incompatible with priority {OWNER_PRIORITY}. resetting nopreempt"
            ),
        );
        inst.nopreempt = false;
    }
    if inst.state == VrrpState::Master {
        if inst.nopreempt {
            report.warn(
                at,
                format!(
                    "({name}) Warning - nopreempt will not work with initial state MASTER - clearing"
                ),
            );
            inst.nopreempt = false;
        }
        if inst.preempt_delay_us != 0 {
            report.warn(
                at,
                format!(
                    "({name}) Warning - preempt delay will not work with initial state MASTER - clearing"
                ),
            );
            inst.preempt_delay_us = 0;
        }
    }
    if inst.preempt_delay_us != 0 && inst.nopreempt {
        report.warn(
            at,
            format!("({name}) preempt_delay is incompatible with nopreempt mode - resetting"),
        );
        inst.preempt_delay_us = 0;
    }
}

/// The checks of strict mode (instance `strict_mode` or global `vrrp_strict`).
pub fn apply_strict(i: &mut VrrpInstance, version: u8, at: Span, report: &mut Report) {
    let name = i.name.clone();
    if i.is_ipv6() && i.version == Some(2) {
        report.warn(
            at,
            format!("({name}) cannot use IPv6 with VRRP version 2; setting version 3"),
        );
        i.version = Some(3);
    }
    let owner = i.priority == OWNER_PRIORITY;
    if (i.state == VrrpState::Master) != owner {
        report.warn(
            at,
            format!("({name}) State MASTER must match being address owner"),
        );
        i.state = if owner {
            VrrpState::Master
        } else {
            VrrpState::Backup
        };
    }
    if i.authentication.take().is_some() {
        report.warn(
            at,
            format!("({name}) Strict mode does not support authentication. Ignoring."),
        );
    }
    if i.is_unicast() && i.interface.is_some() {
        report.warn(
            at,
            format!("({name}) Unicast peers are not supported in strict mode"),
        );
    }
    if let Some(v) = i.use_vmac.as_mut() {
        if v.mac.take().is_some() {
            report.warn(
                at,
                format!("({name}): cannot specify MAC address with strict mode - clearing"),
            );
        }
    }
    if i.is_ipv6() && !i.is_unicast() {
        if let Some(IpAddr::V6(first)) = i.virtual_ipaddress.first().map(|a| a.address) {
            if !is_link_local(first) {
                report.warn(
                    at,
                    format!("({name}) the first IPv6 VIP address must be link local"),
                );
            }
        }
    }
    strict_timers(i, version, at, report);
}

fn strict_timers(i: &mut VrrpInstance, version: u8, at: Span, report: &mut Report) {
    let name = i.name.clone();
    if i.preempt_delay_us != 0 {
        report.warn(
            at,
            format!("({name}) preempt_delay is incompatible with strict mode - resetting"),
        );
        i.preempt_delay_us = 0;
    }
    if i.accept == Some(true) && i.priority != OWNER_PRIORITY && version == 2 {
        report.warn(
            at,
            format!(
                "({name}) warning - accept mode for VRRP version 2 does not comply with RFC3768 - resetting"
            ),
        );
        i.accept = Some(false);
    }
    if i.garp_lower_prio_repeat.is_some_and(|v| v != 0) {
        report.warn(
            at,
            format!("({name}) Strict mode requires no repeat garps. resetting"),
        );
        i.garp_lower_prio_repeat = Some(0);
    }
    if i.garp_lower_prio_delay_us.is_some_and(|v| v != 0) {
        report.warn(
            at,
            format!("({name}) Strict mode requires no repeat garp delay. resetting"),
        );
        i.garp_lower_prio_delay_us = Some(0);
    }
    if i.down_timer_adverts
        .is_some_and(|v| v != DEFAULT_DOWN_TIMER_ADVERTS)
    {
        report.warn(
            at,
            format!("({name}) down_timer_adverts is incompatible with strict mode - resetting"),
        );
        i.down_timer_adverts = Some(DEFAULT_DOWN_TIMER_ADVERTS);
    }
    if i.lower_prio_no_advert == Some(false) {
        report.warn(
            at,
            format!("({name}) Strict mode requires no lower priority advert. resetting"),
        );
        i.lower_prio_no_advert = Some(true);
    }
    if i.higher_prio_send_advert == Some(true) {
        report.warn(
            at,
            format!("({name}) strict mode requires higher_prio_send_advert to be clear. resetting"),
        );
        i.higher_prio_send_advert = Some(false);
    }
}

fn is_link_local(a: std::net::Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// An instance does not track its own interface: it always does.
fn check_own_interface(inst: &mut VrrpInstance, at: Span, report: &mut Report) {
    let Some(own) = inst.interface.clone() else {
        return;
    };
    if inst.track_interface.iter().any(|t| t.name == own) {
        report.warn(
            at,
            format!(
                "({}) Ignoring track_interface {own} since own interface",
                inst.name
            ),
        );
        inst.track_interface.retain(|t| t.name != own);
    }
}

/// The scripts and track files read so far, found by name (keepalived takes the first of a
/// name) without a scan.
pub struct Tracked<'a> {
    pub scripts: &'a [VrrpScript],
    pub files: &'a [TrackFile],
    pub pending: &'a Pending,
}

impl Tracked<'_> {
    fn script_weight(&self, name: &str) -> Option<i32> {
        let at = self.pending.script_at.get(name)?;
        self.scripts.get(at).map(|s| s.weight)
    }

    fn file_weight(&self, name: &str) -> Option<i32> {
        let at = self.pending.track_file_at.get(name)?;
        self.files.get(at).map(|f| f.weight)
    }
}

/// keepalived ignores tracking weights of an address owner (priority 255), and of a sync
/// group member unless the group has `sync_group_tracking_weight`: a weighted tracker would
/// let members' priorities drift apart.
pub fn drop_weighted_tracking(
    inst: &mut VrrpInstance,
    group: Option<&SyncGroup>,
    tracked: &Tracked,
    at: Span,
    report: &mut Report,
) {
    let name = inst.name.clone();
    let why = if group.is_some() {
        "SYNC group"
    } else {
        "address owner"
    };
    inst.track_interface.retain_mut(|t| {
        if t.weight == 0 {
            return true;
        }
        let weight = if group.is_some() { "weight " } else { "" };
        report.warn(
            at,
            format!(
                "({name}) ignoring {} tracked interface {weight}due to {why}",
                t.name
            ),
        );
        t.weight = 0;
        group.is_some()
    });
    let why = if group.is_some() {
        "SYNC group"
    } else {
        "address_owner"
    };
    inst.track_script.retain(|t| {
        let own = tracked.script_weight(&t.name);
        if t.weight.or(own).unwrap_or(0) == 0 {
            return true;
        }
        report.warn(
            at,
            format!(
                "({name}) ignoring tracked script {} with weights due to {why}",
                t.name
            ),
        );
        false
    });
    inst.track_file.retain_mut(|t| {
        let own = tracked.file_weight(&t.name);
        match t.weight.or(own).unwrap_or(1) {
            0 => true,
            1 => {
                report.warn(
                    at,
                    format!(
                        "({name}) ignoring weight from tracked file {} due to {why}. specify weight 0",
                        t.name
                    ),
                );
                t.weight = Some(0);
                true
            }
            w => {
                report.warn(
                    at,
                    format!(
                        "({name}) ignoring tracked file {} with weight {w} due to {why}",
                        t.name
                    ),
                );
                false
            }
        }
    });
}

/// The sync group rules for a member: weights (unless `sync_group_tracking_weight`), and an
/// interface tracked by both the group and the instance.
pub fn apply_sync_group(
    inst: &mut VrrpInstance,
    group: &SyncGroup,
    tracked: &Tracked,
    at: Span,
    report: &mut Report,
) {
    if !group.sync_group_tracking_weight {
        drop_weighted_tracking(inst, Some(group), tracked, at, report);
    }
    for t in &group.track_interface {
        let by_instance = inst.track_interface.iter().any(|i| i.name == t.name)
            || (inst.interface.as_deref() == Some(&t.name) && !inst.dont_track_primary);
        if by_instance {
            report.warn_help(
                at,
                format!(
                    "({}) track_interface {} is configured on VRRP instance and sync group. Remove vrrp instance or sync group config",
                    inst.name, t.name
                ),
                format!("sync group {} tracks it too", group.name),
            );
        }
    }
}

/// keepalived's `sync_group_tracking_init`: with an address owner among the members, the
/// group's own trackers lose their weights.
pub fn clear_group_weights(g: &mut SyncGroup, tracked: &Tracked, at: Span, report: &mut Report) {
    let name = g.name.clone();
    let mut cleared = |kind: &str, tracked: &str| {
        report.warn(
            at,
            format!(
                "({name}) Cannot have weighted track {kind} '{tracked}' with member having priority {OWNER_PRIORITY} - clearing weight"
            ),
        );
    };
    for t in &mut g.track_script {
        let own = tracked.script_weight(&t.name);
        if t.weight.or(own).unwrap_or(0) != 0 {
            cleared("script", &t.name);
            t.weight = Some(0);
        }
    }
    for t in &mut g.track_file {
        let own = tracked.file_weight(&t.name);
        if t.weight.or(own).unwrap_or(1) != 0 {
            cleared("file", &t.name);
            t.weight = Some(0);
        }
    }
    for t in &mut g.track_interface {
        if t.weight != 0 {
            cleared("interface", &t.name);
            t.weight = 0;
        }
    }
}

/// keepalived's `check_vrid_conflicts` for a new instance against the earlier ones: two
/// multicast instances with the same VRID, family, interface and group; or two unicast ones
/// with the same VRID, family and source that share a peer. One finding per conflicting
/// instance, naming the first earlier one it meets (not one per pair: 20,000 instances on one
/// VRID would give 200 million), found through an index so that the check stays linear.
pub fn check_vrid_conflicts(inst: &VrrpInstance, vrrp: &mut VrrpConfig, at: Span, ctx: &mut Ctx) {
    if inst.virtual_router_id == 0 {
        return;
    }
    let (vrid, ipv6) = (inst.virtual_router_id, inst.is_ipv6());
    let family = if ipv6 { 6 } else { 4 };
    let index = &mut vrrp.pending.vrids;
    if inst.is_unicast() {
        let source = inst.unicast_src_ip.or(inst.mcast_src_ip);
        let keys = inst.unicast_peer.iter().map(|peer| VridKey::Unicast {
            vrid,
            ipv6,
            source,
            interface: inst.interface.clone(),
            peer: peer.address,
        });
        if let Some(other) = index.first_of(keys, &inst.name) {
            ctx.diags.warn(
                at,
                format!(
                    "({}) duplicate VRID conflict with {other} VRID {vrid}",
                    inst.name
                ),
            );
        }
        return;
    }
    let Some(interface) = &inst.interface else {
        return;
    };
    if !ctx.interface_exists(interface) {
        return;
    }
    let key = VridKey::Multicast {
        vrid,
        ipv6,
        interface: interface.clone(),
        group: inst.mcast_dst_ip,
    };
    if let Some(other) = index.first_of([key], &inst.name) {
        // keepalived -t only warns, but its VRRP process then exits at start: an error.
        ctx.diags
            .error(
                at,
                format!(
                    "{other} and {} both use VRID {vrid} with IPv{family} on interface {interface}",
                    inst.name
                ),
            )
            .set_help("each VRRP instance on an interface needs its own virtual_router_id (keepalived does not start otherwise)");
    }
}
