//! Writing virtual servers back out as keepalived.conf.
//!
//! Only what differs from keepalived's defaults is written, except `lb_algo`, `lb_kind` and
//! `protocol`, whose absence keepalived warns about.

use super::addr::addr_words;
use super::forwarding;
use super::model::{
    Failback, PersistenceGranularity, RealServer, Scheduler, VirtualServer, VirtualServerKey,
    DEFAULT_CONNECT_TIMEOUT_US, DEFAULT_DELAY_LOOP_US,
};
use crate::read::format_us;
use crate::sections::checker::common;
use crate::sections::script::notify_line;
use crate::write::{quote, ConfWriter};

pub fn write_virtual_server(vs: &VirtualServer, w: &mut ConfWriter) {
    let head = match &vs.key {
        VirtualServerKey::Addr { ip, port } => addr_words(ip, *port),
        VirtualServerKey::Fwmark(m) => format!("fwmark {m}"),
        VirtualServerKey::Group(g) => format!("group {}", quote(g)),
    };
    w.open(&format!("virtual_server {head}"));
    if let (Some(f), false) = (
        vs.ip_family,
        matches!(vs.key, VirtualServerKey::Addr { .. }),
    ) {
        w.kv("ip_family", f.as_str());
    }
    if vs.delay_loop_us != DEFAULT_DELAY_LOOP_US {
        w.kv("delay_loop", format_us(vs.delay_loop_us));
    }
    if vs.connect_timeout_us != DEFAULT_CONNECT_TIMEOUT_US {
        w.kv("connect_timeout", format_us(vs.connect_timeout_us));
    }
    write_timings(vs.retry, vs.delay_before_retry_us, vs.warmup_us, w);
    w.kv("lb_algo", vs.sched.as_str());
    write_sched_flags(vs, w);
    w.line(&format!("lb_kind {}", forwarding::words(&vs.forwarding)));
    if let Some(v) = &vs.persistence_engine {
        w.line(&format!("persistence_engine {}", quote(v)));
    }
    if let Some(v) = vs.persistence_timeout {
        w.kv("persistence_timeout", v);
    }
    match vs.persistence_granularity {
        Some(PersistenceGranularity::Netmask(m)) => w.kv("persistence_granularity", m),
        Some(PersistenceGranularity::Prefix(p)) => w.kv("persistence_granularity", p),
        None => {}
    }
    if let Some(p) = vs.protocol {
        w.kv("protocol", p.as_str());
    }
    w.flag("inhibit_on_failure", vs.inhibit_on_failure);
    w.flag("alpha", vs.alpha);
    w.flag("omega", vs.omega);
    w.flag("ha_suspend", vs.ha_suspend);
    w.flag("mysql_writer", vs.mysql_writer);
    if let Some(f) = vs.connection_fencing {
        w.kv("connection_fencing", f.as_str());
    }
    if vs.failback != Failback::Automatic {
        w.kv("failback", vs.failback.as_str());
    }
    if let Some(l) = vs.failback_limit {
        w.line(&format!("failback_limit {} {}", l.switches, l.within_secs));
    }
    if vs.quorum != 1 {
        w.kv("quorum", vs.quorum);
    }
    if vs.hysteresis != 0 {
        w.kv("hysteresis", vs.hysteresis);
    }
    for (keyword, script) in [
        ("quorum_up", &vs.quorum_up),
        ("quorum_down", &vs.quorum_down),
    ] {
        if let Some(s) = script {
            w.line(&notify_line(keyword, s));
        }
    }
    if let Some(v) = &vs.virtualhost {
        w.line(&format!("virtualhost {}", quote(v)));
    }
    write_bool("smtp_alert", vs.smtp_alert, w);
    if vs.weight != 1 {
        w.kv("weight", vs.weight);
    }
    for s in &vs.other {
        s.write(w);
    }
    if let Some(s) = &vs.sorry_server {
        w.line(&format!("sorry_server {}", addr_words(&s.ip, s.port)));
        w.flag("sorry_server_inhibit", s.inhibit);
        if let Some(f) = &s.lvs_method {
            w.line(&format!("sorry_server_lvs_method {}", forwarding::words(f)));
        }
    }
    for rs in &vs.real_servers {
        write_real_server(rs, vs, w);
    }
    w.close();
}

/// `ops`, then the scheduler flags by the names that fit the scheduler.
fn write_sched_flags(vs: &VirtualServer, w: &mut ConfWriter) {
    let f = vs.sched_flags;
    w.flag("ops", f.ops);
    let prefix = match vs.sched {
        Scheduler::Sh => Some("sh"),
        Scheduler::Mh => Some("mh"),
        _ => None,
    };
    match prefix {
        Some(p) => {
            if f.flag_1 {
                w.line(&format!("{p}-fallback"));
            }
            if f.flag_2 {
                w.line(&format!("{p}-port"));
            }
        }
        None => {
            w.flag("flag-1", f.flag_1);
            w.flag("flag-2", f.flag_2);
        }
    }
    w.flag("flag-3", f.flag_3);
}

fn write_real_server(rs: &RealServer, vs: &VirtualServer, w: &mut ConfWriter) {
    w.open(&format!("real_server {}", addr_words(&rs.ip, rs.port)));
    if rs.weight != vs.weight {
        w.kv("weight", rs.weight);
    }
    if let Some(f) = &rs.lvs_method {
        w.line(&format!("lvs_method {}", forwarding::words(f)));
    }
    if rs.uthreshold != 0 {
        w.kv("uthreshold", rs.uthreshold);
    }
    if rs.lthreshold != 0 {
        w.kv("lthreshold", rs.lthreshold);
    }
    write_bool("inhibit_on_failure", rs.inhibit_on_failure, w);
    for (keyword, script) in [
        ("notify_up", &rs.notify_up),
        ("notify_down", &rs.notify_down),
    ] {
        if let Some(s) = script {
            w.line(&notify_line(keyword, s));
        }
    }
    write_bool("alpha", rs.alpha, w);
    if let Some(v) = rs.connect_timeout_us {
        w.kv("connect_timeout", format_us(v));
    }
    if let Some(v) = rs.delay_loop_us {
        w.kv("delay_loop", format_us(v));
    }
    write_timings(rs.retry, rs.delay_before_retry_us, rs.warmup_us, w);
    write_bool("smtp_alert", rs.smtp_alert, w);
    if let Some(v) = &rs.virtualhost {
        w.line(&format!("virtualhost {}", quote(v)));
    }
    for s in &rs.other {
        s.write(w);
    }
    for c in &rs.checkers {
        common::write(c, w);
    }
    w.close();
}

fn write_timings(
    retry: Option<u32>,
    delay_before_retry_us: Option<u64>,
    warmup_us: Option<u64>,
    w: &mut ConfWriter,
) {
    if let Some(v) = retry {
        w.kv("retry", v);
    }
    if let Some(v) = delay_before_retry_us {
        w.kv("delay_before_retry", format_us(v));
    }
    if let Some(v) = warmup_us {
        w.kv("warmup", format_us(v));
    }
}

/// `keyword` for true, `keyword false` for false, nothing for unset.
fn write_bool(keyword: &str, v: Option<bool>, w: &mut ConfWriter) {
    match v {
        Some(true) => w.line(keyword),
        Some(false) => w.line(&format!("{keyword} false")),
        None => {}
    }
}
