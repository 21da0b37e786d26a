//! Server fencing of a `mysql_writer` virtual server against two real MariaDB servers: the
//! seed's file on the userspace proxy, its real server (.253) checked by a MYSQL_CHECK whose query
//! reads a table, the other master (.254) as the sorry server. Both masters start writable,
//! the seed's unsafe state.
//!
//! - halb, once MASTER, makes the sorry server read-only: one writable server.
//! - The check's table is dropped on .253, which goes on serving (a check that fails while the
//!   server lives, as an overloaded master's). halb sets .253 read_only, kills the application's
//!   session there, makes .254 writable, and only then routes to it (the log says so in this
//!   order). A direct write to .253 is refused; a write through the VIP lands on .254.
//!
//! Needs root, mariadb-server and mariadb-client (`scripts/deps.sh`).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use halb_seed_lab::mariadb::{MariaDb, MariaDbOptions};
use halb_seed_lab::mysql_client::{ConnectOptions, Connection, SqlError};
use support::lvs_lab::{LvsLab, VIP};
use support::vrrp_lab::{wait_for, Daemon};

const SETUP: &str = "CREATE DATABASE lab;
     CREATE TABLE lab.t (id INT AUTO_INCREMENT PRIMARY KEY, v INT);
     CREATE TABLE lab.health (ok INT); INSERT INTO lab.health VALUES (1);
     CREATE USER halb@'%' IDENTIFIED BY 'pw';
     GRANT SUPER, PROCESS, CONNECTION ADMIN, READ_ONLY ADMIN ON *.* TO halb@'%';
     GRANT SELECT ON lab.* TO halb@'%';
     CREATE USER app@'%' IDENTIFIED BY 'pw'; GRANT ALL ON lab.* TO app@'%';";

/// The seed's file with the 3306 service as a writer: MYSQL_CHECK on short timings instead of
/// the TCP_CHECK.
fn config() -> String {
    let seed = halb_test_support::seed_text("keepalived-master.conf");
    let start = seed.find("TCP_CHECK {").expect("the seed's TCP_CHECK");
    let end = start + seed[start..].find('}').expect("its end") + 1;
    let check = "MYSQL_CHECK {
            user halb
            password pw
            query \"SELECT ok FROM lab.health\"
            connect_timeout 1
            retry 0
            delay_before_retry 1
        }";
    let text = format!("{}{check}{}", &seed[..start], &seed[end..]);
    text.replacen("delay_loop 20", "delay_loop 1\n    mysql_writer", 1)
}

fn start_db(lab: &LvsLab, ns: &halb_test_support::Netns, id: u32) -> MariaDb {
    let _ = lab;
    let db = MariaDb::start(
        MariaDbOptions::new()
            .netns(ns.name())
            .bind_address("0.0.0.0".parse().expect("an address"))
            .server_id(id),
    )
    .expect("start MariaDB (run scripts/deps.sh as root)");
    db.sql(SETUP).expect("the lab's tables and users");
    db
}

fn read_only(db: &MariaDb) -> String {
    db.value("SELECT @@global.read_only")
        .expect("read read_only")
}

fn app(lab: &LvsLab, addr: SocketAddr) -> Result<Connection, SqlError> {
    let options = ConnectOptions::new(addr, "app", "pw").database("lab");
    lab.client.ns.run_in(move || Connection::connect(&options))
}

fn vip() -> SocketAddr {
    SocketAddr::new(VIP.parse().expect("the VIP"), 3306)
}

#[test]
fn a_writer_switch_fences_the_old_master_before_routing_to_the_new_one() {
    let lab = LvsLab::new("wfence");
    let a = start_db(&lab, &lab.rs_a.ns, 1);
    let b = start_db(&lab, &lab.rs_b.ns, 2);
    assert_eq!((read_only(&a).as_str(), read_only(&b).as_str()), ("0", "0"));
    let conf = lab.write("keepalived.conf", &config());
    let mut halb = Daemon::halb_with(
        &lab.director.ns,
        &conf,
        lab.dir.path().join("halb.log"),
        &[],
    );
    let one_writer = wait_for(Duration::from_secs(30), || {
        read_only(&b) == "1"
            && app(&lab, vip()).is_ok_and(|mut c| {
                c.query("SELECT @@server_id")
                    .ok()
                    .and_then(|r| r.first().map(str::to_owned))
                    == Some("1".into())
            })
    });
    assert!(
        one_writer.is_some(),
        "halb should route to .253 and make .254 read-only once MASTER; .254 read_only={}; log:\n{}",
        read_only(&b),
        halb.log_text()
    );
    assert_eq!(read_only(&a), "0");

    // The application's pooled session on .253.
    let mut held = app(&lab, vip()).expect("the application connects");
    held.query("INSERT INTO t (v) VALUES (1)")
        .expect("a write before the switch");

    // .253 goes on serving; only its check fails.
    a.sql("DROP TABLE lab.health")
        .expect("drop the check's table");
    let switched = wait_for(Duration::from_secs(30), || {
        halb.log_text()
            .contains("Adding sorry server [192.168.66.254]:tcp:3306")
    });
    let log = halb.log_text();
    assert!(switched.is_some(), "no switch:\n{log}");
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("missing {needle:?} in halb's log:\n{log}"))
    };
    let fenced = at("Fenced [192.168.66.253]:3306 of VS [192.168.66.251]:tcp:3306: read_only ON");
    let writable = at("Made [192.168.66.254]:3306 writable for VS [192.168.66.251]:tcp:3306");
    let routed = at("Adding sorry server [192.168.66.254]:tcp:3306");
    assert!(
        fenced < writable && writable < routed,
        "fence, then unfence, then route:\n{log}"
    );
    println!(
        "{}",
        log.lines()
            .filter(|l| l.contains("Fenced") || l.contains("writable") || l.contains("sorry"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    assert_eq!(read_only(&a), "1", ".253 is read-only now");
    assert_eq!(read_only(&b), "0", ".254 is writable now");
    let held_write = held.query("INSERT INTO t (v) VALUES (2)");
    assert!(
        held_write.is_err(),
        "the session held on .253 should be gone: {held_write:?}"
    );
    let direct = app(&lab, "192.168.66.253:3306".parse().expect("an address"))
        .expect("a direct connection to .253")
        .query("INSERT INTO t (v) VALUES (3)");
    match direct {
        Err(SqlError::Server { code, .. }) => assert_eq!(code, 1290, "read-only refusal"),
        other => panic!("a direct write to .253 should be refused: {other:?}"),
    }
    let mut through_vip = app(&lab, vip()).expect("connect through the VIP after the switch");
    assert_eq!(
        through_vip
            .query("SELECT @@server_id")
            .expect("server id")
            .first(),
        Some("2")
    );
    through_vip
        .query("INSERT INTO t (v) VALUES (4)")
        .expect("a write through the VIP lands on .254");
    println!(
        "rows on .253: {}, on .254: {}",
        a.value("SELECT COUNT(*) FROM lab.t").expect("count"),
        b.value("SELECT COUNT(*) FROM lab.t").expect("count")
    );
    halb.terminate(Duration::from_secs(10));
}
