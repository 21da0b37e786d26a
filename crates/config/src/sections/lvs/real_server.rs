//! `real_server IP [PORT] { … }`.

use super::addr::{parse_server_ip, parse_server_port};
use super::forwarding;
use super::model::{Forwarding, IpFamily, RealServer};
use crate::read::Ctx;
use crate::sections::checker::common::{
    self, read_nb_get_retry, RealServerRef, CONNECT_TIMEOUT_MAX, TIMER_MAX,
};
use crate::sections::checker::model::CheckerKind;
use crate::sections::script::read_notify_once;
use crate::setting::Setting;
use crate::source::Span;
use crate::tree::Node;

/// A real server being read.
pub struct RsDraft {
    pub rs: RealServer,
    /// The method so far: inherited from the virtual server when the real server was read, or
    /// its own `lvs_method`.
    pub forwarding: Option<Forwarding>,
    /// Its own `weight`, if set (else the virtual server's).
    pub weight: Option<u32>,
    /// The `real_server` keyword.
    pub span: Span,
}

/// Reads a real server. `vs_forwarding` is the virtual server's method so far (the real server
/// starts with it); `af` is the virtual server's address family so far, which the first real
/// server that is not tunnelled sets, and a real server of another family is skipped.
pub fn read(
    node: &Node,
    ctx: &mut Ctx,
    vs_forwarding: Option<Forwarding>,
    af: &mut Option<IpFamily>,
) -> Option<RsDraft> {
    let w = ctx.arg(node, 0)?;
    let port_word = node.arg(1).map(|p| p.text.as_str());
    let (Some(ip), Some(port)) = (parse_server_ip(&w.text), parse_server_port(port_word)) else {
        ctx.diags.warn(
            node.line_span(),
            format!(
                "Invalid real server ip address/port {}/{} - skipping",
                w.text,
                port_word.unwrap_or("(null)")
            ),
        );
        return None;
    };
    let mut d = RsDraft {
        rs: RealServer::new(ip, port),
        forwarding: vs_forwarding,
        weight: None,
        span: node.span(),
    };
    for n in ctx.block(node) {
        if let Some(kind) = CheckerKind::from_keyword(n.name()) {
            let checkers = common::read(kind, n, ctx, RealServerRef { ip });
            d.rs.checkers.extend(checkers);
            continue;
        }
        ctx.no_block(n);
        read_keyword(n, ctx, &mut d);
    }
    // keepalived's rs_end_handler(): the address families must match, unless tunnelled.
    if !matches!(d.forwarding, Some(Forwarding::Tun(_))) {
        let family = IpFamily::of(&ip);
        match af {
            None => *af = Some(family),
            Some(f) if *f != family => {
                ctx.diags.warn(
                    super::block_end(node),
                    format!(
                        "Address family of virtual server and real server {ip} don't match - \
                         skipping real server"
                    ),
                );
                return None;
            }
            Some(_) => {}
        }
    }
    Some(d)
}

/// A timing keyword of a virtual or real server, read with keepalived's ranges.
pub enum ServerTiming {
    Retry(u32),
    DelayBeforeRetry(u64),
    Warmup(u64),
    ConnectTimeout(u64),
    DelayLoop(u64),
}

/// Reads `n` if it is `retry` (or `nb_get_retry`), `delay_before_retry`, `warmup`,
/// `connect_timeout` or `delay_loop`: `None` when it is none of them, `Some(None)` when its value
/// is bad (with a warning).
pub fn read_server_timing(n: &Node, ctx: &mut Ctx) -> Option<Option<ServerTiming>> {
    Some(match n.name() {
        "retry" => ctx
            .unsigned(n, 0, 1, u64::from(u32::MAX))
            .map(|v| ServerTiming::Retry(v as u32)),
        "nb_get_retry" => read_nb_get_retry(n, ctx, 1).map(ServerTiming::Retry),
        "delay_before_retry" => ctx
            .timer(n, 0, 0, TIMER_MAX)
            .map(ServerTiming::DelayBeforeRetry),
        "warmup" => ctx.timer(n, 0, 0, TIMER_MAX).map(ServerTiming::Warmup),
        "connect_timeout" => ctx
            .timer(n, 0, 1, CONNECT_TIMEOUT_MAX)
            .map(ServerTiming::ConnectTimeout),
        "delay_loop" => ctx.timer(n, 0, 1, TIMER_MAX).map(ServerTiming::DelayLoop),
        _ => return None,
    })
}

fn read_keyword(n: &Node, ctx: &mut Ctx, d: &mut RsDraft) {
    let rs = &mut d.rs;
    if let Some(t) = read_server_timing(n, ctx) {
        match t {
            Some(ServerTiming::Retry(v)) => rs.retry = Some(v),
            Some(ServerTiming::DelayBeforeRetry(v)) => rs.delay_before_retry_us = Some(v),
            Some(ServerTiming::Warmup(v)) => rs.warmup_us = Some(v),
            Some(ServerTiming::ConnectTimeout(v)) => rs.connect_timeout_us = Some(v),
            Some(ServerTiming::DelayLoop(v)) => rs.delay_loop_us = Some(v),
            None => {}
        }
        return;
    }
    match n.name() {
        "weight" => {
            if let Some(v) = ctx.unsigned(n, 0, 0, u64::from(i32::MAX as u32)) {
                d.weight = Some(v as u32);
            }
        }
        "lvs_method" => d.forwarding = forwarding::read(n, ctx, d.forwarding, "real"),
        "uthreshold" => {
            if let Some(v) = ctx.unsigned(n, 0, 0, u64::from(u32::MAX)) {
                rs.uthreshold = v as u32;
            }
        }
        "lthreshold" => {
            if let Some(v) = ctx.unsigned(n, 0, 0, u64::from(u32::MAX)) {
                rs.lthreshold = v as u32;
            }
        }
        "inhibit_on_failure" => {
            if let Some(v) = ctx.flag(n, 0) {
                rs.inhibit_on_failure = Some(v);
            }
        }
        "alpha" => {
            if let Some(v) = ctx.flag(n, 0) {
                rs.alpha = Some(v);
            }
        }
        "smtp_alert" => {
            if let Some(v) = ctx.flag(n, 0) {
                rs.smtp_alert = Some(v);
            }
        }
        "notify_up" | "notify_down" => {
            let slot = if n.name() == "notify_up" {
                &mut rs.notify_up
            } else {
                &mut rs.notify_down
            };
            read_notify_once(slot, n, ctx);
        }
        "virtualhost" => {
            if let Some(v) = ctx.string(n, 0) {
                rs.virtualhost = Some(v);
            }
        }
        "snmp_name" => rs.other.push(Setting::from_node(n)),
        _ => ctx.unknown(n),
    }
}
