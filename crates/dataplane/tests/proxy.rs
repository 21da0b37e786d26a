//! The userspace proxy over real loopback sockets: scheduling, passive failover, the sorry
//! server, quiescence, dropping connections, half-close, counters and the connection table.

mod proxy_support;

use std::collections::HashMap;
use std::time::Duration;

use halb_dataplane::{Dataplane, DataplaneError};
use halb_lb::table::{Change, ProtocolKey, ServiceKey};
use proxy_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_connections_over_three_backends() {
    let backends = [
        Backend::banner("a").await,
        Backend::banner("b").await,
        Backend::banner("c").await,
    ];
    let (mut proxy, _failures) = proxy(options());
    let key = vip(ProtocolKey::Tcp, 2);
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    proxy
        .apply(&service_changes(settings(key), &addrs))
        .expect("apply");

    let mut seen = Vec::new();
    for _ in 0..9 {
        let mut c = Client::connect(vip_addr(&key)).await;
        c.echo("hello").await;
        seen.push(c.banner);
    }
    let mut per_backend: HashMap<&str, usize> = HashMap::new();
    for name in &seen {
        *per_backend.entry(name.as_str()).or_default() += 1;
    }
    assert_eq!(per_backend.len(), 3, "{seen:?}");
    assert!(per_backend.values().all(|&n| n == 3), "{seen:?}");
    // Round robin: each window of three holds all three.
    for window in seen.chunks(3) {
        let mut w = window.to_vec();
        w.sort();
        assert_eq!(w, ["a", "b", "c"], "{seen:?}");
    }
    let stats = proxy.stats();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].counters.conns, 9);
    assert!(stats[0].dests.iter().all(|d| d.counters.conns == 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_backend_makes_no_client_fail() {
    let backends = [
        Backend::banner("a").await,
        Backend::banner("b").await,
        Backend::banner("c").await,
    ];
    let (mut proxy, mut failures) = proxy(options());
    let key = vip(ProtocolKey::Tcp, 3);
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    proxy
        .apply(&service_changes(settings(key), &addrs))
        .expect("apply");
    backends[1].stop_listening().await;

    for i in 0..12 {
        let mut c = Client::connect(vip_addr(&key)).await;
        assert_ne!(c.banner, "b", "connection {i} went to the stopped backend");
        c.echo("still served").await;
    }
    let first = failures.try_recv().expect("a passive failure was reported");
    assert_eq!(first.service, key);
    assert_eq!(first.dest, backends[1].addr);
    while let Ok(more) = failures.try_recv() {
        assert_eq!(more.dest, backends[1].addr);
    }
    // The failed connects were not counted as connections.
    let stats = proxy.stats();
    assert_eq!(stats[0].counters.conns, 12);
    let b = stats[0].dests.iter().find(|d| d.addr == backends[1].addr);
    assert_eq!(b.map(|d| d.counters.conns), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sorry_server_serves_when_every_backend_is_dead() {
    let sorry = Backend::banner("sorry").await;
    let dead = [dead_addr(), dead_addr()];
    let (mut proxy, mut failures) = proxy(options());
    let key = vip(ProtocolKey::Tcp, 4);
    let mut s = settings(key);
    s.fallback = Some(dest(sorry.addr, 1));
    proxy.apply(&service_changes(s, &dead)).expect("apply");

    for _ in 0..3 {
        let mut c = Client::connect(vip_addr(&key)).await;
        assert_eq!(c.banner, "sorry");
        c.echo("sorry").await;
    }
    let mut reported = Vec::new();
    while let Ok(f) = failures.try_recv() {
        reported.push(f.dest);
    }
    for d in dead {
        assert!(reported.contains(&d), "{d} not reported: {reported:?}");
    }
    assert!(!reported.contains(&sorry.addr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_backend_dead_and_no_sorry_server_the_client_is_closed() {
    let (mut proxy, _failures) = proxy(options());
    let key = vip(ProtocolKey::Tcp, 5);
    proxy
        .apply(&service_changes(settings(key), &[dead_addr()]))
        .expect("apply");
    let mut stream = within(TcpStream::connect(vip_addr(&key)), "connect")
        .await
        .expect("the listener accepts");
    let mut buf = [0u8; 16];
    let n = within(stream.read(&mut buf), "waiting for the close").await;
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_zero_takes_no_new_connections_and_keeps_the_old_ones() {
    let backends = [Backend::banner("a").await, Backend::banner("b").await];
    let (mut proxy, _failures) = proxy(options());
    let key = vip(ProtocolKey::Tcp, 6);
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    proxy
        .apply(&service_changes(settings(key), &addrs))
        .expect("apply");

    let mut old = Client::connect(vip_addr(&key)).await;
    let quiesced = backends
        .iter()
        .find(|b| b.name == old.banner)
        .expect("a known backend");
    proxy
        .apply(&[Change::EditDest(key, dest(quiesced.addr, 0))])
        .expect("apply");
    for _ in 0..6 {
        let c = Client::connect(vip_addr(&key)).await;
        assert_ne!(c.banner, quiesced.name);
    }
    old.echo("still here").await;
    assert_eq!(conn_counts(&proxy, &key, quiesced.addr), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_connections_closes_the_clients_of_a_removed_destination() {
    let backends = [Backend::banner("a").await, Backend::banner("b").await];
    let (mut proxy, _failures) = proxy(options());
    let key = vip(ProtocolKey::Tcp, 7);
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    proxy
        .apply(&service_changes(settings(key), &addrs))
        .expect("apply");

    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(Client::connect(vip_addr(&key)).await);
    }
    let (mut on_a, mut on_b): (Vec<_>, Vec<_>) = clients.into_iter().partition(|c| c.banner == "a");
    assert_eq!(on_a.len(), 3);

    // Removed from the table: its connections stay until the lb layer drops them.
    proxy
        .apply(&[Change::DelDest(key, backends[0].addr)])
        .expect("apply");
    on_a[0].echo("removed but alive").await;
    assert_eq!(
        proxy
            .connections()
            .iter()
            .filter(|e| e.dest == backends[0].addr && e.state == "ESTABLISHED")
            .count(),
        3
    );

    assert_eq!(proxy.drop_connections(&key, backends[0].addr), 3);
    for c in &mut on_a {
        assert!(
            c.closed_within(Duration::from_secs(1)).await,
            "a dropped connection stayed open"
        );
    }
    for c in &mut on_b {
        c.echo("untouched").await;
    }
    assert!(proxy
        .connections()
        .iter()
        .all(|e| e.dest != backends[0].addr));
    assert_eq!(proxy.drop_connections(&key, backends[0].addr), 0);
}

/// A server that reads its request to EOF, then (when told) answers with the byte count.
async fn counting_backend() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedSender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let (go_tx, mut go_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let task = tokio::spawn(async move {
        let Ok((mut conn, _)) = listener.accept().await else {
            return;
        };
        let mut request = Vec::new();
        if conn.read_to_end(&mut request).await.is_err() {
            return;
        }
        if go_rx.recv().await.is_none() {
            return;
        }
        let reply = format!("got {} bytes", request.len());
        let _ = conn.write_all(reply.as_bytes()).await;
    });
    (addr, go_tx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_states_counts_and_exact_bytes() {
    let (backend, go, _task) = counting_backend().await;
    let mut opts = options();
    opts.linger = Duration::from_secs(3);
    let (mut proxy, _failures) = proxy(opts);
    let key = vip(ProtocolKey::Tcp, 8);
    proxy
        .apply(&service_changes(settings(key), &[backend]))
        .expect("apply");

    let mut client = within(TcpStream::connect(vip_addr(&key)), "connect")
        .await
        .expect("connect");
    let request = vec![b'x'; 100_000];
    within(client.write_all(&request), "writing")
        .await
        .expect("write");
    eventually("the connection is established", || {
        conn_counts(&proxy, &key, backend) == (1, 0)
    })
    .await;
    let entries = proxy.connections();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].state, "ESTABLISHED");
    assert_eq!(entries[0].virtual_addr, vip_addr(&key));
    assert_eq!(entries[0].dest, backend);
    assert_eq!(entries[0].client, client.local_addr().expect("address"));
    assert!(entries[0].expires_s > 800, "{:?}", entries[0]);

    // The client is done sending: IPVS calls that CLOSE_WAIT (input FIN), inactive.
    client.shutdown().await.expect("shutdown");
    eventually("the client's FIN is seen", || {
        proxy.connections().first().map(|e| e.state.as_str()) == Some("CLOSE_WAIT")
    })
    .await;
    assert_eq!(conn_counts(&proxy, &key, backend), (0, 1));

    // The server still answers through the half-closed connection.
    go.send(()).expect("backend waiting");
    let mut reply = String::new();
    within(client.read_to_string(&mut reply), "reading the reply")
        .await
        .expect("read");
    assert_eq!(reply, "got 100000 bytes");

    eventually("the connection lingers in TIME_WAIT", || {
        proxy.connections().first().map(|e| e.state.as_str()) == Some("TIME_WAIT")
    })
    .await;
    assert_eq!(conn_counts(&proxy, &key, backend), (0, 1));
    eventually("the linger ends", || proxy.connections().is_empty()).await;
    assert_eq!(conn_counts(&proxy, &key, backend), (0, 0));

    let stats = proxy.stats();
    let d = &stats[0].dests[0];
    assert_eq!(d.counters.conns, 1);
    assert_eq!(d.counters.inbytes, 100_000);
    assert_eq!(d.counters.outbytes, "got 100000 bytes".len() as u64);
    assert!(d.counters.inpkts >= 2, "{:?}", d.counters);
    assert!(d.counters.outpkts >= 1, "{:?}", d.counters);
    assert_eq!(stats[0].counters, d.counters);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_closing_first_is_fin_wait() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let backend = listener.local_addr().expect("address");
    let server = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.expect("accept");
        conn.write_all(b"bye").await.expect("write");
        conn.shutdown().await.expect("shutdown");
        // Keep reading what the client still sends.
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest).await;
        rest
    });
    let (mut proxy, _failures) = proxy(options());
    let key = vip(ProtocolKey::Tcp, 9);
    proxy
        .apply(&service_changes(settings(key), &[backend]))
        .expect("apply");
    let mut client = within(TcpStream::connect(vip_addr(&key)), "connect")
        .await
        .expect("connect");
    let mut greeting = String::new();
    within(client.read_to_string(&mut greeting), "reading")
        .await
        .expect("read");
    assert_eq!(greeting, "bye");
    eventually("the server's FIN is seen", || {
        proxy.connections().first().map(|e| e.state.as_str()) == Some("FIN_WAIT")
    })
    .await;
    assert_eq!(conn_counts(&proxy, &key, backend), (0, 1));
    client.write_all(b"late words").await.expect("write");
    client.shutdown().await.expect("shutdown");
    let rest = within(server, "server").await.expect("server task");
    assert_eq!(rest, b"late words");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firewall_mark_services_are_refused_and_the_rest_applied() {
    let backend = Backend::banner("a").await;
    let (mut proxy, _failures) = proxy(options());
    let key = vip(ProtocolKey::Tcp, 10);
    let fwm = ServiceKey::Fwmark {
        mark: 1,
        inet6: false,
    };
    let mut changes = vec![Change::AddService(settings(fwm))];
    changes.push(Change::AddDest(fwm, dest(backend.addr, 1)));
    changes.extend(service_changes(settings(key), &[backend.addr]));
    let partial = proxy.apply(&changes).expect_err("the mark refused");
    // The mark's service is refused (its destination has nowhere to go and is a no-op); the
    // address service and its destination landed.
    match &partial.failed[..] {
        [failed] => {
            assert_eq!(failed.change, changes[0]);
            match &failed.error {
                DataplaneError::Refused(why) => assert!(why.contains("FWM  1"), "{why}"),
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
        other => panic!("expected one failure, got {other:?}"),
    }
    assert_eq!(partial.landed, changes[1..]);
    let c = Client::connect(vip_addr(&key)).await;
    assert_eq!(c.banner, "a");
    assert_eq!(proxy.stats().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_service_stops_its_listener_and_keeps_its_connections() {
    let backend = Backend::banner("a").await;
    let (mut proxy, _failures) = proxy(options());
    let key = vip(ProtocolKey::Tcp, 11);
    proxy
        .apply(&service_changes(settings(key), &[backend.addr]))
        .expect("apply");
    let mut c = Client::connect(vip_addr(&key)).await;
    proxy
        .apply(&[Change::DelDest(key, backend.addr), Change::DelService(key)])
        .expect("apply");
    eventually("the listener is closed", || {
        std::net::TcpStream::connect_timeout(&vip_addr(&key), Duration::from_secs(1)).is_err()
    })
    .await;
    c.echo("the connection outlives its service").await;
    assert!(proxy.stats().is_empty());
    assert_eq!(proxy.connections().len(), 1);
    assert_eq!(proxy.drop_connections(&key, backend.addr), 1);
    assert!(c.closed_within(Duration::from_secs(1)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rates_follow_the_traffic() {
    let backend = Backend::banner("a").await;
    let (mut proxy, _failures) = proxy(options());
    let key = vip(ProtocolKey::Tcp, 12);
    proxy
        .apply(&service_changes(settings(key), &[backend.addr]))
        .expect("apply");
    let mut c = Client::connect(vip_addr(&key)).await;
    let line = "y".repeat(10_000);
    // The estimator samples every 2 s; keep the traffic going until a sample shows it.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        c.echo(&line).await;
        let s = proxy.stats();
        if s[0].rates.inbps > 0 && s[0].dests[0].rates.outbps > 0 && s[0].rates.inpps > 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no rate estimated");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistence_keeps_a_client_on_its_backend_until_it_is_quiesced() {
    let backends = [Backend::banner("a").await, Backend::banner("b").await];
    let (mut proxy, _failures) = proxy(options());
    let key = vip(ProtocolKey::Tcp, 13);
    let mut s = settings(key);
    s.persistence = Some(halb_lb::table::Persistence {
        timeout_s: 60,
        granularity: None,
    });
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    proxy.apply(&service_changes(s, &addrs)).expect("apply");

    let first = Client::connect(vip_addr(&key)).await.banner;
    for _ in 0..5 {
        assert_eq!(Client::connect(vip_addr(&key)).await.banner, first);
    }
    let sticky = backends.iter().find(|b| b.name == first).expect("known");
    proxy
        .apply(&[Change::EditDest(key, dest(sticky.addr, 0))])
        .expect("apply");
    let moved = Client::connect(vip_addr(&key)).await.banner;
    assert_ne!(moved, first);
    for _ in 0..3 {
        assert_eq!(Client::connect(vip_addr(&key)).await.banner, moved);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upper_threshold_overloads_a_destination_until_it_drains() {
    let backends = [Backend::banner("a").await, Backend::banner("b").await];
    let mut opts = options();
    opts.linger = Duration::ZERO;
    let (mut proxy, _failures) = proxy(opts);
    let key = vip(ProtocolKey::Tcp, 14);
    let limited = backends[0].addr;
    let mut changes = vec![Change::AddService(settings(key))];
    changes.push(Change::AddDest(
        key,
        halb_lb::table::Destination {
            uthreshold: 1,
            ..dest(limited, 1)
        },
    ));
    changes.push(Change::AddDest(key, dest(backends[1].addr, 1)));
    proxy.apply(&changes).expect("apply");

    // Open connections until one is on the limited backend.
    let mut held = None;
    let mut others = Vec::new();
    for _ in 0..4 {
        let c = Client::connect(vip_addr(&key)).await;
        if c.banner == "a" {
            held = Some(c);
            break;
        }
        others.push(c);
    }
    let held = held.expect("the limited backend got a connection");
    for _ in 0..4 {
        let c = Client::connect(vip_addr(&key)).await;
        assert_eq!(c.banner, "b", "an overloaded destination took a connection");
        others.push(c);
    }
    drop(held);
    eventually("the limited backend drains", || {
        conn_counts(&proxy, &key, limited) == (0, 0)
    })
    .await;
    let mut names = Vec::new();
    for _ in 0..2 {
        names.push(Client::connect(vip_addr(&key)).await.banner);
    }
    assert!(names.contains(&"a".to_string()), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hashing_scheduler_never_strands_a_client_on_a_dead_backend() {
    let backends = [Backend::banner("a").await, Backend::banner("b").await];
    let (mut proxy, mut failures) = proxy(options());
    let key = vip(ProtocolKey::Tcp, 15);
    let mut s = settings(key);
    // Source hashing without sh-fallback: IPVS would refuse every client hashed to a dead
    // server.
    s.scheduler = halb_lb::table::Scheduler::Sh;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    proxy.apply(&service_changes(s, &addrs)).expect("apply");

    let first = Client::connect(vip_addr(&key)).await.banner;
    for _ in 0..3 {
        assert_eq!(
            Client::connect(vip_addr(&key)).await.banner,
            first,
            "sh sticks"
        );
    }
    let hashed = backends.iter().find(|b| b.name == first).expect("known");
    hashed.stop_listening().await;
    for _ in 0..4 {
        let mut c = Client::connect(vip_addr(&key)).await;
        assert_ne!(c.banner, first);
        c.echo("rescued").await;
    }
    assert_eq!(failures.try_recv().map(|f| f.dest).ok(), Some(hashed.addr));
}

/// `halb status` names what the proxy does, not the configured `lb_kind`: whatever the
/// forwarding method, the real server sees a connection from the director.
#[tokio::test]
async fn status_calls_the_forwarding_proxy_whatever_lb_kind_says() {
    let (proxy, _failures) = proxy(options());
    for forwarding in [
        halb_lb::table::Forwarding::Dr,
        halb_lb::table::Forwarding::Nat,
    ] {
        assert_eq!(proxy.forward_name(&forwarding), "Proxy");
    }
    assert_eq!(
        halb_dataplane::ipvsadm_forward_name(&halb_lb::table::Forwarding::Dr),
        "Route"
    );
}
