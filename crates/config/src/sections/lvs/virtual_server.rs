//! `virtual_server IP [PORT] | fwmark N | group NAME { … }`: the reader of the block's keywords.
//!
//! Reading fills a [`VsDraft`] (the model plus what keepalived knows only while reading: what was
//! set explicitly, and where); [`super::validate`] then applies keepalived's end-of-block and
//! after-reading rules and produces the model.

use super::addr::{parse_server_ip, parse_server_port};
use super::forwarding;
use super::model::{
    ConnectionFencing, Failback, FailbackLimit, Forwarding, IpFamily, PersistenceGranularity,
    Protocol, Scheduler, SorryServer, VirtualServer, VirtualServerGroup, VirtualServerKey,
    DEFAULT_PERSISTENCE_TIMEOUT,
};
use super::real_server::{self, read_server_timing, RsDraft, ServerTiming};
use super::validate;
use crate::read::Ctx;
use crate::sections::script::read_notify_once;
use crate::setting::Setting;
use crate::source::Span;
use crate::tree::Node;

/// keepalived's longest persistence engine name (IP_VS_PENAME_MAXLEN - 1).
const MAX_PE_NAME: usize = 15;
/// keepalived's `LVS_MAX_TIMEOUT`: 31 days.
const MAX_PERSISTENCE_TIMEOUT: u64 = 86400 * 31;

/// A virtual server being read.
pub struct VsDraft {
    pub vs: VirtualServer,
    /// The `virtual_server` keyword: where halb reports what keepalived reports without a line.
    pub keyword: Span,
    /// The closing brace: where keepalived reports its end-of-block findings.
    pub end: Span,
    pub af: Option<IpFamily>,
    pub sched: Option<Scheduler>,
    pub forwarding: Option<Forwarding>,
    pub protocol: Option<Protocol>,
    /// Where some keywords were, for the findings about them.
    pub at: KeywordSpans,
    pub sorry: Option<SorryDraft>,
    pub real_servers: Vec<RsDraft>,
}

#[derive(Default)]
pub struct KeywordSpans {
    pub group_name: Option<Span>,
    pub protocol: Option<Span>,
    pub ops: Option<Span>,
    pub ha_suspend: Option<Span>,
    pub quorum: Option<Span>,
    pub hysteresis: Option<Span>,
    pub mysql_writer: Option<Span>,
    /// `failback` or `failback_limit`, whichever came last.
    pub failback: Option<Span>,
}

pub struct SorryDraft {
    pub ss: SorryServer,
    /// The method so far: inherited from the virtual server when the sorry server was read,
    /// or its own `sorry_server_lvs_method`.
    pub forwarding: Option<Forwarding>,
    pub span: Span,
}

/// Reads a `virtual_server` block; `None` when keepalived ignores it.
pub fn read(
    node: &Node,
    ctx: &mut Ctx,
    groups: &[VirtualServerGroup],
    pending: &super::Pending,
) -> Option<VirtualServer> {
    let (key, group_name) = read_key(node, ctx)?;
    let end = super::block_end(node);
    let vs = VirtualServer::new(key);
    let mut d = VsDraft {
        af: vs.ip_family,
        vs,
        keyword: node.span(),
        end,
        sched: None,
        forwarding: None,
        protocol: None,
        at: KeywordSpans {
            group_name,
            ..KeywordSpans::default()
        },
        sorry: None,
        real_servers: Vec::new(),
    };
    for n in ctx.block(node) {
        if n.name() == "real_server" {
            if let Some(rs) = real_server::read(n, ctx, d.forwarding, &mut d.af) {
                d.real_servers.push(rs);
            }
            continue;
        }
        ctx.no_block(n);
        read_keyword(n, ctx, &mut d);
    }
    validate::finish(d, groups, pending, ctx)
}

/// The words after `virtual_server`, and the span of a group name.
fn read_key(node: &Node, ctx: &mut Ctx) -> Option<(VirtualServerKey, Option<Span>)> {
    let first = ctx.arg(node, 0)?;
    match first.text.as_str() {
        "group" => {
            let name = ctx.arg(node, 1)?;
            Some((VirtualServerKey::Group(name.text.clone()), Some(name.span)))
        }
        "fwmark" => {
            let mark = ctx.unsigned(node, 1, 0, u64::from(u32::MAX))? as u32;
            if mark == 0 {
                // keepalived takes 0, then treats the block as an address-less service
                // ("[]:0"); halb refuses it here, where the mistake is.
                ctx.diags
                    .warn(
                        node.line_span(),
                        "virtual server fwmark 0 is not a firewall mark - ignoring the virtual \
                         server",
                    )
                    .set_help("firewall marks start at 1");
                return None;
            }
            Some((VirtualServerKey::Fwmark(mark), None))
        }
        text => {
            let port_word = node.arg(1).map(|w| w.text.as_str());
            match (parse_server_ip(text), parse_server_port(port_word)) {
                (Some(ip), Some(port)) => Some((VirtualServerKey::Addr { ip, port }, None)),
                _ => {
                    let port = port_word
                        .filter(|p| !p.bytes().all(|b| b == b'0'))
                        .map(|p| format!("/{p}"))
                        .unwrap_or_default();
                    let slash = if port.is_empty() { "" } else { "/port" };
                    ctx.diags.warn(
                        node.line_span(),
                        format!("Invalid virtual server IP address{slash} {text}{port} - skipping"),
                    );
                    None
                }
            }
        }
    }
}

/// One keyword of the virtual server's block (other than `real_server`).
fn read_keyword(n: &Node, ctx: &mut Ctx, d: &mut VsDraft) {
    let vs = &mut d.vs;
    if let Some(t) = read_server_timing(n, ctx) {
        match t {
            Some(ServerTiming::Retry(v)) => vs.retry = Some(v),
            Some(ServerTiming::DelayBeforeRetry(v)) => vs.delay_before_retry_us = Some(v),
            Some(ServerTiming::Warmup(v)) => vs.warmup_us = Some(v),
            Some(ServerTiming::ConnectTimeout(v)) => vs.connect_timeout_us = v,
            Some(ServerTiming::DelayLoop(v)) => vs.delay_loop_us = v,
            None => {}
        }
        return;
    }
    match n.name() {
        "ip_family" => {
            let family = match ctx.choice(n, 0, &["inet", "inet6"]) {
                Some(0) => IpFamily::Inet,
                Some(_) => IpFamily::Inet6,
                None => return,
            };
            if d.af.is_some_and(|af| af != family) {
                ctx.diags.warn(
                    n.line_span(),
                    format!(
                        "Virtual server specified family {} conflicts with server family",
                        family.as_str()
                    ),
                );
            } else {
                d.af = Some(family);
            }
        }
        "inhibit_on_failure" | "alpha" | "omega" | "ha_suspend" => {
            // keepalived takes these as bare flags here, whatever follows them.
            if let Some(w) = n.arg(0) {
                ctx.diags.note(
                    w.span,
                    format!(
                        "keepalived ignores '{}' after {} in a virtual_server: it is on",
                        w.text,
                        n.name()
                    ),
                );
            }
            match n.name() {
                "inhibit_on_failure" => vs.inhibit_on_failure = true,
                "alpha" => vs.alpha = true,
                "omega" => vs.omega = true,
                _ => {
                    vs.ha_suspend = true;
                    d.at.ha_suspend = Some(n.span());
                }
            }
        }
        "lb_algo" | "lvs_sched" => {
            if let Some(w) = ctx.arg(n, 0) {
                match Scheduler::from_name(&w.text) {
                    Some(s) => d.sched = Some(s),
                    None => {
                        ctx.diags
                            .warn(
                                w.span,
                                format!("Invalid lvs_scheduler '{}' - ignoring", w.text),
                            )
                            .set_help(format!("expected one of: {}", Scheduler::names()));
                    }
                }
            }
        }
        "hashed" | "ops" | "flag-1" | "flag-2" | "flag-3" | "sh-port" | "sh-fallback"
        | "mh-port" | "mh-fallback" => read_sched_flag(n, ctx, d),
        "lb_kind" | "lvs_method" => {
            d.forwarding = forwarding::read(n, ctx, d.forwarding, "virtual");
        }
        "persistence_engine" => {
            if let Some(w) = ctx.arg(n, 0) {
                let mut name = w.text.clone();
                if name.len() > MAX_PE_NAME {
                    ctx.diags.warn(
                        w.span,
                        format!("persistence_name too long, truncating - {name}"),
                    );
                    let mut cut = MAX_PE_NAME;
                    while !name.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    name.truncate(cut);
                }
                vs.persistence_engine = Some(name);
            }
        }
        "persistence_timeout" => {
            if n.arg(0).is_none() {
                vs.persistence_timeout = Some(DEFAULT_PERSISTENCE_TIMEOUT);
            } else if let Some(v) = ctx.unsigned(n, 0, 1, MAX_PERSISTENCE_TIMEOUT) {
                vs.persistence_timeout = Some(v as u32);
            }
        }
        "persistence_granularity" => read_granularity(n, ctx, d),
        "protocol" => {
            if let Some(w) = ctx.arg(n, 0) {
                let p = match w.text.to_ascii_uppercase().as_str() {
                    "TCP" => Protocol::Tcp,
                    "UDP" => Protocol::Udp,
                    "SCTP" => Protocol::Sctp,
                    _ => {
                        ctx.diags
                            .warn(w.span, format!("Unknown protocol {} - ignoring", w.text));
                        return;
                    }
                };
                d.protocol = Some(p);
                d.at.protocol = Some(n.span());
            }
        }
        "smtp_alert" => {
            if let Some(v) = ctx.flag(n, 0) {
                vs.smtp_alert = Some(v);
            }
        }
        "virtualhost" => {
            if let Some(v) = ctx.string(n, 0) {
                vs.virtualhost = Some(v);
            }
        }
        "quorum_up" | "quorum_down" => {
            let slot = if n.name() == "quorum_up" {
                &mut vs.quorum_up
            } else {
                &mut vs.quorum_down
            };
            read_notify_once(slot, n, ctx);
        }
        "quorum" => {
            d.at.quorum = Some(n.span());
            // keepalived sets the quorum to 1 when the value is bad.
            vs.quorum = ctx
                .unsigned(n, 0, 1, u64::from(u32::MAX))
                .map_or(1, |v| v as u32);
        }
        "hysteresis" => {
            if let Some(v) = ctx.unsigned(n, 0, 0, u64::from(u32::MAX)) {
                vs.hysteresis = v as u32;
                d.at.hysteresis = Some(n.span());
            }
        }
        "weight" => {
            if let Some(v) = ctx.unsigned(n, 0, 1, u64::from(i32::MAX as u32)) {
                vs.weight = v as u32;
            }
        }
        "sorry_server" => read_sorry_server(n, ctx, d),
        "sorry_server_inhibit" => match &mut d.sorry {
            Some(s) => s.ss.inhibit = true,
            None => {
                ctx.diags.warn(
                    n.span(),
                    "Ignoring sorry_server inhibit used before or without sorry_server",
                );
            }
        },
        "sorry_server_lvs_method" => match &mut d.sorry {
            Some(s) => s.forwarding = forwarding::read(n, ctx, s.forwarding, "sorry"),
            None => {
                ctx.diags.warn(
                    n.span(),
                    "sorry_server forwarding used without sorry_server",
                );
            }
        },
        "snmp_name" => vs.other.push(Setting::from_node(n)),
        "mysql_writer" => {
            vs.mysql_writer = true;
            d.at.mysql_writer = Some(n.span());
        }
        "failback" => {
            vs.failback = match ctx.choice(n, 0, &["automatic", "manual"]) {
                Some(0) => Failback::Automatic,
                Some(_) => Failback::Manual,
                None => return,
            };
            d.at.failback = Some(n.span());
        }
        "failback_limit" => {
            let Some(switches) = ctx.unsigned(n, 0, 1, 1000) else {
                return;
            };
            let Some(within_secs) = ctx.unsigned(n, 1, 1, 7 * 24 * 3600) else {
                return;
            };
            vs.failback_limit = Some(FailbackLimit {
                switches: switches as u32,
                within_secs,
            });
            d.at.failback = Some(n.span());
        }
        "connection_fencing" => {
            vs.connection_fencing = match ctx.choice(n, 0, &["close", "drain"]) {
                Some(0) => Some(ConnectionFencing::Close),
                Some(_) => Some(ConnectionFencing::Drain),
                None => return,
            };
        }
        _ => ctx.unknown(n),
    }
}

/// `hashed`, `ops`, `flag-N`, `sh-*`, `mh-*`: the scheduler-specific ones depend on the
/// scheduler set so far, as in keepalived.
fn read_sched_flag(n: &Node, ctx: &mut Ctx, d: &mut VsDraft) {
    let flags = &mut d.vs.sched_flags;
    let name = n.name();
    match name {
        "ops" => {
            flags.ops = true;
            d.at.ops = Some(n.span());
        }
        "flag-1" => flags.flag_1 = true,
        "flag-2" => flags.flag_2 = true,
        "flag-3" => flags.flag_3 = true,
        _ => {
            let family = match d.sched {
                Some(Scheduler::Sh) => "sh",
                Some(Scheduler::Mh) => "mh",
                _ => {
                    ctx.diags
                        .warn(
                            n.span(),
                            format!("{name} only applies to sh scheduler - ignoring"),
                        )
                        .set_help("set 'lb_algo sh' (or mh) before it");
                    return;
                }
            };
            // `hashed` does nothing in keepalived 2.2; sh-* only count with sh, mh-* with mh.
            match name.split_once('-') {
                Some((f, "fallback")) if f == family => flags.flag_1 = true,
                Some((f, "port")) if f == family => flags.flag_2 = true,
                _ => {}
            }
        }
    }
}

fn read_granularity(n: &Node, ctx: &mut Ctx, d: &mut VsDraft) {
    let Some(w) = ctx.arg(n, 0) else {
        return;
    };
    let family = d.af.unwrap_or(if w.text.contains('.') {
        IpFamily::Inet
    } else {
        IpFamily::Inet6
    });
    let g = match family {
        IpFamily::Inet6 => match ctx.unsigned(n, 0, 1, 128) {
            Some(v) => PersistenceGranularity::Prefix(v as u8),
            None => {
                ctx.diags.warn(
                    w.span,
                    format!(
                        "Invalid IPv6 persistence_granularity specified - {}",
                        w.text
                    ),
                );
                return;
            }
        },
        IpFamily::Inet => match w.text.parse() {
            Ok(mask) => PersistenceGranularity::Netmask(mask),
            Err(_) => {
                ctx.diags.warn(
                    w.span,
                    format!(
                        "Invalid IPv4 persistence_granularity specified - {}",
                        w.text
                    ),
                );
                return;
            }
        },
    };
    d.vs.persistence_granularity = Some(g);
    d.af.get_or_insert(family);
    d.vs.persistence_timeout
        .get_or_insert(DEFAULT_PERSISTENCE_TIMEOUT);
}

fn read_sorry_server(n: &Node, ctx: &mut Ctx, d: &mut VsDraft) {
    let Some(w) = ctx.arg(n, 0) else {
        return;
    };
    let port = parse_server_port(n.arg(1).map(|p| p.text.as_str()));
    let (Some(ip), Some(port)) = (parse_server_ip(&w.text), port) else {
        ctx.diags.warn(
            n.line_span(),
            format!("Invalid sorry server IP address {} - skipping", w.text),
        );
        return;
    };
    d.sorry = Some(SorryDraft {
        ss: SorryServer {
            ip,
            port,
            inhibit: false,
            lvs_method: None,
        },
        forwarding: d.forwarding,
        span: n.span(),
    });
}
