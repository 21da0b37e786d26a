//! Network namespaces for the integration tests, made and removed by the tests themselves.
//!
//! Each test names its namespaces `halbt-sys-<what>-<pid>`, so tests run in parallel and a
//! leftover is traceable to its run. Namespaces are deleted on drop, also when a test fails.
//! Nothing here routes out of a namespace, and the root namespace gets no address.

#![allow(dead_code)] // each test file uses its own part of this

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use halb_sys::{netns, sysctl};

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

/// Runs a command, panicking with its output if it fails.
pub fn run(args: &[&str]) -> String {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        output.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A network namespace that exists as long as this value.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(what: &str) -> Netns {
        let name = format!("halbt-sys-{what}-{}", std::process::id());
        // A namespace of this name can only be left over from a crashed run with the same
        // pid; it is ours to remove.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        // Addresses are usable at once: no Duplicate Address Detection wait in tests.
        for key in ["all", "default"] {
            ns.sysctl(
                &sysctl::SysctlKey::interface("ipv6", key, "accept_dad"),
                "0",
            );
        }
        ns
    }

    pub fn path(&self) -> PathBuf {
        netns::named(&self.name)
    }

    /// `ip -n NAME ARGS…`
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "-n", self.name.as_str()];
        all.extend_from_slice(args);
        run(&all)
    }

    /// `ip -j -n NAME ARGS…`, parsed.
    pub fn ip_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["-j"];
        all.extend_from_slice(args);
        let text = self.ip(&all);
        if text.trim().is_empty() {
            return serde_json::Value::Array(Vec::new());
        }
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("ip -j {args:?}: {e}: {text}"))
    }

    pub fn sysctl(&self, key: &sysctl::SysctlKey, value: &str) -> String {
        let key = key.clone();
        let value = value.to_string();
        netns::run_in(&self.path(), move || sysctl::write(&key, &value))
            .and_then(|r| r)
            .unwrap_or_else(|e| panic!("sysctl in {}: {e}", self.name))
    }

    /// Runs `make()` to completion on a thread inside the namespace, with its own tokio
    /// runtime.
    pub fn block_on<T, F, Fut>(&self, make: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
    {
        match self.spawn(make).join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Like [`Netns::block_on`], without waiting.
    pub fn spawn<T, F, Fut>(&self, make: F) -> JoinHandle<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
    {
        let path = self.path();
        std::thread::spawn(move || {
            netns::enter(&path).unwrap_or_else(|e| panic!("{e}"));
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
            runtime.block_on(make())
        })
    }

    /// Polls `check` until it returns `Some`, for kernel state that settles asynchronously.
    pub fn wait_for<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(value) = check() {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "{}: timed out waiting for {what}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
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
        let a = Netns::new(&format!("{what}-a"));
        let b = Netns::new(&format!("{what}-b"));
        a.ip(&[
            "link",
            "add",
            A_IF,
            "address",
            &mac_text(A_MAC),
            "type",
            "veth",
            "peer",
            "name",
            B_IF,
            "address",
            &mac_text(B_MAC),
            "netns",
            &b.name,
        ]);
        for (ns, ifname, v4, v6) in [(&a, A_IF, A_V4, A_V6), (&b, B_IF, B_V4, B_V6)] {
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
        ns.wait_for("a link-local address", || {
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
