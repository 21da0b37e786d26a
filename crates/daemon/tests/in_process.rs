//! The daemon's real wiring (VRRP shell, virtual servers, checkers, event bus, control socket)
//! run in-process on fakes of the host only: an in-memory LAN between daemons, hosts whose
//! addresses are maps, a data plane that holds its table. No root, no namespaces; the VRRP
//! tests run on tokio's paused clock, so their seconds of protocol time take milliseconds.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use halb_daemon::{EventKind, VrrpEvent};
use halb_lb::table::{ProtocolKey, ServiceKey};
use halb_lb::virtual_server::{CheckerId, VsEvent};
use halb_vrrp::{Reason, State};
use support::{config, eventually, start, FakeHost, Lan, MemoryDataplane, Running};

const VIP: &str = "192.168.66.251";

fn instance(priority: u8) -> String {
    format!(
        r#"
vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int 1
    virtual_ipaddress {{
        {VIP}/24
    }}
}}
"#
    )
}

/// The next transition of `daemon` into `to`, with its reason.
async fn entered(daemon: &mut Running, to: State, within: Duration) -> Reason {
    daemon
        .wait_for(within, &format!("a transition to {to}"), |e| {
            match &e.kind {
                EventKind::Vrrp(VrrpEvent::Transition { change, .. }) if change.to == to => {
                    Some(change.reason.clone())
                }
                _ => None,
            }
        })
        .await
}

#[tokio::test(start_paused = true)]
async fn two_daemons_elect_a_master_and_the_backup_takes_over_when_its_adverts_stop() {
    let lan = Lan::new();
    let host_a = FakeHost::new(&lan, 1, "192.168.66.11");
    let host_b = FakeHost::new(&lan, 2, "192.168.66.12");
    let mut a = start(config(&instance(150)), host_a.clone(), None);
    let mut b = start(config(&instance(100)), host_b.clone(), None);

    // Both start BACKUP; the higher priority's shorter skew makes it MASTER first, and its
    // adverts keep the other one BACKUP.
    entered(&mut a, State::Backup, Duration::from_secs(1)).await;
    entered(&mut b, State::Backup, Duration::from_secs(1)).await;
    let reason = entered(&mut a, State::Master, Duration::from_secs(5)).await;
    assert_eq!(reason, Reason::MasterDown);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(host_a.has_address(VIP), "the MASTER holds the VIP");
    assert!(!host_b.has_address(VIP), "the BACKUP does not");
    while let Ok(event) = b.events.try_recv() {
        assert!(
            !matches!(&event.kind, EventKind::Vrrp(VrrpEvent::Transition { change, .. })
                if change.to == State::Master),
            "the BACKUP stayed BACKUP while adverts came: {event:?}"
        );
    }

    // The MASTER hangs without a word: its adverts stop. After Master_Down_Interval
    // (3 × 1 s + skew) the BACKUP takes over and puts the VIP on its interface.
    lan.silence(1);
    let reason = entered(&mut b, State::Master, Duration::from_secs(5)).await;
    assert_eq!(reason, Reason::MasterDown);
    eventually(
        Duration::from_secs(1),
        "the VIP on the new MASTER",
        || async { host_b.has_address(VIP) },
    )
    .await;

    a.stop().await;
    b.stop().await;
    assert!(
        !host_a.has_address(VIP) && !host_b.has_address(VIP),
        "stopping removes the VIPs"
    );
}

#[tokio::test]
async fn a_failed_checker_takes_its_real_server_out_of_the_data_plane() {
    let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let second = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let first_addr = first.local_addr().unwrap();
    let second_addr = second.local_addr().unwrap();
    let text = format!(
        r#"
virtual_server {VIP} 3306 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 127.0.0.1 {p1} {{
        weight 1
        TCP_CHECK {{
            connect_timeout 1
            retry 0
        }}
    }}
    real_server 127.0.0.1 {p2} {{
        weight 1
        TCP_CHECK {{
            connect_timeout 1
            retry 0
        }}
    }}
}}
"#,
        p1 = first_addr.port(),
        p2 = second_addr.port()
    );
    let lan = Lan::new();
    let host = FakeHost::new(&lan, 1, "192.168.66.11");
    let plane = MemoryDataplane::default();
    let mut daemon = start(config(&text), host, Some(plane.clone()));
    let service = ServiceKey::Addr {
        protocol: ProtocolKey::Tcp,
        addr: SocketAddr::new(VIP.parse().unwrap(), 3306),
    };
    let destinations = || -> Vec<SocketAddr> {
        plane
            .applied
            .lock()
            .unwrap()
            .table
            .services
            .get(&service)
            .map(|s| s.destinations.keys().copied().collect())
            .unwrap_or_default()
    };
    eventually(
        Duration::from_secs(5),
        "both real servers in the table",
        || {
            let d = destinations();
            async move { d.len() == 2 }
        },
    )
    .await;

    // The first real server stops listening: its TCP_CHECK is refused, and with retry 0 the
    // first failure is the verdict.
    drop(first);
    let verdict = daemon
        .wait_for(Duration::from_secs(10), "the down verdict", |e| {
            match &e.kind {
                EventKind::CheckerVerdict(report) if !report.up => Some(report.clone()),
                _ => None,
            }
        })
        .await;
    assert_eq!(verdict.id, CheckerId::new(0, 0, 0));
    assert_eq!(
        verdict.failure.as_ref().map(|f| f.kind),
        Some(halb_check::FailureKind::Refused),
        "{verdict:?}"
    );
    let removed = daemon
        .wait_for(
            Duration::from_secs(1),
            "the real server's removal",
            |e| match &e.kind {
                EventKind::VirtualServer(event @ VsEvent::RealServerDown { cause, .. }) => {
                    Some((event.to_string(), *cause))
                }
                _ => None,
            },
        )
        .await;
    assert_eq!(
        removed,
        (
            format!(
                "Removing service [127.0.0.1]:tcp:{} from VS [{VIP}]:tcp:3306",
                first_addr.port()
            ),
            CheckerId::new(0, 0, 0)
        )
    );
    eventually(Duration::from_secs(1), "the table without it", || {
        let d = destinations();
        async move { d == vec![second_addr] }
    })
    .await;

    daemon.stop().await;
    assert!(destinations().is_empty(), "stopping empties the table");
    drop(second);
}

#[tokio::test(start_paused = true)]
async fn losing_the_vip_closes_the_proxied_connections_through_it() {
    let real_server: SocketAddr = "192.168.66.253:3306".parse().unwrap();
    let with_service = |priority: u8| {
        format!(
            r#"{}
virtual_server {VIP} 3306 {{
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 192.168.66.253 3306 {{
        weight 1
    }}
}}
"#,
            instance(priority)
        )
    };
    let lan = Lan::new();
    let host_a = FakeHost::new(&lan, 1, "192.168.66.11");
    let plane = MemoryDataplane::default();
    let mut a = start(
        config(&with_service(100)),
        host_a.clone(),
        Some(plane.clone()),
    );
    entered(&mut a, State::Master, Duration::from_secs(5)).await;
    assert!(host_a.has_address(VIP));
    assert!(plane.applied.lock().unwrap().drops.is_empty());

    // A director with a higher priority arrives and preempts: the VIP leaves this one, and
    // the connections the proxy still holds through it are closed.
    let host_b = FakeHost::new(&lan, 2, "192.168.66.12");
    let mut b = start(config(&instance(200)), host_b.clone(), None);
    entered(&mut b, State::Master, Duration::from_secs(5)).await;
    let reason = entered(&mut a, State::Backup, Duration::from_secs(2)).await;
    assert!(
        matches!(reason, Reason::HigherPriority { priority: 200, .. }),
        "{reason:?}"
    );
    let service = ServiceKey::Addr {
        protocol: ProtocolKey::Tcp,
        addr: SocketAddr::new(VIP.parse().unwrap(), 3306),
    };
    eventually(Duration::from_secs(1), "the connections closed", || {
        let drops = plane.applied.lock().unwrap().drops.clone();
        async move { drops == vec![(service, real_server)] }
    })
    .await;
    assert!(!host_a.has_address(VIP) && host_b.has_address(VIP));

    a.stop().await;
    b.stop().await;
}
