//! Reloads through the daemon's real wiring, on fakes of the host only (see `in_process.rs`):
//! a MASTER stays MASTER and keeps the VIPs it keeps, a failed real server stays out, the data
//! plane is edited in place, and a file with errors is refused as a whole.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use halb_daemon::{DaemonEvent, EventKind, VrrpEvent};
use halb_lb::table::{Change, ProtocolKey, ServiceKey};
use halb_vrrp::State;
use support::{eventually, start_from_file, FakeHost, Lan, MemoryDataplane, Running};

const VIP: &str = "192.168.66.251";
const VIP2: &str = "192.168.66.252";

fn instance(priority: u8, vips: &[&str]) -> String {
    format!(
        r#"
vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int 1
    virtual_ipaddress {{
        {}
    }}
}}
"#,
        vips.iter()
            .map(|v| format!("{v}/24"))
            .collect::<Vec<_>>()
            .join("\n        ")
    )
}

/// The next transition of `daemon` into `to`.
async fn entered(daemon: &mut Running, to: State, within: Duration) {
    daemon
        .wait_for(within, &format!("a transition to {to}"), |e| {
            match &e.kind {
                EventKind::Vrrp(VrrpEvent::Transition { change, .. }) if change.to == to => {
                    Some(())
                }
                _ => None,
            }
        })
        .await;
}

/// Every VRRP transition among the events received so far.
fn transitions(daemon: &mut Running) -> Vec<String> {
    let mut seen = Vec::new();
    while let Ok(event) = daemon.events.try_recv() {
        if let EventKind::Vrrp(VrrpEvent::Transition { change, .. }) = &event.kind {
            seen.push(format!("{change:?}"));
        }
    }
    seen
}

#[tokio::test(start_paused = true)]
async fn a_master_stays_master_and_only_the_changed_vips_move() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keepalived.conf");
    std::fs::write(&file, instance(150, &[VIP])).unwrap();
    let lan = Lan::new();
    let host = FakeHost::new(&lan, 1, "192.168.66.11");
    let mut daemon = start_from_file(&file, host.clone(), None);
    entered(&mut daemon, State::Master, Duration::from_secs(5)).await;
    assert!(host.has_address(VIP));
    transitions(&mut daemon);

    // A new priority and a second VIP: the VIP stays, the new one is added.
    std::fs::write(&file, instance(200, &[VIP, VIP2])).unwrap();
    let answer = daemon.reload().await;
    assert!(answer.applied, "{answer:?}");
    assert!(
        answer
            .details
            .iter()
            .any(|l| l.contains(VIP2) && l.contains("added")),
        "{answer:?}"
    );
    assert!(host.has_address(VIP) && host.has_address(VIP2));

    // The first VIP leaves the file: only it leaves the interface.
    std::fs::write(&file, instance(200, &[VIP2])).unwrap();
    assert!(daemon.reload().await.applied);
    assert!(!host.has_address(VIP) && host.has_address(VIP2));

    // Many reloads of the same file in a row (keepalived #349 flipped MASTER to BACKUP).
    for _ in 0..20 {
        assert!(daemon.reload().await.applied);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(transitions(&mut daemon), Vec::<String>::new());
    let status = daemon.status().await;
    assert_eq!(status.vrrp[0].state, "MASTER");
    assert_eq!(status.vrrp[0].priority, 200);
    assert!(status.last_reload.as_ref().is_some_and(|r| r.applied));
    daemon.stop().await;
    assert!(!host.has_address(VIP2));
}

#[tokio::test(start_paused = true)]
async fn removing_one_instance_leaves_the_others_vips_alone() {
    let two = format!(
        "{}\n{}",
        instance(150, &[VIP]),
        instance(150, &[VIP2])
            .replace("VI_1", "VI_2")
            .replace("virtual_router_id 51", "virtual_router_id 52")
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keepalived.conf");
    std::fs::write(&file, &two).unwrap();
    let lan = Lan::new();
    let host = FakeHost::new(&lan, 1, "192.168.66.11");
    let mut daemon = start_from_file(&file, host.clone(), None);
    entered(&mut daemon, State::Master, Duration::from_secs(5)).await;
    entered(&mut daemon, State::Master, Duration::from_secs(5)).await;
    assert!(host.has_address(VIP) && host.has_address(VIP2));
    transitions(&mut daemon);

    // keepalived #2159: removing one instance dropped every instance's VIPs.
    std::fs::write(&file, instance(150, &[VIP])).unwrap();
    let answer = daemon.reload().await;
    assert!(answer.applied, "{answer:?}");
    assert!(host.has_address(VIP), "the kept instance's VIP stays");
    assert!(!host.has_address(VIP2), "the removed instance's VIP goes");
    let seen = transitions(&mut daemon);
    assert!(
        seen.len() == 1 && seen[0].contains("Stopped"),
        "only the removed instance stops: {seen:?}"
    );
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_broken_file_is_refused_and_the_running_configuration_stays() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keepalived.conf");
    std::fs::write(&file, instance(150, &[VIP])).unwrap();
    let lan = Lan::new();
    let host = FakeHost::new(&lan, 1, "192.168.66.11");
    let mut daemon = start_from_file(&file, host.clone(), None);
    entered(&mut daemon, State::Master, Duration::from_secs(5)).await;
    let mut events = daemon.events.resubscribe();

    // A new VIP, and a block never closed.
    std::fs::write(
        &file,
        format!("{}virtual_server {VIP} 80 {{\n", instance(150, &[VIP2])),
    )
    .unwrap();
    let answer = daemon.reload().await;
    assert!(!answer.applied);
    let file_name = file.display().to_string();
    assert!(
        answer
            .details
            .iter()
            .any(|l| l.starts_with(&format!("{file_name}:12:34:")) && l.contains(": error:")),
        "each diagnostic with file:line:col: {answer:?}"
    );
    assert!(host.has_address(VIP) && !host.has_address(VIP2));
    let status = daemon.status().await;
    assert_eq!(status.vrrp[0].state, "MASTER");
    let last = status.last_reload.expect("the last reload in the status");
    assert!(!last.applied && last.details == answer.details);

    // The service manager hears of it: started, then finished and refused.
    let mut daemon_events = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let EventKind::Daemon(d) = e.kind {
            daemon_events.push(d);
        }
    }
    assert!(matches!(
        daemon_events.as_slice(),
        [DaemonEvent::ReloadStarted, DaemonEvent::ReloadFinished(o)] if !o.applied
    ));
    daemon.stop().await;
}

/// The LVS part of the file, with its first real server `down` (nothing listens there) and a
/// changeable weight for the second.
fn services(down: SocketAddr, up: SocketAddr, weight: u32, third: Option<SocketAddr>) -> String {
    let server = |addr: SocketAddr, weight: u32| {
        format!(
            r#"
    real_server {} {} {{
        weight {weight}
        TCP_CHECK {{
            connect_timeout 1
            retry 0
        }}
    }}"#,
            addr.ip(),
            addr.port()
        )
    };
    format!(
        r#"
virtual_server {VIP} 3306 {{
    delay_loop 1
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    persistence_timeout 50
    {}
    {}
    {}
}}
"#,
        server(down, 1),
        server(up, weight),
        third.map(|a| server(a, 1)).unwrap_or_default()
    )
}

#[tokio::test]
async fn a_failed_real_server_stays_out_and_the_table_is_edited_in_place() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = dead.local_addr().unwrap();
    drop(dead);
    let live = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = live.local_addr().unwrap();
    let extra_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let extra = extra_listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keepalived.conf");
    std::fs::write(&file, services(down, up, 1, None)).unwrap();
    let lan = Lan::new();
    let host = FakeHost::new(&lan, 1, "192.168.66.11");
    let plane = MemoryDataplane::default();
    let daemon = start_from_file(&file, host, Some(plane.clone()));
    let service = ServiceKey::Addr {
        protocol: ProtocolKey::Tcp,
        addr: SocketAddr::new(VIP.parse().unwrap(), 3306),
    };
    let table = || {
        plane
            .applied
            .lock()
            .unwrap()
            .table
            .services
            .get(&service)
            .cloned()
    };
    eventually(Duration::from_secs(10), "the dead server taken out", || {
        let t = table();
        async move { t.is_some_and(|s| s.destinations.keys().eq([&up])) }
    })
    .await;
    let applied_before = plane.applied.lock().unwrap().changes.len();

    // A new weight, a new persistence timeout (keepalived #1587) and a third server.
    std::fs::write(
        &file,
        services(down, up, 5, Some(extra))
            .replace("persistence_timeout 50", "persistence_timeout 90"),
    )
    .unwrap();
    let answer = daemon.reload().await;
    assert!(answer.applied, "{answer:?}");
    let s = table().expect("the service");
    assert!(
        !s.destinations.contains_key(&down),
        "the failed server stays out after the reload (keepalived #608)"
    );
    assert_eq!(s.destinations[&up].weight, 5);
    assert!(s.destinations.contains_key(&extra), "the new server is in");
    assert_eq!(s.persistence.map(|p| p.timeout_s), Some(90));
    let changes: Vec<Change> = plane.applied.lock().unwrap().changes[applied_before..].to_vec();
    assert!(
        changes.iter().all(|c| matches!(
            c,
            Change::EditService(_) | Change::EditDest(..) | Change::AddDest(..)
        )),
        "edits in place only: {changes:?}"
    );
    // Seconds later the dead server's checker, which kept its verdict, has still not let it in.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!table().unwrap().destinations.contains_key(&down));

    // The third server leaves again: only its destination is deleted, and the proxy's
    // connections to it are closed.
    std::fs::write(
        &file,
        services(down, up, 5, None).replace("persistence_timeout 50", "persistence_timeout 90"),
    )
    .unwrap();
    let mark = plane.applied.lock().unwrap().changes.len();
    let answer = daemon.reload().await;
    assert!(answer.applied, "{answer:?}");
    let changes: Vec<Change> = plane.applied.lock().unwrap().changes[mark..].to_vec();
    assert_eq!(changes, vec![Change::DelDest(service, extra)]);
    assert!(plane
        .applied
        .lock()
        .unwrap()
        .drops
        .contains(&(service, extra)));
    daemon.stop().await;
    drop((live, extra_listener));
}
