//! `keepalived.data` (SIGUSR1): vrrp_data.c `dump_data_vrrp` — the global definitions, the
//! VRRP instances and the sync groups. keepalived's lines for what halb does not have (SNMP,
//! DBus, process priorities, sockets' descriptors, the interface table, nftables) are left out
//! rather than filled with made-up values.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use halb_vrrp::packet::Auth;
use halb_vrrp::State;

use super::{DumpInput, InstanceDump, SyncGroupDump};

/// The whole `keepalived.data`.
pub fn render_data(input: &DumpInput) -> String {
    let mut out = String::new();
    global(input, &mut out);
    if !input.instances.is_empty() {
        title(&mut out, "VRRP Topology");
        for instance in &input.instances {
            vrrp_instance(instance, &mut out);
        }
    }
    if !input.sync_groups.is_empty() {
        title(&mut out, "VRRP Sync groups");
        for group in &input.sync_groups {
            sync_group(group, &mut out);
        }
    }
    out
}

fn yes(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

fn whole_secs(d: Duration) -> u64 {
    d.as_secs()
}

/// global_data.c `dump_global_data`, the lines halb has.
fn global(input: &DumpInput, out: &mut String) {
    let g = &input.global;
    let us = Duration::from_micros;
    let lower_delay = g
        .vrrp_garp_lower_prio_delay_us
        .unwrap_or(g.vrrp_garp_master_delay_us);
    let lower_repeat = g
        .vrrp_garp_lower_prio_repeat
        .unwrap_or(g.vrrp_garp_master_repeat);
    title(out, "Global definitions");
    let mut w = |line: String| {
        out.push(' ');
        out.push_str(&line);
        out.push('\n');
    };
    w(format!("Router ID = {}", input.router_id));
    w(format!(
        "Checkers log all failures = {}",
        yes(g.checker_log_all_failures)
    ));
    w(format!(
        "Dynamic interfaces = {}",
        yes(g.dynamic_interfaces)
    ));
    w(format!("LVS flush = {}", yes(g.lvs_flush)));
    w(format!(
        "LVS flush on stop = {}",
        g.lvs_flush_on_stop.as_deref().unwrap_or("disabled")
    ));
    w(format!(
        "VRRP IPv4 mcast group = {}",
        g.vrrp_mcast_group4
            .map_or("224.0.0.18".to_string(), |a| a.to_string())
    ));
    w(format!(
        "VRRP IPv6 mcast group = {}",
        g.vrrp_mcast_group6
            .map_or("ff02::12".to_string(), |a| a.to_string())
    ));
    w(format!(
        "Gratuitous ARP delay = {}",
        whole_secs(us(g.vrrp_garp_master_delay_us))
    ));
    w(format!(
        "Gratuitous ARP repeat = {}",
        g.vrrp_garp_master_repeat
    ));
    w(format!(
        "Gratuitous ARP refresh timer = {}",
        whole_secs(us(g.vrrp_garp_master_refresh_us))
    ));
    w(format!(
        "Gratuitous ARP refresh repeat = {}",
        g.vrrp_garp_master_refresh_repeat
    ));
    w(format!(
        "Gratuitous ARP lower priority delay = {}",
        whole_secs(us(lower_delay))
    ));
    w(format!(
        "Gratuitous ARP lower priority repeat = {lower_repeat}"
    ));
    w(format!(
        "Num adverts before down = {}",
        g.vrrp_down_timer_adverts
    ));
    w(format!(
        "Send advert after receive lower priority advert = {}",
        yes(!g.vrrp_lower_prio_no_advert)
    ));
    w(format!(
        "Send advert after receive higher priority advert = {}",
        yes(g.vrrp_higher_prio_send_advert)
    ));
    w(format!(
        "Gratuitous ARP interval = {:.6}",
        us(g.vrrp_garp_interval_us).as_secs_f64()
    ));
    w(format!(
        "Gratuitous NA interval = {:.6}",
        us(g.vrrp_gna_interval_us).as_secs_f64()
    ));
    w(format!(
        "VRRP default protocol version = {}",
        g.vrrp_version
    ));
    w(format!(
        "VRRP check unicast_src = {}",
        yes(g.vrrp_check_unicast_src)
    ));
    w(format!(
        "VRRP skip check advert addresses = {}",
        yes(g.vrrp_skip_check_adv_addr)
    ));
    w(format!("VRRP strict mode = {}", yes(g.vrrp_strict)));
    w(format!(
        "Script security {}",
        if g.enable_script_security {
            "enabled"
        } else {
            "disabled"
        }
    ));
}

/// A section title; keepalived writes it without the leading space of the lines under it.
fn title(out: &mut String, name: &str) {
    let _ = writeln!(out, "------< {name} >------");
}

/// keepalived's `ctime_us_r`: `ctime`'s layout with microseconds after the seconds, in local
/// time.
fn ctime_us(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as libc::time_t;
    // SAFETY: `tm` is plain old data, for which all zero bytes are a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: localtime_r reads `secs` and writes only into `tm`, both live for the call.
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    if !ok {
        return "invalid time".into();
    }
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {:2} {:02}:{:02}:{:02}.{:06} {}",
        DAYS[tm.tm_wday.rem_euclid(7) as usize],
        MONTHS[tm.tm_mon.rem_euclid(12) as usize],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        since.subsec_micros(),
        tm.tm_year + 1900
    )
}

fn timestamp(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!(
        "{}.{:06} ({})",
        since.as_secs(),
        since.subsec_micros(),
        ctime_us(t)
    )
}

/// vrrp_data.c `dump_vrrp`, the lines halb has.
fn vrrp_instance(i: &InstanceDump, out: &mut String) {
    let mut w = |indent: usize, line: String| {
        let _ = writeln!(out, "{:indent$}{line}", "");
    };
    w(1, format!("VRRP Instance = {}", i.name));
    w(3, format!("VRRP Version = {}", i.version));
    if let Some(group) = &i.sync_group {
        w(3, format!("Sync group = {group}"));
    }
    if i.source_address.is_ipv6() {
        w(3, "Using Native IPv6".into());
    }
    w(3, format!("State = {}", i.state));
    if i.state == State::Backup {
        if let Some((address, priority)) = i.master {
            w(3, format!("Master router = {address}"));
            w(3, format!("Master priority = {priority}"));
        }
        if i.version == 3 {
            w(
                3,
                format!(
                    "Master advert int = {:.2} sec",
                    i.master_adver_int.as_secs_f64()
                ),
            );
        }
    }
    if i.unicast_peers.is_empty() {
        w(3, "Flags: none".into());
    } else {
        w(3, "Flags:".into());
        w(5, "Using unicast".into());
    }
    w(3, format!("Wantstate = {}", i.wantstate));
    w(
        3,
        format!("Last transition = {}", timestamp(i.last_transition)),
    );
    match i.read_timeout {
        Some(at) => w(3, format!("Read timeout = {}", timestamp(at))),
        None => w(3, "Read timeout = DISABLED".into()),
    }
    w(
        3,
        format!(
            "Master down timer = {} usecs",
            i.master_down_timer.as_micros()
        ),
    );
    w(3, format!("Interface = {}", i.interface));
    w(3, format!("Using src_ip = {}", i.source_address));
    if let Some(group) = i.multicast_group {
        w(3, format!("Multicast address {group}"));
    }
    let garp = &i.garp;
    w(
        3,
        format!("Gratuitous ARP delay = {}", garp.master_delay.as_secs()),
    );
    w(3, format!("Gratuitous ARP repeat = {}", garp.master_repeat));
    w(
        3,
        format!(
            "Gratuitous ARP refresh = {}",
            garp.master_refresh.unwrap_or_default().as_secs()
        ),
    );
    w(
        3,
        format!(
            "Gratuitous ARP refresh repeat = {}",
            garp.master_refresh_repeat
        ),
    );
    w(
        3,
        format!(
            "Gratuitous ARP lower priority delay = {}",
            garp.lower_prio_delay.as_secs()
        ),
    );
    w(
        3,
        format!(
            "Gratuitous ARP lower priority repeat = {}",
            garp.lower_prio_repeat
        ),
    );
    w(3, format!("Down timer adverts = {}", i.down_timer_adverts));
    w(
        3,
        format!(
            "Send advert after receive lower priority advert = {}",
            yes(!i.lower_prio_no_advert)
        ),
    );
    w(
        3,
        format!(
            "Send advert after receive higher priority advert = {}",
            yes(i.higher_prio_send_advert)
        ),
    );
    w(3, format!("Virtual Router ID = {}", i.vrid));
    w(3, format!("Priority = {}", i.priority));
    w(3, format!("Effective priority = {}", i.effective_priority));
    // keepalived's total priority is the effective one before it is clamped to 1..=254.
    w(3, format!("Total priority = {}", i.effective_priority));
    if i.version == 2 {
        w(
            3,
            format!("Advert interval = {} sec", i.advert_interval.as_secs()),
        );
    } else {
        w(
            3,
            format!(
                "Advert interval = {} milli-sec",
                i.advert_interval.as_millis()
            ),
        );
        if i.state == State::Backup {
            w(
                3,
                format!(
                    "Master advert interval = {} milli-sec",
                    i.master_adver_int.as_millis()
                ),
            );
        }
    }
    w(
        3,
        format!(
            "Preempt = {}",
            if i.preempt { "enabled" } else { "disabled" }
        ),
    );
    if !i.preempt_delay.is_zero() {
        w(
            3,
            format!("Preempt delay = {} secs", i.preempt_delay.as_secs_f64()),
        );
    }
    match &i.auth {
        Auth::Pass(data) => {
            w(3, "Authentication type = SIMPLE_PASSWORD".into());
            let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
            w(
                3,
                format!("Password = {}", String::from_utf8_lossy(&data[..end])),
            );
        }
        Auth::Ah => w(3, "Authentication type = IPSEC_AH".into()),
        Auth::None if i.version == 2 => w(3, "Authentication type = none".into()),
        Auth::None => {}
    }
    if !i.vips.is_empty() {
        w(3, format!("Virtual IP ({}):", i.vips.len()));
        for vip in &i.vips {
            w(5, vip.clone());
        }
    }
    if !i.excluded_vips.is_empty() {
        w(3, "Virtual IP Excluded :".into());
        for vip in &i.excluded_vips {
            w(5, vip.clone());
        }
    }
    if !i.unicast_peers.is_empty() {
        w(
            3,
            format!(
                "Check unicast src : {}",
                if i.check_unicast_source { "yes" } else { "no" }
            ),
        );
        w(3, "Unicast Peer :".into());
        for peer in &i.unicast_peers {
            w(5, peer.to_string());
        }
    }
    w(3, "Using smtp notification = no".into());
}

/// vrrp_data.c `dump_sync_group`.
fn sync_group(g: &SyncGroupDump, out: &mut String) {
    let _ = writeln!(out, " VRRP Sync Group = {}, {}", g.name, g.state);
    let _ = writeln!(
        out,
        "   Num member fault {}, num member init {}",
        g.members_fault, g.members_init
    );
    if !g.members.is_empty() {
        out.push_str("   VRRP member instances :\n");
        for member in &g.members {
            let _ = writeln!(out, "     {member}");
        }
    }
    out.push_str("   Using smtp notification = no\n");
}
