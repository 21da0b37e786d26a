//! Raw IP protocol 112 sockets for VRRP adverts, IPv4 and IPv6, one per interface and family.
//!
//! A socket is bound to its interface (`SO_BINDTODEVICE`), joins the multicast groups it is
//! given on that interface, and receives only those groups and unicast, so that instances
//! with different `mcast_dst_ip`s, or unicast and multicast instances, on one interface stay
//! apart. For IPv4 the kernel filters (`IP_MULTICAST_ALL` off, as keepalived sets it); an IPv6
//! raw socket gets every group that any socket joined on the interface, whatever
//! `IPV6_MULTICAST_ALL` says, so [`VrrpSocket::recv`] drops the others itself. It
//! sends with TTL / hop limit 255 (RFC 3768 §7.1, RFC 5798 §7.1) and traffic class "network
//! control" (0xc0), without looping its own multicast back.
//!
//! What the kernel hands a raw socket differs by family, and [`VrrpSocket::recv`] evens it out:
//! - IPv4: the whole IP header, then the VRRP message; the TTL, source and destination are read
//!   from that header.
//! - IPv6: the VRRP message alone; the source comes from `recvmsg`'s address, the destination
//!   and interface from `IPV6_PKTINFO`, the hop limit from `IPV6_HOPLIMIT`.
//!
//! The kernel is not asked to checksum IPv6 adverts (`IPV6_CHECKSUM`, which keepalived sets):
//! [`halb_vrrp::packet`] computes and checks the checksum, so that a bad one is counted in the
//! instance's statistics rather than dropped unseen.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use halb_vrrp::packet::{self, Advert, Endpoints, PacketContext, VRRP_PROTOCOL, VRRP_TTL};
use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    SockaddrIn, SockaddrIn6, SockaddrStorage,
};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

use crate::error::{Error, IoContext, Result};
use crate::link::interface_index;

/// keepalived's traffic class for adverts: IPTOS_PREC_INTERNETCONTROL (CS6).
const NETWORK_CONTROL: u8 = 0xc0;
/// Room for the largest VRRP message (8 + 255 × 16 + 8 bytes) behind the largest IPv4 header,
/// and for anything else a jumbo frame may carry, so that nothing is cut unseen.
const RECEIVE_BUFFER: usize = 9216;
const IPV4_MIN_HEADER: usize = 20;

/// The address family of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    pub fn of(address: IpAddr) -> IpFamily {
        match address {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    /// The group adverts go to by default: 224.0.0.18 or ff02::12.
    pub fn vrrp_group(self) -> IpAddr {
        match self {
            IpFamily::V4 => packet::IPV4_MULTICAST_GROUP.into(),
            IpFamily::V6 => packet::IPV6_MULTICAST_GROUP.into(),
        }
    }
}

/// A VRRP packet as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedPacket {
    /// The VRRP message: the IP payload, without the IPv4 header.
    pub message: Vec<u8>,
    /// Source and destination from the IP header; the destination is a multicast group or
    /// our unicast address.
    pub endpoints: Endpoints,
    /// The TTL / hop limit it arrived with.
    pub ttl: u8,
    /// The interface it arrived on.
    pub interface_index: u32,
}

impl ReceivedPacket {
    pub fn src(&self) -> IpAddr {
        self.endpoints.src()
    }

    pub fn dst(&self) -> IpAddr {
        self.endpoints.dst()
    }

    /// What [`halb_vrrp::Instance::handle_packet`] needs to know; the instance itself skips
    /// the TTL check when it is a unicast one.
    pub fn context(&self) -> PacketContext {
        PacketContext {
            endpoints: self.endpoints,
            ttl: Some(self.ttl),
        }
    }
}

/// A raw VRRP socket bound to one interface.
pub struct VrrpSocket {
    fd: AsyncFd<Socket>,
    interface: String,
    index: u32,
    family: IpFamily,
    groups: Vec<IpAddr>,
}

impl VrrpSocket {
    /// Opens a socket on `interface` and joins `groups` there (the standard group is
    /// [`IpFamily::vrrp_group`]; a unicast-only instance passes none). Must run inside a tokio
    /// runtime, in the network namespace of the interface; needs `CAP_NET_RAW`.
    pub fn open(interface: &str, family: IpFamily, groups: &[IpAddr]) -> Result<VrrpSocket> {
        let index = interface_index(interface)?;
        let context = || format!("opening a raw VRRP {family:?} socket on interface {interface}");
        let domain = match family {
            IpFamily::V4 => Domain::IPV4,
            IpFamily::V6 => Domain::IPV6,
        };
        let socket = Socket::new(
            domain,
            Type::RAW,
            Some(Protocol::from(i32::from(VRRP_PROTOCOL))),
        )
        .context(context)?;
        socket.set_nonblocking(true).context(context)?;
        socket
            .bind_device(Some(interface.as_bytes()))
            .context(context)?;
        match family {
            IpFamily::V4 => {
                socket.set_multicast_loop_v4(false).context(context)?;
                socket
                    .set_multicast_ttl_v4(VRRP_TTL.into())
                    .context(context)?;
                socket.set_ttl_v4(VRRP_TTL.into()).context(context)?;
                socket.set_multicast_all_v4(false).context(context)?;
                socket.set_tos_v4(NETWORK_CONTROL.into()).context(context)?;
                setsockopt(&socket, sockopt::Ipv4PacketInfo, &true).context(context)?;
            }
            IpFamily::V6 => {
                socket.set_multicast_loop_v6(false).context(context)?;
                socket
                    .set_multicast_hops_v6(VRRP_TTL.into())
                    .context(context)?;
                socket
                    .set_unicast_hops_v6(VRRP_TTL.into())
                    .context(context)?;
                socket.set_multicast_all_v6(false).context(context)?;
                socket.set_multicast_if_v6(index).context(context)?;
                setsockopt(&socket, sockopt::Ipv6TClass, &NETWORK_CONTROL.into())
                    .context(context)?;
                setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true).context(context)?;
                socket.set_recv_hoplimit_v6(true).context(context)?;
            }
        }
        // SAFETY: the Socket owns its descriptor, keeps it open until it is dropped (with the
        // AsyncFd that owns it) and always reports the same one.
        let fd = unsafe { AsyncFd::register(socket) }
            .map_err(|e| e.into_parts().1)
            .context(context)?;
        let mut vrrp_socket = VrrpSocket {
            fd,
            interface: interface.to_string(),
            index,
            family,
            groups: Vec::new(),
        };
        for group in groups {
            vrrp_socket.join(*group)?;
        }
        Ok(vrrp_socket)
    }

    pub fn interface(&self) -> &str {
        &self.interface
    }

    pub fn interface_index(&self) -> u32 {
        self.index
    }

    pub fn family(&self) -> IpFamily {
        self.family
    }

    /// The groups joined.
    pub fn groups(&self) -> &[IpAddr] {
        &self.groups
    }

    /// Joins the multicast `group` on the socket's interface.
    pub fn join(&mut self, group: IpAddr) -> Result<()> {
        if self.groups.contains(&group) {
            return Ok(());
        }
        let context = || {
            format!(
                "joining multicast group {group} on interface {}",
                self.interface
            )
        };
        if !group.is_multicast() || IpFamily::of(group) != self.family {
            return Err(Error::invalid(
                context(),
                format!("not a {:?} multicast address", self.family),
            ));
        }
        let socket = self.fd.get_ref();
        match group {
            IpAddr::V4(group) => socket
                .join_multicast_v4_n(&group, &InterfaceIndexOrAddress::Index(self.index))
                .context(context)?,
            IpAddr::V6(group) => socket
                .join_multicast_v6(&group, self.index)
                .context(context)?,
        }
        self.groups.push(group);
        Ok(())
    }

    /// Encodes `advert` for `src` → `dst` (the VRRPv3 and IPv6 checksums cover them) and
    /// sends it.
    pub async fn send_advert(&self, advert: &Advert, src: IpAddr, dst: IpAddr) -> Result<()> {
        let endpoints = Endpoints::new(src, dst).ok_or_else(|| {
            Error::invalid(
                self.send_context(src, dst),
                "source and destination are of different families",
            )
        })?;
        self.send(&packet::encode(advert, &endpoints), src, dst)
            .await
    }

    /// Sends a VRRP message (the IP payload) from `src`, which must be an address of this
    /// host, to `dst`, a multicast group or a unicast peer, out of the socket's interface.
    pub async fn send(&self, message: &[u8], src: IpAddr, dst: IpAddr) -> Result<()> {
        if IpFamily::of(src) != self.family || IpFamily::of(dst) != self.family {
            return Err(Error::invalid(
                self.send_context(src, dst),
                format!("this socket sends {:?} only", self.family),
            ));
        }
        loop {
            let mut guard = self
                .fd
                .writable()
                .await
                .context(|| self.send_context(src, dst))?;
            match guard.try_io(|fd| send_now(fd.get_ref(), self.index, message, src, dst)) {
                Ok(result) => return result.context(|| self.send_context(src, dst)),
                Err(_would_block) => continue,
            }
        }
    }

    /// The next packet that arrives on the interface for a joined group or for us.
    pub async fn recv(&self) -> Result<ReceivedPacket> {
        let context = || format!("receiving a VRRP packet on interface {}", self.interface);
        loop {
            let mut guard = self.fd.readable().await.context(context)?;
            match guard.try_io(|fd| receive_now(fd.get_ref(), self.family)) {
                // Another socket's group (IPv6 raw sockets get them all).
                Ok(Ok(Ok(packet)))
                    if packet.dst().is_multicast() && !self.groups.contains(&packet.dst()) =>
                {
                    continue
                }
                Ok(Ok(Ok(packet))) => return Ok(packet),
                Ok(Ok(Err(reason))) => return Err(Error::invalid(context(), reason)),
                Ok(Err(e)) => return Err(Error::io(context(), e)),
                Err(_would_block) => continue,
            }
        }
    }

    fn send_context(&self, src: IpAddr, dst: IpAddr) -> String {
        format!(
            "sending a VRRP packet from {src} to {dst} on interface {}",
            self.interface
        )
    }
}

fn send_now(
    socket: &Socket,
    index: u32,
    message: &[u8],
    src: IpAddr,
    dst: IpAddr,
) -> io::Result<()> {
    let iov = [IoSlice::new(message)];
    let fd = socket.as_raw_fd();
    let sent = match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            // IP_PKTINFO chooses the source address and the outgoing interface for this one
            // datagram; binding the socket to the address instead would stop it receiving
            // multicast.
            let info = libc::in_pktinfo {
                ipi_ifindex: i32::try_from(index).unwrap_or(0),
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(src).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            let to = SockaddrIn::from(SocketAddrV4::new(dst, 0));
            sendmsg(
                fd,
                &iov,
                &[ControlMessage::Ipv4PacketInfo(&info)],
                MsgFlags::empty(),
                Some(&to),
            )?
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: src.octets(),
                },
                ipi6_ifindex: index,
            };
            let scope = if needs_scope(dst) { index } else { 0 };
            let to = SockaddrIn6::from(SocketAddrV6::new(dst, 0, 0, scope));
            sendmsg(
                fd,
                &iov,
                &[ControlMessage::Ipv6PacketInfo(&info)],
                MsgFlags::empty(),
                Some(&to),
            )?
        }
        _ => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
    };
    if sent != message.len() {
        return Err(io::Error::other(format!(
            "sent {sent} of {} bytes",
            message.len()
        )));
    }
    Ok(())
}

/// Link-local unicast and link- or interface-scoped multicast need the interface as scope.
fn needs_scope(address: Ipv6Addr) -> bool {
    let first = address.segments()[0];
    (first & 0xffc0) == 0xfe80 || (address.is_multicast() && matches!(first & 0x000f, 1 | 2))
}

/// Receives one datagram: `Err` is the socket's error (including `WouldBlock`), `Ok(Err)` a
/// datagram that cannot be a VRRP packet of this family.
fn receive_now(socket: &Socket, family: IpFamily) -> io::Result<Result<ReceivedPacket, String>> {
    let mut buffer = vec![0u8; RECEIVE_BUFFER];
    let mut control = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int, libc::in_pktinfo);
    let mut iov = [IoSliceMut::new(&mut buffer)];
    let message = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut control),
        MsgFlags::empty(),
    )?;
    let len = message.bytes;
    if message.flags.contains(MsgFlags::MSG_TRUNC) {
        return Ok(Err(format!(
            "a datagram longer than {RECEIVE_BUFFER} bytes was cut"
        )));
    }
    let from = message.address;
    let mut pktinfo_v4 = None;
    let mut pktinfo_v6 = None;
    let mut hop_limit = None;
    for cmsg in message.cmsgs()? {
        match cmsg {
            ControlMessageOwned::Ipv4PacketInfo(info) => pktinfo_v4 = Some(info),
            ControlMessageOwned::Ipv6PacketInfo(info) => pktinfo_v6 = Some(info),
            ControlMessageOwned::Ipv6HopLimit(limit) => hop_limit = u8::try_from(limit).ok(),
            _ => {}
        }
    }
    let data = buffer.get(..len).unwrap_or_default();
    Ok(match family {
        IpFamily::V4 => parse_ipv4(data, pktinfo_v4.map_or(0, |i| i.ipi_ifindex)),
        IpFamily::V6 => (|| {
            let src = from
                .as_ref()
                .and_then(|a| a.as_sockaddr_in6())
                .map(|a| a.ip())
                .ok_or("no IPv6 source address")?;
            let info = pktinfo_v6.ok_or("no IPV6_PKTINFO")?;
            let ttl = hop_limit.ok_or("no IPV6_HOPLIMIT")?;
            Ok(ReceivedPacket {
                message: data.to_vec(),
                endpoints: Endpoints::V6 {
                    src,
                    dst: Ipv6Addr::from(info.ipi6_addr.s6_addr),
                },
                ttl,
                interface_index: info.ipi6_ifindex,
            })
        })(),
    })
}

/// Splits what an IPv4 raw socket delivers into header fields and the VRRP message.
fn parse_ipv4(data: &[u8], ifindex: i32) -> Result<ReceivedPacket, String> {
    let Some(header) = data.first_chunk::<IPV4_MIN_HEADER>() else {
        return Err(format!("{} bytes, shorter than an IPv4 header", data.len()));
    };
    let version = header[0] >> 4;
    let header_len = usize::from(header[0] & 0x0f) * 4;
    if version != 4 || header_len < IPV4_MIN_HEADER || header_len > data.len() {
        return Err(format!(
            "not an IPv4 header (version {version}, header length {header_len})"
        ));
    }
    let total_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    // The kernel delivers the header as it arrived; a total length that disagrees with the
    // datagram would put the message boundary in the wrong place.
    if total_len != data.len() {
        return Err(format!(
            "IPv4 total length {total_len} but {} bytes received",
            data.len()
        ));
    }
    Ok(ReceivedPacket {
        message: data[header_len..].to_vec(),
        endpoints: Endpoints::V4 {
            src: Ipv4Addr::new(header[12], header[13], header[14], header[15]),
            dst: Ipv4Addr::new(header[16], header[17], header[18], header[19]),
        },
        ttl: header[8],
        interface_index: u32::try_from(ifindex).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_is_split_off() {
        let mut packet = vec![
            0x45, 0xc0, 0, 28, 0, 0, 0x40, 0, 255, 112, 0, 0, 192, 168, 66, 1, 224, 0, 0, 18,
        ];
        packet.extend_from_slice(&[0x21, 51, 100, 1, 0, 1, 0, 0]);
        let received = parse_ipv4(&packet, 3).unwrap();
        assert_eq!(received.message, [0x21, 51, 100, 1, 0, 1, 0, 0]);
        assert_eq!(received.src(), IpAddr::from([192, 168, 66, 1]));
        assert_eq!(received.dst(), IpAddr::from([224, 0, 0, 18]));
        assert_eq!(received.ttl, 255);
        assert_eq!(received.interface_index, 3);
        assert!(received.context().endpoints.is_multicast());
    }

    #[test]
    fn broken_ipv4_headers_are_errors_not_panics() {
        assert!(parse_ipv4(&[0x45; 10], 1).is_err());
        let mut packet = vec![0x4f; 20];
        packet[2] = 0;
        packet[3] = 20;
        assert!(
            parse_ipv4(&packet, 1).is_err(),
            "header length 60 > 20 bytes"
        );
        let mut packet = vec![0x45, 0, 0, 99];
        packet.resize(24, 0);
        assert!(parse_ipv4(&packet, 1).is_err(), "total length mismatch");
    }

    #[test]
    fn link_scoped_destinations_get_the_interface() {
        assert!(needs_scope("ff02::12".parse().unwrap()));
        assert!(needs_scope("fe80::1".parse().unwrap()));
        assert!(!needs_scope("fd66::2".parse().unwrap()));
        assert!(!needs_scope("ff05::12".parse().unwrap()));
    }
}
