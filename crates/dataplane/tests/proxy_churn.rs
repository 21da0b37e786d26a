//! Reloads that add a virtual server and then remove it, many times over, leave nothing behind
//! in the proxy: the removed service's listener task ends, and both its listening socket and
//! the copy kept for an upgrade's hand-over are closed. A test binary of its own: it counts the
//! process's open descriptors, which other tests running alongside would change.

mod proxy_support;

use std::time::Duration;

use halb_dataplane::proxy::Proxy;
use halb_dataplane::Dataplane;
use halb_lb::table::{Change, ProtocolKey, ServiceKey};
use proxy_support::*;

/// The descriptors this process has open.
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("listing /proc/self/fd")
        .count()
}

/// (tasks alive on this runtime, open descriptors).
fn counts() -> (usize, usize) {
    (
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        open_descriptors(),
    )
}

/// The counts once they held still for longer than a closed connection lingers (its task
/// keeps its table entry for `ProxyOptions::linger`, 2 s by default).
async fn settled() -> (usize, usize) {
    let still = options().linger + Duration::from_secs(1);
    let (mut last, mut since) = (counts(), tokio::time::Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = counts();
        if now != last {
            (last, since) = (now, tokio::time::Instant::now());
        } else if since.elapsed() >= still {
            return now;
        }
    }
}

/// One reload adding `key` (served through once) and the next removing it.
async fn add_serve_remove(proxy: &mut Proxy, key: ServiceKey, backend: &Backend) {
    proxy
        .apply(&service_changes(settings(key), &[backend.addr]))
        .expect("adding the service");
    let mut client = Client::connect(vip_addr(&key)).await;
    client.echo("through the added service").await;
    drop(client);
    proxy
        .apply(&[Change::DelDest(key, backend.addr), Change::DelService(key)])
        .expect("removing the service");
    eventually("the removed service's listener is closed", || {
        std::net::TcpStream::connect_timeout(&vip_addr(&key), PATIENCE).is_err()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_added_and_removed_many_times_leaves_no_task_or_socket_behind() {
    let backend = Backend::banner("a").await;
    let (mut proxy, _failures) = proxy(options());
    // A service that stays, as the clients' one does through reloads.
    let stays = vip(ProtocolKey::Tcp, 21);
    proxy
        .apply(&service_changes(settings(stays), &[backend.addr]))
        .expect("apply");
    let churned = vip(ProtocolKey::Tcp, 22);

    // The first rounds may leave what is made once and kept (nothing today; a pool would).
    for _ in 0..2 {
        add_serve_remove(&mut proxy, churned, &backend).await;
    }
    let before = settled().await;
    const ROUNDS: usize = 30;
    for _ in 0..ROUNDS {
        add_serve_remove(&mut proxy, churned, &backend).await;
    }
    // A connection's task may still be ending: wait for the counts to come back, no longer.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut after = settled().await;
    while after != before && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = counts();
    }
    assert_eq!(
        after, before,
        "(tasks, open descriptors) after {ROUNDS} more adds and removals of {churned}, against \
         before them"
    );
    // The service that stayed still serves.
    let mut client = Client::connect(vip_addr(&stays)).await;
    client.echo("still served").await;
}
