//! `virtual_server_group NAME { IP[-LAST|/PREFIX] [PORT] ... fwmark N [inet|inet6] ... }`.

use super::addr::{parse_server_ip, parse_server_port};
use super::model::{GroupEntry, IpFamily, VirtualServerGroup};
use crate::read::Ctx;
use crate::tree::Node;
use crate::write::{quote, ConfWriter};
use std::net::IpAddr;

/// Reads a group; `None` (with a warning) when keepalived would remove it.
pub fn read(node: &Node, ctx: &mut Ctx) -> Option<VirtualServerGroup> {
    let name = ctx.string(node, 0)?;
    let mut entries = Vec::new();
    for n in ctx.block(node) {
        ctx.no_block(n);
        let entry = if n.name() == "fwmark" {
            read_fwmark(n, ctx, &name)
        } else {
            read_range(n, ctx)
        };
        entries.extend(entry);
    }
    let end = super::block_end(node);
    if entries.is_empty() {
        ctx.diags.warn(
            end,
            format!("virtual server group {name} has no entries - removing"),
        );
        return None;
    }
    let g = VirtualServerGroup { name, entries };
    let fwmark_no_family = g
        .entries
        .iter()
        .any(|e| matches!(e, GroupEntry::Fwmark { family: None, .. }));
    if g.has_family(IpFamily::Inet) && g.has_family(IpFamily::Inet6) && fwmark_no_family {
        ctx.diags.warn(
            end,
            format!(
                "virtual server group {} cannot have IPv4, IPv6 and fwmark without family - \
                 removing",
                g.name
            ),
        );
        return None;
    }
    Some(g)
}

fn read_fwmark(n: &Node, ctx: &mut Ctx, group: &str) -> Option<GroupEntry> {
    let mark = ctx.unsigned(n, 0, 0, u64::from(u32::MAX))? as u32;
    let family = match n.arg(1) {
        None => None,
        Some(w) => match w.text.as_str() {
            "inet" => Some(IpFamily::Inet),
            "inet6" => Some(IpFamily::Inet6),
            other => {
                ctx.diags.warn(
                    w.span,
                    format!("({group}): fwmark '{mark}' family {other} unknown - ignoring"),
                );
                return None;
            }
        },
    };
    Some(GroupEntry::Fwmark { mark, family })
}

/// An address entry, as keepalived's `alloc_vsg_entry()` reads it.
fn read_range(n: &Node, ctx: &mut Ctx) -> Option<GroupEntry> {
    let word = n.keyword();
    let text = word.text.as_str();
    let port_word = n.arg(0).map(|w| w.text.as_str());
    let (Some(first), Some(port)) = (parse_server_ip(text), parse_server_port(port_word)) else {
        let port = port_word
            .filter(|p| !p.bytes().all(|b| b == b'0'))
            .map(|p| format!("/port/{p}"))
            .unwrap_or_default();
        ctx.diags.warn(
            n.line_span(),
            format!("Invalid virtual server group IP address {text}{port} - skipping"),
        );
        return None;
    };
    let skip = |ctx: &mut Ctx, what: &str| {
        ctx.diags
            .warn(word.span, format!("{what} - {text} - skipping"));
        None
    };
    if let Some((_, mask)) = text.split_once('/') {
        let bits = if first.is_ipv4() { 32 } else { 128 };
        let Some(mask) = mask
            .parse::<u32>()
            .ok()
            .filter(|m| (1..=bits).contains(m) && mask.bytes().all(|b| b.is_ascii_digit()))
        else {
            return skip(ctx, "Invalid netmask");
        };
        let host = host_mask(bits, mask);
        let start = to_u128(&first);
        if start & host != 0 {
            return skip(ctx, "Address mask bits not empty");
        }
        let last = from_u128(&first, start | host);
        return Some(GroupEntry::Range { first, last, port });
    }
    let Some((_, end)) = text.split_once('-') else {
        return Some(GroupEntry::Range {
            first,
            last: first,
            port,
        });
    };
    let full_form = if first.is_ipv4() {
        end.contains('.')
    } else {
        end.contains(':')
    };
    if full_form {
        let Some(last) = parse_server_ip(end) else {
            return skip(ctx, "Invalid range end");
        };
        if last.is_ipv4() != first.is_ipv4() {
            return skip(ctx, "Range address families do not match");
        }
        if to_u128(&last) < to_u128(&first) {
            return skip(ctx, "Address range end is less than address range start");
        }
        return Some(GroupEntry::Range { first, last, port });
    }
    // `a.b.c.d-N`: N replaces the last byte (decimal); for IPv6 the last 16-bit group (hex).
    let (radix, max, shift_mask) = if first.is_ipv4() {
        (10, 0xff, 0xffu128)
    } else {
        (16, 0xffff, 0xffffu128)
    };
    let digits = end.trim_start();
    let Ok(range) = u128::from_str_radix(if digits.is_empty() { "0" } else { digits }, radix)
    else {
        ctx.diags.warn(
            word.span,
            format!("Virtual server group range '{text}' has extra characters at end"),
        );
        return None;
    };
    if range > max {
        ctx.diags.warn(
            word.span,
            format!("Virtual server group range '{text}' end '{end}' too large"),
        );
        return None;
    }
    let start = to_u128(&first);
    if start & shift_mask >= range {
        return skip(
            ctx,
            "Address range end is not greater than address range start",
        );
    }
    let last = from_u128(&first, (start & !shift_mask) | range);
    Some(GroupEntry::Range { first, last, port })
}

fn host_mask(bits: u32, prefix: u32) -> u128 {
    let host_bits = bits - prefix;
    if host_bits == 0 {
        0
    } else {
        u128::MAX >> (128 - host_bits)
    }
}

fn to_u128(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(*v4)),
        IpAddr::V6(v6) => u128::from(*v6),
    }
}

fn from_u128(like: &IpAddr, v: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from(v as u32)),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(v)),
    }
}

/// Writes a group.
pub fn write(g: &VirtualServerGroup, w: &mut ConfWriter) {
    w.open(&format!("virtual_server_group {}", quote(&g.name)));
    for e in &g.entries {
        match e {
            GroupEntry::Range { first, last, port } => {
                let addr = if first == last {
                    first.to_string()
                } else {
                    format!("{first}-{last}")
                };
                if *port == 0 {
                    w.line(&addr);
                } else {
                    w.line(&format!("{addr} {port}"));
                }
            }
            GroupEntry::Fwmark { mark, family } => match family {
                Some(f) => w.line(&format!("fwmark {mark} {}", f.as_str())),
                None => w.line(&format!("fwmark {mark}")),
            },
        }
    }
    w.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(host_mask(32, 24), 0xff);
        assert_eq!(host_mask(32, 32), 0);
        assert_eq!(host_mask(128, 112), 0xffff);
    }
}
