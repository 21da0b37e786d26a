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
//! The frames are built and read in [`frame`]; this is the shell around two
//! [`PacketSocket`]s (needs `CAP_NET_RAW`). IPv4 only.

pub mod frame;

use super::{ProbeFailure, ProbeOk, ProbeResult};
use frame::{Mac, Reply, Syn};
use halb_sys::packet_socket::{PacketSocket, SockFilter};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;
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
        let sock = PacketSocket::open(link.index, Some(frame::ETH_P_ARP))?;
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
        let sock = PacketSocket::open(link.index, Some(frame::ETH_P_IP))?;
        let filter: Vec<SockFilter> = frame::bpf_filter(self.vip, self.port)
            .into_iter()
            .map(|(code, jt, jf, k)| SockFilter::new(code, jt, jf, k))
            .collect();
        sock.attach_filter(&filter)?;
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
