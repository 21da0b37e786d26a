//! Adverts encoded by halb_vrrp cross a veth pair between two namespaces through
//! [`VrrpSocket`]s, over multicast and unicast, IPv4 and IPv6, and arrive with TTL 255 and the
//! right addresses.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use halb_sys::{interface_index, Error, IpFamily, ReceivedPacket, VrrpSocket};
use halb_vrrp::packet::{self, AddressList, Advert, Auth, Centiseconds, VersionFields};

fn advert_v2() -> Advert {
    Advert {
        vrid: 51,
        priority: 150,
        fields: VersionFields::V2 {
            auth: Auth::pass("secret"),
            advert_int_secs: 1,
        },
        addresses: AddressList::ipv4([VIP_V4]).unwrap(),
    }
}

fn advert_v3(addresses: AddressList) -> Advert {
    Advert {
        vrid: 52,
        priority: 100,
        fields: VersionFields::V3 {
            max_advert_int: Centiseconds::new(100).unwrap(),
        },
        addresses,
    }
}

/// Opens a socket in B, waits until it is ready, sends `sends` (advert, source, destination)
/// from A in order, and returns the first packet B received and B's interface index.
fn send_and_receive(
    pair: &Pair,
    family: IpFamily,
    b_groups: Vec<IpAddr>,
    sends: Vec<(Advert, IpAddr, IpAddr)>,
) -> (ReceivedPacket, u32) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let receiver = pair.b.spawn(move || async move {
        let socket = VrrpSocket::open(B_IF, family, &b_groups).expect("socket in B");
        // Another instance on the same interface that listens to the standard group: with
        // it the interface accepts the group, so that a socket that did not join it must
        // keep it out itself (IP_MULTICAST_ALL off).
        let _bystander =
            VrrpSocket::open(B_IF, family, &[family.vrrp_group()]).expect("second socket in B");
        ready_tx.send(()).expect("test alive");
        let packet = tokio::time::timeout(PATIENCE, socket.recv())
            .await
            .expect("B received nothing")
            .expect("receive in B");
        (packet, interface_index(B_IF).expect("b0 index"))
    });
    ready_rx.recv_timeout(PATIENCE).expect("B's socket ready");
    pair.a.block_on(move || async move {
        let socket = VrrpSocket::open(A_IF, family, &[family.vrrp_group()]).expect("socket in A");
        for (advert, src, dst) in sends {
            socket
                .send_advert(&advert, src, dst)
                .await
                .expect("send from A");
        }
        // A joined the group too, so with multicast loop on it would hear itself.
        let own = tokio::time::timeout(Duration::from_millis(300), socket.recv()).await;
        assert!(own.is_err(), "A heard its own advert: {own:?}");
    });
    receiver.join().expect("receiver thread")
}

fn assert_decodes(packet: &ReceivedPacket, expected: &Advert) {
    let bytes = packet::encode(expected, &packet.endpoints);
    assert_eq!(
        packet.message, bytes,
        "the VRRP message arrives byte for byte"
    );
    let decoded = packet::decode(&packet.message, &packet.context()).expect("decodes");
    assert_eq!(&decoded, expected);
}

#[test]
fn ipv4_multicast_advert_arrives_with_ttl_255() {
    let pair = Pair::new("mcast4");
    let advert = advert_v2();
    let sent = advert.clone();
    let group = IpFamily::V4.vrrp_group();
    let (packet, b_index) = send_and_receive(
        &pair,
        IpFamily::V4,
        vec![group],
        vec![(sent, A_V4.into(), group)],
    );
    assert_eq!(packet.src(), IpAddr::V4(A_V4));
    assert_eq!(packet.dst(), IpAddr::from([224, 0, 0, 18]));
    assert_eq!(packet.ttl, 255);
    assert_eq!(packet.interface_index, b_index);
    assert_decodes(&packet, &advert);
}

#[test]
fn ipv6_multicast_advert_arrives_with_hop_limit_255() {
    let pair = Pair::new("mcast6");
    let a_link_local = pair.link_local(&pair.a, A_IF);
    let advert = advert_v3(AddressList::ipv6([VIP_V6]).unwrap());
    let sent = advert.clone();
    let group = IpFamily::V6.vrrp_group();
    // RFC 5798 §5.1.2.1: IPv6 adverts come from the interface's link-local address.
    let sends = vec![(sent, a_link_local.into(), group)];
    let (packet, b_index) = send_and_receive(&pair, IpFamily::V6, vec![group], sends);
    assert_eq!(packet.src(), IpAddr::V6(a_link_local));
    assert_eq!(packet.dst(), "ff02::12".parse::<IpAddr>().unwrap());
    assert_eq!(packet.ttl, 255);
    assert_eq!(packet.interface_index, b_index);
    assert_decodes(&packet, &advert);
}

#[test]
fn ipv4_unicast_advert_arrives_and_multicast_does_not_reach_a_unicast_socket() {
    let pair = Pair::new("ucast4");
    let advert = advert_v3(AddressList::ipv4([VIP_V4]).unwrap());
    let sent = advert.clone();
    // B joins no group: the multicast advert A sends first must not reach it
    // (IP_MULTICAST_ALL off), only the unicast one that follows.
    let sends = vec![
        (sent.clone(), A_V4.into(), IpFamily::V4.vrrp_group()),
        (sent, A_V4.into(), B_V4.into()),
    ];
    let (packet, _) = send_and_receive(&pair, IpFamily::V4, Vec::new(), sends);
    assert_eq!(packet.src(), IpAddr::V4(A_V4));
    assert_eq!(packet.dst(), IpAddr::V4(B_V4));
    assert_eq!(packet.ttl, 255);
    assert!(!packet.endpoints.is_multicast());
    assert_decodes(&packet, &advert);
}

#[test]
fn ipv6_unicast_advert_arrives_and_multicast_does_not_reach_a_unicast_socket() {
    let pair = Pair::new("ucast6");
    let a_link_local = pair.link_local(&pair.a, A_IF);
    let advert = advert_v3(AddressList::ipv6([VIP_V6]).unwrap());
    let sent = advert.clone();
    let sends = vec![
        (sent.clone(), a_link_local.into(), IpFamily::V6.vrrp_group()),
        (sent, A_V6.into(), B_V6.into()),
    ];
    let (packet, _) = send_and_receive(&pair, IpFamily::V6, Vec::new(), sends);
    assert_eq!(packet.src(), IpAddr::V6(A_V6));
    assert_eq!(packet.dst(), IpAddr::V6(B_V6));
    assert_eq!(packet.ttl, 255);
    assert_decodes(&packet, &advert);
}

#[test]
fn wrong_families_and_groups_are_refused_with_context() {
    let pair = Pair::new("refuse");
    pair.a.block_on(|| async {
        let mut socket = VrrpSocket::open(A_IF, IpFamily::V4, &[]).expect("socket in A");
        let advert = advert_v2();
        let error = socket
            .send_advert(&advert, A_V6.into(), B_V6.into())
            .await
            .expect_err("IPv6 on an IPv4 socket");
        let text = error.to_string();
        assert!(
            text.contains("a0") && text.contains(&A_V6.to_string()),
            "{text}"
        );
        assert!(socket
            .join(IpAddr::V4(Ipv4Addr::new(192, 168, 66, 9)))
            .is_err());
        assert!(socket.join("ff02::12".parse().unwrap()).is_err());
        match VrrpSocket::open("nope0", IpFamily::V4, &[]) {
            Err(Error::NoSuchInterface { interface }) => assert_eq!(interface, "nope0"),
            other => panic!("expected NoSuchInterface, got {:?}", other.err()),
        }
        // The kernel refuses a source address this host does not have.
        let error = socket
            .send_advert(&advert, Ipv4Addr::new(192, 168, 66, 77).into(), B_V4.into())
            .await
            .expect_err("foreign source");
        assert!(error.to_string().contains("192.168.66.77"), "{error}");
    });
}
