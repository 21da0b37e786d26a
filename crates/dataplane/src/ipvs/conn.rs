//! The connection table. IPVS has no netlink command for it; `ipvsadm -L -c` and halb both read
//! `/proc/net/ip_vs_conn`, which shows the table of the reader's network namespace:
//!
//! ```text
//! Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
//! TCP C0A84264 D431 C0A842FB 0CEA C0A842FD 0CEA ESTABLISHED     899
//! ```
//!
//! IPv4 addresses are 8 hex digits (the address as a big-endian number), IPv6 ones the kernel's
//! `%pI6` (eight groups of four hex digits), ports 4 hex digits, the expiry in seconds.
//! Persistence templates appear too, with client port 0; those of firewall-mark services have
//! protocol `IP` and are left out, since they belong to no protocol.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use halb_lb::table::ProtocolKey;

use crate::ConnectionEntry;

pub const PROC_PATH: &str = "/proc/net/ip_vs_conn";

/// Reads the connection table of the calling thread's network namespace.
pub fn read() -> io::Result<Vec<ConnectionEntry>> {
    let text = std::fs::read_to_string(PROC_PATH)?;
    Ok(parse(&text))
}

/// Parses the content of `/proc/net/ip_vs_conn`; lines that do not parse (the header, entries
/// of protocols halb does not serve) are skipped.
pub fn parse(text: &str) -> Vec<ConnectionEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<ConnectionEntry> {
    let mut fields = line.split_whitespace();
    let protocol = match fields.next()? {
        "TCP" => ProtocolKey::Tcp,
        "UDP" => ProtocolKey::Udp,
        "SCTP" => ProtocolKey::Sctp,
        _ => return None,
    };
    let mut endpoint = || -> Option<SocketAddr> {
        let ip = parse_addr(fields.next()?)?;
        let port = u16::from_str_radix(fields.next()?, 16).ok()?;
        Some(SocketAddr::new(ip, port))
    };
    let client = endpoint()?;
    let virtual_addr = endpoint()?;
    let dest = endpoint()?;
    let state = fields.next()?.to_string();
    let expires_s = fields.next()?.parse().ok()?;
    Some(ConnectionEntry {
        protocol,
        client,
        virtual_addr,
        dest,
        state,
        expires_s,
    })
}

fn parse_addr(text: &str) -> Option<IpAddr> {
    if text.contains(':') {
        text.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    } else if text.len() == 8 {
        u32::from_str_radix(text, 16)
            .ok()
            .map(|n| IpAddr::V4(Ipv4Addr::from(n)))
    } else {
        None
    }
}
