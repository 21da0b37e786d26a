//! `global_defs { ... }`: settings for the whole daemon.

use crate::read::{secs, Ctx};
use crate::sections::vrrp::model::DEFAULT_DOWN_TIMER_ADVERTS;
use crate::setting::Setting;
use crate::tree::Node;
use crate::write::{quote, ConfWriter};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The keepalived `global_defs` block, with keepalived's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GlobalDefs {
    /// `router_id`; keepalived uses the host name when unset.
    pub router_id: Option<String>,
    pub notification_email: Vec<String>,
    pub notification_email_from: Option<String>,
    pub smtp_server: Option<SmtpServer>,
    pub smtp_helo_name: Option<String>,
    pub smtp_connect_timeout_us: u64,
    pub enable_script_security: bool,
    /// `script_user USER [GROUP]`.
    pub script_user: Option<(String, Option<String>)>,
    pub lvs_sync_daemon: Option<LvsSyncDaemon>,
    pub lvs_timeouts: LvsTimeouts,
    pub lvs_flush: bool,
    pub lvs_flush_on_stop: Option<String>,
    pub vrrp_mcast_group4: Option<IpAddr>,
    pub vrrp_mcast_group6: Option<IpAddr>,
    pub vrrp_garp_master_delay_us: u64,
    pub vrrp_garp_master_repeat: u32,
    pub vrrp_garp_master_refresh_us: u64,
    pub vrrp_garp_master_refresh_repeat: u32,
    pub vrrp_garp_lower_prio_delay_us: Option<u64>,
    pub vrrp_garp_lower_prio_repeat: Option<u32>,
    pub vrrp_garp_interval_us: u64,
    pub vrrp_gna_interval_us: u64,
    /// 2 or 3; the default for instances that set no `version`.
    pub vrrp_version: u8,
    pub vrrp_strict: bool,
    pub vrrp_check_unicast_src: bool,
    pub vrrp_skip_check_adv_addr: bool,
    /// `vrrp_lower_prio_no_advert [BOOL]`: the default of the instances' `lower_prio_no_advert`.
    pub vrrp_lower_prio_no_advert: bool,
    /// `vrrp_higher_prio_send_advert [BOOL]`: the default of `higher_prio_send_advert`.
    pub vrrp_higher_prio_send_advert: bool,
    /// `vrrp_down_timer_adverts N` (1–100): the default of `down_timer_adverts`.
    pub vrrp_down_timer_adverts: u32,
    pub dynamic_interfaces: bool,
    pub checker_log_all_failures: bool,
    pub notify_fifo: Option<String>,
    pub vrrp_notify_fifo: Option<String>,
    pub lvs_notify_fifo: Option<String>,
    /// `vrrp_rt_priority`, `vrrp_priority`, `vrrp_rlimit_rttime`, `vrrp_cpu_affinity`: how the
    /// thread that runs the VRRP instances is scheduled.
    pub vrrp_scheduling: Scheduling,
    /// `bfd_rt_priority`, `bfd_priority`, `bfd_rlimit_rttime`, `bfd_cpu_affinity`: the same for
    /// the thread that runs the `bfd_instance`s.
    pub bfd_scheduling: Scheduling,
    /// Other `global_defs` keywords keepalived knows, kept as written.
    pub other: Vec<Setting>,
}

impl Default for GlobalDefs {
    fn default() -> Self {
        GlobalDefs {
            router_id: None,
            notification_email: Vec::new(),
            notification_email_from: None,
            smtp_server: None,
            smtp_helo_name: None,
            smtp_connect_timeout_us: secs(30),
            enable_script_security: false,
            script_user: None,
            lvs_sync_daemon: None,
            lvs_timeouts: LvsTimeouts::default(),
            lvs_flush: false,
            lvs_flush_on_stop: None,
            vrrp_mcast_group4: None,
            vrrp_mcast_group6: None,
            vrrp_garp_master_delay_us: secs(5),
            vrrp_garp_master_repeat: 5,
            vrrp_garp_master_refresh_us: 0,
            vrrp_garp_master_refresh_repeat: 1,
            vrrp_garp_lower_prio_delay_us: None,
            vrrp_garp_lower_prio_repeat: None,
            vrrp_garp_interval_us: 0,
            vrrp_gna_interval_us: 0,
            vrrp_version: 2,
            vrrp_strict: false,
            vrrp_check_unicast_src: false,
            vrrp_skip_check_adv_addr: false,
            vrrp_lower_prio_no_advert: false,
            vrrp_higher_prio_send_advert: false,
            vrrp_down_timer_adverts: DEFAULT_DOWN_TIMER_ADVERTS,
            dynamic_interfaces: false,
            checker_log_all_failures: false,
            notify_fifo: None,
            vrrp_notify_fifo: None,
            lvs_notify_fifo: None,
            vrrp_scheduling: Scheduling::default(),
            bfd_scheduling: Scheduling::default(),
            other: Vec::new(),
        }
    }
}

/// How one part's thread is scheduled, as keepalived schedules that part's process
/// (`vrrp_*` / `bfd_*` keywords); nothing set: as the rest of the daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scheduling {
    /// `*_rt_priority N`: SCHED_RR at N (1–99; keepalived clamps values outside).
    pub rt_priority: Option<u8>,
    /// `*_priority N`: the nice value (-20–19). keepalived ignores it when `rt_priority` is
    /// set.
    pub nice: Option<i8>,
    /// `*_rlimit_rttime N` (`*_rlimit_rtime`, its older spelling): RLIMIT_RTTIME in µs, the CPU
    /// time a real-time thread may use without blocking; only with `rt_priority`. `None`:
    /// keepalived's default, [`DEFAULT_RLIMIT_RTTIME_US`].
    pub rlimit_rttime_us: Option<u64>,
    /// `*_cpu_affinity CPU...`: the CPUs the thread may run on; empty: any.
    pub cpu_affinity: Vec<u16>,
}

/// keepalived's `RT_RLIMIT_DEFAULT`: 10 ms.
pub const DEFAULT_RLIMIT_RTTIME_US: u64 = 10_000;

impl Scheduling {
    /// The RLIMIT_RTTIME to set: only a real-time thread has one.
    pub fn effective_rlimit_rttime_us(&self) -> Option<u64> {
        self.rt_priority
            .map(|_| self.rlimit_rttime_us.unwrap_or(DEFAULT_RLIMIT_RTTIME_US))
    }

    /// Whether anything is set.
    pub fn is_default(&self) -> bool {
        *self == Scheduling::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpServer {
    /// An address or a host name.
    pub host: String,
    pub port: u16,
}

/// `lvs_sync_daemon INTERFACE VRRP_INSTANCE [id N] [maxlen N] [port N] [ttl N] [group IP]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LvsSyncDaemon {
    pub interface: String,
    /// The VRRP instance whose state decides master or backup sync daemon.
    pub instance: Option<String>,
    pub sync_id: Option<u8>,
    pub maxlen: Option<u16>,
    pub port: Option<u16>,
    pub ttl: Option<u8>,
    pub group: Option<IpAddr>,
}

/// `lvs_timeouts [tcp N] [tcpfin N] [udp N]` in seconds; `None` keeps the kernel's value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LvsTimeouts {
    pub tcp: Option<u32>,
    pub tcpfin: Option<u32>,
    pub udp: Option<u32>,
}

/// `global_defs` keywords keepalived 2.2 knows that halb keeps as written.
const KEPT: &[&str] = &[
    "process_names",
    "process_name",
    "vrrp_process_name",
    "checker_process_name",
    "lvs_process_name",
    "bfd_process_name",
    "smtp_alert",
    "startup_script",
    "startup_script_timeout",
    "shutdown_script",
    "shutdown_script_timeout",
    "max_auto_priority",
    "min_auto_priority_delay",
    "smtp_alert_vrrp",
    "smtp_alert_checker",
    "no_email_faults",
    "default_interface",
    "disable_local_igmp",
    "lvs_flush_onstop",
    "vrrp_min_garp",
    "vrrp_garp_extra_if",
    "vrrp_vmac_garp_intvl",
    "vrrp_iptables",
    "vrrp_ipsets",
    "nftables",
    "nftables_priority",
    "nftables_ifindex",
    "nftables_ipvs",
    "nftables_ipvs_priority",
    "nftables_ipvs_start_fwmark",
    "nftables_counters",
    "vrrp_no_swap",
    "notify_fifo_script",
    "vrrp_notify_fifo_script",
    "vrrp_notify_priority_changes",
    "fifo_write_vrrp_states_on_reload",
    "lvs_notify_fifo_script",
    "checker_priority",
    "checker_no_swap",
    "checker_rt_priority",
    "checker_cpu_affinity",
    "checker_rlimit_rttime",
    "checker_rlimit_rtime",
    "bfd_no_swap",
    "snmp_socket",
    "enable_traps",
    "enable_snmp_vrrp",
    "enable_snmp_keepalived",
    "enable_snmp_rfc",
    "enable_snmp_rfcv2",
    "enable_snmp_rfcv3",
    "enable_snmp_checker",
    "enable_dbus",
    "dbus_service_name",
    "vrrp_netlink_cmd_rcv_bufs",
    "vrrp_netlink_cmd_rcv_bufs_force",
    "vrrp_netlink_monitor_rcv_bufs",
    "vrrp_netlink_monitor_rcv_bufs_force",
    "process_monitor_rcv_bufs",
    "process_monitor_rcv_bufs_force",
    "lvs_netlink_cmd_rcv_bufs",
    "lvs_netlink_cmd_rcv_bufs_force",
    "lvs_netlink_monitor_rcv_bufs",
    "lvs_netlink_monitor_rcv_bufs_force",
    "rs_init_notifies",
    "no_checker_emails",
    "vrrp_rx_bufs_policy",
    "vrrp_rx_bufs_multiplier",
    "vrrp_startup_delay",
    "log_unknown_vrids",
    "vmac_prefix",
    "vmac_addr_prefix",
    "umask",
    "random_seed",
    "reload_check_config",
    "reload_time_file",
    "reload_repeat",
    "reload_file",
    "include_check",
    "config_save_dir",
    "tmp_config_directory",
    "data_use_instance",
];

/// `global_defs` keywords with a typed field.
const KNOWN: &[&str] = &[
    "router_id",
    "notification_email_from",
    "smtp_server",
    "smtp_helo_name",
    "smtp_connect_timeout",
    "enable_script_security",
    "script_user",
    "lvs_sync_daemon",
    "lvs_timeouts",
    "lvs_flush",
    "lvs_flush_on_stop",
    "vrrp_mcast_group4",
    "vrrp_mcast_group6",
    "vrrp_garp_master_delay",
    "vrrp_garp_master_repeat",
    "vrrp_garp_master_refresh",
    "vrrp_garp_master_refresh_repeat",
    "vrrp_garp_lower_prio_delay",
    "vrrp_garp_lower_prio_repeat",
    "vrrp_garp_interval",
    "vrrp_gna_interval",
    "vrrp_version",
    "vrrp_strict",
    "vrrp_check_unicast_src",
    "vrrp_skip_check_adv_addr",
    "vrrp_lower_prio_no_advert",
    "vrrp_higher_prio_send_advert",
    "vrrp_down_timer_adverts",
    "dynamic_interfaces",
    "checker_log_all_failures",
    "notify_fifo",
    "vrrp_notify_fifo",
    "lvs_notify_fifo",
    "vrrp_priority",
    "vrrp_rt_priority",
    "vrrp_cpu_affinity",
    "vrrp_rlimit_rttime",
    "vrrp_rlimit_rtime",
    "bfd_priority",
    "bfd_rt_priority",
    "bfd_cpu_affinity",
    "bfd_rlimit_rttime",
    "bfd_rlimit_rtime",
];

/// keepalived's settings for its checker process, which halb reads and keeps as written but
/// does not apply: the checkers share the daemon's runtime with the data plane (see
/// [`Scheduling`] for the VRRP and BFD threads).
const CHECKER_SCHEDULING: &[&str] = &[
    "checker_priority",
    "checker_rt_priority",
    "checker_cpu_affinity",
    "checker_rlimit_rttime",
    "checker_rlimit_rtime",
];

/// Reads a `global_defs` block into `g` (a second block adds to the first, as in keepalived).
pub fn read(node: &Node, ctx: &mut Ctx, g: &mut GlobalDefs) {
    for n in ctx.block(node) {
        let name = n.name();
        if name != "notification_email" && (KEPT.contains(&name) || KNOWN.contains(&name)) {
            ctx.no_block(n);
        }
        match name {
            "router_id" => {
                if let Some(v) = ctx.string(n, 0) {
                    g.router_id = Some(v);
                }
            }
            "notification_email" => {
                for e in ctx.block(n) {
                    g.notification_email
                        .extend(e.words.iter().map(|w| w.text.clone()));
                }
            }
            "notification_email_from" => {
                if let Some(v) = ctx.string(n, 0) {
                    g.notification_email_from = Some(v);
                }
            }
            "smtp_server" => {
                if let Some(host) = ctx.string(n, 0) {
                    let port = if n.arg(1).is_some() {
                        ctx.unsigned(n, 1, 1, 65535).map(|p| p as u16)
                    } else {
                        Some(25)
                    };
                    if let Some(port) = port {
                        g.smtp_server = Some(SmtpServer { host, port });
                    }
                }
            }
            "smtp_helo_name" => {
                if let Some(v) = ctx.string(n, 0) {
                    g.smtp_helo_name = Some(v);
                }
            }
            "smtp_connect_timeout" => {
                if let Some(v) = ctx.timer(n, 0, 1, secs(3600)) {
                    g.smtp_connect_timeout_us = v;
                }
            }
            "enable_script_security" => g.enable_script_security = true,
            "script_user" => {
                if let Some(user) = ctx.string(n, 0) {
                    g.script_user = Some((user, n.arg(1).map(|w| w.text.clone())));
                }
            }
            "lvs_sync_daemon" => {
                if let Some(d) = read_sync_daemon(n, ctx) {
                    g.lvs_sync_daemon = Some(d);
                }
            }
            "lvs_timeouts" => read_lvs_timeouts(n, ctx, &mut g.lvs_timeouts),
            "lvs_flush" => g.lvs_flush = true,
            "lvs_flush_on_stop" => {
                g.lvs_flush_on_stop = Some(n.arg(0).map(|w| w.text.clone()).unwrap_or_default())
            }
            "vrrp_mcast_group4" => {
                if let Some(ip) = ctx.ip(n, 0) {
                    if ip.is_ipv4() && ip.is_multicast() {
                        g.vrrp_mcast_group4 = Some(ip);
                    } else {
                        ctx.diags.warn(
                            n.args()[0].span,
                            format!("vrrp_mcast_group4 '{ip}' is not an IPv4 multicast address"),
                        );
                    }
                }
            }
            "vrrp_mcast_group6" => {
                if let Some(ip) = ctx.ip(n, 0) {
                    if ip.is_ipv6() && ip.is_multicast() {
                        g.vrrp_mcast_group6 = Some(ip);
                    } else {
                        ctx.diags.warn(
                            n.args()[0].span,
                            format!("vrrp_mcast_group6 '{ip}' is not an IPv6 multicast address"),
                        );
                    }
                }
            }
            "vrrp_garp_master_delay" => {
                if let Some(v) = ctx.unsigned(n, 0, 0, 86400) {
                    g.vrrp_garp_master_delay_us = secs(v);
                }
            }
            "vrrp_garp_master_repeat" => {
                if let Some(v) = ctx.unsigned(n, 0, 0, u32::MAX as u64) {
                    g.vrrp_garp_master_repeat = v as u32;
                }
            }
            "vrrp_garp_master_refresh" => {
                if let Some(v) = ctx.unsigned(n, 0, 0, 86400 * 365) {
                    g.vrrp_garp_master_refresh_us = secs(v);
                }
            }
            "vrrp_garp_master_refresh_repeat" => {
                if let Some(v) = ctx.unsigned(n, 0, 0, u32::MAX as u64) {
                    g.vrrp_garp_master_refresh_repeat = v as u32;
                }
            }
            "vrrp_garp_lower_prio_delay" => {
                if let Some(v) = ctx.unsigned(n, 0, 0, 86400) {
                    g.vrrp_garp_lower_prio_delay_us = Some(secs(v));
                }
            }
            "vrrp_garp_lower_prio_repeat" => {
                if let Some(v) = ctx.unsigned(n, 0, 0, u32::MAX as u64) {
                    g.vrrp_garp_lower_prio_repeat = Some(v as u32);
                }
            }
            "vrrp_garp_interval" => {
                if let Some(v) = ctx.timer(n, 0, 0, secs(1)) {
                    g.vrrp_garp_interval_us = v;
                }
            }
            "vrrp_gna_interval" => {
                if let Some(v) = ctx.timer(n, 0, 0, secs(1)) {
                    g.vrrp_gna_interval_us = v;
                }
            }
            "vrrp_version" => {
                if let Some(v) = ctx.unsigned(n, 0, 2, 3) {
                    g.vrrp_version = v as u8;
                }
            }
            "vrrp_strict" => g.vrrp_strict = true,
            "vrrp_check_unicast_src" => g.vrrp_check_unicast_src = true,
            "vrrp_skip_check_adv_addr" => g.vrrp_skip_check_adv_addr = true,
            // keepalived keeps the previous value when the new one is not a boolean.
            "vrrp_lower_prio_no_advert" => {
                if let Some(v) = ctx.flag(n, 0) {
                    g.vrrp_lower_prio_no_advert = v;
                }
            }
            "vrrp_higher_prio_send_advert" => {
                if let Some(v) = ctx.flag(n, 0) {
                    g.vrrp_higher_prio_send_advert = v;
                }
            }
            "vrrp_down_timer_adverts" => {
                if let Some(v) = ctx.unsigned(n, 0, 1, 100) {
                    g.vrrp_down_timer_adverts = v as u32;
                }
            }
            "dynamic_interfaces" => g.dynamic_interfaces = true,
            "checker_log_all_failures" => {
                if let Some(v) = ctx.flag(n, 0) {
                    g.checker_log_all_failures = v;
                }
            }
            "notify_fifo" => g.notify_fifo = ctx.string(n, 0).or(g.notify_fifo.take()),
            "vrrp_notify_fifo" => {
                g.vrrp_notify_fifo = ctx.string(n, 0).or(g.vrrp_notify_fifo.take())
            }
            "lvs_notify_fifo" => g.lvs_notify_fifo = ctx.string(n, 0).or(g.lvs_notify_fifo.take()),
            "vrrp_rt_priority" | "vrrp_priority" | "vrrp_rlimit_rttime" | "vrrp_rlimit_rtime"
            | "vrrp_cpu_affinity" => read_scheduling(n, ctx, "vrrp", &mut g.vrrp_scheduling),
            "bfd_rt_priority" | "bfd_priority" | "bfd_rlimit_rttime" | "bfd_rlimit_rtime"
            | "bfd_cpu_affinity" => read_scheduling(n, ctx, "bfd", &mut g.bfd_scheduling),
            name if CHECKER_SCHEDULING.contains(&name) => {
                ctx.diags.note(
                    n.span(),
                    format!(
                        "{name} is not applied: halb runs the checkers on the daemon's shared \
                         runtime, not in a process of their own (vrrp_* and bfd_* are applied \
                         to their threads)"
                    ),
                );
                g.other.push(Setting::from_node(n));
            }
            name if KEPT.contains(&name) => g.other.push(Setting::from_node(n)),
            _ => ctx.unknown(n),
        }
    }
}

/// Reads `PART_rt_priority`, `PART_priority`, `PART_rlimit_rttime` (`PART_rlimit_rtime`) or
/// `PART_cpu_affinity` into `s` with keepalived 2.2.7's checks (global_parser.c).
fn read_scheduling(n: &Node, ctx: &mut Ctx, part: &str, s: &mut Scheduling) {
    let setting = n.name()[part.len() + 1..].to_string();
    match setting.as_str() {
        // keepalived clamps to sched_get_priority_min/max(SCHED_RR), 1 and 99 on Linux.
        "rt_priority" => {
            if let Some(v) = ctx.int(n, 0, i64::from(i32::MIN), i64::from(i32::MAX)) {
                let clamped = v.clamp(1, 99);
                if clamped != v {
                    let bound = if v < 1 {
                        "less than minimum"
                    } else {
                        "greater than maximum"
                    };
                    ctx.diags.warn(
                        n.args()[0].span,
                        format!(
                            "{part} process real-time priority {v} {bound} {clamped} - setting \
                             to {clamped}"
                        ),
                    );
                }
                s.rt_priority = Some(clamped as u8);
            }
        }
        // keepalived leaves the nice value at 0 for a bad one.
        "priority" => s.nice = ctx.int(n, 0, -20, 19).map(|v| v as i8),
        "rlimit_rttime" | "rlimit_rtime" => {
            if let Some(v) = ctx.unsigned(n, 0, 1, u64::from(u32::MAX)) {
                s.rlimit_rttime_us = Some(v);
            }
        }
        "cpu_affinity" => {
            let mut cpus = Vec::new();
            for i in 0..n.args().len().max(1) {
                // CPU_SETSIZE: the kernel says at start whether this host has the CPU.
                match ctx.unsigned(n, i, 0, 1023) {
                    Some(cpu) => cpus.push(cpu as u16),
                    // keepalived drops the whole set at the first bad CPU.
                    None => return,
                }
            }
            s.cpu_affinity = cpus;
        }
        _ => {}
    }
}

fn read_sync_daemon(n: &Node, ctx: &mut Ctx) -> Option<LvsSyncDaemon> {
    let interface = ctx.string(n, 0)?;
    let mut d = LvsSyncDaemon {
        interface,
        instance: None,
        sync_id: None,
        maxlen: None,
        port: None,
        ttl: None,
        group: None,
    };
    let mut i = 1;
    // The second word is the VRRP instance unless it is one of the options.
    const OPTIONS: &[&str] = &["id", "maxlen", "port", "ttl", "group"];
    if let Some(w) = n.arg(1) {
        if !OPTIONS.contains(&w.text.as_str()) {
            d.instance = Some(w.text.clone());
            i = 2;
        }
    }
    while let Some(opt) = n.arg(i) {
        let value_index = i + 1;
        match opt.text.as_str() {
            "id" => d.sync_id = ctx.unsigned(n, value_index, 0, 255).map(|v| v as u8),
            "maxlen" => {
                d.maxlen = ctx
                    .unsigned(n, value_index, 1, 65535 - 20 - 8)
                    .map(|v| v as u16)
            }
            "port" => d.port = ctx.unsigned(n, value_index, 1, 65535).map(|v| v as u16),
            "ttl" => d.ttl = ctx.unsigned(n, value_index, 1, 255).map(|v| v as u8),
            "group" => d.group = ctx.ip(n, value_index),
            other => {
                ctx.diags.warn(
                    opt.span,
                    format!("lvs_sync_daemon: unknown option '{other}'"),
                );
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    Some(d)
}

fn read_lvs_timeouts(n: &Node, ctx: &mut Ctx, t: &mut LvsTimeouts) {
    let mut i = 0;
    while let Some(w) = n.arg(i) {
        let slot = match w.text.as_str() {
            "tcp" => &mut t.tcp,
            "tcpfin" => &mut t.tcpfin,
            "udp" => &mut t.udp,
            other => {
                ctx.diags
                    .warn(w.span, format!("lvs_timeouts: unknown protocol '{other}'"));
                i += 1;
                continue;
            }
        };
        if let Some(v) = ctx.unsigned(n, i + 1, 1, 86400 * 31) {
            *slot = Some(v as u32);
        }
        i += 2;
    }
}

/// Writes `global_defs` (only what differs from the defaults).
pub fn write(g: &GlobalDefs, w: &mut ConfWriter) {
    let d = GlobalDefs::default();
    if *g == d {
        return;
    }
    w.open("global_defs");
    if let Some(v) = &g.router_id {
        w.kv("router_id", v);
    }
    if !g.notification_email.is_empty() {
        w.open("notification_email");
        for e in &g.notification_email {
            w.line(&quote(e));
        }
        w.close();
    }
    if let Some(v) = &g.notification_email_from {
        w.kv("notification_email_from", v);
    }
    if let Some(s) = &g.smtp_server {
        w.line(&format!("smtp_server {} {}", quote(&s.host), s.port));
    }
    if let Some(v) = &g.smtp_helo_name {
        w.kv("smtp_helo_name", v);
    }
    if g.smtp_connect_timeout_us != d.smtp_connect_timeout_us {
        w.kv(
            "smtp_connect_timeout",
            crate::read::format_us(g.smtp_connect_timeout_us),
        );
    }
    w.flag("enable_script_security", g.enable_script_security);
    if let Some((user, group)) = &g.script_user {
        match group {
            Some(gr) => w.line(&format!("script_user {} {}", quote(user), quote(gr))),
            None => w.kv("script_user", user),
        }
    }
    if let Some(s) = &g.lvs_sync_daemon {
        let mut words = vec!["lvs_sync_daemon".to_string(), quote(&s.interface)];
        if let Some(i) = &s.instance {
            words.push(quote(i));
        }
        if let Some(v) = s.sync_id {
            words.push(format!("id {v}"));
        }
        if let Some(v) = s.maxlen {
            words.push(format!("maxlen {v}"));
        }
        if let Some(v) = s.port {
            words.push(format!("port {v}"));
        }
        if let Some(v) = s.ttl {
            words.push(format!("ttl {v}"));
        }
        if let Some(v) = s.group {
            words.push(format!("group {v}"));
        }
        w.line(&words.join(" "));
    }
    let t = &g.lvs_timeouts;
    if *t != LvsTimeouts::default() {
        let mut words = vec!["lvs_timeouts".to_string()];
        for (name, v) in [("tcp", t.tcp), ("tcpfin", t.tcpfin), ("udp", t.udp)] {
            if let Some(v) = v {
                words.push(format!("{name} {v}"));
            }
        }
        w.line(&words.join(" "));
    }
    w.flag("lvs_flush", g.lvs_flush);
    if let Some(v) = &g.lvs_flush_on_stop {
        w.line(format!("lvs_flush_on_stop {}", quote(v)).trim_end());
    }
    if let Some(v) = g.vrrp_mcast_group4 {
        w.kv("vrrp_mcast_group4", v);
    }
    if let Some(v) = g.vrrp_mcast_group6 {
        w.kv("vrrp_mcast_group6", v);
    }
    let us_to_s = |us: u64| us / crate::read::US_PER_SEC;
    if g.vrrp_garp_master_delay_us != d.vrrp_garp_master_delay_us {
        w.kv(
            "vrrp_garp_master_delay",
            us_to_s(g.vrrp_garp_master_delay_us),
        );
    }
    if g.vrrp_garp_master_repeat != d.vrrp_garp_master_repeat {
        w.kv("vrrp_garp_master_repeat", g.vrrp_garp_master_repeat);
    }
    if g.vrrp_garp_master_refresh_us != d.vrrp_garp_master_refresh_us {
        w.kv(
            "vrrp_garp_master_refresh",
            us_to_s(g.vrrp_garp_master_refresh_us),
        );
    }
    if g.vrrp_garp_master_refresh_repeat != d.vrrp_garp_master_refresh_repeat {
        w.kv(
            "vrrp_garp_master_refresh_repeat",
            g.vrrp_garp_master_refresh_repeat,
        );
    }
    if let Some(v) = g.vrrp_garp_lower_prio_delay_us {
        w.kv("vrrp_garp_lower_prio_delay", us_to_s(v));
    }
    if let Some(v) = g.vrrp_garp_lower_prio_repeat {
        w.kv("vrrp_garp_lower_prio_repeat", v);
    }
    if g.vrrp_garp_interval_us != 0 {
        w.kv(
            "vrrp_garp_interval",
            crate::read::format_us(g.vrrp_garp_interval_us),
        );
    }
    if g.vrrp_gna_interval_us != 0 {
        w.kv(
            "vrrp_gna_interval",
            crate::read::format_us(g.vrrp_gna_interval_us),
        );
    }
    if g.vrrp_version != d.vrrp_version {
        w.kv("vrrp_version", g.vrrp_version);
    }
    w.flag("vrrp_strict", g.vrrp_strict);
    w.flag("vrrp_check_unicast_src", g.vrrp_check_unicast_src);
    w.flag("vrrp_skip_check_adv_addr", g.vrrp_skip_check_adv_addr);
    w.flag("vrrp_lower_prio_no_advert", g.vrrp_lower_prio_no_advert);
    w.flag(
        "vrrp_higher_prio_send_advert",
        g.vrrp_higher_prio_send_advert,
    );
    if g.vrrp_down_timer_adverts != d.vrrp_down_timer_adverts {
        w.kv("vrrp_down_timer_adverts", g.vrrp_down_timer_adverts);
    }
    w.flag("dynamic_interfaces", g.dynamic_interfaces);
    if g.checker_log_all_failures {
        w.line("checker_log_all_failures true");
    }
    for (k, v) in [
        ("notify_fifo", &g.notify_fifo),
        ("vrrp_notify_fifo", &g.vrrp_notify_fifo),
        ("lvs_notify_fifo", &g.lvs_notify_fifo),
    ] {
        if let Some(v) = v {
            w.kv(k, v);
        }
    }
    for (part, s) in [("vrrp", &g.vrrp_scheduling), ("bfd", &g.bfd_scheduling)] {
        write_scheduling(part, s, w);
    }
    for s in &g.other {
        s.write(w);
    }
    w.close();
}

fn write_scheduling(part: &str, s: &Scheduling, w: &mut ConfWriter) {
    if let Some(v) = s.rt_priority {
        w.kv(&format!("{part}_rt_priority"), v);
    }
    if let Some(v) = s.nice {
        w.kv(&format!("{part}_priority"), v);
    }
    if let Some(v) = s.rlimit_rttime_us {
        w.kv(&format!("{part}_rlimit_rttime"), v);
    }
    if !s.cpu_affinity.is_empty() {
        let cpus: Vec<String> = s.cpu_affinity.iter().map(u16::to_string).collect();
        w.line(&format!("{part}_cpu_affinity {}", cpus.join(" ")));
    }
}
