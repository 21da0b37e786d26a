//! Address lines of an instance: `virtual_ipaddress`, `virtual_ipaddress_excluded` and
//! `unicast_peer`, read as keepalived's `alloc_ipaddress()` and `alloc_vrrp_unicast_peer()`
//! read them.

use super::model::{host_prefix, Broadcast, UnicastPeer, VirtualAddress};
use crate::read::{parse_ip, parse_unsigned, Ctx};
use crate::tree::Node;
use crate::write::quote;
use std::net::{IpAddr, Ipv4Addr};

/// Interface names are shorter than IFNAMSIZ (16).
pub const MAX_IFNAME_LEN: usize = 15;

/// Flags kept as written.
const ADDRESS_FLAGS: &[&str] = &[
    "home",
    "-nodad",
    "mngtmpaddr",
    "noprefixroute",
    "autojoin",
    "no_track",
    "use_vmac",
];

/// The scope names keepalived knows without `/etc/iproute2/rt_scopes`.
const SCOPES: &[&str] = &["global", "nowhere", "host", "link", "site"];

/// `ADDR[/PREFIX]`: keepalived decides the family by a ':' in the text. A bad prefix is
/// reported and the host prefix used.
fn read_prefixed(line: &Node, ctx: &mut Ctx) -> Option<(IpAddr, u8)> {
    let w = line.keyword();
    let (addr, prefix) = match w.text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (w.text.as_str(), None),
    };
    let v6 = w.text.contains(':');
    let parsed = if v6 {
        addr.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
    } else {
        addr.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    };
    let Some(ip) = parsed else {
        ctx.diags.warn(
            w.span,
            format!("VRRP parsed invalid IP {}. skipping IP...", w.text),
        );
        return None;
    };
    let max = host_prefix(ip);
    let prefix = match prefix.map(parse_unsigned) {
        None => max,
        Some(Ok(p)) if p <= u64::from(max) => p as u8,
        Some(_) => {
            ctx.diags.warn(
                w.span,
                format!(
                    "Invalid address prefix len {} for address {} - using {max}",
                    prefix.unwrap_or_default(),
                    w.text
                ),
            );
            max
        }
    };
    Some((ip, prefix))
}

/// One address line. `None` when keepalived drops the address (reported).
pub fn read_address(line: &Node, ctx: &mut Ctx) -> Option<VirtualAddress> {
    let (ip, prefix) = read_prefixed(line, ctx)?;
    let mut a = VirtualAddress::new(ip);
    a.prefix = prefix;
    let addr_text = line.name().to_string();
    let args = line.args();
    let mut i = 0;
    while i < args.len() {
        let opt = &args[i];
        let value = args.get(i + 1);
        let takes_value = matches!(
            opt.text.as_str(),
            "dev" | "scope" | "broadcast" | "brd" | "label" | "peer" | "preferred_lft"
        );
        if takes_value && value.is_none() {
            ctx.diags.warn(
                opt.span,
                format!("No {} parameter specified for {addr_text}", opt.text),
            );
            return None;
        }
        let v = value.map(|w| w.text.as_str()).unwrap_or_default();
        let vspan = value.map(|w| w.span).unwrap_or(opt.span);
        match opt.text.as_str() {
            "dev" => {
                if a.dev.is_some() {
                    ctx.diags.warn(
                        opt.span,
                        format!("Cannot specify ipaddress device more than once for {addr_text}"),
                    );
                    return None;
                }
                if !ctx.interface_exists(v) {
                    ctx.diags.warn(
                        vspan,
                        format!("WARNING - interface {v} for ip address {addr_text} doesn't exist"),
                    );
                    return None;
                }
                a.dev = Some(v.to_string());
            }
            "scope" => {
                if valid_scope(v) {
                    a.scope = Some(v.to_string());
                } else {
                    ctx.diags.warn(
                        vspan,
                        format!("Invalid scope '{v}' specified for {addr_text} - ignoring"),
                    );
                }
            }
            "broadcast" | "brd" => {
                if ip.is_ipv6() {
                    ctx.diags.warn(
                        opt.span,
                        format!(
                            "VRRP is trying to assign a broadcast {v} to the IPv6 address {addr_text} - skipping VIP"
                        ),
                    );
                    return None;
                }
                a.broadcast = Some(match v {
                    "+" => Broadcast::Plus,
                    "-" => Broadcast::Minus,
                    _ => match v.parse::<Ipv4Addr>() {
                        Ok(b) => Broadcast::Address(b),
                        Err(_) => {
                            ctx.diags.warn(
                                vspan,
                                format!(
                                    "VRRP is trying to assign invalid broadcast {v}. skipping VIP..."
                                ),
                            );
                            return None;
                        }
                    },
                });
            }
            "label" => {
                if v.len() > MAX_IFNAME_LEN {
                    ctx.diags.warn(
                        vspan,
                        format!(
                            "Address label {v} is longer than maximum length {MAX_IFNAME_LEN} - removing address"
                        ),
                    );
                    return None;
                }
                a.label = Some(v.to_string());
            }
            "peer" => read_peer(&mut a, v, vspan, ctx),
            "preferred_lft" => {
                if v == "forever" || parse_unsigned(v).is_ok_and(|n| n <= u64::from(u32::MAX)) {
                    a.options.extend([opt.text.clone(), v.to_string()]);
                } else {
                    ctx.diags
                        .warn(vspan, format!("preferred_lft {v} is invalid"));
                }
            }
            flag if ADDRESS_FLAGS.contains(&flag) => a.options.push(flag.to_string()),
            other => {
                ctx.diags.warn(
                    opt.span,
                    format!("Unknown configuration entry '{other}' for ip address - ignoring"),
                );
                i += 1;
                continue;
            }
        }
        i += if takes_value { 2 } else { 1 };
    }
    check_address(&mut a, line, ctx);
    Some(a)
}

fn read_peer(a: &mut VirtualAddress, v: &str, span: crate::source::Span, ctx: &mut Ctx) {
    if a.peer.is_some() {
        ctx.diags.warn(
            span,
            format!("Peer {v} - another peer has already been specified"),
        );
        return;
    }
    // keepalived reads a peer without a prefix.
    let Some(peer) = v.parse::<IpAddr>().ok() else {
        ctx.diags.warn(span, format!("Invalid peer address {v}"));
        return;
    };
    if peer.is_ipv6() != a.address.is_ipv6() {
        ctx.diags.warn(
            span,
            format!("Peer address {v} does not match address family"),
        );
        return;
    }
    if a.prefix != host_prefix(a.address) {
        ctx.diags.warn(
            span,
            "Cannot specify address prefix when specifying peer address - ignoring",
        );
    }
    a.prefix = host_prefix(peer);
    a.peer = Some(peer);
}

/// keepalived's checks once the line is read.
fn check_address(a: &mut VirtualAddress, line: &Node, ctx: &mut Ctx) {
    let at = line.line_span();
    if a.broadcast.is_some() && a.peer.is_some() {
        ctx.diags.warn(
            at,
            "Cannot specify broadcast and peer addresses - ignoring broadcast address",
        );
        a.broadcast = None;
    } else if matches!(a.broadcast, Some(Broadcast::Plus | Broadcast::Minus)) && a.prefix > 30 {
        ctx.diags.warn(
            at,
            format!("Address prefix length {} too long for broadcast", a.prefix),
        );
        a.broadcast = None;
    }
    if a.address.is_ipv6() {
        if a.scope.take().is_some() {
            ctx.diags.warn(
                at,
                format!(
                    "Cannot specify scope for IPv6 addresses ({}) - ignoring scope",
                    line.name()
                ),
            );
        }
        if a.label.take().is_some() {
            ctx.diags.warn(
                at,
                format!(
                    "Cannot specify label for IPv6 addresses ({}) - ignoring label",
                    line.name()
                ),
            );
        }
    }
}

/// A scope name, or a number up to 255 (decimal, `0x` hex or `0` octal, as `strtoul(, 0)`).
fn valid_scope(s: &str) -> bool {
    if SCOPES.contains(&s) {
        return true;
    }
    let n = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        u64::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse::<u64>().ok()
    };
    n.is_some_and(|n| n <= 255)
}

/// An address line as keepalived reads it back.
pub fn address_words(a: &VirtualAddress) -> String {
    let mut words = Vec::new();
    if a.peer.is_none() && a.prefix != host_prefix(a.address) {
        words.push(format!("{}/{}", a.address, a.prefix));
    } else {
        words.push(a.address.to_string());
    }
    if let Some(d) = &a.dev {
        words.push(format!("dev {}", quote(d)));
    }
    match a.broadcast {
        Some(Broadcast::Plus) => words.push("brd +".into()),
        Some(Broadcast::Minus) => words.push("brd -".into()),
        Some(Broadcast::Address(b)) => words.push(format!("brd {b}")),
        None => {}
    }
    if let Some(s) = &a.scope {
        words.push(format!("scope {}", quote(s)));
    }
    if let Some(l) = &a.label {
        words.push(format!("label {}", quote(l)));
    }
    if let Some(p) = a.peer {
        words.push(format!("peer {p}"));
    }
    words.extend(a.options.iter().map(|o| quote(o)));
    words.join(" ")
}

/// One `unicast_peer` line: `ADDR [min_ttl N] [max_ttl N]`.
pub fn read_peer_line(line: &Node, ctx: &mut Ctx, owner: &str) -> Option<UnicastPeer> {
    let w = line.keyword();
    let Some(address) = parse_ip(&w.text) else {
        ctx.diags.warn(
            w.span,
            format!(
                "Configuration error: VRRP instance[{owner}] malformed unicast peer address[{}]. Skipping...",
                w.text
            ),
        );
        return None;
    };
    let mut peer = UnicastPeer {
        address,
        min_ttl: None,
        max_ttl: None,
    };
    let mut i = 0;
    while let Some(opt) = line.arg(i) {
        if line.arg(i + 1).is_none() {
            ctx.diags.warn(
                opt.span,
                format!("({owner}) {} is missing a value", opt.text),
            );
            break;
        }
        let slot = match opt.text.as_str() {
            "min_ttl" => &mut peer.min_ttl,
            "max_ttl" => &mut peer.max_ttl,
            other => {
                ctx.diags.warn(
                    opt.span,
                    format!("({owner}) unknown unicast_peer option {other}"),
                );
                break;
            }
        };
        if let Some(v) = ctx.unsigned(line, i + 1, 0, 255) {
            *slot = Some(v as u8);
        }
        i += 2;
    }
    let (min, max) = (peer.min_ttl.unwrap_or(0), peer.max_ttl.unwrap_or(255));
    if min > max {
        ctx.diags.warn(
            line.line_span(),
            format!("({owner}) min_ttl {min} > max_ttl {max} - all packets will be discarded"),
        );
    }
    Some(peer)
}

pub fn peer_words(p: &UnicastPeer) -> String {
    let mut words = vec![p.address.to_string()];
    if let Some(v) = p.min_ttl {
        words.push(format!("min_ttl {v}"));
    }
    if let Some(v) = p.max_ttl {
        words.push(format!("max_ttl {v}"));
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::valid_scope;

    #[test]
    fn scopes() {
        assert!(valid_scope("link"));
        assert!(valid_scope("253"));
        assert!(valid_scope("0xfe"));
        assert!(!valid_scope("256"));
        assert!(!valid_scope("galaxy"));
    }
}
