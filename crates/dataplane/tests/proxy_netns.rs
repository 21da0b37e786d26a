//! IP_FREEBIND: in a network namespace of its own, the proxy listens on a VIP that no
//! interface holds yet (as a BACKUP does), and serves as soon as the address arrives.
//! Needs root (for the namespace); skipped otherwise, except under CI.

mod proxy_support;

use std::net::SocketAddr;

use halb_dataplane::Dataplane;
use halb_lb::table::{ProtocolKey, ServiceKey};
use halb_test_support::{installed, is_root, skip, Netns};
use proxy_support::*;

#[test]
fn a_listener_on_an_absent_vip_serves_once_the_address_arrives() {
    if !is_root() || !installed("ip") {
        return skip("needs root and iproute2 for a network namespace");
    }
    let ns = std::sync::Arc::new(Netns::new("proxy-freebind"));
    // The namespace belongs to a thread: everything that makes sockets runs on that one.
    let inside = ns.clone();
    ns.block_on(move || async move { serve_before_and_after(&inside).await });
}

async fn serve_before_and_after(ns: &Netns) {
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
    ns.ip(&["addr", "add", "192.168.66.251/32", "dev", "lo"]);
    ns.ip(&["addr", "add", "fd00:66::251/128", "dev", "lo", "nodad"]);

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
