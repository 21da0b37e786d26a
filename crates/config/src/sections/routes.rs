//! Routes and rules (`static_routes`, `static_rules`, `virtual_routes`, `virtual_rules`):
//! checked the way keepalived checks them, and kept as written.
//!
//! halb does not install routes or rules yet; what matters now is that a user hears about the
//! same mistakes keepalived reports (a deprecated `gw`, a rule with no preference, an address
//! that does not parse, an interface that does not exist), at the same line. `static_ipaddress`
//! is checked here too, with the address reader of `virtual_ipaddress`.

use crate::read::{parse_ip, Ctx};
use crate::sections::vrrp::address::read_address;
use crate::sections::vrrp::track::value_lines;
use crate::setting::Setting;
use crate::tree::{Node, Word};

/// Route options that take one value.
const ROUTE_ONE_ARG: &[&str] = &[
    "src",
    "from",
    "via",
    "gw",
    "or",
    "dev",
    "oif",
    "scope",
    "table",
    "metric",
    "priority",
    "preference",
    "tos",
    "dsfield",
    "protocol",
    "mtu",
    "hoplimit",
    "advmss",
    "rtt",
    "rttvar",
    "reordering",
    "window",
    "cwnd",
    "ssthresh",
    "realms",
    "rto_min",
    "initcwnd",
    "initrwnd",
    "features",
    "congctl",
    "pref",
    "expires",
    "track_group",
    "vrf",
    "as",
    "weight",
    "to",
    "ttl-propagate",
    "fastopen_no_cookie",
];
/// Route options without a value.
const ROUTE_NO_ARG: &[&str] = &["onlink", "no_track", "quickack", "lock"];
/// Route types that may come first.
const ROUTE_TYPES: &[&str] = &[
    "unicast",
    "local",
    "broadcast",
    "multicast",
    "throw",
    "unreachable",
    "prohibit",
    "blackhole",
    "nat",
    "anycast",
];

/// Checks one route line and returns it as kept.
pub fn read_route(node: &Node, ctx: &mut Ctx) -> Setting {
    let words = &node.words;
    let mut i = 0;
    if ROUTE_TYPES.contains(&words[0].text.as_str()) {
        i = 1;
    }
    let mut dest: Option<String> = None;
    let mut has_dev = false;
    let mut no_track = false;
    while i < words.len() {
        let w = &words[i];
        match w.text.as_str() {
            "gw" => {
                ctx.diags.warn(
                    w.span,
                    "\"gw\" for routes is deprecated. Please use \"via\"",
                );
            }
            "or" => {
                ctx.diags.warn(
                    w.span,
                    "\"or\" for routes is deprecated. Please use \"nexthop\"",
                );
            }
            "dev" | "oif" => has_dev = true,
            "no_track" => no_track = true,
            // What follows is a next-hop list or encapsulation: keepalived parses it apart.
            "nexthop" | "encap" => break,
            _ => {}
        }
        let t = w.text.as_str();
        if ROUTE_ONE_ARG.contains(&t) {
            if matches!(t, "src" | "via" | "gw" | "or") {
                if let Some(v) = words.get(i + 1) {
                    if parse_ip(&v.text).is_none() {
                        ctx.diags
                            .warn(v.span, format!("invalid address '{}' in route", v.text));
                    }
                }
            }
            i += 2;
            continue;
        }
        if ROUTE_NO_ARG.contains(&t) {
            i += 1;
            continue;
        }
        if dest.is_none() {
            if parse_prefix(t).is_none() && t != "default" {
                ctx.diags.warn(w.span, format!("unknown route keyword {t}"));
            } else {
                dest = Some(t.to_string());
            }
        } else {
            ctx.diags
                .warn(w.span, format!("Route has trailing nonsense - {t}"));
        }
        i += 1;
    }
    check_interfaces(words, &["dev", "oif"], "VROUTE nexthop", ctx);
    match dest {
        None => {
            ctx.diags
                .warn(node.line_span(), "Route must have a destination");
        }
        Some(d) if !no_track && !has_dev => {
            ctx.diags
                .warn(
                    node.line_span(),
                    format!("cannot track route {d} with no interface specified, not tracking"),
                )
                .set_help("add `dev IFNAME`, or `no_track` to say it is not to be tracked");
        }
        Some(_) => {}
    }
    Setting::from_node(node)
}

/// Rule options that take one value.
const RULE_ONE_ARG: &[&str] = &[
    "from",
    "to",
    "table",
    "lookup",
    "preference",
    "order",
    "priority",
    "dsfield",
    "tos",
    "fwmark",
    "realms",
    "sup_pl",
    "sup_group",
    "iif",
    "dev",
    "oif",
    "tunnel-id",
    "uidrange",
    "protocol",
    "ipproto",
    "sport",
    "dport",
    "track_group",
    "type",
    "goto",
];

/// Checks one rule line and returns it as kept.
pub fn read_rule(node: &Node, ctx: &mut Ctx) -> Setting {
    let words = &node.words;
    let mut i = 0;
    let mut has_preference = false;
    while i < words.len() {
        let t = words[i].text.as_str();
        if matches!(t, "preference" | "order" | "priority") {
            has_preference = true;
        }
        if matches!(t, "from" | "to") {
            if let Some(v) = words.get(i + 1) {
                if v.text != "all" && parse_prefix(&v.text).is_none() {
                    ctx.diags
                        .warn(v.span, format!("Invalid rule {t} address {}", v.text));
                }
            }
        }
        i += if RULE_ONE_ARG.contains(&t) { 2 } else { 1 };
    }
    check_interfaces(words, &["iif", "dev", "oif"], "rule", ctx);
    if !has_preference {
        ctx.diags
            .warn(node.line_span(), "Rule has no preference specified")
            .set_help("keepalived picks one counting down from 32767; set `preference N`");
    }
    Setting::from_node(node)
}

/// keepalived's "interface doesn't exist" warning for the interface after one of `keywords`
/// (a route's own `dev` and its next hops' alike). keepalived stops reading the line at the
/// first such interface, so only that one is reported.
fn check_interfaces(words: &[Word], keywords: &[&str], what: &str, ctx: &mut Ctx) {
    let missing = words
        .windows(2)
        .find(|w| keywords.contains(&w[0].text.as_str()) && !ctx.interface_exists(&w[1].text));
    if let Some([_, name]) = missing {
        ctx.diags.warn(
            name.span,
            format!("WARNING - interface {} for {what} doesn't exist", name.text),
        );
    }
}

/// `ADDR[/LEN]` with a length valid for the family.
fn parse_prefix(s: &str) -> Option<(std::net::IpAddr, u8)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip = parse_ip(addr)?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l.parse::<u8>().ok().filter(|l| *l <= max)?,
        None => max,
    };
    Some((ip, len))
}

/// Checks a `static_ipaddress` block line by line as keepalived reads it (the reader of
/// `virtual_ipaddress`: a bad address, an option without its value, an interface that does
/// not exist) and returns it as kept.
pub fn read_static_addresses(node: &Node, ctx: &mut Ctx) -> Setting {
    for line in value_lines(node, ctx) {
        // The address itself is kept as written; only the diagnostics matter here.
        let _ = read_address(line, ctx);
    }
    Setting::from_node(node)
}

/// Reads a `static_routes` / `static_rules` block.
pub fn read_static(node: &Node, ctx: &mut Ctx) -> Setting {
    let children: Vec<Setting> = ctx
        .block(node)
        .iter()
        .map(|n| {
            if node.name() == "static_rules" {
                read_rule(n, ctx)
            } else {
                read_route(n, ctx)
            }
        })
        .collect();
    Setting {
        keyword: node.name().to_string(),
        args: node.args().iter().map(|w| w.text.clone()).collect(),
        block: Some(children),
    }
}

#[cfg(test)]
mod tests {
    use crate::diagnostic::Severity;
    use crate::{load_str, LoadOptions};

    const MISSING: &str = "static_ipaddress {\n 10.1.0.1/24 dev eth9\n 10.1.0.2/24 dev eth0\n}\n\
        static_routes {\n 10.2.0.0/16 via 10.1.0.254 dev eth9\n 10.4.0.0/16 dev eth0 nexthop via 10.1.0.253 dev eth7 nexthop via 10.1.0.252 dev eth6\n 10.5.0.0/16 dev eth0\n}\n\
        static_rules {\n from 10.0.0.0/8 table 100 iif eth9 preference 10\n}\n";

    fn warnings(interfaces: Option<Vec<String>>) -> Vec<(u32, String)> {
        let opts = LoadOptions {
            interfaces,
            ..LoadOptions::default()
        };
        let loaded = load_str("t.conf", MISSING, &opts);
        loaded
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .map(|d| (d.span.map_or(0, |s| s.line), d.message.clone()))
            .collect()
    }

    #[test]
    fn interfaces_that_do_not_exist_are_reported_as_keepalived_does() {
        let w = warnings(Some(vec!["lo".into(), "eth0".into()]));
        assert_eq!(
            w,
            [
                (
                    2,
                    "WARNING - interface eth9 for ip address 10.1.0.1/24 doesn't exist".to_string()
                ),
                (
                    6,
                    "WARNING - interface eth9 for VROUTE nexthop doesn't exist".to_string()
                ),
                // Only the first: keepalived stops reading the route there.
                (
                    7,
                    "WARNING - interface eth7 for VROUTE nexthop doesn't exist".to_string()
                ),
                (
                    11,
                    "WARNING - interface eth9 for rule doesn't exist".to_string()
                ),
            ]
        );
    }

    #[test]
    fn no_interface_check_means_no_interface_warnings() {
        assert_eq!(warnings(None), []);
    }
}
