//! Network namespaces that a test makes and that go away with it.
//!
//! Names are `halbt-<tag>-<pid>-<n>`: the tag says which test made it, the pid and a counter keep
//! tests of one run and parallel runs apart, and a leftover of a killed run can be traced to it.
//! A namespace starts with `lo` up and nothing else; veth pairs and bridges join only namespaces
//! of the test, never the root namespace, so nothing a test sends can leave the machine.

use std::ffi::OsStr;
use std::future::Future;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;

use halb_sys::netns;

/// Tells namespaces of one test process apart, whatever tags the tests choose.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace that exists as long as this value (deleted on drop, also when the test
/// panics).
#[derive(Debug)]
pub struct Netns {
    name: String,
    /// `/etc/netns/NAME`, which `ip netns exec` bind-mounts over `/etc` files, when the test gave
    /// the namespace files of its own.
    etc: Option<PathBuf>,
}

impl Netns {
    /// A new namespace with only `lo`, up. Panics (tests need root and iproute2) if it cannot
    /// be made.
    pub fn new(tag: &str) -> Netns {
        let name = format!(
            "halbt-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        // A namespace of this name can only be a leftover of a killed run that had this pid.
        let _ = netns::delete(&name);
        let created = netns::add(&name);
        // Dropped (deleted) on a panic below, also when `lo` did not come up.
        let ns = Netns { name, etc: None };
        if let Err(e) = created {
            panic!("{e} (tests that make namespaces need root)");
        }
        ns
    }

    /// A new namespace whose programs (those started by [`Netns::command`]) read `hosts` as
    /// `/etc/hosts`, so that name lookups there stay inside the test.
    pub fn with_hosts(tag: &str, hosts: &str) -> Netns {
        let mut ns = Netns::new(tag);
        let etc = PathBuf::from("/etc/netns").join(&ns.name);
        std::fs::create_dir_all(&etc)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", etc.display()));
        ns.etc = Some(etc.clone());
        std::fs::write(etc.join("hosts"), hosts)
            .unwrap_or_else(|e| panic!("cannot write {}/hosts: {e}", etc.display()));
        ns
    }

    /// The name `ip netns` knows it by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/NAME`, for `halb_sys::netns`.
    pub fn path(&self) -> PathBuf {
        netns::named(&self.name)
    }

    /// A command that runs inside the namespace (`ip netns exec NAME PROGRAM`; the program
    /// replaces `ip`, so the child's pid is the program's).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        netns::command(&self.name, program)
    }

    /// Runs `argv` inside the namespace; its stdout. Panics with its stderr if it fails.
    pub fn run(&self, argv: &[&str]) -> String {
        or_panic(netns::run(&self.name, argv))
    }

    /// `ip -n NAME ARGS…`; its stdout. Panics with its stderr if it fails.
    pub fn ip(&self, args: &[&str]) -> String {
        or_panic(netns::ip(&self.name, args))
    }

    /// `ip -j -n NAME ARGS…`, parsed (an empty array when `ip` prints nothing).
    pub fn ip_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["-j"];
        all.extend_from_slice(args);
        let text = self.ip(&all);
        if text.trim().is_empty() {
            return serde_json::Value::Array(Vec::new());
        }
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("ip -j {args:?}: {e}: {text}"))
    }

    /// Sets a sysctl inside the namespace (`KEY` as `sysctl` spells it, `net.ipv4.conf.lo.…`).
    pub fn sysctl(&self, key: &str, value: &str) {
        self.run(&["sysctl", "-q", "-w", &format!("{key}={value}")]);
    }

    /// Turns IPv6 duplicate address detection off for every interface made from now on, so a
    /// test's addresses (link-local ones too) are usable at once.
    pub fn without_dad(self) -> Netns {
        for key in ["all", "default"] {
            self.sysctl(&format!("net.ipv6.conf.{key}.accept_dad"), "0");
        }
        self
    }

    /// A veth pair: `ifname` here, `peer_ifname` in `peer`; both down, without addresses.
    pub fn add_veth(&self, ifname: &str, peer: &Netns, peer_ifname: &str) {
        or_panic(netns::add_veth(&self.name, ifname, &peer.name, peer_ifname));
    }

    /// Runs `f` on a thread inside the namespace and waits for it; a panic in `f` goes on in
    /// the caller.
    pub fn run_in<T, F>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        netns::run_in(&self.path(), f)
            .unwrap_or_else(|e| panic!("cannot enter namespace {}: {e}", self.name))
    }

    /// Runs the future `make()` returns to completion on a thread inside the namespace, with a
    /// tokio runtime of its own.
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
        let name = self.name.clone();
        std::thread::spawn(move || {
            netns::enter(&path).unwrap_or_else(|e| panic!("cannot enter namespace {name}: {e}"));
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
            runtime.block_on(make())
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = netns::delete(&self.name);
        if let Some(etc) = &self.etc {
            let _ = std::fs::remove_dir_all(etc);
        }
    }
}

/// One Ethernet segment: a bridge `br0` in a namespace of its own, to which test namespaces are
/// attached by veth pairs. Dropped (with every port) after the hosts that hold it by reference.
#[derive(Debug)]
pub struct Bridge {
    ns: Netns,
}

impl Bridge {
    /// The segment, empty. Multicast snooping is off: it would hold back VRRP's IPv6 adverts
    /// (ff02::12) until someone sent an MLD report.
    pub fn new(tag: &str) -> Bridge {
        let ns = Netns::new(tag);
        or_panic(netns::add_bridge(&ns.name, BRIDGE));
        Bridge { ns }
    }

    /// Joins `host` to the segment: `ifname` in the host (down, without addresses), its peer
    /// `port` on the bridge (up).
    pub fn attach(&self, host: &Netns, port: &str, ifname: &str) {
        or_panic(netns::attach(
            &self.ns.name,
            BRIDGE,
            port,
            &host.name,
            ifname,
        ));
    }

    /// The namespace that holds the bridge.
    pub fn netns(&self) -> &Netns {
        &self.ns
    }
}

/// The bridge's name in its namespace.
const BRIDGE: &str = "br0";

/// The value, or a panic with the error (which names the command, the namespace and what `ip`
/// said).
fn or_panic<T>(result: halb_sys::Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("{e}"))
}
