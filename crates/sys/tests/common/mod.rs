//! The two-namespace segment of the sys tests, on the shared test namespaces
//! (`halb_test_support::netns`: removed on drop, nothing routed out, the root namespace gets no
//! address).

#![allow(dead_code)] // each test file uses its own part of this

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

pub use halb_test_support::Netns;

pub const A_IF: &str = "a0";
pub const B_IF: &str = "b0";
pub const A_MAC: [u8; 6] = [0x02, 0x66, 0, 0, 0, 0x01];
pub const B_MAC: [u8; 6] = [0x02, 0x66, 0, 0, 0, 0x02];
pub const A_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 66, 1);
pub const B_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 66, 2);
pub const VIP_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 66, 251);
pub const A_V6: Ipv6Addr = Ipv6Addr::new(0xfd66, 0, 0, 0, 0, 0, 0, 1);
pub const B_V6: Ipv6Addr = Ipv6Addr::new(0xfd66, 0, 0, 0, 0, 0, 0, 2);
pub const VIP_V6: Ipv6Addr = Ipv6Addr::new(0xfd66, 0, 0, 0, 0, 0, 0, 0x251);

/// How long a test waits for a packet or an event that should come at once.
pub const PATIENCE: Duration = Duration::from_secs(5);

pub fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Polls `check` until it returns `Some`, for kernel state that settles asynchronously;
/// panics naming `ns` and `what` after [`PATIENCE`].
pub fn wait_for<T>(ns: &Netns, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{}: timed out waiting for {what}",
            ns.name()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A namespace of this crate's tests (`halbt-sys-<what>-…`), with no duplicate address
/// detection: addresses are usable at once.
pub fn new_netns(what: &str) -> Netns {
    Netns::new(&format!("sys-{what}")).without_dad()
}

/// Two namespaces joined by a veth pair: A's `a0` (02:66::01, 192.168.66.1/24, fd66::1/64)
/// and B's `b0` (02:66::02, 192.168.66.2/24, fd66::2/64), both up, link-local addresses
/// ready.
pub struct Pair {
    pub a: Netns,
    pub b: Netns,
}

impl Pair {
    pub fn new(what: &str) -> Pair {
        let a = new_netns(&format!("{what}-a"));
        let b = new_netns(&format!("{what}-b"));
        a.add_veth(A_IF, &b, B_IF);
        for (ns, ifname, mac, v4, v6) in
            [(&a, A_IF, A_MAC, A_V4, A_V6), (&b, B_IF, B_MAC, B_V4, B_V6)]
        {
            ns.ip(&["link", "set", ifname, "address", &mac_text(mac)]);
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", ifname]);
            ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", ifname, "nodad"]);
            ns.ip(&["link", "set", ifname, "up"]);
        }
        let pair = Pair { a, b };
        pair.link_local(&pair.a, A_IF);
        pair.link_local(&pair.b, B_IF);
        pair
    }

    /// The interface's link-local address, once it is usable.
    pub fn link_local(&self, ns: &Netns, ifname: &str) -> Ipv6Addr {
        wait_for(ns, "a link-local address", || {
            let info = addresses(ns, ifname)
                .into_iter()
                .find(|a| a.get("scope").and_then(|s| s.as_str()) == Some("link"))?;
            if info.get("tentative").is_some() {
                return None;
            }
            info.get("local")?.as_str()?.parse().ok()
        })
    }
}

/// The `addr_info` entries of `ip -j addr show dev IFNAME` (iproute2 6.1 puts an empty object
/// where a filter dropped an address, so filter here instead).
pub fn addresses(ns: &Netns, ifname: &str) -> Vec<serde_json::Value> {
    let json = ns.ip_json(&["addr", "show", "dev", ifname]);
    json.get(0)
        .and_then(|link| link.get("addr_info"))
        .and_then(|a| a.as_array())
        .map(|a| {
            a.iter()
                .filter(|i| i.get("local").is_some())
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}
