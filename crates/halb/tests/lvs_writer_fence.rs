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
     GRANT SUPER, PROCESS, CONNECTION ADMIN, READ_ONLY ADMIN, SLAVE MONITOR ON *.* TO halb@'%';
     GRANT SELECT ON lab.* TO halb@'%';
     CREATE USER app@'%' IDENTIFIED BY 'pw'; GRANT ALL ON lab.* TO app@'%';";

/// The seed's file with the 3306 service as a writer: MYSQL_CHECK on short timings instead of
/// the TCP_CHECK.
fn config() -> String {
    config_with("")
}

/// [`config`] with more keywords in the writer's virtual server.
fn config_with(extra: &str) -> String {
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
    text.replacen(
        "delay_loop 20",
        &format!("delay_loop 1\n    mysql_writer\n    {extra}"),
        1,
    )
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

/// The server's read_only. A fence kills every client session on the server it fences, and
/// this probe's short session can be among them ("Server has gone away"): ask again then.
fn read_only(db: &MariaDb) -> String {
    let mut tries = 0;
    loop {
        match db.value("SELECT @@global.read_only") {
            Ok(v) => return v,
            Err(e) if tries < 3 => {
                tries += 1;
                eprintln!("read_only, try {tries}: {e:#}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("read read_only: {e:#}"),
        }
    }
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

/// A dual-master pair with GTIDs (a domain per server, as the seed lab runs it): `db` replicates
/// from `peer`.
fn replicate(db: &MariaDb, peer: &str) {
    db.sql(&format!(
        "CHANGE MASTER TO MASTER_HOST='{peer}', MASTER_PORT=3306, MASTER_USER='repl', \
         MASTER_PASSWORD='pw', MASTER_CONNECT_RETRY=1, MASTER_USE_GTID=slave_pos; START SLAVE;"
    ))
    .expect("start replication");
}

fn start_master(ns: &halb_test_support::Netns, id: u32) -> MariaDb {
    let db = MariaDb::start(
        MariaDbOptions::new()
            .netns(ns.name())
            .bind_address("0.0.0.0".parse().expect("an address"))
            .server_id(id)
            .log_bin("mysql-bin")
            .option("gtid-domain-id", id)
            .option("relay-log", "relay-bin")
            .option("auto-increment-increment", 2)
            .option("auto-increment-offset", id),
    )
    .expect("start MariaDB (run scripts/deps.sh as root)");
    db.sql(
        "SET sql_log_bin=0; CREATE USER repl@'%' IDENTIFIED BY 'pw';
         GRANT REPLICATION SLAVE ON *.* TO repl@'%'; SET sql_log_bin=1;",
    )
    .expect("the replication account");
    db
}

/// Two masters replicating from each other, the lab's schema on both.
fn dual_master(lab: &LvsLab) -> (MariaDb, MariaDb) {
    let a = start_master(&lab.rs_a.ns, 1);
    let b = start_master(&lab.rs_b.ns, 2);
    replicate(&a, "192.168.66.254");
    replicate(&b, "192.168.66.253");
    a.sql(SETUP)
        .expect("the lab's tables and users, replicated to .254");
    let replicated = wait_for(Duration::from_secs(20), || {
        b.value("SELECT COUNT(*) FROM lab.health")
            .is_ok_and(|n| n == "1")
    });
    assert!(replicated.is_some(), "the schema never reached .254");
    (a, b)
}

fn count(db: &MariaDb) -> u64 {
    db.value("SELECT COUNT(*) FROM lab.t")
        .expect("count rows")
        .parse()
        .expect("a number")
}

/// The early failback: .253 returns while its replication from .254 is held back. halb
/// keeps .254 as the writer and says why; once .253 has applied .254's rows, halb fences .254,
/// makes .253 writable and hands back. Every row acknowledged through the VIP is on .253 then.
#[test]
fn a_returning_master_gets_the_writes_back_only_after_it_has_caught_up() {
    let lab = LvsLab::new("wcatch");
    let (a, b) = dual_master(&lab);
    let conf = lab.write("keepalived.conf", &config());
    let mut halb = Daemon::halb_with(
        &lab.director.ns,
        &conf,
        lab.dir.path().join("halb.log"),
        &[],
    );
    let ready = wait_for(Duration::from_secs(30), || read_only(&b) == "1");
    assert!(ready.is_some(), ".254 never fenced:\n{}", halb.log_text());

    // .253 out (its check's table dropped there only), the writes go to .254.
    a.sql("SET sql_log_bin=0; DROP TABLE lab.health")
        .expect("drop the check's table on .253");
    let switched = wait_for(Duration::from_secs(30), || {
        read_only(&b) == "0" && read_only(&a) == "1"
    });
    assert!(
        switched.is_some(),
        "no switch to .254:\n{}",
        halb.log_text()
    );
    // .253 stops applying what .254 writes.
    a.sql("STOP SLAVE SQL_THREAD")
        .expect("hold back .253's replication");
    let mut acknowledged = 0u64;
    for v in 0..5 {
        let mut c = app(&lab, vip()).expect("connect through the VIP");
        c.query(&format!("INSERT INTO t (v) VALUES ({v})"))
            .expect("a write on .254");
        acknowledged += 1;
    }
    // .253's check passes again, but it lacks .254's rows.
    a.sql("SET sql_log_bin=0; CREATE TABLE lab.health (ok INT); INSERT INTO lab.health VALUES (1)")
        .expect("the check's table back on .253");
    let held = wait_for(Duration::from_secs(30), || {
        halb.log_text().contains(
            "Not handing back yet, the sorry server stays the writer: 192.168.66.253:3306 \
             cannot catch up: its SQL thread is stopped (replicating from 192.168.66.254:3306)",
        )
    });
    let log = halb.log_text();
    assert!(
        held.is_some(),
        "the handback should wait, saying why:\n{log}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        (read_only(&a).as_str(), read_only(&b).as_str()),
        ("1", "0"),
        ".254 stays the only writer while .253 lags:\n{}",
        halb.log_text()
    );
    assert!(!halb
        .log_text()
        .contains("Removing sorry server [192.168.66.254]:tcp:3306"));
    println!(
        "while .253 lags: rows on .253 {}, on .254 {}",
        count(&a),
        count(&b)
    );

    // .253 catches up; the handback follows.
    let released = std::time::Instant::now();
    a.sql("START SLAVE SQL_THREAD").expect("let .253 catch up");
    let back = wait_for(Duration::from_secs(30), || {
        halb.log_text()
            .contains("Removing sorry server [192.168.66.254]:tcp:3306")
    });
    let log = halb.log_text();
    assert!(back.is_some(), "no handback after the catch-up:\n{log}");
    println!(
        "handback {:?} after .253's replication was released",
        released.elapsed()
    );
    assert_eq!(
        (read_only(&a).as_str(), read_only(&b).as_str()),
        ("0", "1"),
        "after the handback .253 is the one writer:\n{log}"
    );
    assert!(
        count(&a) >= acknowledged,
        ".253 should hold every acknowledged row: {} of {acknowledged}",
        count(&a)
    );
    let mut c = app(&lab, vip()).expect("connect through the VIP after the handback");
    assert_eq!(
        c.query("SELECT @@server_id").expect("server id").first(),
        Some("1")
    );
    println!(
        "{}",
        log.lines()
            .filter(|l| l.contains("handing back")
                || l.contains("Fenced")
                || l.contains("writable")
                || l.contains("sorry server [192.168.66.254]:tcp:3306"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    halb.terminate(Duration::from_secs(10));
}

/// The old master cannot be reached when the switch comes (its link is down: down for every
/// client of this director, while it may still take writes from elsewhere). The switch
/// happens anyway; the fence is owed, and paid within seconds of the server answering again.
#[test]
fn an_unreachable_old_master_is_fenced_as_soon_as_it_answers() {
    let lab = LvsLab::new("wunreach");
    let a = start_db(&lab, &lab.rs_a.ns, 1);
    let b = start_db(&lab, &lab.rs_b.ns, 2);
    let conf = lab.write("keepalived.conf", &config());
    let mut halb = Daemon::halb_with(
        &lab.director.ns,
        &conf,
        lab.dir.path().join("halb.log"),
        &[],
    );
    let ready = wait_for(Duration::from_secs(30), || read_only(&b) == "1");
    assert!(ready.is_some(), ".254 never fenced:\n{}", halb.log_text());

    lab.rs_a.ns.ip(&["link", "set", "eth0", "down"]);
    let switched = wait_for(Duration::from_secs(30), || {
        halb.log_text()
            .contains("Adding sorry server [192.168.66.254]:tcp:3306")
    });
    let log = halb.log_text();
    assert!(switched.is_some(), "no switch:\n{log}");
    assert!(
        log.contains("Cannot fence [192.168.66.253]:3306"),
        "the failed fence should be said:\n{log}"
    );
    assert_eq!(read_only(&b), "0", ".254 is the writer");
    assert_eq!(read_only(&a), "0", ".253 could not be fenced yet");

    // .253 answers again, still failing its check (so no handback).
    a.sql("DROP TABLE lab.health")
        .expect("drop the check's table");
    let back = std::time::Instant::now();
    lab.rs_a.ns.ip(&["link", "set", "eth0", "up"]);
    let fenced = wait_for(Duration::from_secs(20), || read_only(&a) == "1");
    let log = halb.log_text();
    assert!(fenced.is_some(), ".253 never fenced:\n{log}");
    assert!(
        log.contains("Fenced [192.168.66.253]:3306 now that it answers"),
        "{log}"
    );
    println!(
        ".253 fenced {:?} after it became reachable again",
        back.elapsed()
    );
    assert_eq!(read_only(&b), "0");
    halb.terminate(Duration::from_secs(10));
}

/// `halb failback ARGS` against the daemon whose log is `halb.log` in the lab's directory:
/// (exit code, stdout and stderr).
fn halb_failback(lab: &LvsLab, vs: &str) -> (i32, String) {
    let socket = lab.dir.path().join("halb.sock");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_halb"))
        .args(["failback", vs, "--control-socket"])
        .arg(&socket)
        .output()
        .expect("run halb failback");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "halb failback {vs}: exit {:?}: {}",
        out.status.code(),
        text.trim()
    );
    (out.status.code().unwrap_or(-1), text)
}

fn halb_status(lab: &LvsLab) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_halb"))
        .args(["status", "--control-socket"])
        .arg(lab.dir.path().join("halb.sock"))
        .output()
        .expect("run halb status");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The check's table on .253: dropped, the server fails its check while it lives; back, it
/// passes. Not written to the binary log, so .254 keeps its own.
fn health_on(db: &MariaDb, present: bool) {
    let sql = if present {
        "SET sql_log_bin=0; CREATE TABLE lab.health (ok INT); INSERT INTO lab.health VALUES (1)"
    } else {
        "SET sql_log_bin=0; DROP TABLE lab.health"
    };
    db.sql(sql).expect("change the check's table on .253");
}

const VS: &str = "[192.168.66.251]:tcp:3306";

/// `failback manual`: the returning master stays out until `halb failback`, which still
/// waits for its catch-up; the command's errors say what is wrong.
#[test]
fn failback_manual_waits_for_halb_failback_and_its_catch_up() {
    let lab = LvsLab::new("wmanual");
    let (a, b) = dual_master(&lab);
    let conf = lab.write("keepalived.conf", &config_with("failback manual"));
    let mut halb = Daemon::halb_with(
        &lab.director.ns,
        &conf,
        lab.dir.path().join("halb.log"),
        &[],
    );
    let ready = wait_for(Duration::from_secs(30), || read_only(&b) == "1");
    assert!(ready.is_some(), ".254 never fenced:\n{}", halb.log_text());

    let (code, text) = halb_failback(&lab, VS);
    assert_eq!(code, 2, "nothing to fail back yet: {text}");
    assert!(text.contains("is not on its sorry server"), "{text}");
    let (code, text) = halb_failback(&lab, "192.168.66.251:80");
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("no virtual server 192.168.66.251:80") && text.contains(VS),
        "an unknown virtual server is named with the known ones: {text}"
    );

    health_on(&a, false);
    let switched = wait_for(Duration::from_secs(30), || {
        read_only(&b) == "0" && read_only(&a) == "1"
    });
    assert!(
        switched.is_some(),
        "no switch to .254:\n{}",
        halb.log_text()
    );
    let (code, text) = halb_failback(&lab, VS);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("no real server is ready"), "{text}");

    a.sql("STOP SLAVE SQL_THREAD")
        .expect("hold back .253's replication");
    let mut acknowledged = 0u64;
    for v in 0..3 {
        let mut c = app(&lab, vip()).expect("connect through the VIP");
        c.query(&format!("INSERT INTO t (v) VALUES ({v})"))
            .expect("a write on .254");
        acknowledged += 1;
    }
    health_on(&a, true);
    let held = wait_for(Duration::from_secs(30), || {
        halb.log_text().contains(&format!(
            "VS {VS}: not handing back to the real servers: failback manual: the sorry server \
             stays until `halb failback {VS}`"
        ))
    });
    assert!(
        held.is_some(),
        "the manual hold should be said:\n{}",
        halb.log_text()
    );
    // Well past the check's one-second loop: nothing moves by itself.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        (read_only(&a).as_str(), read_only(&b).as_str()),
        ("1", "0"),
        "failback manual keeps .254 the writer:\n{}",
        halb.log_text()
    );
    let status = halb_status(&lab);
    assert!(
        status.contains("failback held: failback manual"),
        "halb status says why: {status}"
    );
    // The replica state, read every 5 s, shows the stopped SQL thread.
    let shown = wait_for(Duration::from_secs(15), || {
        halb_status(&lab).contains("replica of 192.168.66.254:3306: IO yes, SQL no")
    });
    assert!(
        shown.is_some(),
        "halb status shows .253's replication: {}",
        halb_status(&lab)
    );

    // Asked for while .253 lags: the catch-up rule refuses.
    let (code, text) = halb_failback(&lab, VS);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains(
            "not handed back: 192.168.66.253:3306 cannot catch up: its SQL thread is stopped \
             (replicating from 192.168.66.254:3306)"
        ),
        "the replica state says why: {text}"
    );
    assert_eq!(read_only(&b), "0", ".254 stays the writer");

    a.sql("START SLAVE SQL_THREAD").expect("let .253 catch up");
    let (code, text) = halb_failback(&lab, "192.168.66.251:3306");
    assert_eq!(code, 0, "{text}\n{}", halb.log_text());
    assert!(
        text.contains("handed back to 192.168.66.253:3306"),
        "{text}"
    );
    assert_eq!(
        (read_only(&a).as_str(), read_only(&b).as_str()),
        ("0", "1"),
        "after the failback .253 is the one writer:\n{}",
        halb.log_text()
    );
    assert!(count(&a) >= acknowledged, "{} of {acknowledged}", count(&a));
    assert!(!halb_status(&lab).contains("failback held"));
    halb.terminate(Duration::from_secs(10));
}

/// `failback_limit 2 600`: the first failure is handed back by itself; the second switch
/// within the window stops the automatic failback (said in the log and in `halb status`), and
/// `halb failback` still hands back.
#[test]
fn failback_limit_stops_a_flapping_server_coming_back_by_itself() {
    let lab = LvsLab::new("wlimit");
    let a = start_db(&lab, &lab.rs_a.ns, 1);
    let b = start_db(&lab, &lab.rs_b.ns, 2);
    let conf = lab.write("keepalived.conf", &config_with("failback_limit 2 600"));
    let mut halb = Daemon::halb_with(
        &lab.director.ns,
        &conf,
        lab.dir.path().join("halb.log"),
        &[],
    );
    let ready = wait_for(Duration::from_secs(30), || read_only(&b) == "1");
    assert!(ready.is_some(), ".254 never fenced:\n{}", halb.log_text());
    let handbacks = |halb: &Daemon| {
        halb.log_text()
            .matches("Removing sorry server [192.168.66.254]:tcp:3306")
            .count()
    };

    // Switch 1 (out) and 2 (back, automatic).
    health_on(&a, false);
    let out = wait_for(Duration::from_secs(30), || read_only(&a) == "1");
    assert!(out.is_some(), "no switch:\n{}", halb.log_text());
    health_on(&a, true);
    let back = wait_for(Duration::from_secs(30), || handbacks(&halb) == 1);
    assert!(
        back.is_some(),
        "the first failback is automatic:\n{}",
        halb.log_text()
    );
    assert_eq!(read_only(&a), "0");

    // Switch 3 (out): now 3 within 600 s, no automatic failback.
    health_on(&a, false);
    let out = wait_for(Duration::from_secs(30), || read_only(&a) == "1");
    assert!(out.is_some(), "no second switch:\n{}", halb.log_text());
    health_on(&a, true);
    let held = wait_for(Duration::from_secs(30), || {
        halb.log_text()
            .contains("switches within 600 s (failback_limit 2 600): no automatic failback")
    });
    assert!(
        held.is_some(),
        "the limit should be said:\n{}",
        halb.log_text()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        handbacks(&halb),
        1,
        "held by the limit:\n{}",
        halb.log_text()
    );
    assert_eq!((read_only(&a).as_str(), read_only(&b).as_str()), ("1", "0"));
    let status = halb_status(&lab);
    assert!(
        status.contains("failback held: 3 switches within 600 s"),
        "halb status says why: {status}"
    );

    let (code, text) = halb_failback(&lab, VS);
    assert_eq!(code, 0, "{text}\n{}", halb.log_text());
    assert_eq!(handbacks(&halb), 2);
    assert_eq!((read_only(&a).as_str(), read_only(&b).as_str()), ("0", "1"));
    halb.terminate(Duration::from_secs(10));
}

/// What the database's general log says one client address sent: (statements that changed a
/// global variable, KILLs, the checker's queries).
fn sent_from(db: &MariaDb, ip: &str) -> (u64, u64, u64) {
    let count = |what: &str| -> u64 {
        db.value(&format!(
            "SELECT COUNT(*) FROM mysql.general_log WHERE user_host LIKE '%[{ip}]%' AND {what}"
        ))
        .expect("read the general log")
        .parse()
        .expect("a number")
    };
    (
        count("argument LIKE 'SET GLOBAL%'"),
        count("argument LIKE 'KILL%'"),
        count("argument LIKE '%lab.health%'"),
    )
}

/// Two halb directors in front of the pair, the seed's MASTER (.6) and BACKUP (.5). The real
/// server fails and returns; both directors see it (the BACKUP's checks keep reaching the
/// server), but only the MASTER fences. The database's own general log is the witness: from
/// the BACKUP's address not one `SET GLOBAL` nor `KILL`, from the MASTER's both.
#[test]
fn a_backup_director_never_fences() {
    let lab = LvsLab::new("wbackup");
    let backup_host = lab.add_host("e", 5);
    let a = start_db(&lab, &lab.rs_a.ns, 1);
    let b = start_db(&lab, &lab.rs_b.ns, 2);
    for db in [&a, &b] {
        db.sql("SET GLOBAL log_output = 'TABLE'; SET GLOBAL general_log = ON;")
            .expect("turn the general log on");
    }
    let master_conf = lab.write("master.conf", &config());
    let backup_conf = lab.write(
        "backup.conf",
        &config()
            .replacen("state MASTER", "state BACKUP", 1)
            .replacen("priority 100", "priority 90", 1),
    );
    let mut master = Daemon::halb_with(
        &lab.director.ns,
        &master_conf,
        lab.dir.path().join("master.log"),
        &[],
    );
    // The MASTER is MASTER before the BACKUP starts. Started together, both would begin as
    // BACKUP (a non-owner's `state MASTER` waits Master_Down_Interval first, as keepalived's
    // does) and their timers would differ only by the skew time, 40 ms at priorities 100 and
    // 90: on a loaded machine the BACKUP could win, become MASTER for real for a moment and
    // fence, which is right for a MASTER and not what this test is about.
    let master_first = wait_for(Duration::from_secs(30), || {
        master.log_text().contains("Entering MASTER STATE")
    });
    assert!(
        master_first.is_some(),
        "the MASTER should become MASTER on its own:\n{}",
        master.log_text()
    );
    let mut backup = Daemon::halb_with(
        &backup_host.ns,
        &backup_conf,
        lab.dir.path().join("backup.log"),
        &[],
    );
    let ready = wait_for(Duration::from_secs(30), || {
        read_only(&b) == "1" && backup.log_text().contains("Entering BACKUP STATE")
    });
    assert!(
        ready.is_some(),
        "the MASTER should fence .254 and the other director be BACKUP:\nMASTER:\n{}\nBACKUP:\n{}",
        master.log_text(),
        backup.log_text()
    );

    // .253 fails its checks, on both directors.
    health_on(&a, false);
    let out = wait_for(Duration::from_secs(30), || {
        read_only(&a) == "1"
            && backup
                .log_text()
                .contains("Adding sorry server [192.168.66.254]:tcp:3306")
    });
    assert!(
        out.is_some(),
        "both directors should switch to .254:\nMASTER:\n{}\nBACKUP:\n{}",
        master.log_text(),
        backup.log_text()
    );
    let checks_before = sent_from(&a, "192.168.66.5").2;
    // .253 returns; both directors hand back.
    health_on(&a, true);
    let back = wait_for(Duration::from_secs(30), || {
        read_only(&a) == "0"
            && read_only(&b) == "1"
            && backup
                .log_text()
                .contains("Removing sorry server [192.168.66.254]:tcp:3306")
    });
    assert!(
        back.is_some(),
        "both directors should hand back to .253:\nMASTER:\n{}\nBACKUP:\n{}",
        master.log_text(),
        backup.log_text()
    );
    // A few more of the BACKUP's checks after the handback.
    std::thread::sleep(Duration::from_secs(3));

    for (name, db) in [(".253", &a), (".254", &b)] {
        let (set, kill, checks) = sent_from(db, "192.168.66.5");
        println!("{name}, from the BACKUP (.5): {set} SET GLOBAL, {kill} KILL, {checks} checks");
        assert_eq!(
            (set, kill),
            (0, 0),
            "the BACKUP director wrote to {name}:\n{}",
            backup.log_text()
        );
        let (set, kill, checks) = sent_from(db, "192.168.66.6");
        println!("{name}, from the MASTER (.6): {set} SET GLOBAL, {kill} KILL, {checks} checks");
        assert!(
            set > 0,
            "the MASTER's fences should be in {name}'s general log (else the log proves nothing)"
        );
    }
    // Only the real server is checked; the sorry server is nobody's to check.
    assert!(
        checks_before > 0 && sent_from(&a, "192.168.66.5").2 > checks_before,
        "the BACKUP kept checking .253 after it returned"
    );
    assert!(
        !backup.log_text().contains("Fenced") && !backup.log_text().contains("writable"),
        "{}",
        backup.log_text()
    );
    backup.terminate(Duration::from_secs(10));
    master.terminate(Duration::from_secs(10));
}

/// An operator (or another tool) sets the writer `read_only`: it refuses every write, so the
/// MYSQL_CHECK of the writer service fails it, and halb switches as for any failure (the
/// application's session there killed, .254 made writable, then routed). It stays out while
/// read-only, halb's own fences aside; made writable again, it gets the writes back.
#[test]
fn a_writer_found_read_only_is_taken_out_and_fenced_as_a_switch() {
    let lab = LvsLab::new("wro");
    let a = start_db(&lab, &lab.rs_a.ns, 1);
    let b = start_db(&lab, &lab.rs_b.ns, 2);
    let conf = lab.write("keepalived.conf", &config());
    let mut halb = Daemon::halb_with(
        &lab.director.ns,
        &conf,
        lab.dir.path().join("halb.log"),
        &[],
    );
    let ready = wait_for(Duration::from_secs(30), || {
        read_only(&b) == "1" && app(&lab, vip()).is_ok()
    });
    assert!(ready.is_some(), ".254 never fenced:\n{}", halb.log_text());
    let mut held = app(&lab, vip()).expect("the application connects");
    held.query("INSERT INTO t (v) VALUES (1)")
        .expect("a write before");

    a.sql("SET GLOBAL read_only = ON")
        .expect("the operator's read_only");
    let switched = wait_for(Duration::from_secs(30), || {
        halb.log_text()
            .contains("Adding sorry server [192.168.66.254]:tcp:3306")
            && read_only(&b) == "0"
    });
    let log = halb.log_text();
    assert!(
        switched.is_some(),
        "a read-only writer should be taken out:\n{log}"
    );
    let status = halb_status(&lab);
    assert!(
        status
            .contains("MySQL server [192.168.66.253]:3306 is read_only where a writer is required"),
        "halb status gives the reason: {status}"
    );
    assert!(
        log.contains("Fenced [192.168.66.253]:3306 of VS [192.168.66.251]:tcp:3306: it was read_only already"),
        "{log}"
    );
    assert!(
        held.query("INSERT INTO t (v) VALUES (2)").is_err(),
        "the session held on .253 should be gone"
    );
    let mut through_vip = app(&lab, vip()).expect("connect through the VIP");
    through_vip
        .query("INSERT INTO t (v) VALUES (3)")
        .expect("a write through the VIP lands on .254");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !halb
            .log_text()
            .contains("Removing sorry server [192.168.66.254]:tcp:3306"),
        "a read-only .253 stays out:\n{}",
        halb.log_text()
    );

    a.sql("SET GLOBAL read_only = OFF")
        .expect("the operator is done");
    let back = wait_for(Duration::from_secs(30), || {
        halb.log_text()
            .contains("Removing sorry server [192.168.66.254]:tcp:3306")
            && read_only(&b) == "1"
    });
    assert!(
        back.is_some(),
        "writable again, .253 gets the writes back:\n{}",
        halb.log_text()
    );
    assert_eq!(read_only(&a), "0");
    halb.terminate(Duration::from_secs(10));
}
