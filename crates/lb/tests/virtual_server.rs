//! The virtual servers' behaviour on configurations read by halb's own reader: the seed's
//! failover and handback, then each keepalived feature (inhibit_on_failure, quorum with
//! hysteresis, alpha, sorry_server_inhibit, omega, groups, misc_dynamic, notify scripts,
//! ha_suspend).

use std::net::{IpAddr, SocketAddr};

use halb_config::model::{ConnectionFencing, LvsConfig, Script};
use halb_config::{load, load_str, LoadOptions, Loaded};
use halb_lb::table::{Change, Forwarding, ProtocolKey, ServiceKey, Table};
use halb_lb::virtual_server::{
    CheckerId, ConnectionDrops, Level, Output, ScriptReason, VirtualServers,
};

fn opts() -> LoadOptions {
    LoadOptions {
        interfaces: Some(vec!["lo".into(), "eth0".into()]),
        ..LoadOptions::default()
    }
}

fn checked(loaded: Loaded) -> LvsConfig {
    assert!(
        !loaded.diagnostics.has_errors(),
        "configuration errors: {:#?}",
        loaded.diagnostics
    );
    loaded.config.lvs
}

fn config(text: &str) -> LvsConfig {
    checked(load_str("keepalived.conf", text, &opts()))
}

fn seed() -> LvsConfig {
    let path = halb_test_support::seed_path("keepalived-master.conf");
    checked(load(&path, &opts()))
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn tcp(s: &str) -> ServiceKey {
    ServiceKey::Addr {
        protocol: ProtocolKey::Tcp,
        addr: sa(s),
    }
}

fn key(vs: usize, rs: usize, checker: usize) -> CheckerId {
    CheckerId { vs, rs, checker }
}

fn logs(out: &[Output]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event(event) => Some(event.to_string()),
            _ => None,
        })
        .collect()
}

fn scripts(out: &[Output]) -> Vec<(Vec<String>, ScriptReason, bool)> {
    out.iter()
        .filter_map(|o| match o {
            Output::RunScript {
                script: Script { argv, .. },
                reason,
                at_shutdown,
            } => Some((argv.clone(), *reason, *at_shutdown)),
            _ => None,
        })
        .collect()
}

fn drops(out: &[Output]) -> Vec<(ServiceKey, SocketAddr)> {
    out.iter()
        .filter_map(|o| match o {
            Output::DropConnections { service, dest } => Some((*service, *dest)),
            _ => None,
        })
        .collect()
}

/// (destination, weight) of a service, sorted by address.
fn dests(table: &Table, service: ServiceKey) -> Vec<(SocketAddr, u32)> {
    table
        .services
        .get(&service)
        .unwrap_or_else(|| panic!("no service {service} in {table:#?}"))
        .destinations
        .values()
        .map(|d| (d.addr, d.weight))
        .collect()
}

/// Feeds a verdict and checks that applying the diff of the tables gives the new table, as a
/// data plane would see it.
fn step(
    vss: &mut VirtualServers,
    id: CheckerId,
    up: bool,
    weight: Option<u32>,
) -> (Vec<Output>, Vec<Change>) {
    let before = vss.table();
    let out = vss.handle_check(id, up, weight);
    let after = vss.table();
    let changes = before.diff(&after);
    let mut applied = before.clone();
    applied.apply(&changes);
    assert_eq!(applied, after, "the diff reproduces the table");
    (out, changes)
}

const SEED_VS: &str = "[192.168.66.251]:tcp:3306";

#[test]
fn seed_starts_with_the_real_server_and_quorum() {
    let mut vss = VirtualServers::new(&seed());
    let table = vss.table();
    assert_eq!(table.services.len(), 2);
    let svc = &table.services[&tcp("192.168.66.251:3306")];
    assert_eq!(svc.scheduler.as_str(), "wrr");
    assert_eq!(svc.persistence.map(|p| p.timeout_s), Some(120));
    let dest = svc.destinations[&sa("192.168.66.253:3306")];
    assert_eq!(dest.weight, 1);
    assert_eq!(dest.forwarding, Forwarding::Dr);
    assert_eq!(svc.destinations.len(), 1, "the sorry server waits outside");
    assert_eq!(
        svc.fallback.map(|d| d.addr),
        Some(sa("192.168.66.254:3306")),
        "the sorry server is the proxy's fallback"
    );
    assert_eq!(
        dests(&table, tcp("192.168.66.251:3308")),
        vec![(sa("192.168.66.253:3308"), 1)]
    );

    let out = vss.start();
    assert_eq!(
        logs(&out),
        vec![
            format!("Gained quorum 1+0=1 <= 1 for VS {SEED_VS}"),
            "Gained quorum 1+0=1 <= 1 for VS [192.168.66.251]:tcp:3308".to_string(),
            format!(
                "Activating healthchecker for service [192.168.66.253]:tcp:3306 for VS {SEED_VS}"
            ),
            "Activating healthchecker for service [192.168.66.253]:tcp:3308 for VS \
             [192.168.66.251]:tcp:3308"
                .to_string(),
        ]
    );
    assert!(vss.start().is_empty(), "start says it once");
    assert!(vss.suspended_virtual_servers().is_empty());
}

#[test]
fn seed_failover_to_the_sorry_server_and_handback_drops_its_connections() {
    let mut vss = VirtualServers::new(&seed());
    let _ = vss.start();
    let svc = tcp("192.168.66.251:3306");

    // "stop A:3306": the checker fails.
    let (out, changes) = step(&mut vss, key(0, 0, 0), false, None);
    assert_eq!(
        logs(&out),
        vec![
            format!("Removing service [192.168.66.253]:tcp:3306 from VS {SEED_VS}"),
            format!("Lost quorum 1-0=1 > 0 for VS {SEED_VS}"),
            format!("Adding sorry server [192.168.66.254]:tcp:3306 to VS {SEED_VS}"),
            format!("Removing alive servers from the pool for VS {SEED_VS}"),
        ]
    );
    // connection_fencing close (the default for a TCP_CHECK service): the real server left
    // while it may still be serving, so its connections go.
    assert_eq!(drops(&out), vec![(svc, sa("192.168.66.253:3306"))]);
    assert!(scripts(&out).is_empty());
    assert_eq!(changes.len(), 2, "{changes:#?}");
    assert!(changes.contains(&Change::DelDest(svc, sa("192.168.66.253:3306"))));
    assert!(matches!(
        changes.iter().find(|c| matches!(c, Change::AddDest(..))),
        Some(Change::AddDest(s, d)) if *s == svc && d.addr == sa("192.168.66.254:3306")
            && d.weight == 1 && d.forwarding == Forwarding::Dr
    ));
    assert_eq!(vss.quorum_up(0), Some(false));
    assert_eq!(vss.sorry_server_active(0), Some(true));
    assert_eq!(vss.real_server_alive(0, 0), Some(false));
    assert_eq!(
        dests(&vss.table(), tcp("192.168.66.251:3308")),
        vec![(sa("192.168.66.253:3308"), 1)],
        "the other instance's service is untouched"
    );

    // The same verdict again changes nothing.
    let (out, changes) = step(&mut vss, key(0, 0, 0), false, None);
    assert!(out.is_empty() && changes.is_empty());

    // A comes back.
    let (out, changes) = step(&mut vss, key(0, 0, 0), true, None);
    assert_eq!(
        logs(&out),
        vec![
            format!("Adding service [192.168.66.253]:tcp:3306 to VS {SEED_VS}"),
            format!("Gained quorum 1+0=1 <= 1 for VS {SEED_VS}"),
            format!("Removing sorry server [192.168.66.254]:tcp:3306 from VS {SEED_VS}"),
            format!("Adding alive servers to the pool for VS {SEED_VS}"),
        ]
    );
    assert_eq!(drops(&out), vec![(svc, sa("192.168.66.254:3306"))]);
    assert!(changes.contains(&Change::DelDest(svc, sa("192.168.66.254:3306"))));
    assert_eq!(
        dests(&vss.table(), svc),
        vec![(sa("192.168.66.253:3306"), 1)]
    );
    // The drop comes after the log lines that explain it.
    assert!(matches!(out.last(), Some(Output::DropConnections { .. })));
}

/// The seed's file with `connection_fencing` set in the first virtual server.
fn seed_with_fencing(value: &str) -> LvsConfig {
    let path = halb_test_support::seed_path("keepalived-master.conf");
    let text = std::fs::read_to_string(&path).expect("the seed's file");
    let text = text.replacen(
        "lb_kind DR",
        &format!("lb_kind DR\n    connection_fencing {value}"),
        1,
    );
    config(&text)
}

#[test]
fn drain_leaves_every_connection_and_close_ends_them_also_at_weight_0() {
    let mut vss = VirtualServers::new(&seed_with_fencing("drain"));
    assert_eq!(
        vss.connection_drops(0),
        Some(ConnectionDrops {
            on_sorry_handback: false,
            on_real_server_removal: false,
        })
    );
    assert_eq!(vss.connection_drops(1), Some(ConnectionDrops::default()));
    let _ = vss.start();
    let (out, _) = step(&mut vss, key(0, 0, 0), false, None);
    assert!(drops(&out).is_empty());
    let (out, _) = step(&mut vss, key(0, 0, 0), true, None);
    assert!(drops(&out).is_empty());

    // A MISC_CHECK that sets the weight to 0 fences the server it took traffic from.
    let text = TWO_SERVERS.replace("%VS%", "").replace("%RS%", "").replace(
        "TCP_CHECK {\n            connect_timeout 3\n        }",
        "MISC_CHECK {\n            misc_path /bin/true\n            misc_dynamic\n        }",
    );
    let mut vss = VirtualServers::new(&config(&text));
    let _ = vss.start();
    let (out, _) = step(&mut vss, key(0, 0, 0), true, Some(0));
    assert_eq!(drops(&out), vec![(tcp("10.0.0.1:80"), sa("10.0.1.1:8080"))]);
}

#[test]
fn web_services_drain_by_default() {
    let text = TWO_SERVERS.replace("%VS%", "").replace("%RS%", "").replace(
        "TCP_CHECK {\n            connect_timeout 3\n        }",
        "HTTP_GET {\n            url {\n                path /\n                status_code 200\n            }\n        }",
    );
    let lvs = config(&text);
    assert_eq!(
        lvs.virtual_servers[0].connection_fencing(),
        ConnectionFencing::Drain
    );
    let vss = VirtualServers::new(&lvs);
    assert_eq!(
        vss.connection_drops(0),
        Some(ConnectionFencing::Drain.into())
    );
    let tcp_checked = config(&TWO_SERVERS.replace("%VS%", "").replace("%RS%", ""));
    assert_eq!(
        tcp_checked.virtual_servers[0].connection_fencing(),
        ConnectionFencing::Close
    );
}

#[test]
fn handback_drop_can_be_turned_off_and_removal_drop_on() {
    let mut vss = VirtualServers::new(&seed());
    assert_eq!(vss.connection_drops(0), Some(ConnectionDrops::default()));
    assert!(vss.set_connection_drops(
        0,
        ConnectionDrops {
            on_sorry_handback: false,
            on_real_server_removal: true,
        }
    ));
    assert!(!vss.set_connection_drops(9, ConnectionDrops::default()));
    let _ = vss.start();
    let svc = tcp("192.168.66.251:3306");
    let (out, _) = step(&mut vss, key(0, 0, 0), false, None);
    assert_eq!(drops(&out), vec![(svc, sa("192.168.66.253:3306"))]);
    let (out, _) = step(&mut vss, key(0, 0, 0), true, None);
    assert!(drops(&out).is_empty());

    // The other virtual server kept the defaults.
    let (out, _) = step(&mut vss, key(1, 0, 0), false, None);
    assert_eq!(
        drops(&out),
        vec![(tcp("192.168.66.251:3308"), sa("192.168.66.253:3308"))]
    );
    let (out, _) = step(&mut vss, key(1, 0, 0), true, None);
    assert_eq!(
        drops(&out),
        vec![(tcp("192.168.66.251:3308"), sa("192.168.66.254:3308"))]
    );
}

const TWO_SERVERS: &str = r#"
virtual_server 10.0.0.1 80 {
    lb_algo rr
    lb_kind NAT
    protocol TCP
    %VS%
    real_server 10.0.1.1 8080 {
        weight 3
        %RS%
        TCP_CHECK {
            connect_timeout 3
        }
    }
    real_server 10.0.1.2 8080 {
        weight 2
        TCP_CHECK {
            connect_timeout 3
        }
    }
}
"#;

fn two_servers(vs: &str, rs: &str) -> VirtualServers {
    let text = TWO_SERVERS.replace("%VS%", vs).replace("%RS%", rs);
    let mut vss = VirtualServers::new(&config(&text));
    let _ = vss.start();
    vss
}

#[test]
fn inhibit_on_failure_keeps_the_server_at_weight_0() {
    let mut vss = two_servers("", "inhibit_on_failure");
    let svc = tcp("10.0.0.1:80");
    let (out, changes) = step(&mut vss, key(0, 0, 0), false, None);
    assert_eq!(
        logs(&out),
        vec!["Disabling service [10.0.1.1]:tcp:8080 of VS [10.0.0.1]:tcp:80"]
    );
    assert_eq!(changes.len(), 1);
    assert!(matches!(&changes[0], Change::EditDest(s, d) if *s == svc && d.weight == 0));
    assert_eq!(
        dests(&vss.table(), svc),
        vec![(sa("10.0.1.1:8080"), 0), (sa("10.0.1.2:8080"), 2)],
        "NAT destinations keep their own port"
    );
    let (out, _) = step(&mut vss, key(0, 0, 0), true, None);
    assert_eq!(
        logs(&out),
        vec!["Enabling service [10.0.1.1]:tcp:8080 of VS [10.0.0.1]:tcp:80"]
    );
    assert_eq!(
        dests(&vss.table(), svc),
        vec![(sa("10.0.1.1:8080"), 3), (sa("10.0.1.2:8080"), 2)]
    );

    // The server without inhibit_on_failure leaves the table.
    let (out, _) = step(&mut vss, key(0, 1, 0), false, None);
    assert_eq!(
        logs(&out),
        vec!["Removing service [10.0.1.2]:tcp:8080 from VS [10.0.0.1]:tcp:80"]
    );
    assert_eq!(dests(&vss.table(), svc), vec![(sa("10.0.1.1:8080"), 3)]);
}

#[test]
fn inhibited_servers_stay_at_weight_0_while_the_sorry_server_serves() {
    let mut vss = two_servers(
        "quorum 4\n sorry_server 10.0.2.1 8080\n inhibit_on_failure",
        "",
    );
    let svc = tcp("10.0.0.1:80");
    let (out, _) = step(&mut vss, key(0, 0, 0), false, None);
    assert_eq!(
        logs(&out),
        vec![
            "Disabling service [10.0.1.1]:tcp:8080 of VS [10.0.0.1]:tcp:80",
            "Lost quorum 4-0=4 > 2 for VS [10.0.0.1]:tcp:80",
            "Adding sorry server [10.0.2.1]:tcp:8080 to VS [10.0.0.1]:tcp:80",
            "Removing alive servers from the pool for VS [10.0.0.1]:tcp:80",
        ]
    );
    assert_eq!(
        dests(&vss.table(), svc),
        vec![
            (sa("10.0.1.1:8080"), 0),
            (sa("10.0.1.2:8080"), 0),
            (sa("10.0.2.1:8080"), 1)
        ]
    );
    let (out, _) = step(&mut vss, key(0, 0, 0), true, None);
    assert_eq!(
        logs(&out),
        vec![
            "Enabling service [10.0.1.1]:tcp:8080 of VS [10.0.0.1]:tcp:80",
            "Gained quorum 4+0=4 <= 5 for VS [10.0.0.1]:tcp:80",
            "Removing sorry server [10.0.2.1]:tcp:8080 from VS [10.0.0.1]:tcp:80",
            "Adding alive servers to the pool for VS [10.0.0.1]:tcp:80",
        ]
    );
    assert_eq!(
        dests(&vss.table(), svc),
        vec![(sa("10.0.1.1:8080"), 3), (sa("10.0.1.2:8080"), 2)]
    );
}

const THREE_WEIGHTS: &str = r#"
virtual_server 10.0.0.1 80 {
    lb_algo wrr
    lb_kind DR
    protocol TCP
    quorum 4
    hysteresis 1
    quorum_up "/usr/local/bin/vs-up"
    quorum_down "/usr/local/bin/vs-down"
    sorry_server 10.0.2.1 80
    real_server 10.0.1.1 80 {
        weight 1
        TCP_CHECK {
        }
    }
    real_server 10.0.1.2 80 {
        weight 2
        TCP_CHECK {
        }
    }
    real_server 10.0.1.3 80 {
        weight 3
        TCP_CHECK {
        }
    }
}
"#;

#[test]
fn quorum_with_hysteresis_over_three_weighted_servers() {
    let mut vss = VirtualServers::new(&config(THREE_WEIGHTS));
    let out = vss.start();
    assert_eq!(
        logs(&out)[0],
        "Gained quorum 4+1=5 <= 6 for VS [10.0.0.1]:tcp:80"
    );
    assert_eq!(
        scripts(&out),
        vec![(
            vec!["/usr/local/bin/vs-up".to_string()],
            ScriptReason::QuorumUp { vs: 0 },
            false
        )],
        "keepalived runs quorum_up when it starts with quorum"
    );
    let svc = tcp("10.0.0.1:80");
    let pool = |vss: &VirtualServers| -> Vec<SocketAddr> {
        dests(&vss.table(), svc).into_iter().map(|d| d.0).collect()
    };

    // 6 → 3: still ≥ quorum - hysteresis = 3.
    let (out, _) = step(&mut vss, key(0, 2, 0), false, None);
    assert_eq!(
        logs(&out),
        vec!["Removing service [10.0.1.3]:tcp:80 from VS [10.0.0.1]:tcp:80"]
    );
    assert_eq!(vss.quorum_up(0), Some(true));
    assert_eq!(pool(&vss), vec![sa("10.0.1.1:80"), sa("10.0.1.2:80")]);

    // 3 → 2: lost.
    let (out, _) = step(&mut vss, key(0, 0, 0), false, None);
    assert_eq!(
        logs(&out),
        vec![
            "Removing service [10.0.1.1]:tcp:80 from VS [10.0.0.1]:tcp:80",
            "Lost quorum 4-1=3 > 2 for VS [10.0.0.1]:tcp:80",
            "Adding sorry server [10.0.2.1]:tcp:80 to VS [10.0.0.1]:tcp:80",
            "Removing alive servers from the pool for VS [10.0.0.1]:tcp:80",
        ]
    );
    assert_eq!(
        scripts(&out),
        vec![(
            vec!["/usr/local/bin/vs-down".to_string()],
            ScriptReason::QuorumDown { vs: 0 },
            false
        )]
    );
    assert_eq!(
        pool(&vss),
        vec![sa("10.0.2.1:80")],
        "the remaining server left too"
    );

    // Regaining needs quorum + hysteresis = 5. Server 1 back (3): not yet, and the server
    // waits outside while the sorry server serves.
    let (out, _) = step(&mut vss, key(0, 0, 0), true, None);
    assert_eq!(
        logs(&out),
        vec!["Adding service [10.0.1.1]:tcp:80 to VS [10.0.0.1]:tcp:80"]
    );
    assert_eq!(pool(&vss), vec![sa("10.0.2.1:80")]);
    assert!(scripts(&out).is_empty());

    // Server 1 down again (2), then server 3 up: 2 + 3 = 5 gains it.
    step(&mut vss, key(0, 0, 0), false, None);
    let (out, _) = step(&mut vss, key(0, 2, 0), true, None);
    assert_eq!(
        logs(&out),
        vec![
            "Adding service [10.0.1.3]:tcp:80 to VS [10.0.0.1]:tcp:80",
            "Gained quorum 4+1=5 <= 5 for VS [10.0.0.1]:tcp:80",
            "Removing sorry server [10.0.2.1]:tcp:80 from VS [10.0.0.1]:tcp:80",
            "Adding alive servers to the pool for VS [10.0.0.1]:tcp:80",
        ]
    );
    assert_eq!(pool(&vss), vec![sa("10.0.1.2:80"), sa("10.0.1.3:80")]);
    assert_eq!(drops(&out), vec![(svc, sa("10.0.2.1:80"))]);
}

#[test]
fn quorum_lost_without_a_sorry_server_keeps_the_remaining_servers() {
    let text = THREE_WEIGHTS.replace("sorry_server 10.0.2.1 80", "");
    let mut vss = VirtualServers::new(&config(&text));
    let _ = vss.start();
    step(&mut vss, key(0, 2, 0), false, None);
    let (out, _) = step(&mut vss, key(0, 1, 0), false, None);
    assert_eq!(
        logs(&out),
        vec![
            "Removing service [10.0.1.2]:tcp:80 from VS [10.0.0.1]:tcp:80",
            "Lost quorum 4-1=3 > 1 for VS [10.0.0.1]:tcp:80",
        ]
    );
    assert_eq!(
        dests(&vss.table(), tcp("10.0.0.1:80")),
        vec![(sa("10.0.1.1:80"), 1)]
    );
}

#[test]
fn alpha_servers_start_out_of_the_pool() {
    let text = r#"
virtual_server 10.0.0.1 80 {
    lb_kind DR
    protocol TCP
    alpha
    sorry_server 10.0.2.1 80
    real_server 10.0.1.1 80 {
        notify_down "/bin/rs-down"
        notify_up "/bin/rs-up"
        TCP_CHECK {
        }
    }
    real_server 10.0.1.2 80 {
        TCP_CHECK {
            alpha no
        }
    }
}
"#;
    let mut vss = VirtualServers::new(&config(text));
    let svc = tcp("10.0.0.1:80");
    // 10.0.1.2's checker is not in alpha mode: it is in at once, and quorum (1) holds.
    assert_eq!(dests(&vss.table(), svc), vec![(sa("10.0.1.2:80"), 1)]);
    let out = vss.start();
    assert_eq!(
        logs(&out)[0],
        "Gained quorum 1+0=1 <= 1 for VS [10.0.0.1]:tcp:80"
    );
    let status = vss.vs_status(0).expect("vs 0");
    assert!(!status.real_servers[0].alive);
    assert!(status.real_servers[0].checkers[0].alpha);
    assert!(!status.real_servers[0].checkers[0].up);

    // An alpha checker's first failure is news: notify_down runs, nothing else changes.
    let (out, changes) = step(&mut vss, key(0, 0, 0), false, None);
    assert!(logs(&out).is_empty() && changes.is_empty());
    assert_eq!(
        scripts(&out),
        vec![(
            vec!["/bin/rs-down".to_string()],
            ScriptReason::RealServerDown { vs: 0, rs: 0 },
            false
        )]
    );
    // A second failure is not.
    let (out, _) = step(&mut vss, key(0, 0, 0), false, None);
    assert!(out.is_empty());

    let (out, _) = step(&mut vss, key(0, 0, 0), true, None);
    assert_eq!(
        logs(&out),
        vec!["Adding service [10.0.1.1]:tcp:80 to VS [10.0.0.1]:tcp:80"]
    );
    assert_eq!(
        scripts(&out),
        vec![(
            vec!["/bin/rs-up".to_string()],
            ScriptReason::RealServerUp { vs: 0, rs: 0 },
            false
        )]
    );
    assert_eq!(
        dests(&vss.table(), svc),
        vec![(sa("10.0.1.1:80"), 1), (sa("10.0.1.2:80"), 1)]
    );
}

#[test]
fn all_alpha_starts_with_quorum_down_and_the_sorry_server_in() {
    let text = r#"
virtual_server 10.0.0.1 80 {
    lb_kind DR
    protocol TCP
    alpha
    quorum_down "/bin/q-down"
    sorry_server 10.0.2.1 80
    real_server 10.0.1.1 80 {
        TCP_CHECK {
        }
    }
}
"#;
    let mut vss = VirtualServers::new(&config(text));
    let svc = tcp("10.0.0.1:80");
    assert_eq!(dests(&vss.table(), svc), vec![(sa("10.0.2.1:80"), 1)]);
    let out = vss.start();
    assert_eq!(
        logs(&out)[..3],
        [
            "Starting with quorum down 1-0=1 > 0 for VS [10.0.0.1]:tcp:80",
            "Adding sorry server [10.0.2.1]:tcp:80 to VS [10.0.0.1]:tcp:80",
            "Removing alive servers from the pool for VS [10.0.0.1]:tcp:80",
        ]
    );
    assert_eq!(scripts(&out).len(), 1);
    assert_eq!(scripts(&out)[0].1, ScriptReason::QuorumDown { vs: 0 });

    let (out, _) = step(&mut vss, key(0, 0, 0), true, None);
    assert_eq!(
        logs(&out),
        vec![
            "Adding service [10.0.1.1]:tcp:80 to VS [10.0.0.1]:tcp:80",
            "Gained quorum 1+0=1 <= 1 for VS [10.0.0.1]:tcp:80",
            "Removing sorry server [10.0.2.1]:tcp:80 from VS [10.0.0.1]:tcp:80",
            "Adding alive servers to the pool for VS [10.0.0.1]:tcp:80",
        ]
    );
    assert_eq!(dests(&vss.table(), svc), vec![(sa("10.0.1.1:80"), 1)]);
    assert_eq!(drops(&out), vec![(svc, sa("10.0.2.1:80"))]);
}

#[test]
fn sorry_server_inhibit_waits_at_weight_0() {
    let text = halb_test_support::seed_text("keepalived-master.conf").replace(
        "sorry_server 192.168.66.254 3306",
        "sorry_server 192.168.66.254 3306\n    sorry_server_inhibit",
    );
    let mut vss = VirtualServers::new(&config(&text));
    let _ = vss.start();
    let svc = tcp("192.168.66.251:3306");
    assert_eq!(
        dests(&vss.table(), svc),
        vec![
            (sa("192.168.66.253:3306"), 1),
            (sa("192.168.66.254:3306"), 0)
        ]
    );
    let (out, changes) = step(&mut vss, key(0, 0, 0), false, None);
    assert_eq!(
        logs(&out),
        vec![
            format!("Removing service [192.168.66.253]:tcp:3306 from VS {SEED_VS}"),
            format!("Lost quorum 1-0=1 > 0 for VS {SEED_VS}"),
            format!("Enabling sorry server [192.168.66.254]:tcp:3306 to VS {SEED_VS}"),
            format!("Removing alive servers from the pool for VS {SEED_VS}"),
        ]
    );
    assert!(changes
        .iter()
        .any(|c| matches!(c, Change::EditDest(s, d) if *s == svc && d.weight == 1)));
    assert_eq!(
        dests(&vss.table(), svc),
        vec![(sa("192.168.66.254:3306"), 1)]
    );

    let (out, _) = step(&mut vss, key(0, 0, 0), true, None);
    assert_eq!(
        logs(&out)[2],
        format!("Disabling sorry server [192.168.66.254]:tcp:3306 from VS {SEED_VS}")
    );
    assert_eq!(
        dests(&vss.table(), svc),
        vec![
            (sa("192.168.66.253:3306"), 1),
            (sa("192.168.66.254:3306"), 0)
        ]
    );
    assert_eq!(
        drops(&out),
        vec![(svc, sa("192.168.66.254:3306"))],
        "at weight 0 it takes no new clients, but the old ones must go"
    );
}

const OMEGA: &str = r#"
virtual_server 10.0.0.1 80 {
    lb_kind DR
    protocol TCP
    %OMEGA%
    quorum_up "/bin/q-up"
    quorum_down "/bin/q-down"
    real_server 10.0.1.1 80 {
        notify_down "/bin/rs1-down"
        TCP_CHECK {
        }
    }
    real_server 10.0.1.2 80 {
        notify_down "/bin/rs2-down"
        TCP_CHECK {
        }
    }
}
"#;

#[test]
fn omega_shutdown_runs_the_down_scripts() {
    let mut vss = VirtualServers::new(&config(&OMEGA.replace("%OMEGA%", "omega")));
    let _ = vss.start();
    step(&mut vss, key(0, 1, 0), false, None);
    let out = vss.shutdown();
    assert_eq!(
        logs(&out),
        vec![
            "Shutting down service [10.0.1.1]:tcp:80 from VS [10.0.0.1]:tcp:80",
            "Shutting down service [10.0.1.2]:tcp:80 from VS [10.0.0.1]:tcp:80",
        ]
    );
    assert_eq!(
        scripts(&out),
        vec![
            (
                vec!["/bin/rs1-down".to_string()],
                ScriptReason::RealServerDown { vs: 0, rs: 0 },
                true
            ),
            (
                vec!["/bin/q-down".to_string()],
                ScriptReason::QuorumDown { vs: 0 },
                true
            ),
        ],
        "notify_down only for the server still alive; quorum_down always"
    );
    assert_eq!(vss.table(), Table::default());
    assert!(vss.is_stopped());
    assert!(vss.handle_check(key(0, 0, 0), false, None).is_empty());
    assert!(vss.shutdown().is_empty());
}

#[test]
fn shutdown_without_omega_only_clears() {
    let mut vss = VirtualServers::new(&config(&OMEGA.replace("%OMEGA%", "")));
    let _ = vss.start();
    let out = vss.shutdown();
    assert!(scripts(&out).is_empty());
    assert_eq!(logs(&out).len(), 2);
    assert_eq!(vss.table(), Table::default());
}

#[test]
fn omega_shutdown_skips_servers_the_sorry_server_replaced() {
    let text = OMEGA
        .replace(
            "%OMEGA%",
            "omega\n    quorum 2\n    sorry_server 10.0.2.1 80",
        )
        .replace("notify_down \"/bin/rs2-down\"", "inhibit_on_failure");
    let mut vss = VirtualServers::new(&config(&text));
    let _ = vss.start();
    step(&mut vss, key(0, 1, 0), false, None);
    assert_eq!(vss.sorry_server_active(0), Some(true));
    let out = vss.shutdown();
    assert_eq!(
        logs(&out),
        vec![
            "Shutting down service [10.0.1.1]:tcp:80 from VS [10.0.0.1]:tcp:80",
            "Shutting down (inhibited) service [10.0.1.2]:tcp:80 from VS [10.0.0.1]:tcp:80",
        ]
    );
    assert_eq!(
        scripts(&out),
        vec![(
            vec!["/bin/q-down".to_string()],
            ScriptReason::QuorumDown { vs: 0 },
            true
        )]
    );
}

#[test]
fn a_group_gives_one_service_per_address_and_fwmark() {
    let text = r#"
virtual_server_group WEB {
    10.0.0.1-3 80
    fwmark 7
}
virtual_server_group WEB6 {
    2001:db8::a-b 443
}
virtual_server group WEB {
    lb_kind DR
    protocol TCP
    real_server 10.0.1.1 80 {
        TCP_CHECK {
        }
    }
    real_server 10.0.1.2 80 {
        weight 2
        TCP_CHECK {
        }
    }
}
virtual_server group WEB {
    lb_kind NAT
    protocol UDP
    real_server 10.0.1.1 5353 {
    }
}
virtual_server group WEB6 {
    lb_kind DR
    protocol TCP
    real_server 2001:db8::1:1 443 {
        TCP_CHECK {
        }
    }
}
"#;
    let mut vss = VirtualServers::new(&config(text));
    let out = vss.start();
    assert!(logs(&out).contains(&"Gained quorum 1+0=1 <= 3 for VS [WEB]:0".to_string()));
    assert!(logs(&out).contains(&"Gained quorum 1+0=1 <= 1 for VS [WEB]:1".to_string()));
    assert!(logs(&out).contains(&"Gained quorum 1+0=1 <= 1 for VS [WEB6]:0".to_string()));
    let table = vss.table();
    let tcp_services: Vec<ServiceKey> = (1..=3).map(|i| tcp(&format!("10.0.0.{i}:80"))).collect();
    for svc in &tcp_services {
        assert_eq!(
            dests(&table, *svc),
            vec![(sa("10.0.1.1:80"), 1), (sa("10.0.1.2:80"), 2)],
            "DR destinations take the entry's port"
        );
    }
    let udp = |s: &str| ServiceKey::Addr {
        protocol: ProtocolKey::Udp,
        addr: sa(s),
    };
    for i in 1..=3 {
        assert_eq!(
            dests(&table, udp(&format!("10.0.0.{i}:80"))),
            vec![(sa("10.0.1.1:5353"), 1)],
            "NAT destinations keep their port"
        );
    }
    // The fwmark entry is one service that both virtual servers of the group use.
    let fwm = ServiceKey::Fwmark {
        mark: 7,
        inet6: false,
    };
    assert_eq!(
        dests(&table, fwm),
        vec![
            (sa("10.0.1.1:0"), 1),
            (sa("10.0.1.1:5353"), 1),
            (sa("10.0.1.2:0"), 2)
        ]
    );
    for i in ["a", "b"] {
        let svc = tcp(&format!("[2001:db8::{i}]:443"));
        assert_eq!(dests(&table, svc), vec![(sa("[2001:db8::1:1]:443"), 1)]);
    }
    assert_eq!(table.services.len(), 3 + 3 + 1 + 2);

    // A failure takes the server out of every service of its virtual server.
    let (out, _) = step(&mut vss, key(0, 1, 0), false, None);
    assert_eq!(
        logs(&out),
        vec!["Removing service [10.0.1.2]:tcp:80 from VS [WEB]:0"]
    );
    let table = vss.table();
    for svc in &tcp_services {
        assert_eq!(dests(&table, *svc), vec![(sa("10.0.1.1:80"), 1)]);
    }
    assert_eq!(
        dests(&table, fwm),
        vec![(sa("10.0.1.1:0"), 1), (sa("10.0.1.1:5353"), 1)]
    );
    let status = vss.status();
    assert_eq!(status[0].services.len(), 4);
    assert_eq!(status[0].alive_weight, 1);
}

#[test]
fn fwmark_and_ipv6_services() {
    let text = r#"
virtual_server fwmark 12 {
    lb_kind DR
    sorry_server 10.0.2.1
    real_server 10.0.1.1 {
        TCP_CHECK {
            connect_port 80
        }
    }
}
virtual_server 2001:db8::100 53 {
    lb_kind TUN
    protocol UDP
    real_server 2001:db8::1 53 {
    }
}
"#;
    let mut vss = VirtualServers::new(&config(text));
    let _ = vss.start();
    let fwm = ServiceKey::Fwmark {
        mark: 12,
        inet6: false,
    };
    assert_eq!(dests(&vss.table(), fwm), vec![(sa("10.0.1.1:0"), 1)]);
    let (out, _) = step(&mut vss, key(0, 0, 0), false, None);
    assert_eq!(
        logs(&out),
        vec![
            "Removing service [10.0.1.1]:none:0 from VS FWM 12",
            "Lost quorum 1-0=1 > 0 for VS FWM 12",
            "Adding sorry server [10.0.2.1]:none:0 to VS FWM 12",
            "Removing alive servers from the pool for VS FWM 12",
        ]
    );
    assert_eq!(dests(&vss.table(), fwm), vec![(sa("10.0.2.1:0"), 1)]);

    let v6 = ServiceKey::Addr {
        protocol: ProtocolKey::Udp,
        addr: sa("[2001:db8::100]:53"),
    };
    let table = vss.table();
    assert_eq!(dests(&table, v6), vec![(sa("[2001:db8::1]:53"), 1)]);
    assert!(matches!(
        table.services[&v6].destinations[&sa("[2001:db8::1]:53")].forwarding,
        Forwarding::Tun(_)
    ));
    // A server without checkers is always alive; nothing can report for it.
    let out = vss.handle_check(key(1, 0, 0), false, None);
    assert!(matches!(&out[..], [Output::Event(e)] if e.level() == Level::Warn));
    assert_eq!(vss.real_server_alive(1, 0), Some(true));
}

#[test]
fn misc_dynamic_weights() {
    let text = r#"
virtual_server 10.0.0.1 80 {
    lb_kind DR
    protocol TCP
    quorum 2
    sorry_server 10.0.2.1 80
    real_server 10.0.1.1 80 {
        weight 2
        MISC_CHECK {
            misc_path "/bin/true"
            misc_dynamic
        }
    }
}
"#;
    let mut vss = VirtualServers::new(&config(text));
    let _ = vss.start();
    let svc = tcp("10.0.0.1:80");
    let vs = "[10.0.0.1]:tcp:80";
    let rs = "[10.0.1.1]:tcp:80";

    // The first verdict (exit 0: the configured weight) changes nothing.
    let (out, changes) = step(&mut vss, key(0, 0, 0), true, Some(2));
    assert!(out.is_empty() && changes.is_empty());

    // Exit 7: weight 5.
    let (out, changes) = step(&mut vss, key(0, 0, 0), true, Some(5));
    assert_eq!(
        logs(&out),
        vec![format!(
            "Changing weight from 2 to 5 for active service {rs} of VS {vs}"
        )]
    );
    assert_eq!(changes.len(), 1);
    assert!(matches!(&changes[0], Change::EditDest(s, d) if *s == svc && d.weight == 5));

    // Weight 1 is below quorum 2: quorum is lost on a weight change alone.
    let (out, _) = step(&mut vss, key(0, 0, 0), true, Some(1));
    assert_eq!(
        logs(&out),
        vec![
            format!("Changing weight from 5 to 1 for active service {rs} of VS {vs}"),
            format!("Lost quorum 2-0=2 > 1 for VS {vs}"),
            format!("Adding sorry server [10.0.2.1]:tcp:80 to VS {vs}"),
            format!("Removing alive servers from the pool for VS {vs}"),
        ]
    );
    assert_eq!(dests(&vss.table(), svc), vec![(sa("10.0.2.1:80"), 1)]);

    // Back to weight 3: quorum again, the server returns with it.
    let (out, _) = step(&mut vss, key(0, 0, 0), true, Some(3));
    assert_eq!(
        logs(&out)[1],
        format!("Gained quorum 2+0=2 <= 3 for VS {vs}")
    );
    assert_eq!(dests(&vss.table(), svc), vec![(sa("10.0.1.1:80"), 3)]);

    // A failure drops the dynamic share; the next success starts from the configured weight.
    step(&mut vss, key(0, 0, 0), false, None);
    assert_eq!(
        vss.vs_status(0).map(|s| s.real_servers[0].effective_weight),
        Some(2)
    );
    let (out, _) = step(&mut vss, key(0, 0, 0), true, Some(2));
    assert_eq!(logs(&out)[0], format!("Adding service {rs} to VS {vs}"));
    assert_eq!(dests(&vss.table(), svc), vec![(sa("10.0.1.1:80"), 2)]);
}

#[test]
fn a_server_needs_every_checker_up() {
    let text = r#"
virtual_server 10.0.0.1 80 {
    lb_kind DR
    protocol TCP
    real_server 10.0.1.1 80 {
        notify_up "/bin/up"
        notify_down "/bin/down"
        TCP_CHECK {
        }
        HTTP_GET {
            url {
                path /health
            }
        }
    }
    real_server 10.0.1.2 80 {
        TCP_CHECK {
        }
    }
}
"#;
    let mut vss = VirtualServers::new(&config(text));
    let _ = vss.start();
    let (out, _) = step(&mut vss, key(0, 0, 0), false, None);
    assert_eq!(
        scripts(&out),
        vec![(
            vec!["/bin/down".to_string()],
            ScriptReason::RealServerDown { vs: 0, rs: 0 },
            false
        )]
    );
    // The second checker fails too: already down, nothing more.
    let (out, _) = step(&mut vss, key(0, 0, 1), false, None);
    assert!(out.is_empty());
    assert_eq!(
        vss.vs_status(0).map(|s| s.real_servers[0].failed_checkers),
        Some(2)
    );
    // One recovers: still down.
    let (out, _) = step(&mut vss, key(0, 0, 0), true, None);
    assert!(out.is_empty());
    assert_eq!(vss.real_server_alive(0, 0), Some(false));
    // The other too: up, with notify_up.
    let (out, _) = step(&mut vss, key(0, 0, 1), true, None);
    assert_eq!(
        logs(&out),
        vec!["Adding service [10.0.1.1]:tcp:80 to VS [10.0.0.1]:tcp:80"]
    );
    assert_eq!(
        scripts(&out),
        vec![(
            vec!["/bin/up".to_string()],
            ScriptReason::RealServerUp { vs: 0, rs: 0 },
            false
        )]
    );
    let out = vss.handle_check(key(0, 0, 9), true, None);
    assert!(matches!(&out[..], [Output::Event(e)]
        if e.level() == Level::Warn && e.to_string().contains("unknown checker")));
}

#[test]
fn ha_suspend_follows_the_virtual_address() {
    let text = r#"
virtual_server 192.168.66.251 3306 {
    lb_kind DR
    protocol TCP
    ha_suspend
    real_server 192.168.66.253 3306 {
        TCP_CHECK {
        }
    }
}
virtual_server 192.168.66.252 3306 {
    lb_kind DR
    protocol TCP
    real_server 192.168.66.253 3306 {
        TCP_CHECK {
        }
    }
}
"#;
    let vip: IpAddr = "192.168.66.251".parse().expect("ip");
    let mut vss = VirtualServers::new(&config(text));
    assert_eq!(vss.suspended_virtual_servers(), vec![0]);
    let out = vss.start();
    assert!(logs(&out).contains(
        &"Deactivating healthchecker for service [192.168.66.253]:tcp:3306 for VS \
          [192.168.66.251]:tcp:3306"
            .to_string()
    ));
    assert!(logs(&out).contains(
        &"Activating healthchecker for service [192.168.66.253]:tcp:3306 for VS \
          [192.168.66.252]:tcp:3306"
            .to_string()
    ));
    assert!(out.contains(&Output::SuspendCheckers { vs: 0 }));
    assert!(vss.checkers_suspended(0) && !vss.checkers_suspended(1));

    // The VIP arrives (VRRP became MASTER).
    let out = vss.local_address_added(vip);
    assert_eq!(
        logs(&out),
        vec![
            "Activating healthchecker for service [192.168.66.253]:tcp:3306 for \
             VS [192.168.66.251]:tcp:3306"
        ]
    );
    assert_eq!(out.len(), 2);
    assert_eq!(out[1], Output::ResumeCheckers { vs: 0 });
    // The same address on a second interface, then one copy goes: still active.
    assert!(vss.local_address_added(vip).is_empty());
    assert!(vss.local_address_removed(vip).is_empty());
    assert!(!vss.checkers_suspended(0));
    let out = vss.local_address_removed(vip);
    assert_eq!(
        logs(&out),
        vec![
            "Suspending healthchecker for service [192.168.66.253]:tcp:3306 for VS \
             [192.168.66.251]:tcp:3306"
        ]
    );
    assert_eq!(out.last(), Some(&Output::SuspendCheckers { vs: 0 }));
    // Unrelated addresses do nothing; neither does the second VS's address (no ha_suspend).
    assert!(vss
        .local_address_added("192.168.66.252".parse().expect("ip"))
        .is_empty());
    assert!(vss.status()[0].checkers_suspended);
}

#[test]
fn ha_suspend_with_the_address_already_here_starts_active() {
    let text = r#"
virtual_server 192.168.66.251 3306 {
    lb_kind DR
    protocol TCP
    ha_suspend
    real_server 192.168.66.253 3306 {
        TCP_CHECK {
        }
    }
}
"#;
    let mut vss = VirtualServers::new(&config(text));
    assert!(vss
        .local_address_added("192.168.66.251".parse().expect("ip"))
        .is_empty());
    assert!(vss.suspended_virtual_servers().is_empty());
    let out = vss.start();
    assert!(!out.contains(&Output::SuspendCheckers { vs: 0 }));
    assert!(logs(&out)
        .iter()
        .any(|l| l.starts_with("Activating healthchecker")));
}

#[test]
fn status_serialises() {
    let mut vss = VirtualServers::new(&seed());
    let _ = vss.start();
    step(&mut vss, key(0, 0, 0), false, None);
    let json = serde_json::to_value(vss.status()).expect("json");
    assert_eq!(json[0]["name"], "[192.168.66.251]:tcp:3306");
    assert_eq!(json[0]["quorum_up"], false);
    assert_eq!(json[0]["sorry_server"]["active"], true);
    assert_eq!(json[0]["real_servers"][0]["alive"], false);
    assert_eq!(
        json[0]["real_servers"][0]["checkers"][0]["kind"],
        "TCP_CHECK"
    );
    assert_eq!(json[1]["quorum_up"], true);
}

#[test]
fn a_weight_change_while_down_takes_effect_when_the_server_returns() {
    let text = r#"
virtual_server 10.0.0.1 80 {
    lb_kind DR
    protocol TCP
    real_server 10.0.1.1 80 {
        TCP_CHECK {
        }
        MISC_CHECK {
            misc_path "/bin/true"
            misc_dynamic
        }
    }
}
"#;
    let mut vss = VirtualServers::new(&config(text));
    let _ = vss.start();
    let svc = tcp("10.0.0.1:80");
    step(&mut vss, key(0, 0, 0), false, None);
    let (out, changes) = step(&mut vss, key(0, 0, 1), true, Some(4));
    assert_eq!(
        logs(&out),
        vec![
            "Changing weight from 1 to 4 for inactive service [10.0.1.1]:tcp:80 of VS \
             [10.0.0.1]:tcp:80"
        ]
    );
    assert!(changes.is_empty());
    step(&mut vss, key(0, 0, 0), true, None);
    assert_eq!(dests(&vss.table(), svc), vec![(sa("10.0.1.1:80"), 4)]);
}

/// A virtual server with one live real server, with or without a sorry server, and its
/// persistence timeout.
fn sorry_config(sorry: bool, persistence: u32) -> LvsConfig {
    let sorry = if sorry {
        "    sorry_server 10.0.0.24 9000\n"
    } else {
        ""
    };
    config(&format!(
        "virtual_server 10.0.0.100 9000 {{
    lb_algo wrr
    lb_kind DR
    persistence_timeout {persistence}
    protocol TCP
{sorry}    real_server 10.0.0.21 9000 {{
        weight 1
    }}
}}
"
    ))
}

#[test]
fn a_sorry_server_added_or_removed_while_it_does_not_serve_changes_nothing_in_ipvs() {
    let without = VirtualServers::new(&sorry_config(false, 120)).table();
    let with = VirtualServers::new(&sorry_config(true, 120)).table();
    let key = tcp("10.0.0.100:9000");
    assert!(
        !with.services[&key]
            .destinations
            .contains_key(&sa("10.0.0.24:9000")),
        "the sorry server waits outside while the real server is up"
    );
    // The proxy keeps the fallback, so it is told; IPVS would get its entry rewritten as it is.
    assert!(matches!(
        without.diff(&with).as_slice(),
        [Change::EditService(_)]
    ));
    assert_eq!(without.diff_without_fallback(&with), vec![]);
    assert_eq!(with.diff_without_fallback(&without), vec![]);
    // Anything the kernel holds is still edited.
    let longer = VirtualServers::new(&sorry_config(true, 300)).table();
    let edits = without.diff_without_fallback(&longer);
    assert!(
        matches!(edits.as_slice(), [Change::EditService(s)] if s.persistence.map(|p| p.timeout_s) == Some(300)),
        "{edits:?}"
    );
}
