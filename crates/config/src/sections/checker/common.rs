//! The keywords all checkers share (keepalived's `install_checker_common_keywords()`), and the
//! dispatch from a checker keyword to its family's reader and writer.

use super::model::{Checker, CheckerCommon, CheckerKind, PingCheck, TcpCheck};
use super::{http, misc, mysql, net, track};
use crate::read::{format_us, Ctx};
use crate::source::Span;
use crate::tree::Node;
use crate::write::{quote, ConfWriter};
use std::net::IpAddr;

/// keepalived's longest interface name (IFNAMSIZ - 1).
const MAX_INTERFACE_NAME: usize = 15;

/// What a checker reader needs to know about its real server.
#[derive(Debug, Clone, Copy)]
pub struct RealServerRef {
    pub ip: IpAddr,
}

/// Reads one checker block; a checker keepalived would drop gives an empty list, and SMTP_CHECK
/// with `host` blocks gives one checker per host.
pub fn read(kind: CheckerKind, node: &Node, ctx: &mut Ctx, rs: RealServerRef) -> Vec<Checker> {
    let checkers = match kind {
        CheckerKind::Tcp | CheckerKind::Ping | CheckerKind::DrPath => {
            let mut common = CheckerCommon::default();
            for n in ctx.block(node) {
                if !read_keyword(n, ctx, &mut common, kind) {
                    ctx.unknown(n);
                }
            }
            vec![match kind {
                CheckerKind::Tcp => Checker::Tcp(TcpCheck { common }),
                CheckerKind::DrPath => Checker::DrPath(TcpCheck { common }),
                _ => Checker::Ping(PingCheck { common }),
            }]
        }
        CheckerKind::HttpGet | CheckerKind::SslGet => {
            http::read(kind, node, ctx).into_iter().collect()
        }
        CheckerKind::Smtp => net::read_smtp(node, ctx),
        CheckerKind::Dns => vec![net::read_dns(node, ctx)],
        CheckerKind::Udp => vec![net::read_udp(node, ctx)],
        CheckerKind::Misc => misc::read(node, ctx).into_iter().collect(),
        CheckerKind::File => track::read_file(node, ctx).into_iter().collect(),
        CheckerKind::Bfd => track::read_bfd(node, ctx).into_iter().collect(),
        CheckerKind::Mysql => mysql::read(node, ctx).into_iter().collect(),
    };
    let end = crate::sections::lvs::block_end(node);
    checkers
        .into_iter()
        .filter(|c| connection_ok(c, rs, end, ctx))
        .collect()
}

/// keepalived's `check_conn_opts()`: a link-local destination needs `bind_if`.
fn connection_ok(c: &Checker, rs: RealServerRef, end: Span, ctx: &mut Ctx) -> bool {
    let Some(common) = c.common().filter(|_| c.has_connection()) else {
        return true;
    };
    let dst = common.connect_ip.unwrap_or(rs.ip);
    let link_local = matches!(dst, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
    if link_local && common.bind_if.is_none() {
        ctx.diags.warn(
            end,
            format!("Checker link local address {dst} requires a bind_if"),
        );
        return false;
    }
    true
}

/// Reads `n` if it is one of the common keywords `kind` takes; false if it is not.
pub fn read_keyword(n: &Node, ctx: &mut Ctx, c: &mut CheckerCommon, kind: CheckerKind) -> bool {
    (kind.has_connection() && read_connection_keyword(n, ctx, c))
        || (kind.has_timing() && read_timing_keyword(n, ctx, c))
}

/// The timing keywords (`retry` … `log_all_failures`); false if `n` is not one.
pub fn read_timing_keyword(n: &Node, ctx: &mut Ctx, c: &mut CheckerCommon) -> bool {
    match n.name() {
        "retry" => {
            if let Some(v) = ctx.unsigned(n, 0, 0, u64::from(u32::MAX)) {
                c.retry = Some(v as u32);
            }
        }
        "nb_get_retry" => {
            if let Some(v) = read_nb_get_retry(n, ctx, 0) {
                c.retry = Some(v);
            }
        }
        "delay_before_retry" => {
            if let Some(v) = ctx.timer(n, 0, 0, TIMER_MAX) {
                c.delay_before_retry_us = Some(v);
            }
        }
        "warmup" => {
            if let Some(v) = ctx.timer(n, 0, 0, TIMER_MAX) {
                c.warmup_us = Some(v);
            }
        }
        "delay_loop" => {
            if let Some(v) = ctx.timer(n, 0, 1, TIMER_MAX) {
                c.delay_loop_us = Some(v);
            }
        }
        "alpha" => {
            if let Some(v) = ctx.flag(n, 0) {
                c.alpha = Some(v);
            }
        }
        "log_all_failures" => {
            if let Some(v) = ctx.flag(n, 0) {
                c.log_all_failures = v;
            }
        }
        _ => return false,
    }
    ctx.no_block(n);
    true
}

/// keepalived's largest time (`TIMER_MAXIMUM`, in microseconds).
pub const TIMER_MAX: u64 = u64::MAX - 1;
/// `connect_timeout`'s largest value in microseconds (keepalived keeps it in an `unsigned`).
pub const CONNECT_TIMEOUT_MAX: u64 = u32::MAX as u64;

/// `nb_get_retry N`: keepalived 1.x's spelling of `retry`. keepalived 2.2 accepts it only in
/// HTTP_GET and SSL_GET (and reports it unknown elsewhere, leaving the retry count at its
/// default); halb reads it as `retry N` wherever `retry` is valid, with a warning, so that the
/// file is still reported as needing attention.
pub fn read_nb_get_retry(n: &Node, ctx: &mut Ctx, min: u64) -> Option<u32> {
    let v = ctx.unsigned(n, 0, min, u64::from(u32::MAX))? as u32;
    ctx.diags
        .warn(
            n.span(),
            format!("nb_get_retry is keepalived 1.x's spelling of retry; read as retry {v}"),
        )
        .set_help(format!("write 'retry {v}' instead"));
    Some(v)
}

/// The connection keywords; false if `n` is not one.
pub fn read_connection_keyword(n: &Node, ctx: &mut Ctx, c: &mut CheckerCommon) -> bool {
    match n.name() {
        "connect_ip" => {
            if let Some(ip) = read_ip(n, ctx, "connect_ip") {
                if c.bindto.is_some_and(|b| b.is_ipv4() != ip.is_ipv4()) {
                    ctx.diags.warn(
                        n.line_span(),
                        format!(
                            "connect_ip address {ip} does not match address family of bindto - \
                             skipping"
                        ),
                    );
                } else {
                    c.connect_ip = Some(ip);
                }
            }
        }
        "connect_port" => {
            if let Some(v) = ctx.unsigned(n, 0, 1, 65535) {
                c.connect_port = Some(v as u16);
            }
        }
        "bindto" => {
            if let Some(ip) = read_ip(n, ctx, "bindto") {
                if c.connect_ip.is_some_and(|d| d.is_ipv4() != ip.is_ipv4()) {
                    ctx.diags.warn(
                        n.line_span(),
                        format!(
                            "bindto address {ip} does not match address family of connect_ip - \
                             skipping"
                        ),
                    );
                } else {
                    c.bindto = Some(ip);
                }
            }
        }
        "bind_port" => {
            if let Some(v) = ctx.unsigned(n, 0, 1, 65535) {
                c.bind_port = Some(v as u16);
            }
        }
        "bind_if" => {
            if let Some(w) = ctx.arg(n, 0) {
                if w.text.len() > MAX_INTERFACE_NAME {
                    ctx.diags.warn(
                        w.span,
                        format!("Interface name {} is too long - ignoring", w.text),
                    );
                } else {
                    c.bind_if = Some(w.text.clone());
                }
            }
        }
        "connect_timeout" => {
            if let Some(v) = ctx.timer(n, 0, 1, CONNECT_TIMEOUT_MAX) {
                c.connect_timeout_us = Some(v);
            }
        }
        "fwmark" => {
            if let Some(v) = ctx.unsigned(n, 0, 0, u64::from(u32::MAX)) {
                c.fwmark = Some(v as u32);
            }
        }
        _ => return false,
    }
    ctx.no_block(n);
    true
}

fn read_ip(n: &Node, ctx: &mut Ctx, what: &str) -> Option<IpAddr> {
    let w = ctx.arg(n, 0)?;
    let ip = crate::sections::lvs::addr::parse_server_ip(&w.text);
    if ip.is_none() {
        ctx.diags.warn(
            w.span,
            format!("Invalid {what} address {} - ignoring", w.text),
        );
    }
    ip
}

/// Writes one checker block.
pub fn write(c: &Checker, w: &mut ConfWriter) {
    w.open(c.kind_name());
    match c {
        Checker::Tcp(t) | Checker::DrPath(t) => write_keywords(&t.common, c.kind(), w),
        Checker::Ping(p) => write_keywords(&p.common, c.kind(), w),
        Checker::Http(h) | Checker::Ssl(h) => http::write(h, c.kind(), w),
        Checker::Smtp(s) => net::write_smtp(s, w),
        Checker::Dns(d) => net::write_dns(d, w),
        Checker::Udp(u) => net::write_udp(u, w),
        Checker::Misc(m) => misc::write(m, w),
        Checker::File(f) => track::write_file(f, w),
        Checker::Bfd(b) => track::write_bfd(b, w),
        Checker::Mysql(m) => mysql::write(m, w),
    }
    w.close();
}

/// Writes the common keywords that are set.
pub fn write_keywords(c: &CheckerCommon, kind: CheckerKind, w: &mut ConfWriter) {
    if kind.has_connection() {
        if let Some(v) = c.connect_ip {
            w.kv("connect_ip", v);
        }
        if let Some(v) = c.connect_port {
            w.kv("connect_port", v);
        }
        if let Some(v) = c.bindto {
            w.kv("bindto", v);
        }
        if let Some(v) = c.bind_port {
            w.kv("bind_port", v);
        }
        if let Some(v) = &c.bind_if {
            w.line(&format!("bind_if {}", quote(v)));
        }
        if let Some(v) = c.connect_timeout_us {
            w.kv("connect_timeout", format_us(v));
        }
        if let Some(v) = c.fwmark {
            w.kv("fwmark", v);
        }
    }
    if let Some(v) = c.retry {
        w.kv("retry", v);
    }
    if let Some(v) = c.delay_before_retry_us {
        w.kv("delay_before_retry", format_us(v));
    }
    if let Some(v) = c.warmup_us {
        w.kv("warmup", format_us(v));
    }
    if let Some(v) = c.delay_loop_us {
        w.kv("delay_loop", format_us(v));
    }
    if let Some(v) = c.alpha {
        w.line(if v { "alpha" } else { "alpha false" });
    }
    w.flag("log_all_failures", c.log_all_failures);
}
