//! MYSQL_CHECK against real MariaDB servers (Debian's mariadb-server, started by the test on
//! loopback or inside a network namespace of its own).
//!
//! Needs root (the namespace, `--user=root`) and the mariadb-server / mariadb-client packages
//! (`scripts/deps.sh`).

use halb_check::mysql::{check, ErrorKind, MysqlError, MysqlStatus, Step};
use halb_config::model::{CheckerCommon, MysqlCheck, DEFAULT_MYSQL_QUERY};
use halb_seed_lab::mariadb::{MariaDb, MariaDbOptions};
use halb_test_support::{ChildGuard, Netns};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);

fn monitor(user: &str, password: &str) -> MysqlCheck {
    MysqlCheck {
        common: CheckerCommon::default(),
        user: user.to_string(),
        password: password.to_string(),
        database: None,
        query: DEFAULT_MYSQL_QUERY.to_string(),
    }
}

fn with_query(mut cfg: MysqlCheck, query: &str) -> MysqlCheck {
    cfg.query = query.to_string();
    cfg
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn run(cfg: &MysqlCheck, target: SocketAddr) -> Result<MysqlStatus, MysqlError> {
    runtime().block_on(check(cfg, target, None, TIMEOUT))
}

fn aborted(db: &MariaDb) -> (u64, u64) {
    (
        db.global_status("Aborted_connects").unwrap(),
        db.global_status("Aborted_clients").unwrap(),
    )
}

/// Waits until `f` holds (the server counts a connection's end a moment after the client
/// sees it), for at most 20 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < until, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A server with a monitor user of each kind.
fn server(options: MariaDbOptions) -> MariaDb {
    let db = MariaDb::start(options.option("plugin-load-add", "auth_ed25519"))
        .expect("start MariaDB (run scripts/deps.sh as root)");
    db.sql(
        "CREATE USER halb_monitor@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('secret');
         CREATE DATABASE halb;
         CREATE TABLE halb.t (id INT PRIMARY KEY);
         INSERT INTO halb.t VALUES (1), (2), (3);
         GRANT SELECT, EXECUTE ON halb.* TO halb_monitor@'%';
         CREATE USER ed_only@'%' IDENTIFIED VIA ed25519 USING PASSWORD('secret');
         CREATE USER ed_or_native@'%' IDENTIFIED VIA ed25519 USING PASSWORD('secret')
             OR mysql_native_password USING PASSWORD('secret');
         CREATE USER no_password@'%';",
    )
    .expect("create the monitor users");
    db.sql(
        "DELIMITER //
         CREATE PROCEDURE halb.two_results() BEGIN SELECT 1; SELECT id FROM halb.t; END//",
    )
    .expect("create a procedure");
    db
}

#[test]
fn login_read_only_and_failures() {
    let mut db = server(MariaDbOptions::new());
    let addr = db.addr();
    let mon = monitor("halb_monitor", "secret");

    let status = run(&mon, addr).expect("check passes");
    println!("passing check: {status:?}");
    assert!(!status.read_only);
    assert!(status.server_version.contains("MariaDB"), "{status:?}");
    assert!(!status.server_version.starts_with("5.5.5-"), "{status:?}");
    assert_eq!(status.auth_plugin, "mysql_native_password");

    db.sql("SET GLOBAL read_only = 1").unwrap();
    assert!(run(&mon, addr).unwrap().read_only, "read_only=1 reported");
    db.sql("SET GLOBAL read_only = 0").unwrap();
    assert!(!run(&mon, addr).unwrap().read_only, "read_only=0 reported");

    // Queries: several rows, several result sets, a database at login.
    run(
        &with_query(mon.clone(), "SELECT id FROM halb.t ORDER BY id"),
        addr,
    )
    .unwrap();
    run(&with_query(mon.clone(), "CALL halb.two_results()"), addr).unwrap();
    run(&with_query(mon.clone(), "DO 1"), addr).unwrap();
    let in_db = MysqlCheck {
        database: Some("halb".to_string()),
        ..with_query(mon.clone(), "SELECT COUNT(*) FROM t")
    };
    run(&in_db, addr).unwrap();

    // Wrong password: the server's own words, with the peer.
    let err = run(&monitor("halb_monitor", "wrong"), addr).unwrap_err();
    println!("wrong password: {err}");
    assert!(
        matches!(err.kind(), ErrorKind::LoginRefused { .. }),
        "{err:?}"
    );
    assert_eq!(err.server_error().map(|e| e.code), Some(1045));
    let peer = format!("[127.0.0.1]:{}: ", addr.port());
    assert!(
        err.to_string().starts_with(&format!(
            "{peer}login as halb_monitor refused: 1045 Access denied"
        )),
        "{err}"
    );

    // A database the user may not use.
    let err = run(
        &MysqlCheck {
            database: Some("mysql".to_string()),
            ..mon.clone()
        },
        addr,
    )
    .unwrap_err();
    println!("forbidden database: {err}");
    assert_eq!(err.server_error().map(|e| e.code), Some(1044));

    // A query that fails.
    let err = run(&with_query(mon.clone(), "SELECT * FROM halb.missing"), addr).unwrap_err();
    println!("failing query: {err}");
    assert_eq!(err.step(), Step::Query);
    assert_eq!(err.server_error().map(|e| e.code), Some(1146));
    assert!(
        err.to_string()
            .contains("query \"SELECT * FROM halb.missing\" failed: 1146"),
        "{err}"
    );
    let err = run(&with_query(mon.clone(), "SELEKT 1"), addr).unwrap_err();
    assert_eq!(err.server_error().map(|e| e.code), Some(1064));

    // Auth plugins: declined ed25519 with native as the account's second choice passes; ed25519
    // alone is a clear error; an account without password passes.
    let status = run(&monitor("ed_or_native", "secret"), addr).unwrap();
    assert_eq!(status.auth_plugin, "mysql_native_password");
    let err = run(&monitor("ed_only", "secret"), addr).unwrap_err();
    println!("ed25519 account: {err}");
    assert!(
        matches!(err.kind(), ErrorKind::UnsupportedPlugin { plugin, .. } if plugin == "client_ed25519"),
        "{err:?}"
    );
    run(&monitor("no_password", ""), addr).unwrap();

    // None of the failures above left a session open or cut one short after login.
    let (_, clients) = aborted(&db);
    assert_eq!(clients, 0, "Aborted_clients after the checks");

    // A stopped server: the peer and the step.
    db.stop().unwrap();
    let err = run(&mon, addr).unwrap_err();
    println!("stopped server: {err}");
    assert_eq!(err.step(), Step::Connect);
    assert_eq!(err.peer, addr);
    assert!(err.to_string().starts_with(&peer), "{err}");
    assert!(err.to_string().contains("connect failed"), "{err}");

    // And back.
    db.restart().unwrap();
    assert!(!run(&mon, addr).unwrap().read_only);
}

#[test]
fn bind_address_and_host_not_allowed() {
    let db = MariaDb::start(MariaDbOptions::new()).expect("start MariaDB");
    let addr = db.addr();
    let mon = monitor("halb_monitor", "secret");
    let from: SocketAddr = "127.0.0.2:0".parse().unwrap();
    let rt = runtime();
    // No account matches 127.0.0.2 yet: the server refuses before its greeting.
    let err = rt
        .block_on(check(&mon, addr, Some(from), TIMEOUT))
        .unwrap_err();
    println!("host not allowed: {err}");
    assert!(matches!(err.kind(), ErrorKind::Refused(_)), "{err:?}");
    assert_eq!(err.server_error().map(|e| e.code), Some(1130));

    db.sql("CREATE USER halb_monitor@'127.0.0.2' IDENTIFIED BY 'secret'")
        .unwrap();
    rt.block_on(check(&mon, addr, Some(from), TIMEOUT)).unwrap();
    let host = db
        .value("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE HOST LIKE '127.0.0.2:%'")
        .unwrap();
    assert_eq!(host, "0", "the check's session is closed");

    // An address this host does not have.
    let err = rt
        .block_on(check(
            &mon,
            addr,
            Some("192.0.2.1:0".parse().unwrap()),
            TIMEOUT,
        ))
        .unwrap_err();
    println!("bad bind address: {err}");
    assert!(matches!(err.kind(), ErrorKind::Bind { .. }), "{err:?}");
}

#[test]
fn timeout_still_ends_the_session_cleanly() {
    let db = server(MariaDbOptions::new());
    let addr = db.addr();
    let before = aborted(&db);
    let slow = with_query(monitor("halb_monitor", "secret"), "SELECT SLEEP(2)");
    let rt = runtime();
    let started = Instant::now();
    let err = rt
        .block_on(check(&slow, addr, None, Duration::from_millis(500)))
        .unwrap_err();
    let took = started.elapsed();
    println!("slow query: {err} (returned after {took:?})");
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.step(), Step::Query);
    assert!(
        took < Duration::from_secs(2),
        "the verdict waited for the query: {took:?}"
    );
    // The runtime keeps the background task that finishes the query and quits.
    eventually("the timed-out session to end", || {
        db.value("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'halb_monitor'")
            .unwrap()
            == "0"
    });
    let after = aborted(&db);
    println!("Aborted_connects, Aborted_clients before {before:?} after {after:?}");
    assert_eq!(before, after, "a timed-out check still ends with COM_QUIT");
}

#[test]
fn ten_thousand_checks_leave_no_aborted_connections() {
    const CHECKS: usize = 10_000;
    const CONCURRENCY: usize = 16;
    const PLAIN_CONNECTS: u64 = 50;
    let db = server(MariaDbOptions::new());
    let addr = db.addr();
    let connections_before = db.global_status("Connections").unwrap();
    let (connects_before, clients_before) = aborted(&db);

    let cfg = Arc::new(monitor("halb_monitor", "secret"));
    let started = Instant::now();
    let failures = runtime().block_on(async move {
        let semaphore = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..CHECKS {
            let permit = semaphore.clone().acquire_owned().await.unwrap();
            let cfg = cfg.clone();
            tasks.spawn(async move {
                let result = check(&cfg, addr, None, TIMEOUT).await;
                drop(permit);
                result.err().map(|e| e.to_string())
            });
        }
        let mut failures = Vec::new();
        while let Some(r) = tasks.join_next().await {
            if let Some(e) = r.unwrap() {
                failures.push(e);
            }
        }
        failures
    });
    let took = started.elapsed();
    assert!(
        failures.is_empty(),
        "{} checks failed, first: {}",
        failures.len(),
        failures[0]
    );
    let connections = db.global_status("Connections").unwrap() - connections_before;
    let (connects_after, clients_after) = aborted(&db);
    println!(
        "{CHECKS} MYSQL_CHECKs in {took:.1?} ({connections} server connections): \
         Aborted_connects {connects_before} -> {connects_after}, \
         Aborted_clients {clients_before} -> {clients_after}"
    );
    assert!(
        connections >= CHECKS as u64,
        "every check made its own connection"
    );
    assert_eq!(connects_after, connects_before, "Aborted_connects moved");
    assert_eq!(clients_after, clients_before, "Aborted_clients moved");

    // What TCP_CHECK does, for comparison: connect and close.
    for _ in 0..PLAIN_CONNECTS {
        drop(std::net::TcpStream::connect(addr).unwrap());
    }
    let mut plain = 0;
    eventually("the server to count the plain connects", || {
        plain = db.global_status("Aborted_connects").unwrap() - connects_after;
        plain >= PLAIN_CONNECTS
    });
    println!(
        "{PLAIN_CONNECTS} plain TCP connect+close: Aborted_connects {connects_after} -> {} \
         (+{plain})",
        connects_after + plain
    );
}

/// Runs `f` on a thread inside the namespace, with a runtime of its own.
fn in_netns<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce(&tokio::runtime::Runtime) -> T + Send + 'static,
) -> T {
    ns.run_in(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        f(&rt)
    })
}

/// The server turning the check away: "Too many connections", and "Host blocked" (an ERR
/// instead of the greeting) after broken handshakes, which MYSQL_CHECK never causes and a plain
/// connect-and-close does.
///
/// Inside a namespace: the server must resolve client names for its host cache (without, it
/// blocks no one), and in a namespace with only `lo` those lookups stay off the network.
#[test]
fn refused_connections_and_host_blocking() {
    const MAX_CONNECT_ERRORS: usize = 3;
    const MAX_CONNECTIONS: usize = 10;
    // The server resolves the checker's address from this file: no resolver is asked, and the
    // answer is final, so the server keeps a host cache entry (one it cannot resolve for sure,
    // it does not cache, and then never blocks).
    // A namespace of this test's own, with only `lo`, and an `/etc/hosts` of its own for the
    // server that `ip netns exec` starts there.
    let ns = Netns::with_hosts("mysql", "127.0.0.1 localhost\n127.0.0.2 halb-checker\n");
    let db = MariaDb::start(
        MariaDbOptions::new()
            .netns(ns.name())
            .skip_name_resolve(false)
            .option("max_connect_errors", MAX_CONNECT_ERRORS)
            .option("max_connections", MAX_CONNECTIONS),
    )
    .expect("start MariaDB in a namespace");
    db.sql("CREATE USER halb_monitor@'%' IDENTIFIED BY 'secret'")
        .unwrap();
    let addr = db.addr();
    let mon = monitor("halb_monitor", "secret");

    // Too many connections: fill max_connections (10, MariaDB's least) with sessions that
    // sleep. MariaDB counts sessions once logged in, so its 1040 answers the login.
    // One at a time: a sleeper that logs in while the count below is connected is turned away
    // too, and then started again.
    let mut sleepers: Vec<ChildGuard> = Vec::new();
    let sleeping = || {
        db.value(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
             WHERE USER = 'halb_monitor' AND STATE = 'User sleep'",
        )
        .unwrap()
        .parse::<usize>()
        .unwrap()
    };
    eventually("the sleeping sessions", || {
        sleepers.retain_mut(|c| c.try_wait().is_none());
        let n = sleeping();
        if n >= MAX_CONNECTIONS {
            return true;
        }
        if sleepers.len() < MAX_CONNECTIONS && sleepers.len() <= n {
            sleepers.push(
                ChildGuard::spawn(
                    db.client()
                        .args(["--user=halb_monitor", "--password=secret"])
                        .arg("--execute=SELECT SLEEP(120)")
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null()),
                )
                .expect("start a mariadb client"),
            );
        }
        false
    });
    // MariaDB turns a client away at the login while the sessions number max_connections, and
    // already instead of the greeting once they number one more (the slot it keeps for SUPER):
    // the connection of the count just above may not be gone from the server's count yet, and
    // then the check meets the second. Both are 1040; the login case is the one to reach.
    let err = in_netns(&ns, {
        let mon = mon.clone();
        move |rt| {
            let mut tries = 0;
            loop {
                let err = rt
                    .block_on(check(&mon, addr, None, TIMEOUT))
                    .expect_err("the check with every connection taken");
                assert_eq!(err.server_error().map(|e| e.code), Some(1040), "{err:?}");
                tries += 1;
                if err.step() == Step::Login || tries == 50 {
                    break err;
                }
                println!("too many connections, before the greeting: {err}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    println!("too many connections: {err}");
    assert_eq!(err.step(), Step::Login, "{err:?}");
    // Wake the sleepers (SLEEP returns early), and the clients end normally.
    db.sql("KILL QUERY USER halb_monitor").unwrap();
    for mut s in sleepers.drain(..) {
        s.wait().unwrap();
    }

    // From 127.0.0.2 (127.0.0.1 never gets blocked): many checks, no block; then a few plain
    // connects get the address blocked, and the check says so.
    let (passed, blocked) = in_netns(&ns, move |rt| {
        let from: SocketAddr = "127.0.0.2:0".parse().unwrap();
        let mut passed = 0;
        for _ in 0..(4 * MAX_CONNECT_ERRORS) {
            rt.block_on(check(&mon, addr, Some(from), TIMEOUT)).unwrap();
            passed += 1;
        }
        for _ in 0..MAX_CONNECT_ERRORS {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.bind(&from.into()).unwrap();
            s.connect(&addr.into()).unwrap();
            // Let the server see the handshake break before the next one.
            drop(s);
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut blocked = None;
        for _ in 0..50 {
            match rt.block_on(check(&mon, addr, Some(from), TIMEOUT)) {
                Ok(_) => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => {
                    blocked = Some(e);
                    break;
                }
            }
        }
        (passed, blocked)
    });
    let err = blocked.expect("the plain connects got 127.0.0.2 blocked");
    println!(
        "{passed} checks from 127.0.0.2 passed; after {MAX_CONNECT_ERRORS} plain connects: {err}"
    );
    assert_eq!(err.server_error().map(|e| e.code), Some(1129), "{err:?}");
    assert!(
        err.to_string()
            .contains("is blocked because of many connection errors"),
        "{err}"
    );
}
