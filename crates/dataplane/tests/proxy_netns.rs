//! IP_FREEBIND: in a network namespace of its own, the proxy listens on a VIP that no
//! interface holds yet (as a BACKUP does), and serves as soon as the address arrives.
//! Needs root (for the namespace); skipped otherwise.

mod proxy_support;

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::process::Command;

use halb_dataplane::Dataplane;
use halb_lb::table::{ProtocolKey, ServiceKey};
use proxy_support::*;

/// A network namespace named for this process, deleted on drop (also when a test fails).
struct Netns {
    name: String,
}

impl Netns {
    fn create(tag: &str) -> Netns {
        let name = format!("halbpx{}{tag}", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let has_ip = Command::new("ip").arg("-V").output().is_ok();
    if !(root && has_ip) {
        eprintln!("skipped: needs root and iproute2 for a network namespace");
    }
    root && has_ip
}

#[test]
fn a_listener_on_an_absent_vip_serves_once_the_address_arrives() {
    if !can_run() {
        return;
    }
    let ns = Netns::create("fb");
    let path = ns.path();
    let name = ns.name.clone();
    // The namespace belongs to a thread: everything that makes sockets runs on this one.
    let outcome = std::thread::spawn(move || {
        let file = File::open(&path).expect("opening the namespace");
        // SAFETY: a valid descriptor of a network namespace, for this thread only.
        let entered = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(serve_before_and_after(&name));
    })
    .join();
    drop(ns);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn serve_before_and_after(ns: &str) {
    let vip4: SocketAddr = "192.168.66.251:3306".parse().expect("address");
    let vip6: SocketAddr = "[fd00:66::251]:3306".parse().expect("address");
    // Without FREEBIND these binds fail: the addresses are on no interface yet.
    for vip in [vip4, vip6] {
        let plain = std::net::TcpListener::bind(vip);
        assert_eq!(
            plain.map_err(|e| e.raw_os_error()).err(),
            Some(Some(libc::EADDRNOTAVAIL)),
            "{vip} must not be local yet"
        );
    }

    let backend = Backend::banner("real").await;
    let (mut proxy, _failures) = proxy(options());
    let keys = [vip4, vip6].map(|addr| ServiceKey::Addr {
        protocol: ProtocolKey::Tcp,
        addr,
    });
    for key in keys {
        proxy
            .apply(&service_changes(settings(key), &[backend.addr]))
            .expect("the proxy binds a VIP that is not there yet");
    }

    // VRRP makes this director MASTER: the addresses arrive.
    ip(&["-n", ns, "addr", "add", "192.168.66.251/32", "dev", "lo"]);
    ip(&[
        "-n",
        ns,
        "addr",
        "add",
        "fd00:66::251/128",
        "dev",
        "lo",
        "nodad",
    ]);

    for vip in [vip4, vip6] {
        let mut c = Client::connect(vip).await;
        assert_eq!(c.banner, "real");
        c.echo(&format!("through {vip}")).await;
    }
    assert_eq!(
        proxy.stats().iter().map(|s| s.counters.conns).sum::<u64>(),
        2
    );
}
