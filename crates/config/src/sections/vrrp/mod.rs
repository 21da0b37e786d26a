//! Readers and writers of the VRRP sections: `vrrp_sync_group`, `vrrp_instance`,
//! `vrrp_script` and `track_file`, with keepalived 2.2's defaults and checks.
//!
//! keepalived checks some things only once the whole file is read (sync group members, unused
//! scripts, what `global_defs` decides for instances). [`read_top`] runs what can be decided
//! so far; [`finish`] reports the rest, and [`fold_into_global`] completes the model.

pub mod model;

pub(crate) mod address;
mod complete;
mod group;
mod instance;
mod pending;
mod script;
pub(crate) mod track;

use self::address::{address_words, peer_words};
use self::model::{VrrpConfig, VrrpInstance, VrrpState, DEFAULT_ADVERT_INT_US};
use self::pending::{settle, Report};
use crate::read::{format_us, Ctx, US_PER_SEC};
use crate::sections::global_defs::{GlobalDefs, LvsSyncDaemon};
use crate::sections::script::notify_line;
use crate::setting::Setting;
use crate::summary::InstanceSummary;
use crate::tree::Node;
use crate::write::{quote, ConfWriter};

/// Top-level keywords this module reads.
pub const TOP_LEVEL: &[&str] = &[
    "vrrp_sync_group",
    "vrrp_instance",
    "vrrp_script",
    "track_file",
    "vrrp_track_file",
    "track_group",
    "linkbeat_interfaces",
    "interface_up_down_delays",
];

pub fn read_top(node: &Node, ctx: &mut Ctx, vrrp: &mut VrrpConfig) {
    match node.name() {
        "vrrp_sync_group" => self::group::read_sync_group(node, ctx, vrrp),
        "vrrp_instance" => self::instance::read_instance(node, ctx, vrrp),
        "vrrp_script" => self::script::read_vrrp_script(node, ctx, vrrp),
        "track_file" | "vrrp_track_file" => self::script::read_track_file(node, ctx, vrrp),
        "linkbeat_interfaces" | "interface_up_down_delays" => {
            check_interface_lines(node, ctx);
            vrrp.other.push(Setting::from_node(node));
        }
        _ => vrrp.other.push(Setting::from_node(node)),
    }
}

/// keepalived cannot run with an unknown interface in these blocks (a fatal error for it).
fn check_interface_lines(node: &Node, ctx: &mut Ctx) {
    let what = if node.name() == "linkbeat_interfaces" {
        "linkbeat interface"
    } else {
        "up/down delay"
    };
    for line in ctx.block(node) {
        let name = line.name();
        if !ctx.interface_exists(name) {
            ctx.diags
                .error(
                    line.span(),
                    format!("unknown interface {name} specified for {what}"),
                )
                .set_help("keepalived does not start with it (unless global dynamic_interfaces)");
        }
    }
}

/// Reports what needs the whole file: sync group members that do not exist, scripts no one
/// tracks, and the checks that depend on `global_defs` (`vrrp_version`, `vrrp_strict`). To be
/// called once every top-level keyword is read, before [`fold_into_global`].
pub fn finish(vrrp: &mut VrrpConfig, global: &GlobalDefs, ctx: &mut Ctx) {
    drop_unrunnable(vrrp);
    settle(vrrp, global, &mut Report(Some(&mut *ctx.diags)));
    if let Some(name) = global
        .lvs_sync_daemon
        .as_ref()
        .and_then(|d| d.instance.as_ref())
    {
        if vrrp.instance(name).is_none() {
            // keepalived says so when it runs, not with -t.
            ctx.diags.global(
                crate::diagnostic::Severity::Note,
                format!(
                    "Unable to find vrrp instance {name} for lvs_syncd - clearing lvs_syncd config"
                ),
            );
        }
    }
}

/// Removes what cannot run, as keepalived does once the file is read.
fn drop_unrunnable(vrrp: &mut VrrpConfig) {
    // An instance without a VRID cannot run: keepalived drops it (after saying so), and with
    // it its place in sync groups; a group left without members goes too.
    vrrp.instances.retain(|i| i.virtual_router_id != 0);
    let names: std::collections::HashSet<&str> =
        vrrp.instances.iter().map(|i| i.name.as_str()).collect();
    for g in &mut vrrp.sync_groups {
        g.group.retain(|m| names.contains(m.as_str()));
    }
    vrrp.sync_groups.retain(|g| !g.group.is_empty());
    vrrp.pending.index_sync_groups(&vrrp.sync_groups);
}

/// Completes the model once the file is read (without diagnostics when [`finish`] did not run
/// first), and moves settings keepalived folds into `global_defs`: a 1.x per-instance
/// `lvs_sync_daemon_interface` becomes the global `lvs_sync_daemon` when there is none.
pub fn fold_into_global(vrrp: &mut VrrpConfig, global: &mut GlobalDefs) {
    drop_unrunnable(vrrp);
    settle(vrrp, global, &mut Report(None));
    if let Some((interface, instance)) = vrrp.pending.take_lvs_sync_daemon() {
        // keepalived ignores it when global_defs has one. Its sync id is 0, not the instance's
        // VRID: keepalived 2.2 defaults to the VRID only for an instance named in the global form.
        global.lvs_sync_daemon.get_or_insert(LvsSyncDaemon {
            interface,
            instance: Some(instance),
            sync_id: Some(0),
            maxlen: None,
            port: None,
            ttl: None,
            group: None,
        });
    }
    // keepalived clears an lvs_sync_daemon whose instance does not exist.
    let unknown = global
        .lvs_sync_daemon
        .as_ref()
        .and_then(|d| d.instance.as_ref())
        .is_some_and(|name| vrrp.instance(name).is_none());
    if unknown {
        global.lvs_sync_daemon = None;
    }
}

/// Writes the VRRP sections: scripts and track files first (instances look them up when they
/// are read), then instances, then sync groups.
pub fn write(vrrp: &VrrpConfig, w: &mut ConfWriter) {
    for s in &vrrp.scripts {
        self::script::write_vrrp_script(s, w);
    }
    for f in &vrrp.track_files {
        self::script::write_track_file(f, w);
    }
    for s in &vrrp.other {
        s.write(w);
    }
    for i in &vrrp.instances {
        write_instance(i, w);
    }
    for g in &vrrp.sync_groups {
        self::group::write_sync_group(g, w);
    }
}

fn write_instance(i: &VrrpInstance, w: &mut ConfWriter) {
    w.open(&format!("vrrp_instance {}", quote(&i.name)));
    // Without `state`, priority 255 means MASTER; without `priority`, MASTER means 255.
    if i.state == VrrpState::Master || i.priority == 255 {
        w.kv("state", i.state.as_str());
    }
    if let Some(v) = &i.interface {
        w.kv("interface", v);
    }
    if i.virtual_router_id != 0 {
        w.kv("virtual_router_id", i.virtual_router_id);
    }
    if i.priority != 100 || i.state == VrrpState::Master {
        w.kv("priority", i.priority);
    }
    if i.advert_int_us != DEFAULT_ADVERT_INT_US {
        w.kv("advert_int", format_us(i.advert_int_us));
    }
    // Before any address: keepalived checks the version against the family read so far.
    if let Some(v) = i.version {
        w.kv("version", v);
    }
    w.flag("native_ipv6", i.native_ipv6);
    w.flag("nopreempt", i.nopreempt);
    if i.preempt_delay_us != 0 {
        w.kv("preempt_delay", format_us(i.preempt_delay_us));
    }
    if let Some(a) = &i.authentication {
        w.open("authentication");
        w.kv("auth_type", a.auth_type.as_str());
        w.kv("auth_pass", &a.auth_pass);
        w.close();
    }
    write_addressing(i, w);
    self::track::write_tracking(&i.track_interface, &i.track_script, &i.track_file, w);
    w.flag("dont_track_primary", i.dont_track_primary);
    write_garp(i, w);
    for (keyword, script) in i.notify.iter() {
        w.line(&notify_line(keyword, script));
    }
    write_switches(i, w);
    for s in &i.other {
        s.write(w);
    }
    w.close();
}

fn write_addressing(i: &VrrpInstance, w: &mut ConfWriter) {
    for (k, v) in [
        ("mcast_src_ip", i.mcast_src_ip),
        ("unicast_src_ip", i.unicast_src_ip),
        ("mcast_dst_ip", i.mcast_dst_ip),
    ] {
        if let Some(v) = v {
            w.kv(k, v);
        }
    }
    if !i.unicast_peer.is_empty() {
        w.open("unicast_peer");
        for p in &i.unicast_peer {
            w.line(&peer_words(p));
        }
        w.close();
    }
    if let Some(v) = i.unicast_ttl {
        w.kv("unicast_ttl", v);
    }
    for (keyword, list) in [
        ("virtual_ipaddress", &i.virtual_ipaddress),
        ("virtual_ipaddress_excluded", &i.virtual_ipaddress_excluded),
    ] {
        if !list.is_empty() {
            w.open(keyword);
            for a in list {
                w.line(&address_words(a));
            }
            w.close();
        }
    }
    for (keyword, list) in [
        ("virtual_routes", &i.virtual_routes),
        ("virtual_rules", &i.virtual_rules),
    ] {
        if !list.is_empty() {
            w.open(keyword);
            for s in list {
                s.write(w);
            }
            w.close();
        }
    }
}

fn write_garp(i: &VrrpInstance, w: &mut ConfWriter) {
    let secs = |us: Option<u64>| us.map(|v| v / US_PER_SEC);
    for (k, v) in [
        ("garp_master_delay", secs(i.garp_master_delay_us)),
        ("garp_master_repeat", i.garp_master_repeat.map(u64::from)),
        ("garp_master_refresh", secs(i.garp_master_refresh_us)),
        (
            "garp_master_refresh_repeat",
            i.garp_master_refresh_repeat.map(u64::from),
        ),
        ("garp_lower_prio_delay", secs(i.garp_lower_prio_delay_us)),
        (
            "garp_lower_prio_repeat",
            i.garp_lower_prio_repeat.map(u64::from),
        ),
    ] {
        if let Some(v) = v {
            w.kv(k, v);
        }
    }
}

fn write_switches(i: &VrrpInstance, w: &mut ConfWriter) {
    match i.smtp_alert {
        Some(true) => w.line("smtp_alert"),
        Some(false) => w.line("smtp_alert false"),
        None => {}
    }
    if let Some(v) = &i.use_vmac {
        let mut words = vec!["use_vmac".to_string()];
        words.extend(v.interface.iter().map(|s| quote(s)));
        words.extend(v.mac.iter().map(|s| quote(s)));
        w.line(&words.join(" "));
    }
    w.flag("vmac_xmit_base", i.vmac_xmit_base);
    w.flag("skip_check_adv_addr", i.skip_check_adv_addr);
    if let Some(v) = i.strict_mode {
        w.line(&format!("strict_mode {v}"));
    }
    match i.accept {
        Some(true) => w.line("accept"),
        Some(false) => w.line("no_accept"),
        None => {}
    }
    w.flag("check_unicast_src", i.check_unicast_src);
    for (keyword, value) in [
        ("lower_prio_no_advert", i.lower_prio_no_advert),
        ("higher_prio_send_advert", i.higher_prio_send_advert),
    ] {
        if let Some(v) = value {
            w.line(&format!("{keyword} {v}"));
        }
    }
    if let Some(v) = i.down_timer_adverts {
        w.kv("down_timer_adverts", v);
    }
}

/// The key values of each instance, as keepalived resolves them (with the default global
/// `vrrp_version`, 2).
pub fn summarize(vrrp: &VrrpConfig, global: &GlobalDefs) -> Vec<InstanceSummary> {
    vrrp.instances
        .iter()
        .map(|i| {
            let version = i.effective_version(global.vrrp_version);
            InstanceSummary {
                name: i.name.clone(),
                interface: i.interface.clone(),
                vrid: i.virtual_router_id,
                priority: i.priority,
                version,
                advert_int_us: i.effective_advert_int_us(version),
                initial_state: vrrp.start_state(i).as_str().to_string(),
                vips: i
                    .virtual_ipaddress
                    .iter()
                    .map(|a| format!("{}/{}", a.address, a.prefix))
                    .collect(),
            }
        })
        .collect()
}
