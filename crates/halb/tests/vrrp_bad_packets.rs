//! Bad VRRP packets on the wire: a running `halb run` MASTER receives adverts with a wrong
//! password, a wrong TTL, a bad checksum, a wrong VRID, a truncated and an oversized body,
//! each claiming a higher priority. None may crash halb or take the VIP from it, and each one
//! that names its VRID is reported with the sender's address. Needs root.

mod support;

use halb_vrrp::packet::{encode, AddressList, Advert, Auth, Endpoints, VersionFields};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use support::vrrp_lab::{wait_for, Daemon, Lab, VIP};

fn config() -> String {
    format!(
        "vrrp_instance INT {{\n    state MASTER\n    interface eth0\n    virtual_router_id 200\n    priority 100\n    advert_int 1\n    authentication {{\n        auth_type PASS\n        auth_pass lvs50tes\n    }}\n    virtual_ipaddress {{\n        {VIP}\n    }}\n}}\n"
    )
}

/// A VRRPv2 advert from B claiming priority 200, as bytes.
fn advert(vrid: u8, password: &str, src: Ipv4Addr) -> Vec<u8> {
    let vip: Ipv4Addr = VIP.parse().expect("the VIP is IPv4");
    let advert = Advert {
        vrid,
        priority: 200,
        fields: VersionFields::V2 {
            auth: Auth::pass(password),
            advert_int_secs: 1,
        },
        addresses: AddressList::ipv4([vip]).expect("one address"),
    };
    encode(
        &advert,
        &Endpoints::V4 {
            src,
            dst: Ipv4Addr::new(224, 0, 0, 18),
        },
    )
}

/// Sends raw VRRP messages (the kernel adds the IP header) from B's namespace with a TTL.
fn send_from(lab: &Lab, messages: Vec<(Vec<u8>, u32)>) {
    lab.b.ns.run_in(move || {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112)))
            .expect("a raw VRRP socket");
        socket.bind_device(Some(b"eth0")).expect("bind to eth0");
        let to = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18)), 0);
        for (message, ttl) in messages {
            socket.set_multicast_ttl_v4(ttl).expect("TTL");
            socket.send_to(&message, &to.into()).expect("send");
        }
    });
}

#[test]
fn bad_adverts_do_not_move_the_vip_and_are_reported() {
    let lab = Lab::new("bad");
    let conf = lab.write("halb.conf", &config());
    let halb = Daemon::halb(&lab.a.ns, &conf, lab.dir.path().join("halb.log"));
    assert!(
        wait_for(Duration::from_secs(6), || lab.a.has(VIP)).is_some(),
        "halb never became MASTER\n{}",
        halb.log_text()
    );

    let src: Ipv4Addr = lab.b.ipv4.parse().expect("B's address");
    let good = advert(200, "lvs50tes", src);
    let wrong_password = advert(200, "intruder", src);
    let wrong_vrid = advert(201, "lvs50tes", src);
    let mut bad_checksum = good.clone();
    bad_checksum[6] ^= 0xff;
    let truncated = good[..6].to_vec();
    let mut oversized = good.clone();
    oversized.extend(std::iter::repeat_n(0u8, 1200));
    send_from(
        &lab,
        vec![
            (wrong_password, 255),
            (good.clone(), 64), // TTL other than 255: it crossed a router
            (bad_checksum, 255),
            (wrong_vrid, 255),
            (truncated, 255),
            (oversized, 255),
        ],
    );

    // Each was dropped: halb is still MASTER with the VIP, over more than Master_Down_Interval.
    std::thread::sleep(Duration::from_secs(4));
    assert!(lab.a.has(VIP), "halb lost the VIP\n{}", halb.log_text());
    let log = halb.log_text();
    // (The start goes through "Entering BACKUP STATE (init)"; a step down would not say init.)
    assert!(
        !log.lines()
            .any(|l| l.trim_end().ends_with("Entering BACKUP STATE")),
        "a bad advert made halb step down:\n{log}"
    );
    assert!(
        !log.contains("higher priority 200"),
        "a bad advert was accepted:\n{log}"
    );
    for needle in ["passwd", "TTL", "checksum"] {
        assert!(
            log.lines()
                .any(|l| l.contains(needle) && l.contains(&lab.b.ipv4)),
            "no report naming {needle} and the sender {}:\n{log}",
            lab.b.ipv4
        );
    }

    // A good advert with a higher priority still works: halb yields.
    send_from(&lab, vec![(good, 255)]);
    assert!(
        wait_for(Duration::from_secs(3), || !lab.a.has(VIP)).is_some(),
        "halb did not yield to a valid higher-priority advert\n{}",
        halb.log_text()
    );
    let log = halb.log_text();
    assert!(log.contains("higher priority 200, ours 100"), "{log}");
    eprintln!("{log}");
}
