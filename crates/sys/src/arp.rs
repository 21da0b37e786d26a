//! Announcing that a virtual address has moved: gratuitous ARP for IPv4 and unsolicited
//! neighbour advertisements for IPv6, built as whole Ethernet frames and sent through an
//! [`PacketSocket`], the way keepalived sends them (vrrp_arp.c, vrrp_ndisc.c).
//!
//! Frames are built here rather than left to the kernel because the kernel has no call that
//! sends an ARP request for an address to itself, nor an unsolicited NA with the override flag.
//! The frame builders are pure functions, tested on bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::{Error, IoContext, Result};
use crate::link::{Link, MacAddr};
use crate::packet_socket::PacketSocket;

const BROADCAST_MAC: MacAddr = [0xff; 6];
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ARP_HARDWARE_ETHERNET: u16 = 1;
const ARP_REQUEST: u16 = 1;
const ICMPV6: u8 = 58;
const ICMPV6_NEIGHBOUR_ADVERT: u8 = 136;
const NA_FLAG_ROUTER: u8 = 0x80;
const NA_FLAG_OVERRIDE: u8 = 0x20;
const ND_OPTION_TARGET_LINK_ADDRESS: u8 = 2;
/// Neighbour discovery messages must arrive with hop limit 255 (RFC 4861 §7.1.2), which
/// proves they were not forwarded.
const ND_HOP_LIMIT: u8 = 255;
/// ff02::1, all nodes.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// Ethernet header + ARP for IPv4 over Ethernet.
pub const GRATUITOUS_ARP_LEN: usize = 14 + 28;
/// Ethernet header + IPv6 header + NA (24) + target link-layer address option (8).
pub const UNSOLICITED_NA_LEN: usize = 14 + 40 + 24 + 8;

/// A gratuitous ARP as keepalived sends it: an ARP *request* from `mac` for `address` with
/// sender and target address both `address`, target hardware address all ones, to the
/// Ethernet broadcast. Neighbours that have `address` in their cache update it to `mac`.
pub fn gratuitous_arp_frame(mac: MacAddr, address: Ipv4Addr) -> [u8; GRATUITOUS_ARP_LEN] {
    let mut frame = [0u8; GRATUITOUS_ARP_LEN];
    let mut w = Writer::new(&mut frame);
    w.put(&BROADCAST_MAC);
    w.put(&mac);
    w.put(&ETHERTYPE_ARP.to_be_bytes());
    w.put(&ARP_HARDWARE_ETHERNET.to_be_bytes());
    w.put(&ETHERTYPE_IPV4.to_be_bytes());
    w.put(&[6, 4]);
    w.put(&ARP_REQUEST.to_be_bytes());
    w.put(&mac);
    w.put(&address.octets());
    w.put(&BROADCAST_MAC);
    w.put(&address.octets());
    frame
}

/// An unsolicited neighbour advertisement (RFC 4861 §7.2.6) as keepalived sends it: from
/// `address` to all nodes, hop limit 255, the override flag set (so that caches take the new
/// link-layer address), the router flag when the interface forwards, and the target
/// link-layer address option carrying `mac`.
pub fn unsolicited_na_frame(
    mac: MacAddr,
    address: Ipv6Addr,
    router: bool,
) -> [u8; UNSOLICITED_NA_LEN] {
    const PAYLOAD_LEN: u16 = 24 + 8;
    let mut frame = [0u8; UNSOLICITED_NA_LEN];
    let mut w = Writer::new(&mut frame);
    // 33:33 + the low 32 bits of the group (RFC 2464 §7).
    w.put(&[0x33, 0x33, 0, 0, 0, 1]);
    w.put(&mac);
    w.put(&ETHERTYPE_IPV6.to_be_bytes());
    w.put(&[0x60, 0, 0, 0]);
    w.put(&PAYLOAD_LEN.to_be_bytes());
    w.put(&[ICMPV6, ND_HOP_LIMIT]);
    w.put(&address.octets());
    w.put(&ALL_NODES.octets());
    let icmp_start = w.position();
    let flags = NA_FLAG_OVERRIDE | if router { NA_FLAG_ROUTER } else { 0 };
    w.put(&[ICMPV6_NEIGHBOUR_ADVERT, 0, 0, 0, flags, 0, 0, 0]);
    w.put(&address.octets());
    w.put(&[ND_OPTION_TARGET_LINK_ADDRESS, 1]);
    w.put(&mac);
    let checksum = icmpv6_checksum(address, ALL_NODES, &frame[icmp_start..]);
    frame[icmp_start + 2..icmp_start + 4].copy_from_slice(&checksum.to_be_bytes());
    frame
}

/// The ICMPv6 checksum of `message` (with its checksum field zero) between `src` and `dst`:
/// the one's complement sum over the IPv6 pseudo-header (RFC 8200 §8.1) and the message.
pub fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, message: &[u8]) -> u16 {
    let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    let mut sum = 0u32;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
            sum += u32::from(word);
            sum = (sum & 0xffff) + (sum >> 16);
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&len.to_be_bytes());
    add(&[0, 0, 0, ICMPV6]);
    add(message);
    !(sum as u16)
}

/// Fills a fixed-size frame front to back.
struct Writer<'a> {
    frame: &'a mut [u8],
    at: usize,
}

impl<'a> Writer<'a> {
    fn new(frame: &'a mut [u8]) -> Writer<'a> {
        Writer { frame, at: 0 }
    }

    fn put(&mut self, bytes: &[u8]) {
        // The frames are sized for exactly what their builders put in.
        self.frame[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }

    fn position(&self) -> usize {
        self.at
    }
}

/// Sends gratuitous ARPs and unsolicited NAs out of one interface.
pub struct Announcer {
    socket: PacketSocket,
    interface: String,
    mac: MacAddr,
}

impl Announcer {
    /// A packet socket on `link`, which must have a MAC address. The socket receives nothing.
    /// Needs `CAP_NET_RAW`, and a tokio runtime with I/O enabled.
    pub fn open(link: &Link) -> Result<Announcer> {
        let context = || format!("opening a packet socket on interface {}", link.name);
        let mac = link
            .mac
            .ok_or_else(|| Error::invalid(context(), "the interface has no Ethernet address"))?;
        let socket = PacketSocket::open(link.index, None).context(context)?;
        Ok(Announcer {
            socket,
            interface: link.name.clone(),
            mac,
        })
    }

    /// A gratuitous ARP or an unsolicited NA for `address`, as its family needs; for IPv6
    /// `router` sets the NA's router flag (keepalived sets it when the interface forwards).
    pub fn announce(&self, address: IpAddr, router: bool) -> Result<()> {
        match address {
            IpAddr::V4(v4) => self.send_gratuitous_arp(v4),
            IpAddr::V6(v6) => self.send_unsolicited_na(v6, router),
        }
    }

    pub fn send_gratuitous_arp(&self, address: Ipv4Addr) -> Result<()> {
        self.send(&gratuitous_arp_frame(self.mac, address), || {
            format!(
                "sending gratuitous ARP for {address} on interface {}",
                self.interface
            )
        })
    }

    pub fn send_unsolicited_na(&self, address: Ipv6Addr, router: bool) -> Result<()> {
        self.send(&unsolicited_na_frame(self.mac, address, router), || {
            format!(
                "sending unsolicited neighbour advertisement for {address} on interface {}",
                self.interface
            )
        })
    }

    fn send(&self, frame: &[u8], context: impl Fn() -> String) -> Result<()> {
        let sent = self.socket.send(frame).context(&context)?;
        if sent != frame.len() {
            return Err(Error::invalid(
                context(),
                format!("sent {sent} of {} bytes", frame.len()),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = [0x02, 0x66, 0, 0, 0, 0x01];

    #[test]
    fn gratuitous_arp_matches_keepalived() {
        let frame = gratuitous_arp_frame(MAC, Ipv4Addr::new(192, 168, 66, 251));
        let expected: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // to everyone
            0x02, 0x66, 0, 0, 0, 0x01, // from our MAC
            0x08, 0x06, // ARP
            0, 1, 0x08, 0, 6, 4, // Ethernet / IPv4
            0, 1, // request
            0x02, 0x66, 0, 0, 0, 0x01, 192, 168, 66, 251, // sender: us, the VIP
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 192, 168, 66, 251, // target: the VIP
        ];
        assert_eq!(frame, expected);
    }

    #[test]
    fn unsolicited_na_layout_and_checksum() {
        let vip: Ipv6Addr = "fd66::251".parse().unwrap();
        let frame = unsolicited_na_frame(MAC, vip, false);
        assert_eq!(frame[..6], [0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(frame[6..12], MAC);
        assert_eq!(frame[12..14], [0x86, 0xdd]);
        assert_eq!(frame[14] >> 4, 6);
        assert_eq!(frame[18..20], [0, 32], "payload length");
        assert_eq!(frame[20], 58, "next header ICMPv6");
        assert_eq!(frame[21], 255, "hop limit");
        assert_eq!(frame[22..38], vip.octets());
        assert_eq!(frame[38..54], ALL_NODES.octets());
        let icmp = &frame[54..];
        assert_eq!(icmp[0], 136);
        assert_eq!(icmp[4], 0x20, "override only");
        assert_eq!(icmp[8..24], vip.octets());
        assert_eq!(icmp[24..32], [2, 1, 0x02, 0x66, 0, 0, 0, 0x01]);
        // A correct checksum makes the sum over pseudo-header and message come out as zero.
        assert_eq!(icmpv6_checksum(vip, ALL_NODES, icmp), 0);
        let router = unsolicited_na_frame(MAC, vip, true);
        assert_eq!(router[54 + 4], 0xa0);
        assert_eq!(icmpv6_checksum(vip, ALL_NODES, &router[54..]), 0);
    }

    #[test]
    fn checksum_of_a_known_message() {
        // The sum of the pseudo-header and a zero-length message is the folded sum of the
        // addresses and the next header.
        let src: Ipv6Addr = "::1".parse().unwrap();
        let dst: Ipv6Addr = "::2".parse().unwrap();
        assert_eq!(icmpv6_checksum(src, dst, &[]), !(1u16 + 2 + 58));
        // An odd length pads with a zero byte.
        assert_eq!(
            icmpv6_checksum(src, dst, &[0x01]),
            !(1u16 + 2 + 1 + 58 + 0x0100)
        );
    }
}
