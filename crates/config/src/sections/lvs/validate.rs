//! What keepalived decides about a virtual server after reading it: its end-of-block handler
//! (`vs_end_handler()`), the group link (`link_vsg_to_vs()`) and `validate_check_config()`.
//!
//! keepalived reports most of these without a line number; halb puts each on the keyword it is
//! about (the `virtual_server`, `real_server`, `sorry_server`, `quorum`, … line).
//!
//! keepalived links a `group` service to its `virtual_server_group` after reading the whole
//! file, so the group may come later. A section reader only sees what is above it: a service
//! whose group is not known yet gets the checks that do not depend on the group, and
//! [`link_late`] makes the others when the group is read.

use super::addr::format_addr;
use super::model::{
    Failback, Forwarding, GroupEntry, IpFamily, Protocol, Scheduler, VirtualServer,
    VirtualServerGroup, VirtualServerKey, DEFAULT_PERSISTENCE_TIMEOUT,
};
use super::real_server::RsDraft;
use super::virtual_server::VsDraft;
use crate::read::Ctx;
use crate::source::Span;

/// The virtual server as keepalived names it in messages (halb's summary key).
pub fn describe(key: &VirtualServerKey) -> String {
    match key {
        VirtualServerKey::Addr { ip, port } => format_addr(ip, *port),
        VirtualServerKey::Fwmark(m) => format!("fwmark {m}"),
        VirtualServerKey::Group(g) => format!("group {g}"),
    }
}

/// Where findings about a virtual server go.
struct At {
    vs: Span,
    ha_suspend: Span,
    ops: Span,
    protocol: Span,
    /// One per real server of the model, in order.
    real_servers: Vec<Span>,
    sorry: Span,
}

impl At {
    /// Everything on one span (a group defined after the services that use it).
    fn all(span: Span, real_servers: usize) -> At {
        At {
            vs: span,
            ha_suspend: span,
            ops: span,
            protocol: span,
            real_servers: vec![span; real_servers],
            sorry: span,
        }
    }
}

/// Applies keepalived's rules to a virtual server just read; `None` when keepalived ignores it.
pub fn finish(
    mut d: VsDraft,
    groups: &[VirtualServerGroup],
    pending: &super::Pending,
    ctx: &mut Ctx,
) -> Option<VirtualServer> {
    end_of_block(&mut d, ctx);
    let name = describe(&d.vs.key);
    let group = match &d.vs.key {
        VirtualServerKey::Group(g) => {
            let at = d.at.group_name.unwrap_or(d.keyword);
            match pending.group(groups, g) {
                Some(found) => {
                    if !link_family(&mut d.af, found, &name, at, ctx) {
                        return None;
                    }
                    Some(found)
                }
                None => {
                    ctx.diags
                        .note(
                            at,
                            format!("virtual_server_group '{g}' is not defined above this line"),
                        )
                        .set_help(
                            "keepalived ignores a virtual server whose group is never defined \
                             (it logs 'Virtual server group G specified but not configured')",
                        );
                    None
                }
            }
        }
        _ => None,
    };
    if d.real_servers.is_empty() {
        ctx.diags.warn(
            d.keyword,
            format!("Virtual server {name} has no real servers - ignoring"),
        );
        return None;
    }
    d.vs.protocol = d.protocol;
    let at = At {
        vs: d.keyword,
        ha_suspend: d.at.ha_suspend.unwrap_or(d.keyword),
        ops: d.at.ops.unwrap_or(d.keyword),
        protocol: d.at.protocol.unwrap_or(d.keyword),
        real_servers: Vec::new(),
        sorry: d.sorry.as_ref().map_or(d.keyword, |s| s.span),
    };
    service_checks(&mut d.vs, group, &name, &at, ctx);
    d.vs.sched = match d.sched {
        Some(s) => s,
        None => {
            ctx.diags
                .warn(
                    d.keyword,
                    format!(
                        "Virtual server {name}: no scheduler set, setting default '{}'",
                        Scheduler::default().as_str()
                    ),
                )
                .set_help(format!("add 'lb_algo' with one of {}", Scheduler::names()));
            Scheduler::default()
        }
    };
    real_servers(&mut d, &name, ctx);
    weights(&mut d, &name, ctx);
    let rs_spans = d.real_servers.iter().map(|r| r.span).collect();
    let mysql_writer = d.at.mysql_writer;
    let failback = d.at.failback;
    let mut vs = into_model(d);
    let at = At {
        real_servers: rs_spans,
        ..at
    };
    ports(&mut vs, group, &name, &at, ctx);
    if vs.mysql_writer && vs.writer_check().is_none() {
        ctx.diags
            .warn(
                mysql_writer.unwrap_or(at.vs),
                format!("Virtual server {name}: mysql_writer without a MYSQL_CHECK - ignoring"),
            )
            .set_help(
                "server fencing logs in with a MYSQL_CHECK's user: give a real server one, with \
                 a user that may set read_only and kill sessions",
            );
        vs.mysql_writer = false;
    }
    let holds_failback = vs.failback == Failback::Manual || vs.failback_limit.is_some();
    if holds_failback && vs.sorry_server.is_none() {
        ctx.diags
            .warn(
                failback.unwrap_or(at.vs),
                format!(
                    "Virtual server {name}: failback manual or failback_limit without a \
                     sorry_server - nothing to hold"
                ),
            )
            .set_help(
                "failback decides when a returning real server takes the traffic back from \
                 the sorry server: add a sorry_server",
            );
    }
    // Reading grew these lists by doubling; a file of 100,000 real servers keeps them for the
    // daemon's whole life.
    vs.real_servers.shrink_to_fit();
    for rs in &mut vs.real_servers {
        rs.checkers.shrink_to_fit();
    }
    Some(vs)
}

/// Links `vs`, read before `group` was defined, to it: the checks [`finish`] could not make.
/// False when keepalived would ignore the virtual server. Findings go on the group's line.
pub fn link_late(
    vs: &mut VirtualServer,
    group: &VirtualServerGroup,
    at: Span,
    ctx: &mut Ctx,
) -> bool {
    let name = describe(&vs.key);
    if !link_family(&mut vs.ip_family, group, &name, at, ctx) {
        return false;
    }
    let at = At::all(at, vs.real_servers.len());
    service_checks(vs, Some(group), &name, &at, ctx);
    ports(vs, Some(group), &name, &at, ctx);
    true
}

/// keepalived's `vs_end_handler()`: the sorry server's family, and a family for services that
/// have none yet.
fn end_of_block(d: &mut VsDraft, ctx: &mut Ctx) {
    if let Some(s) = &d.sorry {
        if !matches!(s.forwarding, Some(Forwarding::Tun(_))) {
            let family = IpFamily::of(&s.ss.ip);
            match d.af {
                None => d.af = Some(family),
                Some(af) if af != family => {
                    ctx.diags.warn(
                        d.end,
                        format!(
                            "Address family of virtual server and sorry server {} don't match - \
                             skipping sorry server",
                            s.ss.ip
                        ),
                    );
                    d.sorry = None;
                }
                Some(_) => {}
            }
        }
    }
    if d.af.is_none() && !matches!(d.vs.key, VirtualServerKey::Group(_)) {
        let mut families = d
            .sorry
            .iter()
            .map(|s| IpFamily::of(&s.ss.ip))
            .chain(d.real_servers.iter().map(|r| IpFamily::of(&r.rs.ip)));
        let first = families.next();
        let mixed = first.is_some_and(|f| families.any(|g| g != f));
        d.af = Some(match first {
            Some(f) if !mixed => f,
            _ => IpFamily::Inet,
        });
    }
}

/// The address family part of keepalived's `link_vsg_to_vs()`; false when it ignores the
/// virtual server.
fn link_family(
    af: &mut Option<IpFamily>,
    g: &VirtualServerGroup,
    name: &str,
    at: Span,
    ctx: &mut Ctx,
) -> bool {
    let (v4, v6) = (g.has_family(IpFamily::Inet), g.has_family(IpFamily::Inet6));
    let problem = match *af {
        Some(_) if v4 && v6 => Some("virtual server group with IPv4 & IPv6 doesn't match"),
        Some(IpFamily::Inet6) if v4 => Some("address family doesn't match"),
        Some(IpFamily::Inet) if v6 => Some("address family doesn't match"),
        _ => None,
    };
    if let Some(p) = problem {
        ctx.diags.warn(
            at,
            format!("{}: {p} virtual server {name} - ignoring", g.name),
        );
        return false;
    }
    if v4 != v6 && af.is_none() {
        *af = Some(if v4 { IpFamily::Inet } else { IpFamily::Inet6 });
    }
    true
}

/// The checks of `validate_check_config()` that depend on how the service is given (address,
/// fwmark, group and what it holds). A group service whose group is not known yet gets none.
fn service_checks(
    vs: &mut VirtualServer,
    group: Option<&VirtualServerGroup>,
    name: &str,
    at: &At,
    ctx: &mut Ctx,
) {
    let (is_fwmark, is_group) = match vs.key {
        VirtualServerKey::Fwmark(_) => (true, false),
        VirtualServerKey::Group(_) => (false, true),
        VirtualServerKey::Addr { .. } => (false, false),
    };
    if is_group && group.is_none() {
        return;
    }
    if vs.ha_suspend && (is_fwmark || group.is_some_and(VirtualServerGroup::has_fwmarks)) {
        ctx.diags.warn(
            at.ha_suspend,
            format!(
                "Virtual server {name}: cannot use ha_suspend with fwmarks - clearing ha_suspend"
            ),
        );
        vs.ha_suspend = false;
    }
    let by_address = group.map_or(!is_fwmark, VirtualServerGroup::has_addresses);
    if by_address {
        if vs.protocol.is_none() {
            ctx.diags
                .warn(
                    at.vs,
                    format!("Virtual server {name}: no protocol set - defaulting to UDP"),
                )
                .set_help("add 'protocol TCP' (or UDP, SCTP)");
            vs.protocol = Some(Protocol::Udp);
        }
        if vs.sched_flags.ops && vs.protocol != Some(Protocol::Udp) {
            ctx.diags.warn(
                at.ops,
                format!("Virtual server {name}: one packet scheduling requires UDP - resetting"),
            );
            vs.sched_flags.ops = false;
        }
    }
    let zero_port = match group {
        Some(g) => g
            .entries
            .iter()
            .any(|e| matches!(e, GroupEntry::Range { port: 0, .. })),
        None => matches!(vs.key, VirtualServerKey::Addr { port: 0, .. }),
    };
    if vs.persistence_timeout.is_none() && zero_port {
        ctx.diags.warn(
            at.vs,
            format!(
                "Virtual server {name}: zero port only valid for persistent services - setting"
            ),
        );
        vs.persistence_timeout = Some(DEFAULT_PERSISTENCE_TIMEOUT);
    }
    let fwmark_only = is_fwmark || group.is_some_and(|g| !g.has_addresses() && g.has_fwmarks());
    if vs.protocol.is_some() && fwmark_only {
        ctx.diags.warn(
            at.protocol,
            format!(
                "Warning: Virtual server {name}: protocol specified for fwmark - protocol will be \
                 ignored"
            ),
        );
        vs.protocol = None;
    }
}

/// Duplicates, forwarding methods, weights and the sorry server's inhibit setting.
fn real_servers(d: &mut VsDraft, name: &str, ctx: &mut Ctx) {
    let mut kept: Vec<RsDraft> = Vec::new();
    // A map, not a scan of `kept`: a service with 100,000 real servers must stay linear. One
    // finding per duplicate, naming the first.
    let mut first = std::collections::HashMap::new();
    for mut r in std::mem::take(&mut d.real_servers) {
        if let Some(at) = first.get(&(r.rs.ip, r.rs.port)) {
            let at: &Span = at;
            ctx.diags
                .warn(
                    r.span,
                    format!(
                        "VS {name}: real server {} is duplicated - removing second rs",
                        format_addr(&r.rs.ip, r.rs.port)
                    ),
                )
                .set_help(if at.file == r.span.file {
                    format!("the first is on line {}", at.line)
                } else {
                    format!("the first is on line {} of another file", at.line)
                });
            continue;
        }
        first.insert((r.rs.ip, r.rs.port), r.span);
        if r.forwarding.is_none() {
            r.forwarding = Some(default_forwarding(d.keyword, &mut d.forwarding, name, ctx));
        }
        r.rs.weight = r.weight.unwrap_or(d.vs.weight);
        if let Some(s) = &mut d.sorry {
            let inhibit = r.rs.effective_inhibit_on_failure(&d.vs);
            if s.ss.ip == r.rs.ip && s.ss.port == r.rs.port && s.ss.inhibit != inhibit {
                ctx.diags.warn(
                    s.span,
                    format!(
                        "Virtual server {name}: real server {} matches sorry server, but inhibit \
                         setting differs, {} on sorry server",
                        format_addr(&r.rs.ip, r.rs.port),
                        if inhibit { "setting" } else { "clearing" }
                    ),
                );
                s.ss.inhibit = inhibit;
            }
        }
        kept.push(r);
    }
    d.real_servers = kept;
    if let Some(s) = &mut d.sorry {
        if s.forwarding.is_none() {
            s.forwarding = Some(default_forwarding(d.keyword, &mut d.forwarding, name, ctx));
        }
    }
}

/// The virtual server's forwarding method, set to NAT with keepalived's warning if unset.
fn default_forwarding(
    at: Span,
    vs: &mut Option<Forwarding>,
    name: &str,
    ctx: &mut Ctx,
) -> Forwarding {
    *vs.get_or_insert_with(|| {
        ctx.diags
            .warn(
                at,
                format!("Virtual server {name}: no forwarding method set, setting default NAT"),
            )
            .set_help("add 'lb_kind' with NAT, DR or TUN");
        Forwarding::Nat
    })
}

/// Quorum and hysteresis against the real servers' total weight.
fn weights(d: &mut VsDraft, name: &str, ctx: &mut Ctx) {
    let total: u64 = d.real_servers.iter().map(|r| u64::from(r.rs.weight)).sum();
    let total = u32::try_from(total).unwrap_or(u32::MAX);
    let vs = &mut d.vs;
    if vs.quorum > total {
        ctx.diags.warn(
            d.at.quorum.unwrap_or(d.keyword),
            format!(
                "Warning - quorum {} for {name} exceeds total weight of real servers {total}, \
                 reducing quorum to {total}",
                vs.quorum
            ),
        );
        vs.quorum = total;
    }
    if vs.hysteresis >= vs.quorum {
        // keepalived's unsigned arithmetic would wrap for a quorum of 0.
        let to = vs.quorum.saturating_sub(1);
        ctx.diags.warn(
            d.at.hysteresis.or(d.at.quorum).unwrap_or(d.keyword),
            format!(
                "Virtual server {name}: hysteresis {} >= quorum {}; setting hysteresis to {to}",
                vs.hysteresis, vs.quorum
            ),
        );
        vs.hysteresis = to;
    }
}

/// Unless NAT, real and sorry servers use the virtual server's port (none for fwmarks); a group
/// service only gets warnings.
fn ports(
    vs: &mut VirtualServer,
    group: Option<&VirtualServerGroup>,
    name: &str,
    at: &At,
    ctx: &mut Ctx,
) {
    let default = vs.forwarding;
    let not_nat = |f: Option<Forwarding>| f.unwrap_or(default) != Forwarding::Nat;
    let spans = at.real_servers.iter().copied();
    match (&vs.key, group) {
        (VirtualServerKey::Group(_), Some(g)) => {
            let servers: Vec<(String, u16, Span)> = vs
                .real_servers
                .iter()
                .zip(spans)
                .filter(|(r, _)| not_nat(r.lvs_method))
                .map(|(r, span)| (format_addr(&r.ip, r.port), r.port, span))
                .collect();
            let sorry = vs
                .sorry_server
                .as_ref()
                .filter(|s| not_nat(s.lvs_method) && s.port != 0)
                .map(|s| s.port);
            if g.has_fwmarks() {
                for (addr, _, span) in servers.iter().filter(|(_, port, _)| *port != 0) {
                    ctx.diags.warn(
                        *span,
                        format!(
                            "WARNING - fwmark virtual server {name}, real server {addr} has port \
                             specified - port will be ignored"
                        ),
                    );
                }
                if sorry.is_some() {
                    ctx.diags.warn(
                        at.sorry,
                        format!(
                            "WARNING - fwmark virtual server {name}, sorry server has port \
                             specified - port will be ignored"
                        ),
                    );
                }
            }
            for e in &g.entries {
                let GroupEntry::Range { first, port, .. } = e else {
                    continue;
                };
                for (addr, rs_port, span) in &servers {
                    if *rs_port != 0 && rs_port != port {
                        ctx.diags.warn(
                            *span,
                            format!(
                                "virtual server {name}:[{}] and real server {addr} ports don't \
                                 match",
                                format_addr(first, *port)
                            ),
                        );
                    }
                }
                if sorry.is_some_and(|p| p != *port) {
                    ctx.diags.warn(
                        at.sorry,
                        format!(
                            "WARNING - virtual server {name}, sorry server has port specified - \
                             port will be ignored"
                        ),
                    );
                }
            }
        }
        (VirtualServerKey::Group(_), None) => {}
        (key, _) => {
            let vs_port = match key {
                VirtualServerKey::Addr { port, .. } => Some(*port),
                _ => None,
            };
            for (r, span) in vs.real_servers.iter_mut().zip(spans) {
                let what = format!("real server {}", format_addr(&r.ip, r.port));
                if !not_nat(r.lvs_method) {
                    if let (Some(p), 0) = (vs_port, r.port) {
                        r.port = p;
                    }
                    continue;
                }
                r.port = fixed_port(r.port, vs_port, span, name, &what, ctx);
            }
            if let Some(s) = vs.sorry_server.as_mut().filter(|s| not_nat(s.lvs_method)) {
                s.port = fixed_port(s.port, vs_port, at.sorry, name, "sorry server", ctx);
            }
        }
    }
}

/// The port of a DR/TUN server of a service that is not a group: none for a fwmark service,
/// else the service's.
fn fixed_port(
    port: u16,
    vs_port: Option<u16>,
    at: Span,
    name: &str,
    what: &str,
    ctx: &mut Ctx,
) -> u16 {
    match vs_port {
        None => {
            if port != 0 {
                ctx.diags.warn(
                    at,
                    format!(
                        "WARNING - fwmark virtual server {name}, {what} has port specified - \
                         clearing"
                    ),
                );
            }
            0
        }
        Some(p) => {
            if port != 0 && port != p {
                ctx.diags.warn(
                    at,
                    format!(
                        "WARNING - virtual server {name} and {what} ports don't match - resetting"
                    ),
                );
            }
            p
        }
    }
}

/// The model: methods equal to the virtual server's are left to inherit it.
fn into_model(d: VsDraft) -> VirtualServer {
    let mut vs = d.vs;
    vs.ip_family = d.af;
    vs.forwarding = d.forwarding.unwrap_or_default();
    let default = vs.forwarding;
    let own = |f: Option<Forwarding>| f.filter(|f| *f != default);
    vs.real_servers = d
        .real_servers
        .into_iter()
        .map(|r| {
            let mut rs = r.rs;
            rs.lvs_method = own(r.forwarding);
            rs
        })
        .collect();
    vs.sorry_server = d.sorry.map(|s| {
        let mut ss = s.ss;
        ss.lvs_method = own(s.forwarding);
        ss
    });
    vs
}
