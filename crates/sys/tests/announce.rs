//! Gratuitous ARP and unsolicited neighbour advertisements sent from namespace A reach B as
//! the exact frames keepalived sends, and make B's neighbour cache point the VIP at A's MAC.

mod common;

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use halb_sys::arp::{self, ALL_NODES};
use halb_sys::sysctl::{self, SysctlKey};
use halb_sys::{netns, Announcer, Netlink};
use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrIn6};
use socket2::{Domain, Protocol, Socket, Type};

const WRONG_MAC: [u8; 6] = [0x02, 0x66, 0, 0, 0, 0x99];

/// B's neighbour entry for `address`: its MAC, if any.
fn neighbour(ns: &Netns, address: IpAddr) -> Option<String> {
    let json = ns.ip_json(&["neigh", "show", &address.to_string(), "dev", B_IF]);
    json.get(0)?.get("lladdr")?.as_str().map(str::to_string)
}

/// Sends an announcement for `address` from A.
fn announce_from_a(pair: &Pair, address: IpAddr) {
    pair.a.block_on(move || async move {
        let link = Netlink::connect()
            .expect("netlink")
            .link(A_IF)
            .await
            .expect("a0");
        assert_eq!(link.mac, Some(A_MAC));
        Announcer::open(&link)
            .expect("packet socket")
            .announce(address, false)
            .expect("announce");
    });
}

/// Captures in B, with an `AF_PACKET` socket for ARP, the first ARP frame whose sender
/// address is `address`.
fn capture_arp(pair: &Pair, address: Ipv4Addr) -> std::thread::JoinHandle<Vec<u8>> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let capture = netns::spawn_in(&pair.b.path(), move || {
        let protocol = Protocol::from(i32::from(0x0806u16.to_be()));
        let socket = Socket::new(Domain::PACKET, Type::RAW, Some(protocol)).expect("capture");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        ready_tx.send(()).expect("test alive");
        let deadline = Instant::now() + PATIENCE;
        let mut buffer = [MaybeUninit::<u8>::uninit(); 2048];
        while Instant::now() < deadline {
            let Ok(len) = socket.recv(&mut buffer) else {
                continue;
            };
            // SAFETY: recv initialised the first `len` bytes.
            let frame: Vec<u8> = buffer[..len]
                .iter()
                .map(|b| unsafe { b.assume_init() })
                .collect();
            if frame.len() >= 42
                && frame[12..14] == [0x08, 0x06]
                && frame[28..32] == address.octets()
            {
                return frame;
            }
        }
        panic!("B captured no ARP for {address}");
    });
    ready_rx.recv_timeout(PATIENCE).expect("capture ready");
    std::thread::spawn(move || capture.join().expect("capture thread").expect("in B"))
}

#[test]
fn gratuitous_arp_overrides_a_stale_neighbour_entry() {
    let pair = Pair::new("garp");
    // B believes the VIP is somewhere else: the situation after a failover.
    pair.b.ip(&[
        "neigh",
        "replace",
        &VIP_V4.to_string(),
        "lladdr",
        &mac_text(WRONG_MAC),
        "dev",
        B_IF,
        "nud",
        "stale",
    ]);
    let capture = capture_arp(&pair, VIP_V4);
    announce_from_a(&pair, VIP_V4.into());
    let frame = capture.join().expect("capture");
    assert_eq!(frame, arp::gratuitous_arp_frame(A_MAC, VIP_V4));
    assert_eq!(frame[6..12], A_MAC, "from A's MAC");
    let expected = mac_text(A_MAC);
    wait_for(&pair.b, "B's neighbour entry to move to A", || {
        (neighbour(&pair.b, VIP_V4.into()).as_deref() == Some(expected.as_str())).then_some(())
    });
}

#[test]
fn gratuitous_arp_creates_an_entry_where_arp_accept_is_on() {
    let pair = Pair::new("garp-accept");
    let vip: Ipv4Addr = "192.168.66.252".parse().unwrap();
    assert_eq!(neighbour(&pair.b, vip.into()), None);
    let key = SysctlKey::interface("ipv4", B_IF, "arp_accept");
    let previous = pair
        .b
        .run_in(move || sysctl::write(&key, "1"))
        .expect("arp_accept");
    assert_eq!(previous, "0");
    let capture = capture_arp(&pair, vip);
    announce_from_a(&pair, vip.into());
    capture.join().expect("capture");
    let expected = mac_text(A_MAC);
    wait_for(
        &pair.b,
        "B to learn the VIP from the gratuitous ARP",
        || (neighbour(&pair.b, vip.into()).as_deref() == Some(expected.as_str())).then_some(()),
    );
}

/// What B's raw ICMPv6 socket saw of a neighbour advertisement.
#[derive(Debug)]
struct CapturedNa {
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: i32,
    message: Vec<u8>,
}

fn capture_na(pair: &Pair, target: Ipv6Addr) -> std::thread::JoinHandle<CapturedNa> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let capture = netns::spawn_in(&pair.b.path(), move || {
        let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).expect("capture");
        socket.set_recv_hoplimit_v6(true).expect("hop limit");
        setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true).expect("pktinfo");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        ready_tx.send(()).expect("test alive");
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            let mut buffer = [0u8; 2048];
            let mut control = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
            let mut iov = [IoSliceMut::new(&mut buffer)];
            use std::os::fd::AsRawFd;
            let Ok(received) = recvmsg::<SockaddrIn6>(
                socket.as_raw_fd(),
                &mut iov,
                Some(&mut control),
                MsgFlags::empty(),
            ) else {
                continue;
            };
            let len = received.bytes;
            let src = received.address.map(|a| a.ip());
            let mut dst = None;
            let mut hop_limit = None;
            for cmsg in received.cmsgs().expect("control messages") {
                match cmsg {
                    ControlMessageOwned::Ipv6PacketInfo(info) => {
                        dst = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr))
                    }
                    ControlMessageOwned::Ipv6HopLimit(limit) => hop_limit = Some(limit),
                    _ => {}
                }
            }
            let message = buffer[..len].to_vec();
            if message.len() >= 24 && message[0] == 136 && message[8..24] == target.octets() {
                return CapturedNa {
                    src: src.expect("source"),
                    dst: dst.expect("IPV6_PKTINFO"),
                    hop_limit: hop_limit.expect("IPV6_HOPLIMIT"),
                    message,
                };
            }
        }
        panic!("B captured no neighbour advertisement for {target}");
    });
    ready_rx.recv_timeout(PATIENCE).expect("capture ready");
    std::thread::spawn(move || capture.join().expect("capture thread").expect("in B"))
}

#[test]
fn unsolicited_na_overrides_a_stale_neighbour_entry() {
    let pair = Pair::new("una");
    pair.b.ip(&[
        "-6",
        "neigh",
        "replace",
        &VIP_V6.to_string(),
        "lladdr",
        &mac_text(WRONG_MAC),
        "dev",
        B_IF,
        "nud",
        "stale",
    ]);
    let capture = capture_na(&pair, VIP_V6);
    announce_from_a(&pair, VIP_V6.into());
    let na = capture.join().expect("capture");
    assert_eq!(na.src, VIP_V6);
    assert_eq!(na.dst, ALL_NODES);
    assert_eq!(na.hop_limit, 255);
    assert_eq!(na.message.len(), 32);
    assert_eq!(na.message[1], 0, "code");
    assert_eq!(na.message[4], 0x20, "override, not solicited, not router");
    assert_eq!(
        na.message[24..32],
        [2, 1, 0x02, 0x66, 0, 0, 0, 0x01],
        "target link-layer address"
    );
    assert_eq!(
        arp::icmpv6_checksum(na.src, na.dst, &na.message),
        0,
        "checksum"
    );
    let expected = mac_text(A_MAC);
    // B's kernel accepts an NA only with hop limit 255 and a valid checksum, and only the
    // override flag makes it replace the cached address.
    wait_for(&pair.b, "B's IPv6 neighbour entry to move to A", || {
        (neighbour(&pair.b, VIP_V6.into()).as_deref() == Some(expected.as_str())).then_some(())
    });
}
