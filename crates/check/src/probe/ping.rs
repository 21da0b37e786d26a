//! PING_CHECK: an ICMP / ICMPv6 echo request, and its reply within the timeout.
//!
//! keepalived uses unprivileged ICMP sockets (`SOCK_DGRAM`, `IPPROTO_ICMP`), widening
//! `net.ipv4.ping_group_range` to allow itself. halb does not change that sysctl: it opens such
//! a socket when the range allows it, else a raw socket (the daemon runs as root). With an ICMP
//! socket the kernel picks the echo identifier and routes only our replies to it; on a raw
//! socket every ICMP message arrives, so replies are matched on identifier and sequence.

use super::net::{Step, Target};
use super::{ProbeFailure, ProbeOk, ProbeResult};
use socket2::{Protocol, Socket, Type};
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use tokio::io::unix::AsyncFd;

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;
/// Bytes of data after the 8-byte ICMP header (keepalived's ICMP_BUFSIZE).
const DATA_LEN: usize = 56;

#[derive(Debug)]
pub struct PingProbe {
    pub target: Target,
    /// The identifier used on raw sockets.
    ident: u16,
    seq: AtomicU16,
    /// Always use a raw socket.
    raw_only: bool,
}

impl PingProbe {
    pub fn new(target: Target) -> PingProbe {
        PingProbe {
            target,
            ident: rand::random(),
            seq: AtomicU16::new(0),
            raw_only: false,
        }
    }

    /// A probe that always uses a raw socket (what happens when `ping_group_range` excludes
    /// the daemon's group).
    pub fn raw(target: Target) -> PingProbe {
        PingProbe {
            raw_only: true,
            ..PingProbe::new(target)
        }
    }

    pub async fn check(&self) -> ProbeResult {
        let step = Step::new("sending an echo request to");
        self.target
            .within_deadline(&step, self.exchange(&step))
            .await
            .map_err(|f| {
                if f.timed_out() {
                    ProbeFailure::timeout(format!(
                        "no ICMP echo reply from {} within {:?}",
                        self.target.ip(),
                        self.target.timeout
                    ))
                } else {
                    f
                }
            })
    }

    async fn exchange(&self, step: &Step) -> ProbeResult {
        let v6 = self.target.connect.is_ipv6();
        let (socket, raw) = self.open(v6).map_err(|e| self.target.setup_failure(e))?;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let request = echo_request(v6, self.ident, seq);
        // SAFETY: the socket owns its descriptor and moves into the AsyncFd, which keeps it open
        // and unchanged until it is dropped.
        let fd = unsafe { AsyncFd::register(socket) }
            .map_err(|e| self.target.setup_failure(io::Error::from(e)))?;
        let dest = ping_addr(&self.target);
        loop {
            let mut guard = fd
                .writable()
                .await
                .map_err(|e| self.target.setup_failure(e))?;
            match guard.try_io(|s| s.get_ref().send_to(&request, &dest.into())) {
                Ok(Ok(_)) => break,
                Ok(Err(e)) => {
                    return Err(ProbeFailure::new(format!(
                        "send ICMP echo request to {}: {e}",
                        self.target.ip()
                    )))
                }
                Err(_would_block) => continue,
            }
        }
        step.set("waiting for the echo reply from");
        let mut buf = [0u8; 1500];
        loop {
            let mut guard = fd
                .readable()
                .await
                .map_err(|e| self.target.setup_failure(e))?;
            let n = match guard.try_io(|s| s.get_ref().read(&mut buf)) {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    return Err(ProbeFailure::new(format!(
                        "recv ICMP from {}: {e}",
                        self.target.ip()
                    )))
                }
                Err(_would_block) => continue,
            };
            let ident = raw.then_some(self.ident);
            if is_our_reply(v6, raw, &buf[..n], ident, seq) {
                return Ok(ProbeOk::new(format!(
                    "ICMP echo reply seq {seq} from {}",
                    self.target.ip()
                )));
            }
        }
    }

    /// An ICMP socket if the kernel allows it, else a raw one; `true` for raw.
    fn open(&self, v6: bool) -> io::Result<(Socket, bool)> {
        let proto = if v6 {
            Protocol::ICMPV6
        } else {
            Protocol::ICMPV4
        };
        let icmp = if self.raw_only {
            Err(io::Error::from_raw_os_error(libc::EACCES))
        } else {
            self.target.socket(Type::DGRAM, Some(proto))
        };
        let socket = match icmp {
            Ok(s) => (s, false),
            Err(e) if denied(&e) => (self.target.socket(Type::RAW, Some(proto))?, true),
            Err(e) => return Err(e),
        };
        socket.0.connect(&ping_addr(&self.target).into())?;
        Ok(socket)
    }
}

impl Target {
    fn ip(&self) -> std::net::IpAddr {
        self.connect.ip()
    }
}

fn denied(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EPROTONOSUPPORT)
    )
}

/// ICMP has no ports: the port field of an ICMP socket's address is the echo identifier for
/// `bind` and must be 0 on a raw socket.
fn ping_addr(target: &Target) -> SocketAddr {
    SocketAddr::new(target.connect.ip(), 0)
}

/// An echo request; the kernel fills the ICMPv6 checksum, and the identifier of an ICMP socket.
pub fn echo_request(v6: bool, ident: u16, seq: u16) -> Vec<u8> {
    let mut p = Vec::with_capacity(8 + DATA_LEN);
    p.push(if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 });
    p.push(0);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    let filler = b"keepalived check - ";
    p.extend((0..DATA_LEN).map(|i| filler[i % filler.len()]));
    if !v6 {
        let sum = checksum(&p);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    p
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = match chunk {
            [a, b] => u16::from_be_bytes([*a, *b]),
            [a] => u16::from_be_bytes([*a, 0]),
            _ => 0,
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Whether `packet` is the echo reply to our request `seq`. A raw IPv4 socket hands over the IP
/// header too; on a raw socket the identifier must be ours (`ident`).
fn is_our_reply(v6: bool, raw: bool, packet: &[u8], ident: Option<u16>, seq: u16) -> bool {
    let icmp = if raw && !v6 {
        let Some(first) = packet.first() else {
            return false;
        };
        let ihl = usize::from(first & 0x0f) * 4;
        match packet.get(ihl..) {
            Some(rest) => rest,
            None => return false,
        }
    } else {
        packet
    };
    if icmp.len() < 8 {
        return false;
    }
    let reply_type = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
    if icmp[0] != reply_type {
        return false;
    }
    if let Some(ident) = ident {
        if u16::from_be_bytes([icmp[4], icmp[5]]) != ident {
            return false;
        }
    }
    u16::from_be_bytes([icmp[6], icmp[7]]) == seq
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_checksum_verifies() {
        let p = echo_request(false, 0x1234, 7);
        assert_eq!(p.len(), 64);
        assert_eq!(checksum(&p), 0, "a packet with its checksum sums to zero");
    }

    #[test]
    fn reply_matching() {
        let mut reply = echo_request(false, 9, 3);
        reply[0] = ECHO_REPLY_V4;
        assert!(is_our_reply(false, false, &reply, None, 3));
        assert!(!is_our_reply(false, false, &reply, None, 4));
        let mut with_ip = vec![0x45];
        with_ip.extend_from_slice(&[0; 19]);
        with_ip.extend_from_slice(&reply);
        assert!(is_our_reply(false, true, &with_ip, Some(9), 3));
        assert!(!is_our_reply(false, true, &with_ip, Some(8), 3));
        let request = echo_request(false, 9, 3);
        assert!(
            !is_our_reply(false, false, &request, None, 3),
            "our own request"
        );
    }
}
