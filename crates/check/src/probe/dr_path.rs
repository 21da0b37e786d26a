//! halb's DR_PATH_CHECK: what IPVS direct routing sends, sent by hand.
//!
//! The director forwards a client's packet to VIP:port unchanged, only addressed to the real
//! server's MAC. A real server without the VIP on `lo` drops it, while a TCP connection to its
//! own address still works: keepalived's checkers never see the difference (the seed's case
//! 4.3.2). This probe finds the real server's MAC with ARP on the interface that reaches it,
//! sends a TCP SYN for VIP:port to that MAC from the director's own address on the link, and
//! waits for the SYN-ACK, which it answers with a RST. A RST means nothing listens; silence
//! means the path is broken.
//!
//! The frames are built and read in [`frame`]; this is the shell around two `AF_PACKET`
//! sockets (needs `CAP_NET_RAW`). IPv4 only.

pub mod frame;

use super::{ProbeFailure, ProbeOk, ProbeResult};
use frame::{Mac, Reply, Syn};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

/// One DR_PATH_CHECK.
#[derive(Debug, Clone)]
pub struct DrPathProbe {
    pub vip: Ipv4Addr,
    pub port: u16,
    pub real_server: Ipv4Addr,
    /// `bind_if`: the interface towards the real server; by default the route's.
    pub interface: Option<String>,
    /// For ARP and SYN-ACK together.
    pub timeout: Duration,
}

/// The director's side of the link to the real server.
#[derive(Debug, Clone)]
struct Link {
    name: String,
    index: u32,
    mac: Mac,
    ip: Ipv4Addr,
}

impl DrPathProbe {
    fn service(&self) -> String {
        format!("[{}]:{}", self.vip, self.port)
    }

    pub async fn check(&self) -> ProbeResult {
        let deadline = Instant::now() + self.timeout;
        let fail =
            |what: String| ProbeFailure::new(format!("DR path to {}: {what}", self.service()));
        let link = self.link().map_err(fail)?;
        let mac = match self.resolve(&link, deadline).await {
            Ok(Some(mac)) => mac,
            Ok(None) => {
                return Err(ProbeFailure::timeout(format!(
                    "DR path to {}: no ARP answer from {} on {} within {:?}",
                    self.service(),
                    self.real_server,
                    link.name,
                    self.timeout
                )))
            }
            Err(e) => return Err(fail(format!("ARP on {}: {e}", link.name))),
        };
        let where_ = format!(
            "{} through real server {} ({} on {})",
            self.service(),
            self.real_server,
            frame::mac_text(&mac),
            link.name
        );
        match self.syn(&link, mac, deadline).await {
            Ok(Some(Reply::SynAck)) => Ok(ProbeOk::new(format!("SYN-ACK from {where_}"))),
            Ok(Some(_)) => Err(ProbeFailure::new(format!(
                "{where_}: connection refused (RST): nothing listens on port {}",
                self.port
            ))),
            Ok(None) => Err(ProbeFailure::timeout(format!(
                "{where_}: no answer to a SYN within {:?}: is {} on the real server's loopback?",
                self.timeout, self.vip
            ))),
            Err(e) => Err(fail(format!("{where_}: {e}"))),
        }
    }

    /// The interface and address the director reaches the real server from.
    fn link(&self) -> Result<Link, String> {
        let source = match &self.interface {
            Some(_) => None,
            None => {
                // The kernel's route to the real server chooses the source address; a
                // connected UDP socket asks it without sending anything.
                let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
                    .and_then(|s| s.connect((self.real_server, 9)).map(|()| s))
                    .and_then(|s| s.local_addr())
                    .map_err(|e| format!("no route to real server {}: {e}", self.real_server))?;
                match source_ip(s) {
                    Some(ip) => Some(ip),
                    None => return Err("the route gives no IPv4 source".into()),
                }
            }
        };
        let mut name = self.interface.clone();
        let mut ip = None;
        let mut mac = None;
        let addrs = nix::ifaddrs::getifaddrs().map_err(|e| format!("listing interfaces: {e}"))?;
        let addrs: Vec<_> = addrs.collect();
        if name.is_none() {
            name = addrs
                .iter()
                .find(|a| {
                    a.address
                        .as_ref()
                        .and_then(|s| s.as_sockaddr_in())
                        .is_some_and(|s| Some(s.ip()) == source)
                })
                .map(|a| a.interface_name.clone());
        }
        let Some(name) = name else {
            return Err(format!(
                "no interface holds {}, the source towards {}",
                source.map(|s| s.to_string()).unwrap_or_default(),
                self.real_server
            ));
        };
        for a in addrs.iter().filter(|a| a.interface_name == name) {
            let Some(addr) = &a.address else { continue };
            if let Some(v4) = addr.as_sockaddr_in() {
                ip = ip.or(Some(v4.ip()));
            } else if let Some(link) = addr.as_link_addr() {
                mac = mac.or(link.addr());
            }
        }
        let ip = source
            .or(ip)
            .ok_or_else(|| format!("{name} has no IPv4 address"))?;
        let mac = mac.ok_or_else(|| format!("{name} has no MAC address"))?;
        let index = nix::net::if_::if_nametoindex(name.as_str())
            .map_err(|e| format!("interface {name}: {e}"))?;
        Ok(Link {
            name,
            index,
            mac,
            ip,
        })
    }

    /// ARP for the real server; `None` when time runs out.
    async fn resolve(&self, link: &Link, deadline: Instant) -> io::Result<Option<Mac>> {
        let sock = PacketSocket::open(link, frame::ETH_P_ARP)?;
        let request = frame::arp_request(&link.mac, link.ip, self.real_server);
        let mut next_send = Instant::now();
        let mut buf = [0u8; 2048];
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            if now >= next_send {
                sock.send(&request)?;
                // As the kernel does: ask again each second until the time is up.
                next_send = now + Duration::from_secs(1);
            }
            let until = next_send.min(deadline);
            if let Some(n) = sock.recv_until(&mut buf, until).await? {
                if let Some(mac) = frame::arp_answer(&buf[..n], self.real_server) {
                    return Ok(Some(mac));
                }
            }
        }
    }

    /// The SYN and its answer; `None` when none came in time.
    async fn syn(&self, link: &Link, mac: Mac, deadline: Instant) -> io::Result<Option<Reply>> {
        let sock = PacketSocket::open(link, frame::ETH_P_IP)?;
        sock.filter(&frame::bpf_filter(self.vip, self.port))?;
        let s = Syn {
            src_mac: link.mac,
            dst_mac: mac,
            src_ip: link.ip,
            dst_ip: self.vip,
            src_port: rand::random_range(32768..61000),
            dst_port: self.port,
            seq: rand::random(),
        };
        sock.send(&frame::syn_frame(&s, rand::random()))?;
        let mut buf = [0u8; 2048];
        while let Some(n) = sock.recv_until(&mut buf, deadline).await? {
            match frame::classify(&buf[..n], &s) {
                Reply::Other => continue,
                Reply::SynAck => {
                    // The director's kernel may drop the SYN-ACK (its source, the VIP, is one of
                    // its own addresses): close the half-open connection ourselves.
                    let _ = sock.send(&frame::rst_frame(&s, rand::random()));
                    return Ok(Some(Reply::SynAck));
                }
                Reply::Rst => return Ok(Some(Reply::Rst)),
            }
        }
        Ok(None)
    }
}

fn source_ip(addr: SocketAddr) -> Option<Ipv4Addr> {
    match addr.ip() {
        IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
        _ => None,
    }
}

/// An `AF_PACKET` raw socket bound to one interface and one ethertype.
struct PacketSocket {
    fd: AsyncFd<OwnedFd>,
}

impl PacketSocket {
    fn open(link: &Link, ethertype: u16) -> io::Result<PacketSocket> {
        let proto = ethertype.to_be();
        // SAFETY: plain socket(2); the descriptor is owned at once.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid start.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = link.index as i32;
        // SAFETY: sll lives across the call and its size is given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::addr_of!(sll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the OwnedFd moves into the AsyncFd, which keeps it open and unchanged until
        // it is dropped.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(PacketSocket { fd })
    }

    fn filter(&self, program: &[(u16, u8, u8, u32)]) -> io::Result<()> {
        let mut code: Vec<libc::sock_filter> = program
            .iter()
            .map(|&(code, jt, jf, k)| libc::sock_filter { code, jt, jf, k })
            .collect();
        let prog = libc::sock_fprog {
            len: code.len() as u16,
            filter: code.as_mut_ptr(),
        };
        // SAFETY: prog points into `code`, alive across the call.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                std::ptr::addr_of!(prog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // Frames that arrived between bind and the filter are still queued: drop them.
        let mut buf = [0u8; 64];
        while self.try_recv(&mut buf)?.is_some() {}
        Ok(())
    }

    fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: frame is a valid buffer of its length.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn try_recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: buf is writable for its length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some((n as usize).min(buf.len())))
    }

    /// The next frame, or `None` at `until`.
    async fn recv_until(&self, buf: &mut [u8], until: Instant) -> io::Result<Option<usize>> {
        loop {
            let ready = tokio::time::timeout_at(until, self.fd.readable()).await;
            let Ok(guard) = ready else {
                return Ok(None);
            };
            let mut guard = guard?;
            match self.try_recv(buf)? {
                Some(n) => return Ok(Some(n)),
                None => guard.clear_ready(),
            }
        }
    }
}
