//! Reconciliation plans (which changes repair the kernel's table, for halb's services only) and
//! the connection table parser, without a kernel.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};

use halb_dataplane::ipvs::conn;
use halb_dataplane::ipvs::reconcile::{plan, KernelEntry, KernelTable};
use halb_dataplane::ipvs::service::ServiceId;
use halb_dataplane::ipvs::stats::KernelStats;
use halb_dataplane::ipvs::{DestAttrs, KernelDest, KernelService, ServiceAttrs};
use halb_lb::table::{
    Change, Destination, Forwarding, Persistence, PersistenceGranularity, ProtocolKey, SchedFlags,
    Scheduler, Service, ServiceKey, Table,
};

fn tcp(addr: &str) -> ServiceKey {
    ServiceKey::Addr {
        protocol: ProtocolKey::Tcp,
        addr: addr.parse().unwrap(),
    }
}

fn dest(addr: &str, weight: u32) -> Destination {
    Destination {
        addr: addr.parse().unwrap(),
        weight,
        forwarding: Forwarding::Dr,
        uthreshold: 0,
        lthreshold: 0,
    }
}

fn service(key: ServiceKey, dests: &[Destination]) -> Service {
    Service {
        key,
        scheduler: Scheduler::Wrr,
        flags: SchedFlags::default(),
        persistence: Some(Persistence {
            timeout_s: 120,
            granularity: None,
        }),
        persistence_engine: None,
        fallback: None,
        destinations: dests.iter().map(|d| (d.addr, *d)).collect(),
    }
}

fn table(services: &[Service]) -> Table {
    Table {
        services: services.iter().map(|s| (s.key, s.clone())).collect(),
    }
}

/// What the kernel would list after `table` was applied.
fn kernel_of(table: &Table) -> KernelTable {
    KernelTable {
        entries: table
            .services
            .values()
            .map(|s| KernelEntry {
                service: KernelService {
                    attrs: ServiceAttrs::from_settings(&s.settings()).unwrap(),
                    stats: KernelStats::default(),
                },
                dests: s
                    .destinations
                    .values()
                    .map(|d| KernelDest {
                        attrs: DestAttrs::from_destination(d).unwrap(),
                        active: 0,
                        inactive: 0,
                        persistent: 0,
                        stats: KernelStats::default(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn owned(keys: &[ServiceKey]) -> BTreeSet<ServiceKey> {
    keys.iter().copied().collect()
}

#[test]
fn an_empty_kernel_gets_everything_services_first() {
    let a = tcp("192.168.66.251:3306");
    let b = tcp("192.168.66.251:3308");
    let desired = table(&[
        service(a, &[dest("192.168.66.253:3306", 1)]),
        service(
            b,
            &[
                dest("192.168.66.253:3308", 1),
                dest("192.168.66.254:3308", 0),
            ],
        ),
    ]);
    let changes = plan(&KernelTable::default(), &desired, &owned(&[])).unwrap();
    let kinds: Vec<&str> = changes
        .iter()
        .map(|c| match c {
            Change::AddService(_) => "svc",
            Change::AddDest(..) => "dest",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["svc", "svc", "dest", "dest", "dest"]);
    // What the plan does to an empty table is the desired table.
    let mut applied = Table::default();
    applied.apply(&changes);
    assert_eq!(applied, desired);
}

#[test]
fn a_kernel_that_matches_needs_nothing() {
    let desired = table(&[service(
        tcp("192.168.66.251:3306"),
        &[dest("192.168.66.253:3306", 1)],
    )]);
    let kernel = kernel_of(&desired);
    assert_eq!(plan(&kernel, &desired, &owned(&[])).unwrap(), []);
    // Read back, the kernel's table is the desired one.
    assert_eq!(kernel.to_table(), desired);
}

#[test]
fn drift_is_repaired_and_foreign_services_are_left_alone() {
    let key = tcp("192.168.66.251:3306");
    let desired = table(&[service(
        key,
        &[
            dest("192.168.66.253:3306", 1),
            dest("192.168.66.254:3306", 2),
        ],
    )]);

    // Someone with ipvsadm: changed the scheduler, reweighted .253, removed .254, added .99,
    // and added a service of their own.
    let foreign = tcp("10.0.0.1:80");
    let mut drifted = desired.clone();
    let svc = drifted.services.get_mut(&key).unwrap();
    svc.scheduler = Scheduler::Rr;
    svc.destinations.insert(
        "192.168.66.253:3306".parse().unwrap(),
        dest("192.168.66.253:3306", 5),
    );
    svc.destinations
        .remove(&"192.168.66.254:3306".parse::<SocketAddr>().unwrap());
    svc.destinations.insert(
        "192.168.66.99:3306".parse().unwrap(),
        dest("192.168.66.99:3306", 1),
    );
    drifted
        .services
        .insert(foreign, service(foreign, &[dest("10.0.0.2:80", 1)]));

    let changes = plan(&kernel_of(&drifted), &desired, &owned(&[key])).unwrap();
    assert_eq!(
        changes,
        vec![
            Change::DelDest(key, "192.168.66.99:3306".parse().unwrap()),
            Change::EditService(desired.services[&key].settings()),
            Change::EditDest(key, dest("192.168.66.253:3306", 1)),
            Change::AddDest(key, dest("192.168.66.254:3306", 2)),
        ]
    );
    assert!(changes
        .iter()
        .all(|c| !format!("{c:?}").contains("10.0.0.")));

    // Applied to the drifted table, the plan gives the desired table plus the foreign service.
    let mut repaired = drifted.clone();
    repaired.apply(&changes);
    let mut expected = desired.clone();
    expected
        .services
        .insert(foreign, drifted.services[&foreign].clone());
    assert_eq!(repaired, expected);
}

#[test]
fn owned_services_no_longer_wanted_are_removed_whole() {
    let keep = tcp("192.168.66.251:3306");
    let gone = ServiceKey::Fwmark {
        mark: 3,
        inet6: false,
    };
    let foreign = ServiceKey::Fwmark {
        mark: 4,
        inet6: false,
    };
    let kernel = kernel_of(&table(&[
        service(keep, &[]),
        service(gone, &[dest("192.168.66.253:0", 1)]),
        service(foreign, &[]),
    ]));
    let desired = table(&[service(keep, &[])]);
    let changes = plan(&kernel, &desired, &owned(&[keep, gone])).unwrap();
    // Deleting a service deletes its destinations with it.
    assert_eq!(changes, vec![Change::DelService(gone)]);
}

#[test]
fn the_same_setting_in_another_spelling_is_no_drift() {
    let key = tcp("192.168.66.251:3306");
    let mut desired = table(&[service(key, &[])]);
    let kernel = kernel_of(&desired);
    desired.services.get_mut(&key).unwrap().persistence = Some(Persistence {
        timeout_s: 120,
        granularity: Some(PersistenceGranularity::Netmask(Ipv4Addr::BROADCAST)),
    });
    assert_eq!(plan(&kernel, &desired, &owned(&[key])).unwrap(), []);
}

#[test]
fn services_halb_cannot_name_are_never_touched() {
    let mut kernel = kernel_of(&table(&[service(tcp("192.168.66.251:80"), &[])]));
    // An ESP service (protocol 50), made by someone else.
    kernel.entries[0].service.attrs.id = ServiceId::Addr {
        protocol: 50,
        addr: "192.168.66.251".parse().unwrap(),
        port: 0,
    };
    let owned_all = owned(&[tcp("192.168.66.251:80")]);
    let changes = plan(&kernel, &Table::default(), &owned_all).unwrap();
    assert_eq!(changes, []);
    assert!(kernel.to_table().services.is_empty());
}

#[test]
fn an_impossible_desired_table_is_refused_before_anything_changes() {
    let key = tcp("192.168.66.251:3306");
    let mut bad = dest("192.168.66.253:3306", 1);
    bad.forwarding = Forwarding::Tun(halb_config::model::Tunnel {
        tunnel_type: halb_config::model::TunnelType::Gue { port: 0 },
        checksum: halb_config::model::TunnelChecksum::NoCsum,
    });
    let desired = table(&[service(key, &[bad])]);
    let err = plan(&KernelTable::default(), &desired, &owned(&[])).unwrap_err();
    assert!(err.contains("GUE"), "{err}");
}

/// `/proc/net/ip_vs_conn` as Linux 6.1 prints it: IPv4, IPv6, an IPv6 service with an IPv4
/// tunnel destination, a persistence template, and a firewall-mark template (protocol IP).
const IP_VS_CONN: &str = "\
Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
TCP C0A84264 D431 C0A842FB 0CEA C0A842FD 0CEA ESTABLISHED     899
UDP C0A84264 9C40 C0A842FB 0035 C0A842FE 0035 UDP             299
TCP 2001:0db8:0000:0000:0000:0000:0000:0064 C350 2001:0db8:0000:0000:0000:0000:0000:0251 0050 C0A842FD 0050 TIME_WAIT       119
TCP C0A84264 0000 C0A842FB 0CEA C0A842FD 0CEA NONE            359
IP  C0A84264 0000 00000000 0000 C0A842FD 0000 NONE            359
";

#[test]
fn connection_table_lines_parse() {
    let entries = conn::parse(IP_VS_CONN);
    assert_eq!(entries.len(), 4, "{entries:#?}");
    let first = &entries[0];
    assert_eq!(first.protocol, ProtocolKey::Tcp);
    assert_eq!(first.client, "192.168.66.100:54321".parse().unwrap());
    assert_eq!(first.virtual_addr, "192.168.66.251:3306".parse().unwrap());
    assert_eq!(first.dest, "192.168.66.253:3306".parse().unwrap());
    assert_eq!(first.state, "ESTABLISHED");
    assert_eq!(first.expires_s, 899);
    assert_eq!(entries[1].protocol, ProtocolKey::Udp);
    assert_eq!(entries[1].state, "UDP");
    let v6 = &entries[2];
    assert_eq!(v6.client, "[2001:db8::64]:50000".parse().unwrap());
    assert_eq!(v6.virtual_addr, "[2001:db8::251]:80".parse().unwrap());
    assert_eq!(v6.dest, "192.168.66.253:80".parse().unwrap());
    assert_eq!(entries[3].client.port(), 0);
}
