//! UDP through the proxy: per-client flows, replies from the VIP, datagram counters, flow
//! timeout, and passive failure on an ICMP port unreachable.

mod proxy_support;

use std::time::Duration;

use halb_dataplane::Dataplane;
use halb_lb::table::ProtocolKey;
use proxy_support::*;
use tokio::net::UdpSocket;

async fn ask(client: &UdpSocket, vip: std::net::SocketAddr, what: &str) -> String {
    client.send_to(what.as_bytes(), vip).await.expect("send");
    let mut buf = [0u8; 1024];
    let (n, from) = within(client.recv_from(&mut buf), "waiting for the reply")
        .await
        .expect("recv");
    assert_eq!(from, vip, "the reply must come from the VIP");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_reach_two_backends_and_keep_them() {
    let backends = [UdpBackend::echo("a").await, UdpBackend::echo("b").await];
    let (mut proxy, _failures) = proxy(options());
    let key = vip(ProtocolKey::Udp, 20);
    let vip = vip_addr(&key);
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    proxy
        .apply(&service_changes(settings(key), &addrs))
        .expect("apply");

    let one = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let two = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let first = ask(&one, vip, "ping").await;
    let second = ask(&two, vip, "ping").await;
    let backend_of = |reply: &str| reply.split(':').next().unwrap_or("").to_string();
    assert_ne!(
        backend_of(&first),
        backend_of(&second),
        "{first} / {second}"
    );
    // A flow sticks to its backend.
    for i in 0..5 {
        assert_eq!(
            ask(&one, vip, &format!("again {i}")).await,
            format!("{}:again {i}", backend_of(&first))
        );
        assert_eq!(
            ask(&two, vip, &format!("again {i}")).await,
            format!("{}:again {i}", backend_of(&second))
        );
    }

    let entries = proxy.connections();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(entries
        .iter()
        .all(|e| e.state == "UDP" && e.expires_s > 290));
    let stats = proxy.stats();
    let s = &stats[0];
    assert_eq!(s.counters.conns, 2);
    assert_eq!(s.counters.inpkts, 12);
    assert_eq!(s.counters.outpkts, 12);
    let sent: u64 = 2 * 4
        + 2 * (0..5)
            .map(|i| format!("again {i}").len() as u64)
            .sum::<u64>();
    assert_eq!(s.counters.inbytes, sent);
    assert_eq!(
        s.counters.outbytes,
        sent + 12 * 2,
        "each reply has a 2-byte prefix"
    );
    // UDP flows count as InActConn, as in IPVS.
    for d in &s.dests {
        assert_eq!((d.active, d.inactive), (0, 1));
        assert_eq!(d.counters.conns, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_flow_times_out_and_a_dropped_one_ends() {
    let backend = UdpBackend::echo("a").await;
    let mut opts = options();
    opts.udp_timeout = Duration::from_millis(500);
    let (mut proxy, _failures) = proxy(opts);
    let key = vip(ProtocolKey::Udp, 21);
    let vip = vip_addr(&key);
    proxy
        .apply(&service_changes(settings(key), &[backend.addr]))
        .expect("apply");
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    assert_eq!(ask(&client, vip, "x").await, "a:x");
    assert_eq!(proxy.connections().len(), 1);
    eventually("the flow times out", || proxy.connections().is_empty()).await;
    assert_eq!(conn_counts(&proxy, &key, backend.addr), (0, 0));

    // A new datagram makes a new flow.
    assert_eq!(ask(&client, vip, "y").await, "a:y");
    assert_eq!(proxy.stats()[0].counters.conns, 2);
    assert_eq!(proxy.drop_connections(&key, backend.addr), 1);
    assert!(proxy.connections().is_empty());
    assert_eq!(ask(&client, vip, "z").await, "a:z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_unreachable_is_a_passive_failure() {
    let alive = UdpBackend::echo("alive").await;
    // A port where nothing listens: the kernel answers with ICMP port unreachable.
    let dead = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.local_addr().expect("address")
    };
    let (mut proxy, mut failures) = proxy(options());
    let key = vip(ProtocolKey::Udp, 22);
    let vip = vip_addr(&key);
    let mut addrs = vec![alive.addr, dead];
    addrs.sort();
    proxy
        .apply(&service_changes(settings(key), &addrs))
        .expect("apply");

    // Whichever backend each client's flow lands on, a client that retries is served.
    for i in 0..4 {
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let mut served = None;
        for _attempt in 0..5 {
            client.send_to(b"hi", vip).await.expect("send");
            let mut buf = [0u8; 64];
            if let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_millis(500), client.recv_from(&mut buf)).await
            {
                served = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
                break;
            }
        }
        assert_eq!(served.as_deref(), Some("alive:hi"), "client {i}");
    }
    let failure = within(failures.recv(), "a passive failure").await;
    assert_eq!(failure.map(|f| f.dest), Some(dead));
}
