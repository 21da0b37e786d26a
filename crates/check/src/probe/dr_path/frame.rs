//! The frames of a DR-path check, built and read without I/O: an ARP request and its reply,
//! a TCP SYN inside IPv4 inside Ethernet, the RST that ends it, and what a reply means.

use std::net::Ipv4Addr;

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
const IPPROTO_TCP: u8 = 6;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
/// Ethernet's shortest frame without its FCS: short frames are padded to it.
const ETH_MIN: usize = 60;

pub type Mac = [u8; 6];

pub fn mac_text(mac: &Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn ethernet(dst: &Mac, src: &Mac, ethertype: u16, out: &mut Vec<u8>) {
    out.extend_from_slice(dst);
    out.extend_from_slice(src);
    out.extend_from_slice(&ethertype.to_be_bytes());
}

fn pad(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() < ETH_MIN {
        frame.resize(ETH_MIN, 0);
    }
    frame
}

/// Who has `target`? Tell `sender_ip` (at `sender_mac`); broadcast.
pub fn arp_request(sender_mac: &Mac, sender_ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_MIN);
    ethernet(&[0xff; 6], sender_mac, ETH_P_ARP, &mut f);
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]); // Ethernet, IPv4, request
    f.extend_from_slice(sender_mac);
    f.extend_from_slice(&sender_ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    pad(f)
}

/// The MAC address `target` gave in an ARP reply (or a request it sent: both say where it is).
pub fn arp_answer(frame: &[u8], target: Ipv4Addr) -> Option<Mac> {
    let arp = frame.get(ETH_HLEN..ETH_HLEN + 28)?;
    if u16::from_be_bytes([frame[12], frame[13]]) != ETH_P_ARP
        || arp[0..6] != [0, 1, 0x08, 0x00, 6, 4]
        || !matches!(u16::from_be_bytes([arp[6], arp[7]]), 1 | 2)
        || arp[14..18] != target.octets()
    {
        return None;
    }
    let mut mac = [0; 6];
    mac.copy_from_slice(&arp[8..14]);
    Some(mac)
}

/// One probe's connection: who sends to whom, through which MAC, with which sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syn {
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
}

/// The one's-complement sum of 16-bit words, folded (RFC 1071).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn tcp_frame(s: &Syn, seq: u32, flags: u8, options: &[u8], ip_id: u16) -> Vec<u8> {
    let tcp_len = 20 + options.len();
    let mut tcp = Vec::with_capacity(tcp_len);
    tcp.extend_from_slice(&s.src_port.to_be_bytes());
    tcp.extend_from_slice(&s.dst_port.to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&0u32.to_be_bytes()); // no ACK
    tcp.push(((tcp_len / 4) as u8) << 4);
    tcp.push(flags);
    tcp.extend_from_slice(&(if flags & TCP_SYN != 0 { 64240u16 } else { 0 }).to_be_bytes());
    tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    tcp.extend_from_slice(options);
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&s.src_ip.octets());
    pseudo.extend_from_slice(&s.dst_ip.octets());
    pseudo.extend_from_slice(&[0, IPPROTO_TCP]);
    pseudo.extend_from_slice(&(tcp_len as u16).to_be_bytes());
    let sum = checksum(&[&pseudo, &tcp]);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());

    let total = 20 + tcp_len;
    let mut ip = Vec::with_capacity(20);
    ip.extend_from_slice(&[0x45, 0]);
    ip.extend_from_slice(&(total as u16).to_be_bytes());
    ip.extend_from_slice(&ip_id.to_be_bytes());
    ip.extend_from_slice(&[0x40, 0, 64, IPPROTO_TCP, 0, 0]); // DF, TTL 64
    ip.extend_from_slice(&s.src_ip.octets());
    ip.extend_from_slice(&s.dst_ip.octets());
    let sum = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());

    let mut f = Vec::with_capacity(ETH_HLEN + total);
    ethernet(&s.dst_mac, &s.src_mac, ETH_P_IP, &mut f);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&tcp);
    pad(f)
}

/// The SYN, with an MSS option as any stack sends (some servers drop option-less SYNs).
pub fn syn_frame(s: &Syn, ip_id: u16) -> Vec<u8> {
    tcp_frame(s, s.seq, TCP_SYN, &[2, 4, 0x05, 0xb4], ip_id) // MSS 1460
}

/// The RST that ends the half-open connection once the SYN-ACK came.
pub fn rst_frame(s: &Syn, ip_id: u16) -> Vec<u8> {
    tcp_frame(s, s.seq.wrapping_add(1), TCP_RST, &[], ip_id)
}

/// What a received frame says about the probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// SYN-ACK acknowledging our SYN: the path works.
    SynAck,
    /// RST for our SYN: the server is there, nothing listens.
    Rst,
    /// Not an answer to this probe.
    Other,
}

/// Reads `frame` as a possible answer to `s`: IPv4 TCP from `dst_ip:dst_port` to
/// `src_ip:src_port`, acknowledging `seq + 1`.
pub fn classify(frame: &[u8], s: &Syn) -> Reply {
    classify_checked(frame, s).unwrap_or(Reply::Other)
}

fn classify_checked(frame: &[u8], s: &Syn) -> Option<Reply> {
    if u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]) != ETH_P_IP {
        return None;
    }
    let ip = frame.get(ETH_HLEN..)?;
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    if *ip.first()? >> 4 != 4 || ihl < 20 || *ip.get(9)? != IPPROTO_TCP {
        return None;
    }
    // A fragment other than the first has no TCP header.
    if u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]) & 0x1fff != 0 {
        return None;
    }
    if ip.get(12..16)? != s.dst_ip.octets() || ip.get(16..20)? != s.src_ip.octets() {
        return None;
    }
    let tcp = ip.get(ihl..ihl + 20)?;
    let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
    let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
    if sport != s.dst_port || dport != s.src_port {
        return None;
    }
    let ack = u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]);
    let flags = tcp[13];
    if ack != s.seq.wrapping_add(1) {
        return None;
    }
    if flags & TCP_RST != 0 {
        Some(Reply::Rst)
    } else if flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK {
        Some(Reply::SynAck)
    } else {
        None
    }
}

/// A classic BPF program for the receiving socket: IPv4 TCP from `ip:port` only, so that a busy
/// director copies nothing else to user space. (`struct sock_filter`: code, jt, jf, k.)
pub fn bpf_filter(ip: Ipv4Addr, port: u16) -> Vec<(u16, u8, u8, u32)> {
    const LD_H_ABS: u16 = 0x28;
    const LD_B_ABS: u16 = 0x30;
    const LD_W_ABS: u16 = 0x20;
    const LDX_B_MSH: u16 = 0xb1;
    const LD_H_IND: u16 = 0x48;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    vec![
        (LD_H_ABS, 0, 0, 12),                  // 0: ethertype
        (JEQ_K, 0, 7, u32::from(ETH_P_IP)),    // 1: → 9 (drop)
        (LD_B_ABS, 0, 0, 23),                  // 2: IP protocol
        (JEQ_K, 0, 5, u32::from(IPPROTO_TCP)), // 3: → 9
        (LD_W_ABS, 0, 0, 26),                  // 4: IP source
        (JEQ_K, 0, 3, u32::from(ip)),          // 5: → 9
        (LDX_B_MSH, 0, 0, ETH_HLEN as u32),    // 6: X = IP header length
        (LD_H_IND, 0, 0, ETH_HLEN as u32),     // 7: TCP source port
        (JEQ_K, 1, 0, u32::from(port)),        // 8: → 10 (accept)
        (RET_K, 0, 0, 0),                      // 9: drop
        (RET_K, 0, 0, 0x0004_0000),            // 10: accept (the whole frame)
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syn() -> Syn {
        Syn {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: Ipv4Addr::new(10, 0, 0, 2),
            dst_ip: Ipv4Addr::new(10, 0, 0, 100),
            src_port: 40000,
            dst_port: 80,
            seq: 0xffff_ffff,
        }
    }

    /// A reply from the server, as its stack would send it.
    fn reply(s: &Syn, flags: u8, ack: u32) -> Vec<u8> {
        let back = Syn {
            src_mac: s.dst_mac,
            dst_mac: s.src_mac,
            src_ip: s.dst_ip,
            dst_ip: s.src_ip,
            src_port: s.dst_port,
            dst_port: s.src_port,
            seq: 7,
        };
        let mut f = tcp_frame(&back, 7, flags, &[], 1);
        f[ETH_HLEN + 20 + 8..ETH_HLEN + 20 + 12].copy_from_slice(&ack.to_be_bytes());
        f
    }

    #[test]
    fn syn_checksums_verify() {
        let f = syn_frame(&syn(), 0x1234);
        let ip = &f[ETH_HLEN..ETH_HLEN + 20];
        assert_eq!(checksum(&[ip]), 0, "IPv4 header checksum");
        let tcp = &f[ETH_HLEN + 20..ETH_HLEN + 44];
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&ip[12..20]);
        pseudo.extend_from_slice(&[0, 6, 0, 24]);
        assert_eq!(checksum(&[&pseudo, tcp]), 0, "TCP checksum");
        assert_eq!(&f[0..6], &syn().dst_mac);
        assert_eq!(tcp[13], TCP_SYN);
        assert_eq!(&tcp[20..24], &[2, 4, 5, 0xb4]);
    }

    #[test]
    fn replies_are_classified() {
        let s = syn();
        // The sequence number wraps: the SYN-ACK acknowledges 0.
        assert_eq!(
            classify(&reply(&s, TCP_SYN | TCP_ACK, 0), &s),
            Reply::SynAck
        );
        assert_eq!(classify(&reply(&s, TCP_RST | TCP_ACK, 0), &s), Reply::Rst);
        assert_eq!(classify(&reply(&s, TCP_SYN | TCP_ACK, 5), &s), Reply::Other);
        assert_eq!(classify(&reply(&s, TCP_ACK, 0), &s), Reply::Other);
        let mut other_port = s;
        other_port.src_port = 40001;
        assert_eq!(
            classify(&reply(&s, TCP_SYN | TCP_ACK, 0), &other_port),
            Reply::Other
        );
        // Our own SYN, seen going out, is not an answer.
        assert_eq!(classify(&syn_frame(&s, 1), &s), Reply::Other);
        let rst = rst_frame(&s, 2);
        assert_eq!(rst[ETH_HLEN + 20 + 13], TCP_RST);
        assert_eq!(&rst[ETH_HLEN + 24..ETH_HLEN + 28], &0u32.to_be_bytes());
    }

    #[test]
    fn truncated_and_garbage_frames_are_not_answers() {
        let s = syn();
        let good = reply(&s, TCP_SYN | TCP_ACK, 0);
        for n in 0..good.len() {
            let r = classify(&good[..n], &s);
            assert!(r == Reply::Other || n >= ETH_HLEN + 40, "{n} bytes: {r:?}");
        }
        let mut bad_ihl = good.clone();
        bad_ihl[ETH_HLEN] = 0x4f; // 60-byte header: the TCP header is not there
        assert_eq!(classify(&bad_ihl, &s), Reply::Other);
        let mut fragment = good.clone();
        fragment[ETH_HLEN + 7] = 1;
        assert_eq!(classify(&fragment, &s), Reply::Other);
        for seed in 0..2000u32 {
            let junk: Vec<u8> = (0..(seed % 90))
                .map(|i| (seed.wrapping_mul(2654435761).wrapping_add(i * 97) >> 8) as u8)
                .collect();
            let _ = classify(&junk, &s);
            let _ = arp_answer(&junk, s.dst_ip);
        }
    }

    #[test]
    fn arp_request_and_answer() {
        let mac = [2, 0, 0, 0, 0, 1];
        let me = Ipv4Addr::new(10, 0, 0, 2);
        let rs = Ipv4Addr::new(10, 0, 0, 21);
        let req = arp_request(&mac, me, rs);
        assert_eq!(req.len(), ETH_MIN);
        assert_eq!(&req[0..6], &[0xff; 6]);
        // The request is from us, not from the real server.
        assert_eq!(arp_answer(&req, rs), None);
        let mut answer = req.clone();
        answer[ETH_HLEN + 7] = 2;
        answer[ETH_HLEN + 8..ETH_HLEN + 14].copy_from_slice(&[2, 0, 0, 0, 0, 0x21]);
        answer[ETH_HLEN + 14..ETH_HLEN + 18].copy_from_slice(&rs.octets());
        assert_eq!(arp_answer(&answer, rs), Some([2, 0, 0, 0, 0, 0x21]));
        assert_eq!(arp_answer(&answer[..30], rs), None);
        assert_eq!(mac_text(&[2, 0, 0, 0, 0, 0x21]), "02:00:00:00:00:21");
    }

    #[test]
    fn filter_jumps_land_on_drop_and_accept() {
        let f = bpf_filter(Ipv4Addr::new(10, 0, 0, 100), 80);
        for (i, (code, jt, jf, _)) in f.iter().enumerate() {
            if *code == 0x15 {
                for target in [i + 1 + usize::from(*jt), i + 1 + usize::from(*jf)] {
                    assert!(target < f.len(), "instruction {i} jumps out");
                    assert!(target == i + 1 || f[target].0 == 0x06, "instruction {i}");
                }
            }
        }
        assert_eq!(f[9], (0x06, 0, 0, 0));
        assert_eq!(f[10].3, 0x0004_0000);
    }
}
