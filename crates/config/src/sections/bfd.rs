//! `bfd_instance NAME { ... }`, read as keepalived 2.2's bfd_parser.c reads it. The block stays
//! in [`crate::model::Config::other`] as written (the writer puts it back unchanged); this
//! module adds the typed [`BfdInstance`] that halb runs.

use crate::read::Ctx;
use crate::sections::lvs::block_end;
use crate::tree::Node;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::net::IpAddr;

/// keepalived's longest BFD instance name (BFD_INAME_MAX - 1).
const MAX_NAME: usize = 31;
/// keepalived's bounds of the intervals, in ms with up to three decimals (bfd.h).
const INTERVAL_MAX_MS: u64 = u32::MAX as u64 / 1000;
const IDLE_TX_MIN_MS: u64 = 1000;

/// One `bfd_instance`, with keepalived's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BfdInstance {
    pub name: String,
    /// `neighbor_ip` / `neighbour_ip`.
    pub neighbor_ip: IpAddr,
    pub source_ip: Option<IpAddr>,
    /// `min_rx`, µs (written in ms); default 10 ms.
    pub min_rx_us: u64,
    /// `min_tx`, µs; default 10 ms.
    pub min_tx_us: u64,
    /// `idle_tx`, µs: the rate while the session is not Up; default 1 s.
    pub idle_tx_us: u64,
    /// `multiplier`, 1..=255; default 5.
    pub multiplier: u8,
    pub passive: bool,
    /// `ttl` / `hoplimit`: sent with, and (less `max_hops`) the least accepted; default 255
    /// for IPv4 and 64 for IPv6, as keepalived 2.2.7 has it.
    pub ttl: u8,
    /// `max_hops`, -1..=255; -1 accepts any TTL.
    pub max_hops: i16,
    /// `weight` [`reverse`]: the default weight of `track_bfd` lines naming this instance.
    pub weight: i32,
    pub weight_reverse: bool,
    /// `vrrp` / `checker`: which processes hear of it; both when neither is given.
    pub vrrp: bool,
    pub checker: bool,
}

/// keepalived's BFD_CONTROL_TTL and BFD_CONTROL_HOPLIMIT.
fn default_ttl(neighbor: IpAddr) -> u8 {
    if neighbor.is_ipv4() {
        255
    } else {
        64
    }
}

/// The names and (neighbour, source) pairs of the instances read so far: each new block is a
/// lookup, not a scan of the earlier ones.
#[derive(Debug, Default)]
pub struct Seen {
    names: HashSet<String>,
    peers: HashSet<(IpAddr, Option<IpAddr>)>,
}

/// Reads one block; `None` when keepalived would ignore the instance (with its message).
pub fn read(node: &Node, seen: &mut Seen, ctx: &mut Ctx) -> Option<BfdInstance> {
    let b = read_block(node, seen, ctx)?;
    seen.names.insert(b.name.clone());
    seen.peers.insert((b.neighbor_ip, b.source_ip));
    Some(b)
}

fn read_block(node: &Node, existing: &Seen, ctx: &mut Ctx) -> Option<BfdInstance> {
    let name = ctx.string(node, 0)?;
    if name.len() > MAX_NAME {
        ctx.diags.warn(
            node.line_span(),
            format!(
                "Configuration error: BFD instance {name} name too long (maximum length is \
                 {MAX_NAME} characters) - ignoring"
            ),
        );
        return None;
    }
    if existing.names.contains(&name) {
        ctx.diags.warn(
            node.line_span(),
            format!("Configuration error: BFD instance {name} already configured - ignoring"),
        );
        return None;
    }
    let mut neighbor = None;
    let mut neighbor_word = "neighbor";
    let mut b = BfdInstance {
        name: name.clone(),
        neighbor_ip: IpAddr::from([0, 0, 0, 0]),
        source_ip: None,
        min_rx_us: 10_000,
        min_tx_us: 10_000,
        idle_tx_us: 1_000_000,
        multiplier: 5,
        passive: false,
        ttl: 0,
        max_hops: 0,
        weight: 0,
        weight_reverse: false,
        vrrp: false,
        checker: false,
    };
    for n in ctx.block(node) {
        ctx.no_block(n);
        match n.name() {
            "neighbor_ip" | "neighbour_ip" => {
                if n.name() == "neighbour_ip" {
                    neighbor_word = "neighbour";
                }
                let Some(word) = ctx.arg(n, 0) else { continue };
                match crate::read::parse_ip(&word.text) {
                    Some(ip) => neighbor = Some(ip),
                    None => {
                        ctx.diags.warn(
                            word.span,
                            format!(
                                "Configuration error: BFD instance {name} has malformed \
                                 {neighbor_word} address {}, ignoring instance",
                                word.text
                            ),
                        );
                        return None;
                    }
                }
            }
            "source_ip" => {
                let Some(word) = ctx.arg(n, 0) else { continue };
                match crate::read::parse_ip(&word.text) {
                    Some(ip) => b.source_ip = Some(ip),
                    None => {
                        ctx.diags.warn(
                            word.span,
                            format!(
                                "Configuration error: BFD instance {name} has malformed \
                                 source address {}, ignoring",
                                word.text
                            ),
                        );
                    }
                }
            }
            "min_rx" => {
                if let Some(v) = ctx.decimal(n, 0, 3, 1000, INTERVAL_MAX_MS * 1000) {
                    b.min_rx_us = v;
                }
            }
            "min_tx" => {
                if let Some(v) = ctx.decimal(n, 0, 3, 1000, INTERVAL_MAX_MS * 1000) {
                    b.min_tx_us = v;
                }
            }
            "idle_tx" => {
                if let Some(v) = ctx.decimal(n, 0, 3, IDLE_TX_MIN_MS * 1000, INTERVAL_MAX_MS * 1000)
                {
                    b.idle_tx_us = v;
                }
            }
            "multiplier" => {
                if let Some(v) = ctx.unsigned(n, 0, 1, 255) {
                    b.multiplier = u8::try_from(v).unwrap_or(u8::MAX);
                }
            }
            "passive" => b.passive = true,
            "ttl" | "hoplimit" => {
                if let Some(v) = ctx.unsigned(n, 0, 1, 255) {
                    b.ttl = u8::try_from(v).unwrap_or(u8::MAX);
                }
            }
            "max_hops" => {
                if let Some(v) = ctx.int(n, 0, -1, 255) {
                    b.max_hops = i16::try_from(v).unwrap_or(0);
                }
            }
            "weight" => {
                if let Some(v) = ctx.int(n, 0, -253, 253) {
                    b.weight = i32::try_from(v).unwrap_or(0);
                }
                match n.arg(1).map(|w| (w, w.text.as_str())) {
                    None => {}
                    Some((_, "reverse")) => b.weight_reverse = true,
                    Some((w, other)) => {
                        ctx.diags.warn(
                            w.span,
                            format!(
                                "Configuration error: BFD instance {name} unknown weight \
                                 option {other}"
                            ),
                        );
                    }
                }
            }
            "vrrp" => b.vrrp = true,
            "checker" => b.checker = true,
            _ => ctx.unknown(n),
        }
    }
    let Some(neighbor) = neighbor else {
        ctx.diags.warn(
            block_end(node),
            format!(
                "Configuration error: BFD instance {name} has no {neighbor_word} address set, \
                 disabling instance"
            ),
        );
        return None;
    };
    b.neighbor_ip = neighbor;
    if b.source_ip
        .is_some_and(|s| s.is_ipv4() != neighbor.is_ipv4())
    {
        ctx.diags.warn(
            block_end(node),
            format!(
                "Configuration error: BFD instance {name} source address {} and \
                 {neighbor_word} address {neighbor} are not of the same family, disabling \
                 instance",
                b.source_ip.map(|s| s.to_string()).unwrap_or_default()
            ),
        );
        return None;
    }
    if existing.peers.contains(&(neighbor, b.source_ip)) {
        ctx.diags.warn(
            block_end(node),
            format!(
                "Configuration error: BFD instance {name} has duplicate {neighbor_word} \
                 address {neighbor}, ignoring instance"
            ),
        );
        return None;
    }
    if b.ttl == 0 {
        b.ttl = default_ttl(neighbor);
    }
    if b.max_hops > i16::from(b.ttl) {
        ctx.diags.warn(
            block_end(node),
            format!("BFD instance {name}: max_hops exceeds ttl/hoplimit - setting to ttl/hoplimit"),
        );
        b.max_hops = i16::from(b.ttl);
    }
    if !b.vrrp && !b.checker {
        b.vrrp = true;
        b.checker = true;
    }
    Some(b)
}

impl BfdInstance {
    /// Whether a packet's TTL / hop limit passes keepalived's check
    /// (bfd.c `bfd_check_packet_ttl`): at least `ttl - max_hops`.
    pub fn accepts_ttl(&self, ttl: u8) -> bool {
        self.max_hops < 0 || i16::from(ttl) + self.max_hops >= i16::from(self.ttl)
    }
}
