//! `vrrp_instance NAME { ... }`: the keywords, as keepalived's handlers in `vrrp_parser.c` read
//! them. What keepalived checks once an instance is read is in [`super::complete`].

use super::address::{read_address, read_peer_line, MAX_IFNAME_LEN};
use super::complete::{check_vrid_conflicts, complete, end_of_block, Seen};
use super::model::{AuthType, UseVmac, VrrpConfig, VrrpInstance, VrrpState, DEFAULT_PRIORITY};
use super::pending::{resolve_groups, Report};
use super::track::{read_track_files, read_track_interfaces, read_track_scripts, value_lines};
use crate::read::{secs, Ctx, US_PER_SEC};
use crate::sections::script::read_notify;
use crate::setting::Setting;
use crate::tree::Node;
use std::net::IpAddr;

/// Instance keywords keepalived 2.2 knows that halb keeps as written.
const KEPT: &[&str] = &[
    "use_vmac_addr",
    "use_ipvlan",
    "unicast_fault_no_peer",
    "old_unicast_checksum",
    "vrf",
    "track_process",
    "track_bfd",
    "track_src_ip",
    "promote_secondaries",
    "linkbeat_use_polling",
    "debug",
    "notify_deleted",
    "notify_master_rx_lower_pri",
    "notify_priority_changes",
    "garp_extra_if",
    "vmac_garp_intvl",
    "kernel_rx_buf_size",
];

/// Keywords whose value is a block.
const BLOCKS: &[&str] = &[
    "authentication",
    "virtual_ipaddress",
    "virtual_ipaddress_excluded",
    "virtual_routes",
    "virtual_rules",
    "track_interface",
    "track_script",
    "track_file",
    "track_process",
    "track_bfd",
    "unicast_peer",
];

/// Keywords that make an instance "unicast configured" in keepalived.
const UNICAST_KEYWORDS: &[&str] = &[
    "unicast_peer",
    "unicast_src_ip",
    "unicast_fault_no_peer",
    "check_unicast_src",
    "old_unicast_checksum",
];

/// What reading an instance needs besides the model.
struct Reader<'v> {
    inst: VrrpInstance,
    /// Earlier instances, scripts and track files (for lookups and duplicates).
    vrrp: &'v VrrpConfig,
    seen: Seen,
    /// The address family, once an address has set it (true = IPv6).
    ipv6: Option<bool>,
}

/// Reads an instance into `vrrp`.
pub fn read_instance(node: &Node, ctx: &mut Ctx, vrrp: &mut VrrpConfig) {
    if node.args().len() != 1 {
        ctx.diags
            .warn(node.line_span(), "vrrp_instance must have a name")
            .set_help("the block is skipped");
        return;
    }
    let name = node.args()[0].text.clone();
    if vrrp.pending.has_instance(&name) {
        ctx.diags
            .warn(
                node.args()[0].span,
                format!("vrrp instance {name} already defined"),
            )
            .set_help("the block is skipped");
        return;
    }
    let mut r = Reader {
        inst: VrrpInstance::new(&name),
        vrrp,
        seen: Seen::default(),
        ipv6: None,
    };
    for n in ctx.block(node) {
        if !BLOCKS.contains(&n.name()) {
            ctx.no_block(n);
        }
        r.keyword(n, ctx);
    }
    let close = node
        .block
        .as_ref()
        .and_then(|b| b.close)
        .unwrap_or(node.line_span());
    let (mut inst, seen) = (r.inst, r.seen);
    let at = node.line_span();
    let mut report = Report(Some(&mut *ctx.diags));
    end_of_block(&mut inst, &seen, close, &mut report);
    complete(&mut inst, &seen, vrrp, at, &mut report);
    check_vrid_conflicts(&inst, vrrp, at, ctx);
    vrrp.pending.add_instance(&inst, at);
    if let Some(interface) = seen.lvs_sync_daemon_interface {
        vrrp.pending
            .set_lvs_sync_daemon(interface, inst.name.clone());
    }
    vrrp.instances.push(inst);
    resolve_groups(vrrp, &mut Report(Some(&mut *ctx.diags)), false);
}

impl Reader<'_> {
    fn keyword(&mut self, n: &Node, ctx: &mut Ctx) {
        let name = self.inst.name.clone();
        match n.name() {
            "state" => self.read_state(n, ctx),
            "interface" => self.read_interface(n, ctx),
            "virtual_router_id" => {
                if let Some(v) = ctx.unsigned(n, 0, 1, 255) {
                    self.inst.virtual_router_id = v as u8;
                }
            }
            "priority" => {
                // keepalived uses its default for a bad priority, also with state MASTER.
                let v = ctx.unsigned(n, 0, 1, 255).map(|v| v as u8);
                self.seen.priority = Some(v.unwrap_or(DEFAULT_PRIORITY));
            }
            "advert_int" => {
                if let Some(v) = ctx.decimal(n, 0, 6, US_PER_SEC / 100, 255 * US_PER_SEC) {
                    self.inst.advert_int_us = v;
                }
            }
            "version" => self.read_version(n, ctx),
            "native_ipv6" => {
                if self.ipv6 == Some(false) {
                    ctx.diags.warn(
                        n.span(),
                        format!("({name}) Cannot specify native_ipv6 with IPv4 addresses"),
                    );
                } else {
                    self.ipv6 = Some(true);
                    self.inst.native_ipv6 = true;
                    self.inst.version = Some(3);
                }
            }
            "nopreempt" => self.inst.nopreempt = true,
            "preempt" => self.inst.nopreempt = false,
            "preempt_delay" => {
                self.inst.preempt_delay_us = ctx.timer(n, 0, 0, secs(1000)).unwrap_or(0);
            }
            "authentication" => self.read_authentication(n, ctx),
            "virtual_ipaddress" => self.read_vips(n, ctx, false),
            "virtual_ipaddress_excluded" => self.read_vips(n, ctx, true),
            "virtual_routes" => {
                for line in value_lines(n, ctx) {
                    let route = crate::sections::routes::read_route(line, ctx);
                    self.inst.virtual_routes.push(route);
                }
            }
            "virtual_rules" => {
                for line in value_lines(n, ctx) {
                    let rule = crate::sections::routes::read_rule(line, ctx);
                    self.inst.virtual_rules.push(rule);
                }
            }
            "track_interface" => {
                read_track_interfaces(n, ctx, &name, &mut self.inst.track_interface)
            }
            "track_script" => read_track_scripts(
                n,
                ctx,
                &name,
                &self.vrrp.pending.script_at,
                &mut self.inst.track_script,
            ),
            "track_file" => read_track_files(
                n,
                ctx,
                &name,
                &self.vrrp.pending.track_file_at,
                &mut self.inst.track_file,
            ),
            "dont_track_primary" => self.inst.dont_track_primary = true,
            "mcast_src_ip" | "unicast_src_ip" | "mcast_dst_ip" => self.read_ip(n, ctx),
            "unicast_peer" => self.read_peers(n, ctx),
            "unicast_ttl" => {
                if let Some(v) = ctx.unsigned(n, 0, 0, 255) {
                    self.inst.unicast_ttl = Some(v as u8);
                }
            }
            "garp_master_delay"
            | "garp_master_refresh"
            | "garp_master_repeat"
            | "garp_master_refresh_repeat"
            | "garp_lower_prio_delay"
            | "garp_lower_prio_repeat" => self.read_garp(n, ctx),
            "notify" | "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" => {
                read_notify_slot(n, ctx, &format!("({name})"), &mut self.inst.notify)
            }
            "smtp_alert" => {
                if let Some(v) = ctx.flag(n, 0) {
                    self.inst.smtp_alert = Some(v);
                }
            }
            "use_vmac" => self.read_use_vmac(n, ctx),
            "vmac_xmit_base" => self.inst.vmac_xmit_base = true,
            "skip_check_adv_addr" => {
                // keepalived 2.2 turns it on for any valid value, also "false".
                if let Some(v) = ctx.flag(n, 0) {
                    if !v {
                        ctx.diags.note(
                            n.line_span(),
                            "keepalived 2.2 turns skip_check_adv_addr on whatever its value; so does halb",
                        );
                    }
                    self.inst.skip_check_adv_addr = true;
                }
            }
            "strict_mode" => {
                if let Some(v) = ctx.flag(n, 0) {
                    self.inst.strict_mode = Some(v);
                }
            }
            "accept" => self.inst.accept = Some(true),
            "no_accept" => self.inst.accept = Some(false),
            "lvs_sync_daemon_interface" => self.read_lvs_sync_daemon(n, ctx),
            // keepalived sets it whatever follows the keyword.
            "check_unicast_src" => self.inst.check_unicast_src = true,
            "lower_prio_no_advert" => {
                if let Some(v) = ctx.flag(n, 0) {
                    self.inst.lower_prio_no_advert = Some(v);
                }
            }
            "higher_prio_send_advert" => {
                if let Some(v) = ctx.flag(n, 0) {
                    self.inst.higher_prio_send_advert = Some(v);
                }
            }
            "down_timer_adverts" => {
                if let Some(v) = ctx.unsigned(n, 0, 1, 100) {
                    self.inst.down_timer_adverts = Some(v as u32);
                }
            }
            kw if KEPT.contains(&kw) => {
                if self.check_kept(n, ctx) {
                    self.inst.other.push(Setting::from_node(n));
                }
            }
            _ => ctx.unknown(n),
        }
        if UNICAST_KEYWORDS.contains(&n.name()) {
            self.seen.unicast_keyword = true;
        }
    }

    fn read_state(&mut self, n: &Node, ctx: &mut Ctx) {
        let Some(w) = ctx.arg(n, 0) else {
            return;
        };
        let name = &self.inst.name;
        match w.text.as_str() {
            "MASTER" => self.seen.state = Some(VrrpState::Master),
            "BACKUP" if self.seen.state == Some(VrrpState::Master) => {
                ctx.diags.warn(
                    w.span,
                    format!("({name}) state previously set as MASTER - ignoring BACKUP"),
                );
            }
            "BACKUP" => self.seen.state = Some(VrrpState::Backup),
            other => {
                ctx.diags
                    .warn(
                        w.span,
                        format!("({name}) unknown state '{other}', defaulting to BACKUP"),
                    )
                    .set_help("expected MASTER or BACKUP");
                self.seen.state = Some(VrrpState::Backup);
            }
        }
    }

    fn read_interface(&mut self, n: &Node, ctx: &mut Ctx) {
        let Some(w) = ctx.arg(n, 0) else {
            return;
        };
        if w.text.len() > MAX_IFNAME_LEN {
            ctx.diags.warn(
                w.span,
                format!("Interface name '{}' too long - ignoring", w.text),
            );
            return;
        }
        if w.text == "lo" {
            ctx.diags.warn(
                w.span,
                format!(
                    "({}) cannot use a loopback interface (lo) for vrrp - ignoring",
                    self.inst.name
                ),
            );
            return;
        }
        if !ctx.interface_exists(&w.text) {
            ctx.diags
                .warn(
                    w.span,
                    format!(
                        "WARNING - interface {} for vrrp_instance {} doesn't exist",
                        w.text, self.inst.name
                    ),
                )
                .set_help("keepalived does not run an instance without its interface");
        }
        self.inst.interface = Some(w.text.clone());
    }

    fn read_version(&mut self, n: &Node, ctx: &mut Ctx) {
        let Some(v) = ctx.int(n, 0, 2, 3) else {
            return;
        };
        let v = v as u8;
        if self.inst.version.is_some_and(|old| old != v) || (v == 2 && self.ipv6 == Some(true)) {
            let deduced = self.inst.version.unwrap_or(0);
            ctx.diags.warn(
                n.line_span(),
                format!(
                    "({}) vrrp_version {v} conflicts with configured or deduced version {deduced}; ignoring.",
                    self.inst.name
                ),
            );
            return;
        }
        self.inst.version = Some(v);
    }

    fn read_authentication(&mut self, n: &Node, ctx: &mut Ctx) {
        for a in ctx.block(n) {
            ctx.no_block(a);
            match a.name() {
                "auth_type" => {
                    let Some(w) = ctx.arg(a, 0) else {
                        continue;
                    };
                    match w.text.as_str() {
                        "PASS" => self.seen.auth_type = Some(AuthType::Pass),
                        "AH" => self.seen.auth_type = Some(AuthType::Ah),
                        other => {
                            ctx.diags
                                .warn(
                                    w.span,
                                    format!(
                                        "({}) unknown authentication type '{other}'",
                                        self.inst.name
                                    ),
                                )
                                .set_help("expected PASS or AH");
                        }
                    }
                }
                "auth_pass" => {
                    let Some(w) = ctx.arg(a, 0) else {
                        continue;
                    };
                    let mut pass = w.text.clone();
                    if pass.len() > 8 {
                        let mut end = 8;
                        while !pass.is_char_boundary(end) {
                            end -= 1;
                        }
                        pass.truncate(end);
                        ctx.diags
                            .warn(w.span, "Truncating auth_pass to 8 characters")
                            .set_help(format!(
                                "VRRP carries 8 bytes of password; \"{pass}\" is used"
                            ));
                    }
                    self.seen.auth_pass = Some(pass);
                }
                _ => ctx.unknown(a),
            }
        }
    }

    fn read_vips(&mut self, n: &Node, ctx: &mut Ctx, excluded: bool) {
        for line in value_lines(n, ctx) {
            let Some(a) = read_address(line, ctx) else {
                continue;
            };
            if excluded {
                self.inst.virtual_ipaddress_excluded.push(a);
                continue;
            }
            if !self.same_family(a.address.is_ipv6()) {
                ctx.diags.warn(
                    line.span(),
                    format!(
                        "({}): address family must match VRRP instance [{}] - ignoring",
                        self.inst.name,
                        line.name()
                    ),
                );
                continue;
            }
            self.inst.virtual_ipaddress.push(a);
        }
    }

    /// Sets the family from the first address; false when `ipv6` does not match it.
    fn same_family(&mut self, ipv6: bool) -> bool {
        *self.ipv6.get_or_insert(ipv6) == ipv6
    }

    fn read_ip(&mut self, n: &Node, ctx: &mut Ctx) {
        let Some(ip) = ctx.ip(n, 0) else {
            return;
        };
        let name = self.inst.name.clone();
        let span = n.args()[0].span;
        if !self.same_family(ip.is_ipv6()) {
            ctx.diags.warn(
                span,
                format!(
                    "({name}) {} {ip} must be of the same family as the instance - skipping",
                    n.name()
                ),
            );
            return;
        }
        match n.name() {
            "mcast_dst_ip" => {
                if !is_vrrp_multicast(ip) {
                    let ll = if ip.is_ipv6() { " link-local" } else { "" };
                    ctx.diags.warn(
                        span,
                        format!("({name}) mcast_dst_ip {ip} not{ll} multicast. Skipping..."),
                    );
                    return;
                }
                self.inst.mcast_dst_ip = Some(ip);
            }
            "unicast_src_ip" => self.inst.unicast_src_ip = Some(ip),
            _ => self.inst.mcast_src_ip = Some(ip),
        }
    }

    fn read_peers(&mut self, n: &Node, ctx: &mut Ctx) {
        let name = self.inst.name.clone();
        for line in value_lines(n, ctx) {
            let Some(p) = read_peer_line(line, ctx, &name) else {
                continue;
            };
            if !self.same_family(p.address.is_ipv6()) {
                ctx.diags.warn(
                    line.span(),
                    format!(
                        "Configuration error: VRRP instance[{name}] and unicast peer address[{}] MUST be of the same family !!! Skipping...",
                        line.name()
                    ),
                );
                continue;
            }
            self.inst.unicast_peer.push(p);
        }
    }

    fn read_garp(&mut self, n: &Node, ctx: &mut Ctx) {
        let i = &mut self.inst;
        let max_secs = u64::from(u32::MAX) / US_PER_SEC;
        match n.name() {
            "garp_master_delay" => {
                if let Some(v) = ctx.unsigned(n, 0, 0, max_secs) {
                    i.garp_master_delay_us = Some(secs(v));
                }
            }
            "garp_lower_prio_delay" => {
                if let Some(v) = ctx.unsigned(n, 0, 0, max_secs) {
                    i.garp_lower_prio_delay_us = Some(secs(v));
                }
            }
            // keepalived turns an invalid refresh into 0 (no refresh).
            "garp_master_refresh" => {
                let v = ctx.unsigned(n, 0, 0, u64::from(u32::MAX)).unwrap_or(0);
                i.garp_master_refresh_us = Some(secs(v));
            }
            "garp_lower_prio_repeat" => {
                if let Some(v) = ctx.unsigned(n, 0, 0, i32::MAX as u64) {
                    i.garp_lower_prio_repeat = Some(v as u32);
                }
            }
            kw => {
                let Some(mut v) = ctx.unsigned(n, 0, 0, u64::from(u32::MAX)) else {
                    return;
                };
                if v == 0 {
                    ctx.diags.warn(
                        n.args()[0].span,
                        format!("({}): {kw} must be greater than 0, setting to 1", i.name),
                    );
                    v = 1;
                }
                if kw == "garp_master_repeat" {
                    i.garp_master_repeat = Some(v as u32);
                } else {
                    i.garp_master_refresh_repeat = Some(v as u32);
                }
            }
        }
    }

    fn read_use_vmac(&mut self, n: &Node, ctx: &mut Ctx) {
        let mut vmac = UseVmac::default();
        for w in n.args().iter().take(2) {
            if w.text.contains(':') {
                if vmac.mac.is_some() {
                    ctx.diags
                        .warn(w.span, "VMAC interface address already specified");
                } else if let Err(why) = check_vmac_mac(&w.text) {
                    ctx.diags.warn(
                        w.span,
                        format!("VMAC MAC address {} {why} - ignoring", w.text),
                    );
                } else {
                    vmac.mac = Some(w.text.clone());
                }
                continue;
            }
            if vmac.interface.is_some() {
                ctx.diags
                    .warn(w.span, "VMAC interface name already specified");
            } else if !valid_dev_name(&w.text) {
                ctx.diags.warn(
                    w.span,
                    format!(
                        "VMAC interface name '{}' too long or invalid characters - ignoring",
                        w.text
                    ),
                );
            } else if let Some(other) = self.vrrp.pending.vmac_user(&w.text) {
                ctx.diags.warn(
                    w.span,
                    format!(
                        "({}) VRRP instance {} is already using {} - ignoring name",
                        self.inst.name, other, w.text
                    ),
                );
            } else {
                vmac.interface = Some(w.text.clone());
            }
        }
        self.inst.use_vmac = Some(vmac);
    }

    fn read_lvs_sync_daemon(&mut self, n: &Node, ctx: &mut Ctx) {
        let name = self.inst.name.clone();
        ctx.diags
            .warn(
                n.span(),
                format!(
                    "({name}) Specifying lvs_sync_daemon_interface against a vrrp is deprecated"
                ),
            )
            .set_help("Please use global lvs_sync_daemon (in global_defs)");
        let Some(interface) = ctx.string(n, 0) else {
            return;
        };
        if let Some(other) = self.vrrp.pending.lvs_sync_daemon_interface() {
            ctx.diags.warn(
                n.args()[0].span,
                format!(
                    "({name}) lvs_sync_daemon_interface has already been specified as {other} - ignoring"
                ),
            );
            return;
        }
        self.seen.lvs_sync_daemon_interface = Some(interface);
    }

    /// Checks the value of a kept keyword as keepalived does; false when it is ignored.
    fn check_kept(&mut self, n: &Node, ctx: &mut Ctx) -> bool {
        let name = self.inst.name.clone();
        match n.name() {
            "debug" => ctx.unsigned(n, 0, 0, 4).is_some(),
            "kernel_rx_buf_size" => {
                if n.args().len() != 1 {
                    ctx.diags.warn(
                        n.line_span(),
                        format!("({name}) invalid kernel_rx_buf_size specified"),
                    );
                    return false;
                }
                ctx.unsigned(n, 0, 0, u64::from(u32::MAX)).is_some()
            }
            "notify_priority_changes" => ctx.flag(n, 0).is_some(),
            "garp_extra_if" | "vmac_garp_intvl" => check_garp_extra_if(n, ctx, &name),
            "linkbeat_use_polling" => {
                ctx.diags.warn(
                    n.span(),
                    format!(
                        "({name}) 'linkbeat_use_polling' in vrrp instance deprecated - use linkbeat_interfaces block"
                    ),
                );
                true
            }
            "vrf" => self.check_vrf(n, ctx),
            "unicast_fault_no_peer" => {
                self.seen.fault_no_peer = true;
                true
            }
            _ => true,
        }
    }

    fn check_vrf(&mut self, n: &Node, ctx: &mut Ctx) -> bool {
        let name = self.inst.name.clone();
        let Some(w) = ctx.arg(n, 0) else {
            return false;
        };
        if w.text.len() > MAX_IFNAME_LEN {
            ctx.diags.warn(
                w.span,
                format!(
                    "({name}) VRF interface name '{}' too long - ignoring",
                    w.text
                ),
            );
            return false;
        }
        if self.inst.interface.is_some() {
            ctx.diags.warn(
                n.span(),
                format!("({name}) Cannot specify VRF interface and interface - ignoring"),
            );
            return false;
        }
        if self.inst.other.iter().any(|s| s.keyword == "vrf") {
            ctx.diags.warn(
                n.span(),
                format!("({name}) VRF interface already specified - ignoring"),
            );
            return false;
        }
        if !ctx.interface_exists(&w.text) {
            ctx.diags.warn(
                w.span,
                format!("({name}) WARNING - VRF interface {} doesn't exist", w.text),
            );
        }
        true
    }
}

/// A notify keyword into its slot; a second one for the same slot is reported and ignored.
pub fn read_notify_slot(
    n: &Node,
    ctx: &mut Ctx,
    owner: &str,
    notify: &mut super::model::NotifyScripts,
) {
    let Some(slot) = notify.slot(n.name()) else {
        return;
    };
    if slot.is_some() {
        let first = n.arg(0).map(|w| w.text.as_str()).unwrap_or_default();
        ctx.diags.warn(
            n.line_span(),
            format!(
                "{owner} {} script already specified - ignoring {first}",
                n.name()
            ),
        );
        return;
    }
    *slot = read_notify(n, ctx);
}

/// IPv4 multicast, or IPv6 link-local multicast (`ff02::/16` and the other flag values).
fn is_vrrp_multicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_multicast(),
        IpAddr::V6(a) => a.segments()[0] & 0xff0f == 0xff02,
    }
}

/// The kernel's `dev_name_valid()`.
fn valid_dev_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IFNAME_LEN
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace())
}

/// A `use_vmac` MAC address: 5 octets (the VRID completes it) or 6, unicast, and not one of
/// the VRRP addresses of RFC 5798.
fn check_vmac_mac(s: &str) -> Result<(), &'static str> {
    let s5 = s.strip_suffix(':').unwrap_or(s);
    let octets: Vec<&str> = s5.split(':').collect();
    let ok = (octets.len() == 5 || (octets.len() == 6 && !s.ends_with(':')))
        && octets
            .iter()
            .all(|o| (1..=2).contains(&o.len()) && o.bytes().all(|b| b.is_ascii_hexdigit()));
    if !ok {
        return Err("is invalid");
    }
    let bytes: Vec<u8> = octets
        .iter()
        .filter_map(|o| u8::from_str_radix(o, 16).ok())
        .collect();
    if bytes.first().is_some_and(|b| b & 1 == 1) {
        return Err("is multicast");
    }
    if bytes.get(..4) == Some(&[0, 0, 0x5e, 0][..]) && matches!(bytes.get(4), Some(1 | 2)) {
        return Err("is an RFC5798 address");
    }
    Ok(())
}

/// `garp_extra_if [all] SECONDS` (`vmac_garp_intvl` is its deprecated name).
fn check_garp_extra_if(n: &Node, ctx: &mut Ctx, name: &str) -> bool {
    if n.name() == "vmac_garp_intvl" {
        ctx.diags.warn(
            n.span(),
            "Keyword \"vmac_garp_intvl\" is deprecated - please use \"garp_extra_if\"",
        );
    }
    let mut have_delay = false;
    for (i, w) in n.args().iter().enumerate() {
        if w.text == "all" {
            continue;
        }
        if ctx.unsigned(n, i, 0, 86400).is_none() {
            return false;
        }
        have_delay = true;
    }
    if !have_delay {
        ctx.diags.warn(
            n.line_span(),
            format!("({name}): {} specified without time - ignoring", n.name()),
        );
    }
    have_delay
}
