//! halb's `bgp_announce`: which VIPs halb announces by BGP through BIRD, to which neighbours,
//! with BFD or not, and what health each announcement follows.
//!
//! ```text
//! bgp_announce {
//!     local_as 65001
//!     router_id 10.0.0.2
//!     hold_time 3
//!     bfd                               # default for every neighbour
//!     neighbor 10.0.0.1 {
//!         remote_as 65000
//!     }
//!     announce 192.168.66.251 {
//!         track_instance VI_1           # also withdraw unless VI_1 is MASTER
//!     }
//! }
//! ```
//!
//! keepalived does not know the block: it warns on each of its lines and reads the rest of the
//! file as before. The checks that need the whole file (the VIP belongs to a virtual server, the
//! tracked instance exists) run in [`validate`], once every section is read.

use crate::read::{Ctx, US_PER_SEC};
use crate::sections::lvs::model::{GroupEntry, LvsConfig, VirtualServer, VirtualServerKey};
use crate::sections::vrrp::model::VrrpConfig;
use crate::source::Span;
use crate::tree::Node;
use crate::write::ConfWriter;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

/// The top-level keyword.
pub const KEYWORD: &str = "bgp_announce";

/// BGP hold time when the file does not say: short, so that a peer whose BIRD stops without a
/// notification (a director that lost power) is dropped within seconds even without BFD.
pub const DEFAULT_HOLD_TIME_S: u16 = 3;
/// BFD transmit/receive interval when the file does not say.
pub const DEFAULT_BFD_INTERVAL_US: u64 = 100_000;
/// BFD detection multiplier when the file does not say: 100 ms × 5 = 0.5 s to detection, well
/// inside the 1 s in which a dead director's path must leave the router.
pub const DEFAULT_BFD_MULTIPLIER: u8 = 5;
/// How long `halb drain` waits for a withdrawn VIP's connections to end, when the file does not say.
pub const DEFAULT_DRAIN_TIMEOUT_US: u64 = 300 * US_PER_SEC;
/// Where Debian's BIRD 2 lives.
pub const DEFAULT_BIRD_BINARY: &str = "/usr/sbin/bird";

/// The whole `bgp_announce` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BgpAnnounce {
    pub local_as: u32,
    /// BIRD's router id; `None`: the first IPv4 `source_address`, else BIRD's own choice.
    pub router_id: Option<Ipv4Addr>,
    /// BGP hold time in seconds (BIRD's `hold time`); keepalive is a third of it.
    pub hold_time_s: u16,
    /// BFD for neighbours that do not say (`bfd` inside `neighbor`).
    pub bfd: bool,
    pub bfd_interval_us: u64,
    pub bfd_multiplier: u8,
    pub drain_timeout_us: u64,
    pub bird: BirdControl,
    pub neighbors: Vec<BgpNeighbor>,
    pub routes: Vec<AnnouncedRoute>,
}

/// How halb reaches BIRD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BirdControl {
    /// halb writes bird.conf and runs BIRD as its child (`bird_binary PATH`), which dies with halb.
    Supervised { binary: PathBuf },
    /// An existing BIRD, configured by its operator, reached over its control socket
    /// (`bird_socket PATH`); halb only enables and disables its per-VIP static protocols.
    Existing { socket: PathBuf },
}

/// `neighbor ADDRESS { ... }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpNeighbor {
    pub address: IpAddr,
    pub remote_as: u32,
    /// `None`: the block's `bfd`.
    pub bfd: Option<bool>,
    pub source_address: Option<IpAddr>,
    pub port: u16,
    /// eBGP multihop TTL; `None`: directly connected.
    pub multihop: Option<u8>,
}

impl BgpNeighbor {
    /// Whether BFD runs towards this neighbour.
    pub fn bfd(&self, announce: &BgpAnnounce) -> bool {
        self.bfd.unwrap_or(announce.bfd)
    }
}

/// `announce VIP[/PREFIX] { ... }`: one route, announced while its virtual servers have quorum
/// and the tracked VRRP instances and groups are MASTER.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnouncedRoute {
    pub vip: IpAddr,
    /// 32 or 128 unless written.
    pub prefix_len: u8,
    pub track_instances: Vec<String>,
    pub track_groups: Vec<String>,
}

impl AnnouncedRoute {
    /// `192.168.66.251/32`.
    pub fn prefix(&self) -> String {
        format!("{}/{}", self.vip, self.prefix_len)
    }

    /// Whether `ip` is inside the announced prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        prefix_contains(self, ip)
    }

    /// Whether traffic for virtual server `vs` arrives by this route: its address (or one of
    /// its group's addresses) is inside the prefix. Such a virtual server's quorum holds the
    /// announcement.
    pub fn covers(&self, vs: &VirtualServer, lvs: &LvsConfig) -> bool {
        match &vs.key {
            VirtualServerKey::Addr { ip, .. } => self.contains(*ip),
            VirtualServerKey::Fwmark(_) => false,
            VirtualServerKey::Group(name) => lvs.group(name).is_some_and(|g| {
                g.entries.iter().any(|e| match e {
                    GroupEntry::Range { first, last, .. } => {
                        self.contains(*first)
                            || self.contains(*last)
                            || in_range(self.vip, *first, *last)
                    }
                    GroupEntry::Fwmark { .. } => false,
                })
            }),
        }
    }
}

/// Places kept for [`validate`]; not part of the model.
#[derive(Debug, Clone, Default)]
pub struct Spans {
    pub block: Option<Span>,
    /// One per route, in order: the address, and each tracked name.
    pub routes: Vec<RouteSpans>,
    pub neighbors: Vec<Span>,
    pub bfd: Option<Span>,
}

#[derive(Debug, Clone)]
pub struct RouteSpans {
    pub vip: Span,
    pub instances: Vec<Span>,
    pub groups: Vec<Span>,
}

/// Reads a `bgp_announce` block. `None` (with an error) when it cannot be used at all.
pub fn read(node: &Node, ctx: &mut Ctx, spans: &mut Spans) -> Option<BgpAnnounce> {
    if spans.block.is_some() {
        ctx.diags
            .warn(node.span(), "a second 'bgp_announce' block - ignoring it")
            .set_help("write every neighbour and route in one block");
        return None;
    }
    spans.block = Some(node.span());
    let mut local_as = None;
    let mut a = BgpAnnounce {
        local_as: 0,
        router_id: None,
        hold_time_s: DEFAULT_HOLD_TIME_S,
        bfd: false,
        bfd_interval_us: DEFAULT_BFD_INTERVAL_US,
        bfd_multiplier: DEFAULT_BFD_MULTIPLIER,
        drain_timeout_us: DEFAULT_DRAIN_TIMEOUT_US,
        bird: BirdControl::Supervised {
            binary: PathBuf::from(DEFAULT_BIRD_BINARY),
        },
        neighbors: Vec::new(),
        routes: Vec::new(),
    };
    let mut control_span: Option<Span> = None;
    for n in ctx.block(node) {
        match n.name() {
            "local_as" => local_as = read_as(n, ctx).or(local_as),
            "router_id" => {
                if let Some(ip) = ctx.ip(n, 0) {
                    match ip {
                        IpAddr::V4(v4) => a.router_id = Some(v4),
                        IpAddr::V6(_) => {
                            ctx.diags.warn(
                                n.arg(0).map(|w| w.span).unwrap_or(n.span()),
                                "router_id: must be an IPv4 address (BGP's router id is 32 bits)",
                            );
                        }
                    }
                }
            }
            "hold_time" => {
                // RFC 4271 4.2: zero or at least three seconds.
                if let Some(v) = ctx.unsigned(n, 0, 3, 65535) {
                    a.hold_time_s = v as u16;
                }
            }
            "bfd" => {
                if let Some(b) = ctx.flag(n, 0) {
                    a.bfd = b;
                    spans.bfd = Some(n.span());
                }
            }
            "bfd_interval" => {
                // BIRD takes milliseconds; 10 ms is as fast as it is worth asking.
                if let Some(v) = ctx.timer(n, 0, 10_000, 10 * US_PER_SEC) {
                    a.bfd_interval_us = v;
                }
            }
            "bfd_multiplier" => {
                if let Some(v) = ctx.unsigned(n, 0, 1, 255) {
                    a.bfd_multiplier = v as u8;
                }
            }
            "drain_timeout" => {
                if let Some(v) = ctx.timer(n, 0, 0, 86_400 * US_PER_SEC) {
                    a.drain_timeout_us = v;
                }
            }
            "bird_binary" | "bird_socket" => {
                if control_span.is_some() {
                    ctx.diags
                        .warn(n.span(), format!("{}: BIRD already chosen - ignoring", n.name()))
                        .set_help(
                            "'bird_binary' runs BIRD as halb's child, 'bird_socket' uses one already running; keep one",
                        );
                    continue;
                }
                if let Some(path) = ctx.string(n, 0) {
                    if !path.starts_with('/') {
                        let w = n.arg(0).map(|w| w.span).unwrap_or(n.span());
                        ctx.diags
                            .warn(w, format!("{}: '{path}' is not an absolute path", n.name()));
                        continue;
                    }
                    control_span = Some(n.span());
                    let path = PathBuf::from(path);
                    a.bird = if n.name() == "bird_binary" {
                        BirdControl::Supervised { binary: path }
                    } else {
                        BirdControl::Existing { socket: path }
                    };
                }
            }
            "neighbor" | "neighbour" => {
                if let Some(nb) = read_neighbor(n, ctx) {
                    if a.neighbors.iter().any(|o| o.address == nb.address) {
                        ctx.diags.warn(
                            n.span(),
                            format!("neighbor {} written twice - ignoring this one", nb.address),
                        );
                    } else {
                        spans.neighbors.push(n.span());
                        a.neighbors.push(nb);
                    }
                }
            }
            "announce" => {
                if let Some((r, rs)) = read_route(n, ctx) {
                    if a.routes.iter().any(|o| o.prefix() == r.prefix()) {
                        ctx.diags.warn(
                            n.span(),
                            format!("announce {} written twice - ignoring this one", r.prefix()),
                        );
                    } else {
                        spans.routes.push(rs);
                        a.routes.push(r);
                    }
                }
            }
            _ => ctx.unknown(n),
        }
    }
    let Some(local_as) = local_as else {
        ctx.diags
            .error(
                node.span(),
                "bgp_announce without 'local_as' - nothing is announced",
            )
            .set_help("add 'local_as ASN' (the directors' autonomous system)");
        return None;
    };
    a.local_as = local_as;
    let supervised = matches!(a.bird, BirdControl::Supervised { .. });
    if supervised && a.neighbors.is_empty() {
        ctx.diags
            .error(
                node.span(),
                "bgp_announce without a 'neighbor' - there is nobody to announce to",
            )
            .set_help(
                "add 'neighbor ADDRESS { remote_as ASN }', or 'bird_socket PATH' to use a BIRD configured elsewhere",
            );
        return None;
    }
    if !supervised {
        if let (Some(bfd), true) = (spans.bfd, a.bfd) {
            if a.neighbors.is_empty() {
                ctx.diags
                    .warn(bfd, "bfd asked without a neighbor address - ignoring")
                    .set_help(
                        "BFD runs towards a neighbor; with 'bird_socket' configure it in BIRD, or write the neighbor here",
                    );
                a.bfd = false;
            }
        }
    }
    if a.routes.is_empty() {
        ctx.diags.warn(
            node.span(),
            "bgp_announce without an 'announce' - the sessions come up with no route",
        );
    }
    Some(a)
}

/// An AS number (1 to 2^32-1; 0 is reserved by RFC 7607).
fn read_as(n: &Node, ctx: &mut Ctx) -> Option<u32> {
    ctx.unsigned(n, 0, 1, u64::from(u32::MAX)).map(|v| v as u32)
}

fn read_neighbor(node: &Node, ctx: &mut Ctx) -> Option<BgpNeighbor> {
    let address = ctx.ip(node, 0)?;
    let mut remote_as = None;
    let mut nb = BgpNeighbor {
        address,
        remote_as: 0,
        bfd: None,
        source_address: None,
        port: 179,
        multihop: None,
    };
    for n in ctx.block(node) {
        match n.name() {
            "remote_as" => remote_as = read_as(n, ctx).or(remote_as),
            "bfd" => nb.bfd = ctx.flag(n, 0).or(nb.bfd),
            "source_address" => {
                if let Some(ip) = ctx.ip(n, 0) {
                    if ip.is_ipv4() != address.is_ipv4() {
                        ctx.diags.warn(
                            n.span(),
                            format!(
                                "source_address {ip} is not of the family of neighbor {address} - ignoring"
                            ),
                        );
                    } else {
                        nb.source_address = Some(ip);
                    }
                }
            }
            "port" => {
                if let Some(p) = ctx.unsigned(n, 0, 1, 65535) {
                    nb.port = p as u16;
                }
            }
            "multihop" => {
                if let Some(t) = ctx.unsigned(n, 0, 1, 255) {
                    nb.multihop = Some(t as u8);
                }
            }
            _ => ctx.unknown(n),
        }
    }
    let Some(remote_as) = remote_as else {
        ctx.diags
            .error(
                node.span(),
                format!("neighbor {address} without 'remote_as' - ignoring it"),
            )
            .set_help("add 'remote_as ASN' inside the neighbor's block");
        return None;
    };
    if address.is_unspecified() || address.is_multicast() || address.is_loopback() {
        let w = node.arg(0).map(|w| w.span).unwrap_or(node.span());
        ctx.diags.error(
            w,
            format!("neighbor {address}: not an address a BGP peer can have - ignoring it"),
        );
        return None;
    }
    nb.remote_as = remote_as;
    Some(nb)
}

fn read_route(node: &Node, ctx: &mut Ctx) -> Option<(AnnouncedRoute, RouteSpans)> {
    let w = ctx.arg(node, 0)?;
    let (addr, len) = match w.text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (w.text.as_str(), None),
    };
    let Some(vip) = crate::read::parse_ip(addr) else {
        ctx.diags.warn(
            w.span,
            format!("announce: '{}' is not an IP address", w.text),
        );
        return None;
    };
    let max = if vip.is_ipv4() { 32 } else { 128 };
    let prefix_len = match len {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(v) if v <= max => v,
            _ => {
                ctx.diags.warn(
                    w.span,
                    format!("announce: prefix length '{l}' outside range [0, {max}]"),
                );
                return None;
            }
        },
    };
    let mut rs = RouteSpans {
        vip: w.span,
        instances: Vec::new(),
        groups: Vec::new(),
    };
    let mut r = AnnouncedRoute {
        vip,
        prefix_len,
        track_instances: Vec::new(),
        track_groups: Vec::new(),
    };
    for n in node.children() {
        match n.name() {
            "track_instance" | "track_group" => {
                let instance = n.name() == "track_instance";
                for word in n.args() {
                    if instance {
                        r.track_instances.push(word.text.clone());
                        rs.instances.push(word.span);
                    } else {
                        r.track_groups.push(word.text.clone());
                        rs.groups.push(word.span);
                    }
                }
                if n.args().is_empty() {
                    ctx.arg(n, 0);
                }
            }
            _ => ctx.unknown(n),
        }
    }
    Some((r, rs))
}

/// The checks that need the whole file: every announced VIP is the address of a virtual server
/// (or inside a `virtual_server_group` range), tracked instances and groups exist, and no
/// neighbour is itself an announced VIP.
pub fn validate(
    a: &mut BgpAnnounce,
    spans: &Spans,
    lvs: &LvsConfig,
    vrrp: &VrrpConfig,
    ctx: &mut Ctx,
) {
    let mut keep = Vec::with_capacity(a.routes.len());
    for (r, rs) in a.routes.iter().zip(&spans.routes) {
        let mut ok = true;
        if !vip_has_virtual_server(r, lvs) {
            ctx.diags
                .warn(
                    rs.vip,
                    format!(
                        "announce {}: no virtual_server has this address - not announcing it",
                        r.prefix()
                    ),
                )
                .set_help("a route is announced while a virtual server on its address has quorum");
            ok = false;
        }
        for (name, span) in r.track_instances.iter().zip(&rs.instances) {
            if !vrrp.instances.iter().any(|i| &i.name == name) {
                ctx.diags.warn(
                    *span,
                    format!(
                        "announce {}: track_instance {name} doesn't exist",
                        r.prefix()
                    ),
                );
                ok = false;
            }
        }
        for (name, span) in r.track_groups.iter().zip(&rs.groups) {
            if !vrrp.sync_groups.iter().any(|g| &g.name == name) {
                ctx.diags.warn(
                    *span,
                    format!("announce {}: track_group {name} doesn't exist", r.prefix()),
                );
                ok = false;
            }
        }
        if let Some((nb, span)) = a
            .neighbors
            .iter()
            .zip(&spans.neighbors)
            .find(|(nb, _)| prefix_contains(r, nb.address))
        {
            ctx.diags.warn(
                *span,
                format!(
                    "neighbor {} is inside the announced {} - the session would follow the route",
                    nb.address,
                    r.prefix()
                ),
            );
        }
        keep.push(ok);
    }
    let mut i = 0;
    a.routes.retain(|_| {
        i += 1;
        keep[i - 1]
    });
}

fn prefix_contains(r: &AnnouncedRoute, ip: IpAddr) -> bool {
    fn bits(ip: IpAddr) -> (u128, u8) {
        match ip {
            IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
            IpAddr::V6(v) => (u128::from(v), 128),
        }
    }
    let (net, width) = bits(r.vip);
    let (addr, w2) = bits(ip);
    if width != w2 {
        return false;
    }
    let shift = u32::from(width - r.prefix_len.min(width));
    if shift >= 128 {
        return true;
    }
    (net >> shift) == (addr >> shift)
}

/// Whether a virtual server (or a group range) has an address inside the announced prefix.
fn vip_has_virtual_server(r: &AnnouncedRoute, lvs: &LvsConfig) -> bool {
    lvs.virtual_servers.iter().any(|vs| r.covers(vs, lvs))
}

fn in_range(ip: IpAddr, first: IpAddr, last: IpAddr) -> bool {
    match (ip, first, last) {
        (IpAddr::V4(i), IpAddr::V4(f), IpAddr::V4(l)) => f <= i && i <= l,
        (IpAddr::V6(i), IpAddr::V6(f), IpAddr::V6(l)) => f <= i && i <= l,
        _ => false,
    }
}

/// Writes the block back out.
pub fn write(a: &BgpAnnounce, w: &mut ConfWriter) {
    w.open(KEYWORD);
    w.kv("local_as", a.local_as);
    if let Some(id) = a.router_id {
        w.kv("router_id", id);
    }
    if a.hold_time_s != DEFAULT_HOLD_TIME_S {
        w.kv("hold_time", a.hold_time_s);
    }
    w.flag("bfd", a.bfd);
    if a.bfd_interval_us != DEFAULT_BFD_INTERVAL_US {
        w.kv("bfd_interval", crate::read::format_us(a.bfd_interval_us));
    }
    if a.bfd_multiplier != DEFAULT_BFD_MULTIPLIER {
        w.kv("bfd_multiplier", a.bfd_multiplier);
    }
    if a.drain_timeout_us != DEFAULT_DRAIN_TIMEOUT_US {
        w.kv("drain_timeout", crate::read::format_us(a.drain_timeout_us));
    }
    match &a.bird {
        BirdControl::Supervised { binary } => {
            if binary.as_os_str() != DEFAULT_BIRD_BINARY {
                w.kv("bird_binary", binary.display());
            }
        }
        BirdControl::Existing { socket } => w.kv("bird_socket", socket.display()),
    }
    for nb in &a.neighbors {
        w.open(&format!("neighbor {}", nb.address));
        w.kv("remote_as", nb.remote_as);
        if let Some(b) = nb.bfd {
            w.kv("bfd", if b { "on" } else { "off" });
        }
        if let Some(s) = nb.source_address {
            w.kv("source_address", s);
        }
        if nb.port != 179 {
            w.kv("port", nb.port);
        }
        if let Some(t) = nb.multihop {
            w.kv("multihop", t);
        }
        w.close();
    }
    for r in &a.routes {
        let full = if r.vip.is_ipv4() { 32 } else { 128 };
        let head = if r.prefix_len == full {
            format!("announce {}", r.vip)
        } else {
            format!("announce {}", r.prefix())
        };
        if r.track_instances.is_empty() && r.track_groups.is_empty() {
            w.line(&head);
            continue;
        }
        w.open(&head);
        for i in &r.track_instances {
            w.kv("track_instance", i);
        }
        for g in &r.track_groups {
            w.kv("track_group", g);
        }
        w.close();
    }
    w.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(vip: &str, len: u8) -> AnnouncedRoute {
        AnnouncedRoute {
            vip: vip.parse().unwrap(),
            prefix_len: len,
            track_instances: vec![],
            track_groups: vec![],
        }
    }

    #[test]
    fn prefixes_contain_their_addresses() {
        let r = route("192.168.66.0", 24);
        assert!(prefix_contains(&r, "192.168.66.251".parse().unwrap()));
        assert!(!prefix_contains(&r, "192.168.67.1".parse().unwrap()));
        assert!(!prefix_contains(&r, "::1".parse().unwrap()));
        assert!(prefix_contains(
            &route("0.0.0.0", 0),
            "10.0.0.1".parse().unwrap()
        ));
        assert!(prefix_contains(
            &route("2001:db8::1", 128),
            "2001:db8::1".parse().unwrap()
        ));
    }
}
