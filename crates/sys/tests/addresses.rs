//! Virtual addresses added and removed over rtnetlink, checked against `ip -j addr show`.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::*;
use halb_sys::addresses::parse_scope;
use halb_sys::{Added, Broadcast, Error, Netlink, VirtualAddress};
use serde_json::Value;

/// One namespace with a veth pair inside it (the address tests need no second host).
fn namespace(what: &str) -> Netns {
    let ns = new_netns(what);
    ns.ip(&["link", "add", A_IF, "type", "veth", "peer", "name", B_IF]);
    ns.ip(&["addr", "add", &format!("{A_V4}/24"), "dev", A_IF]);
    ns.ip(&["link", "set", A_IF, "up"]);
    ns.ip(&["link", "set", B_IF, "up"]);
    ns
}

fn find(ns: &Netns, address: IpAddr) -> Option<Value> {
    addresses(ns, A_IF)
        .into_iter()
        .find(|a| a.get("local").and_then(Value::as_str) == Some(address.to_string().as_str()))
}

#[test]
fn ipv4_vip_with_label_and_broadcast_comes_and_goes() {
    let ns = namespace("vip4");
    let mut vip = VirtualAddress::new(VIP_V4.into(), 24);
    vip.label = Some("a0:vip".into());
    vip.broadcast = Some(Broadcast::HostBitsSet);
    let to_add = vip.clone();
    let (first, second, listed) = ns.block_on(move || async move {
        let netlink = Netlink::connect().expect("netlink");
        let first = netlink.add_address(A_IF, &to_add).await.expect("add");
        let second = netlink.add_address(A_IF, &to_add).await.expect("add again");
        let listed = netlink.addresses(A_IF).await.expect("list");
        (first, second, listed)
    });
    assert_eq!(first, Added::Added);
    assert_eq!(second, Added::AlreadyPresent);

    let shown = find(&ns, VIP_V4.into()).expect("ip addr show lists the VIP");
    assert_eq!(shown["prefixlen"], 24);
    assert_eq!(shown["label"], "a0:vip");
    assert_eq!(shown["scope"], "global");
    assert_eq!(shown["broadcast"], "192.168.66.255");
    // It went in next to the interface's own address in the same subnet.
    assert_eq!(shown["secondary"], true);

    let ours = listed
        .iter()
        .find(|a| a.address == IpAddr::V4(VIP_V4))
        .expect("Netlink::addresses lists the VIP");
    assert_eq!(ours.prefix_len, 24);
    assert_eq!(ours.label.as_deref(), Some("a0:vip"));
    assert_eq!(ours.scope, 0);
    assert_eq!(ours.broadcast, Some(Ipv4Addr::new(192, 168, 66, 255)));
    assert!(listed.iter().any(|a| a.address == IpAddr::V4(A_V4)));

    let (removed, removed_again) = ns.block_on(|| async {
        let netlink = Netlink::connect().expect("netlink");
        let removed = netlink
            .remove_address(A_IF, VIP_V4.into())
            .await
            .expect("remove");
        let again = netlink
            .remove_address(A_IF, VIP_V4.into())
            .await
            .expect("remove again");
        (removed, again)
    });
    assert!(removed);
    assert!(!removed_again);
    assert!(find(&ns, VIP_V4.into()).is_none(), "the VIP is gone");
    assert!(
        find(&ns, A_V4.into()).is_some(),
        "the interface keeps its own address"
    );
}

#[test]
fn ipv4_vip_scope_is_kept_and_a_secondary_must_share_its_primary_scope() {
    let ns = namespace("scope4");
    let mut own_subnet = VirtualAddress::host("192.168.66.252".parse().unwrap());
    own_subnet.scope = parse_scope("link");
    own_subnet.label = Some("a0:link".into());
    let mut secondary = VirtualAddress::new(VIP_V4.into(), 24);
    secondary.scope = parse_scope("host");
    let error = ns.block_on(move || async move {
        let netlink = Netlink::connect().expect("netlink");
        netlink
            .add_address(A_IF, &own_subnet)
            .await
            .expect("add /32 scope link");
        netlink
            .add_address(A_IF, &secondary)
            .await
            .expect_err("scope host secondary")
    });
    let shown = find(&ns, "192.168.66.252".parse().unwrap()).expect("the /32 VIP is listed");
    assert_eq!(shown["scope"], "link");
    assert_eq!(shown["label"], "a0:link");
    // The kernel ("ipv4: Invalid scope value") refuses a secondary address whose scope
    // differs from the primary of its subnet (192.168.66.1/24, global).
    assert_eq!(error.raw_os_error(), Some(libc::EINVAL), "{error}");
    assert!(error.to_string().contains("192.168.66.251/24"), "{error}");
}

#[test]
fn ipv6_vip_skips_dad_and_a_host_route_vip_is_deprecated() {
    let ns = namespace("vip6");
    let host = VirtualAddress::host(VIP_V6.into());
    let subnet_vip = "fd66::252".parse::<IpAddr>().unwrap();
    let subnet = VirtualAddress::new(subnet_vip, 64);
    ns.block_on(move || async move {
        let netlink = Netlink::connect().expect("netlink");
        assert_eq!(
            netlink.add_address(A_IF, &host).await.expect("add /128"),
            Added::Added
        );
        assert_eq!(
            netlink.add_address(A_IF, &subnet).await.expect("add /64"),
            Added::Added
        );
        assert_eq!(
            netlink
                .add_address(A_IF, &host)
                .await
                .expect("add /128 again"),
            Added::AlreadyPresent
        );
    });
    let shown = find(&ns, VIP_V6.into()).expect("the /128 VIP is listed");
    assert_eq!(shown["prefixlen"], 128);
    assert_eq!(shown["nodad"], true);
    assert_eq!(shown["preferred_life_time"], 0);
    assert!(shown.get("tentative").is_none(), "no DAD wait: {shown}");
    let shown = find(&ns, subnet_vip).expect("the /64 VIP is listed");
    assert_eq!(shown["prefixlen"], 64);
    assert_eq!(shown["nodad"], true);
    assert_eq!(shown["preferred_life_time"], 4294967295u32);

    // IPv6 deletion matches the prefix length too; removal finds it by the address alone.
    let removed = ns.block_on(move || async move {
        let netlink = Netlink::connect().expect("netlink");
        netlink
            .remove_addresses(A_IF, &[VIP_V6.into(), subnet_vip])
            .await
            .expect("remove")
    });
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(find(&ns, VIP_V6.into()).is_none());
    assert!(find(&ns, subnet_vip).is_none());
}

/// A VIP with a finite lifetime stays while it is refreshed, without ever leaving the
/// interface (`ip monitor` sees no deletion), keeps keepalived's deprecated IPv6 /128, and
/// leaves by itself once the refreshes stop.
#[test]
fn a_leased_vip_stays_while_refreshed_and_leaves_by_itself() {
    let ns = namespace("lease");
    let mut v4 = VirtualAddress::host(VIP_V4.into());
    v4.valid_lifetime = Some(2);
    let mut v6 = VirtualAddress::host(VIP_V6.into());
    v6.valid_lifetime = Some(2);
    let monitor_log = tempfile::NamedTempFile::new().expect("a temporary file");
    let mut monitor = halb_test_support::ChildGuard::spawn(
        ns.command("ip")
            .args(["-o", "monitor", "address"])
            .stdout(monitor_log.reopen().expect("reopen")),
    )
    .expect("ip monitor");
    let vips = [v4.clone(), v6.clone()];
    ns.block_on(move || async move {
        let netlink = Netlink::connect().expect("netlink");
        for vip in &vips {
            assert_eq!(
                netlink.add_address(A_IF, vip).await.expect("add"),
                Added::Added
            );
        }
    });
    for vip in [VIP_V4.into(), IpAddr::V6(VIP_V6)] {
        let shown = find(&ns, vip).expect("the VIP is listed");
        assert_eq!(shown["dynamic"], true, "{shown}");
        assert!(shown["valid_life_time"].as_u64() <= Some(2), "{shown}");
    }
    assert_eq!(find(&ns, VIP_V6.into()).unwrap()["preferred_life_time"], 0);

    // Refreshed every half second for twice the lifetime: present at every look.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        let vips = [v4.clone(), v6.clone()];
        ns.block_on(move || async move {
            let netlink = Netlink::connect().expect("netlink");
            for vip in &vips {
                netlink.refresh_address(A_IF, vip).await.expect("refresh");
            }
        });
        for _ in 0..10 {
            assert!(
                find(&ns, VIP_V4.into()).is_some(),
                "IPv4 VIP lost while refreshed"
            );
            assert!(
                find(&ns, VIP_V6.into()).is_some(),
                "IPv6 VIP lost while refreshed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert_eq!(find(&ns, VIP_V6.into()).unwrap()["preferred_life_time"], 0);

    // No more refreshes: both go within the lifetime and the kernel's second of slack.
    let stopped = std::time::Instant::now();
    wait_for(&ns, "the leased VIPs to expire", || {
        (find(&ns, VIP_V4.into()).is_none() && find(&ns, VIP_V6.into()).is_none()).then_some(())
    });
    eprintln!(
        "leased VIPs gone {:?} after the last refresh",
        stopped.elapsed()
    );
    assert!(
        find(&ns, A_V4.into()).is_some(),
        "the interface's own address stays"
    );
    monitor.kill();
    let events = std::fs::read_to_string(monitor_log.path()).expect("read ip monitor");
    let deletions: Vec<&str> = events
        .lines()
        .filter(|l| l.starts_with("Deleted"))
        .collect();
    // Exactly the two expiries: a refresh never took an address off.
    assert_eq!(deletions.len(), 2, "{events}");
}

#[test]
fn leftovers_of_a_killed_predecessor_are_removed_and_nothing_else() {
    let ns = namespace("leftover");
    // What a predecessor killed with SIGKILL left behind.
    ns.ip(&[
        "addr",
        "add",
        "192.168.66.251/24",
        "dev",
        A_IF,
        "label",
        "a0:vip",
    ]);
    ns.ip(&["addr", "add", "192.168.66.252/32", "dev", A_IF]);
    ns.ip(&["addr", "add", "fd66::251/64", "dev", A_IF, "nodad"]);
    let vips: Vec<VirtualAddress> = [
        "192.168.66.251",
        "192.168.66.252",
        "192.168.66.253",
        "fd66::251",
    ]
    .iter()
    .map(|a| VirtualAddress::host(a.parse().unwrap()))
    .collect();
    let mut removed = ns.block_on(move || async move {
        let netlink = Netlink::connect().expect("netlink");
        netlink
            .remove_leftover_vips(A_IF, &vips)
            .await
            .expect("cleanup")
    });
    removed.sort();
    let expected: Vec<IpAddr> = ["192.168.66.251", "192.168.66.252", "fd66::251"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    assert_eq!(removed, expected);
    let left: Vec<String> = addresses(&ns, A_IF)
        .iter()
        .filter(|a| a["scope"] == "global")
        .map(|a| a["local"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        left,
        ["192.168.66.1"],
        "only the interface's own address stays"
    );
}

#[test]
fn errors_name_the_interface_and_the_address() {
    let ns = namespace("vip-err");
    ns.block_on(|| async {
        let netlink = Netlink::connect().expect("netlink");
        match netlink
            .add_address("nope0", &VirtualAddress::host(VIP_V4.into()))
            .await
        {
            Err(Error::NoSuchInterface { interface }) => assert_eq!(interface, "nope0"),
            other => panic!("expected NoSuchInterface, got {other:?}"),
        }
        let mut bad = VirtualAddress::host(VIP_V6.into());
        bad.label = Some("a0:v6".into());
        let error = netlink
            .add_address(A_IF, &bad)
            .await
            .expect_err("label on IPv6");
        let text = error.to_string();
        assert!(text.contains("fd66::251") && text.contains(A_IF), "{text}");
        // The kernel refuses an IPv6 multicast address as an interface address (an IPv4
        // one it takes).
        let error = netlink
            .add_address(A_IF, &VirtualAddress::host("ff02::1234".parse().unwrap()))
            .await
            .expect_err("multicast address");
        assert_eq!(error.raw_os_error(), Some(libc::EADDRNOTAVAIL), "{error:?}");
        assert!(error.to_string().contains("ff02::1234"), "{error}");
    });
}
