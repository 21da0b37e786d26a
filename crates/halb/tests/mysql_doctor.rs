//! `halb mysql doctor` against real MariaDB 10.11 pairs in namespaces: a pair set up as the
//! seed's DBA would (no binary log, the same auto_increment on both, no replication, both
//! writable behind a virtual server without mysql_writer) is CRITICAL with each reason; a pair
//! set up right (a GTID domain and an auto_increment offset per server, log_slave_updates and
//! semi-synchronous replication on, replication both ways, one server read-only, mysql_writer)
//! is OK; stopping one replica's SQL thread makes it CRITICAL again.
//!
//! Needs root, mariadb-server and mariadb-client (`scripts/deps.sh`).

mod support;

use std::time::Duration;

use halb_seed_lab::mariadb::{MariaDb, MariaDbOptions};
use support::lvs_lab::LvsLab;
use support::vrrp_lab::wait_for;

const USERS: &str = "SET sql_log_bin=0;
     CREATE USER halb@'%' IDENTIFIED BY 'pw';
     GRANT SUPER, PROCESS, CONNECTION ADMIN, READ_ONLY ADMIN, SLAVE MONITOR ON *.* TO halb@'%';
     CREATE USER repl@'%' IDENTIFIED BY 'pw'; GRANT REPLICATION SLAVE ON *.* TO repl@'%';
     SET sql_log_bin=1;";

/// The seed's file with a MYSQL_CHECK for the 3306 service, `extra` in its virtual server.
fn config(extra: &str) -> String {
    let seed = halb_test_support::seed_text("keepalived-master.conf");
    let start = seed.find("TCP_CHECK {").expect("the seed's TCP_CHECK");
    let end = start + seed[start..].find('}').expect("its end") + 1;
    let check = "MYSQL_CHECK {\n            user halb\n            password pw\n            \
                 connect_timeout 2\n        }";
    format!("{}{check}{}", &seed[..start], &seed[end..]).replacen(
        "delay_loop 20",
        &format!("delay_loop 20\n    {extra}"),
        1,
    )
}

fn start(ns: &halb_test_support::Netns, options: MariaDbOptions) -> MariaDb {
    let db = MariaDb::start(
        options
            .netns(ns.name())
            .bind_address("0.0.0.0".parse().expect("an address")),
    )
    .expect("start MariaDB (run scripts/deps.sh as root)");
    db.sql(USERS).expect("the accounts");
    db
}

/// `halb mysql doctor -f FILE` from the director's namespace: (exit code, stdout).
fn doctor(lab: &LvsLab, conf: &std::path::Path) -> (i32, String) {
    let out = lab
        .director
        .ns
        .command(env!("CARGO_BIN_EXE_halb"))
        .args(["mysql", "doctor", "-f"])
        .arg(conf)
        .output()
        .expect("run halb mysql doctor");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    println!(
        "exit {:?}\n{text}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn doctor_tells_an_unsafe_pair_from_a_safe_one() {
    let lab = LvsLab::new("doctor");

    // As the seed's DBA left them: defaults everywhere.
    {
        let a = start(&lab.rs_a.ns, MariaDbOptions::new().server_id(1));
        let b = start(&lab.rs_b.ns, MariaDbOptions::new().server_id(2));
        let conf = lab.write("unsafe.conf", &config(""));
        let (code, text) = doctor(&lab, &conf);
        assert_eq!(code, 2, "an unsafe pair is CRITICAL:\n{text}");
        let first = text.lines().next().unwrap_or("");
        assert!(
            first.starts_with("CRITICAL - ") && first.contains("| critical="),
            "{first}"
        );
        for needle in [
            "CRITICAL the pair: auto_increment overlaps",
            "CRITICAL 192.168.66.253:3306: log_bin is OFF",
            "CRITICAL 192.168.66.254:3306: replicates from nobody",
            "all writable and the virtual server has no mysql_writer",
            "WARNING 192.168.66.253:3306: semi-synchronous replication is off",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        drop((a, b));
    }

    // Set up right.
    let master = |id: u32| {
        MariaDbOptions::new()
            .server_id(id)
            .log_bin("mysql-bin")
            .option("gtid-domain-id", id)
            .option("relay-log", "relay-bin")
            .option("auto-increment-increment", 2)
            .option("auto-increment-offset", id)
            .option("log-slave-updates", "ON")
            .option("rpl-semi-sync-master-enabled", "ON")
            .option("rpl-semi-sync-slave-enabled", "ON")
    };
    let a = start(&lab.rs_a.ns, master(1));
    let b = start(&lab.rs_b.ns, master(2));
    for (db, peer) in [(&a, "192.168.66.254"), (&b, "192.168.66.253")] {
        db.sql(&format!(
            "CHANGE MASTER TO MASTER_HOST='{peer}', MASTER_PORT=3306, MASTER_USER='repl', \
             MASTER_PASSWORD='pw', MASTER_CONNECT_RETRY=1, MASTER_USE_GTID=slave_pos; \
             START SLAVE;"
        ))
        .expect("start replication");
    }
    b.sql("SET GLOBAL read_only = ON").expect("one writer");
    let running = wait_for(Duration::from_secs(20), || {
        [&a, &b].iter().all(|db| {
            db.rows("SHOW SLAVE STATUS").is_ok_and(|r| {
                r.iter()
                    .any(|row| row.iter().filter(|v| *v == "Yes").count() >= 2)
            })
        })
    });
    assert!(running.is_some(), "replication never ran both ways");
    let conf = lab.write("safe.conf", &config("mysql_writer"));
    let (code, text) = doctor(&lab, &conf);
    assert_eq!(code, 0, "a pair set up right is OK:\n{text}");
    assert!(text.starts_with("OK - 0 critical, 0 warning"), "{text}");

    // One replica stops applying.
    a.sql("STOP SLAVE SQL_THREAD")
        .expect("stop .253's SQL thread");
    let (code, text) = doctor(&lab, &conf);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains(
            "CRITICAL 192.168.66.253:3306: replication broken: its SQL thread is stopped \
             (replicating from 192.168.66.254:3306)"
        ),
        "{text}"
    );
}
