//! UDP sockets for single-hop BFD (RFC 5881): one socket per address family receives on port
//! 3784 and reports each datagram's TTL / hop limit, since the session only accepts 255 (GTSM,
//! §5); each session sends from a socket of its own, bound to its source address and a port in
//! 49152–65535 (§4), with the TTL it is configured with.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use nix::sys::socket::SockaddrStorage;
use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A control packet is 24 bytes, 52 with the longest authentication section; anything longer
/// is cut and then refused by the codec's length check.
const RECEIVE_BUFFER: usize = 512;
/// The destination port of control packets (RFC 5881 §4).
pub const CONTROL_PORT: u16 = 3784;
/// Where source ports come from (RFC 5881 §4).
const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

/// One received datagram.
#[derive(Debug, Clone)]
pub struct Datagram {
    pub payload: Vec<u8>,
    pub from: SocketAddr,
    /// The TTL (IPv4) or hop limit (IPv6) it arrived with, when the kernel said.
    pub ttl: Option<u8>,
}

/// The receiving socket of one family, bound to the wildcard address and port 3784.
#[derive(Debug)]
pub struct BfdListener {
    fd: AsyncFd<Socket>,
}

impl BfdListener {
    /// Must run inside a tokio runtime.
    pub fn bind(ipv6: bool) -> io::Result<BfdListener> {
        let (domain, any) = if ipv6 {
            (Domain::IPV6, IpAddr::V6(Ipv6Addr::UNSPECIFIED))
        } else {
            (Domain::IPV4, IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        };
        let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        if ipv6 {
            socket.set_only_v6(true)?;
            setsockopt(&socket, sockopt::Ipv6RecvHopLimit, &true)?;
        } else {
            setsockopt(&socket, sockopt::Ipv4RecvTtl, &true)?;
        }
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket
            .bind(&SocketAddr::new(any, CONTROL_PORT).into())
            .map_err(|e| {
                io::Error::new(e.kind(), format!("binding UDP port {CONTROL_PORT}: {e}"))
            })?;
        // SAFETY: the Socket owns its descriptor, keeps it open until it is dropped (with the
        // AsyncFd that owns it) and always reports the same one.
        let fd = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(BfdListener { fd })
    }

    /// The next datagram.
    pub async fn recv(&self) -> io::Result<Datagram> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| receive_now(fd.get_ref())) {
                Ok(Ok(Some(d))) => return Ok(d),
                Ok(Ok(None)) => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

fn receive_now(socket: &Socket) -> io::Result<Option<Datagram>> {
    let mut buffer = vec![0u8; RECEIVE_BUFFER];
    let mut control = nix::cmsg_space!(libc::c_int, libc::c_int);
    let mut iov = [IoSliceMut::new(&mut buffer)];
    let message = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut control),
        MsgFlags::empty(),
    )?;
    let len = message.bytes;
    let mut ttl = None;
    for cmsg in message.cmsgs()? {
        match cmsg {
            ControlMessageOwned::Ipv4Ttl(t) => ttl = u8::try_from(t).ok(),
            ControlMessageOwned::Ipv6HopLimit(t) => ttl = u8::try_from(t).ok(),
            _ => {}
        }
    }
    let from = message.address.as_ref().and_then(|a| {
        if let Some(v4) = a.as_sockaddr_in() {
            Some(SocketAddr::new(IpAddr::V4(v4.ip()), v4.port()))
        } else {
            a.as_sockaddr_in6()
                .map(|v6| SocketAddr::new(IpAddr::V6(v6.ip()), v6.port()))
        }
    });
    let Some(from) = from else {
        // A datagram without a source cannot be matched to a neighbour; not an error of the
        // socket.
        return Ok(None);
    };
    Ok(Some(Datagram {
        payload: buffer.get(..len).unwrap_or_default().to_vec(),
        from,
        ttl,
    }))
}

/// A session's sending socket.
#[derive(Debug)]
pub struct BfdSender {
    socket: std::net::UdpSocket,
    neighbor: SocketAddr,
}

impl BfdSender {
    /// Bound to `source` (or the wildcard) and the first free port of 49152–65535 from a
    /// starting point the caller picks (so that sessions spread over the range).
    pub fn bind(
        neighbor: IpAddr,
        source: Option<IpAddr>,
        ttl: u8,
        first_port: u16,
    ) -> io::Result<BfdSender> {
        let ipv6 = neighbor.is_ipv6();
        let local = source.unwrap_or(if ipv6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        });
        let domain = if ipv6 { Domain::IPV6 } else { Domain::IPV4 };
        let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        if ipv6 {
            socket.set_unicast_hops_v6(u32::from(ttl))?;
        } else {
            socket.set_ttl_v4(u32::from(ttl))?;
        }
        // IP_FREEBIND: a source address that is not (yet) on an interface, such as a VIP,
        // does not keep the session from starting.
        let _ = socket.set_freebind_v4(true);
        socket.set_nonblocking(true)?;
        let span = u32::from(SOURCE_PORTS.end() - SOURCE_PORTS.start()) + 1;
        let offset = u32::from(first_port.saturating_sub(*SOURCE_PORTS.start()));
        let mut last = None;
        for i in 0..span {
            let port = *SOURCE_PORTS.start() + ((offset + i) % span) as u16;
            match socket.bind(&SocketAddr::new(local, port).into()) {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("binding a BFD source port on {local}: {e}"),
                    ))
                }
            }
        }
        if let Some(e) = last {
            return Err(io::Error::new(
                e.kind(),
                format!("no free BFD source port on {local}: {e}"),
            ));
        }
        Ok(BfdSender {
            socket: socket.into(),
            neighbor: SocketAddr::new(neighbor, CONTROL_PORT),
        })
    }

    /// Sends one packet now; a full socket buffer loses it, as a lossy link would.
    pub fn send(&self, payload: &[u8]) -> io::Result<()> {
        self.socket.send_to(payload, self.neighbor).map(|_| ())
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}
