//! `halb monitor` and the Zabbix agent's UserParameters (contrib/zabbix) against running
//! directors. Each check is shown OK, WARNING and CRITICAL in the situation it names.
//!
//! - One director (the seed's segment, support::lvs_lab): halb with one VRRP instance holding
//!   the VIP and one virtual server with two real servers; the real `zabbix_agentd -t` gives the
//!   value of each UserParameter for a healthy and a failed real server.
//! - Two directors (support::vrrp_lab, halb + halb) in front of a real MariaDB: the MySQL login
//!   through the VIP (`service --mysql-user`), exactly one MASTER asked through both
//!   directors' HTTP endpoints (`vrrp --peer`), and a refused reload (`daemon`'s WARNING).
//!
//! Needs root, zabbix-agent and mariadb-server (scripts/deps.sh).

mod support;

use std::path::Path;
use std::time::Duration;

use halb_seed_lab::mariadb::{MariaDb, MariaDbOptions};
use halb_test_support::{installed, is_root, skip, Netns};
use support::lvs_lab::{Backend, LvsLab, VIP};
use support::vrrp_lab::{seed_vrrp, wait_for, Daemon, Lab};

const CONFIG: &str = "\
vrrp_instance INT {
    state MASTER
    interface eth0
    virtual_router_id 200
    priority 255
    advert_int 1
    virtual_ipaddress {
        192.168.66.251
    }
}
virtual_server 192.168.66.251 3306 {
    delay_loop 1
    lb_algo wrr
    lb_kind DR
    protocol TCP
    real_server 192.168.66.253 3306 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
            retry 0
        }
    }
    real_server 192.168.66.254 3306 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
            retry 0
        }
    }
}
";

/// `halb monitor ARGS` in `ns`: its exit status and its line.
fn monitor(ns: &Netns, args: &[&str]) -> (i32, String) {
    let out = ns
        .command(env!("CARGO_BIN_EXE_halb"))
        .arg("monitor")
        .args(args)
        .output()
        .expect("run halb monitor");
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let code = out.status.code().unwrap_or(-1);
    eprintln!("halb monitor {} -> {code}: {line}", args.join(" "));
    assert_eq!(line.lines().count(), 1, "one line: {line:?}");
    (code, line)
}

/// Polls the check until it exits with `code` (checkers take a moment).
fn becomes(ns: &Netns, args: &[&str], code: i32) -> String {
    let mut last = String::new();
    let reached = wait_for(Duration::from_secs(15), || {
        let (c, line) = monitor(ns, args);
        last = line;
        c == code
    });
    assert!(
        reached.is_some(),
        "halb monitor {args:?} never exited {code}: {last}"
    );
    last
}

/// `zabbix_agentd -t KEY` in the director's namespace with contrib's UserParameters, `halb` on
/// its PATH: the value it prints.
fn zabbix(ns: &Netns, dir: &Path, key: &str) -> String {
    let conf = dir.join("zabbix_agentd.conf");
    let userparameters =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/zabbix/userparameter_halb.conf");
    std::fs::write(
        &conf,
        format!("LogType=console\nInclude={}\n", userparameters.display()),
    )
    .expect("the agent's configuration");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_halb"))
        .parent()
        .expect("a directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = ns
        .command("zabbix_agentd")
        .env("PATH", path)
        .arg("-c")
        .arg(&conf)
        .arg("-t")
        .arg(key)
        .output()
        .expect("run zabbix_agentd");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // `KEY   [t|VALUE]`
    let value = text
        .split_once("[t|")
        .and_then(|(_, v)| v.strip_suffix(']'))
        .unwrap_or_else(|| panic!("zabbix_agentd -t {key}: {text}"))
        .to_string();
    eprintln!("zabbix_agentd -t {key} -> {value}");
    value
}

#[test]
fn checks_and_zabbix_items_follow_the_director() {
    if !is_root() {
        return skip("needs root for network namespaces");
    }
    if !installed("zabbix_agentd") {
        return skip("zabbix_agentd is not installed (scripts/deps.sh)");
    }
    let lab = LvsLab::new("mon");
    let mut a = Backend::start(&lab.rs_a.ns, 3306, "A");
    let mut b = Backend::start(&lab.rs_b.ns, 3306, "B");
    let config = lab.write("keepalived.conf", CONFIG);
    let mut halb = Daemon::halb_with(
        &lab.director.ns,
        &config,
        lab.dir.path().join("halb.log"),
        &["--dataplane", "proxy"],
    );
    let socket = lab.dir.path().join("halb.sock");
    let socket = socket.to_str().expect("UTF-8");
    let d = &lab.director.ns;
    let c = &lab.client.ns;
    let url = "http://127.0.0.1:9165";

    // Healthy: every check OK.
    becomes(d, &["daemon", "--control-socket", socket], 0);
    becomes(
        d,
        &["vrrp", "--control-socket", socket, "--expect", "MASTER"],
        0,
    );
    becomes(d, &["realservers", "--url", url], 0);
    let ok = becomes(c, &["service", "--vip", VIP, "--port", "3306"], 0);
    assert!(ok.contains("| time="), "{ok}");
    // WARNING: the other role than expected; an answer slower than the warning time.
    assert_eq!(
        monitor(d, &["vrrp", "--url", url, "--expect", "BACKUP"]).0,
        1
    );
    assert_eq!(
        monitor(
            c,
            &["service", "--vip", VIP, "--port", "3306", "-w", "0.000001"]
        )
        .0,
        1
    );
    assert_eq!(
        monitor(
            c,
            &["service", "--vip", VIP, "--port", "3306", "-c", "0.000001"]
        )
        .0,
        2
    );
    // Zabbix, all healthy.
    let dir = lab.dir.path();
    assert_eq!(zabbix(d, dir, "halb.daemon"), "0");
    assert!(zabbix(d, dir, "halb.daemon.line").starts_with("OK - "));
    assert_eq!(zabbix(d, dir, "halb.vrrp[MASTER]"), "0");
    assert_eq!(zabbix(d, dir, "halb.vrrp[BACKUP]"), "1");
    assert_eq!(zabbix(d, dir, "halb.realservers"), "0");
    assert_eq!(zabbix(d, dir, "halb.realserver[192.168.66.254:3306]"), "0");
    assert_eq!(zabbix(d, dir, "halb.service[192.168.66.251,3306]"), "0");
    let time: f64 = zabbix(d, dir, "halb.service.time[192.168.66.251,3306]")
        .parse()
        .expect("a time in seconds");
    assert!(time >= 0.0);

    // One real server of two down: WARNING; the failed server's own item says 2.
    b.stop();
    let warn = becomes(d, &["realservers", "--url", url], 1);
    assert!(warn.contains("192.168.66.254:3306"), "{warn}");
    assert_eq!(
        monitor(
            d,
            &[
                "realservers",
                "--url",
                url,
                "--real-server",
                "192.168.66.254:3306"
            ]
        )
        .0,
        2
    );
    assert_eq!(zabbix(d, dir, "halb.realservers"), "1");
    assert_eq!(zabbix(d, dir, "halb.realserver[192.168.66.254:3306]"), "2");
    assert_eq!(zabbix(d, dir, "halb.realserver[192.168.66.253:3306]"), "0");
    assert!(zabbix(d, dir, "halb.realservers.line").starts_with("WARNING - "));
    // Both down: CRITICAL.
    a.stop();
    becomes(d, &["realservers", "--url", url], 2);
    assert_eq!(zabbix(d, dir, "halb.realservers"), "2");

    // The interface down: the instance goes to FAULT, CRITICAL.
    d.ip(&["link", "set", "eth0", "down"]);
    becomes(
        d,
        &["vrrp", "--control-socket", socket, "--expect", "MASTER"],
        2,
    );
    assert_eq!(zabbix(d, dir, "halb.vrrp[MASTER]"), "2");
    d.ip(&["link", "set", "eth0", "up"]);

    // The daemon stopped: CRITICAL for the daemon and for the service through the VIP.
    halb.terminate(Duration::from_secs(10));
    assert_eq!(monitor(d, &["daemon", "--control-socket", socket]).0, 2);
    assert_eq!(zabbix(d, dir, "halb.daemon"), "2");
    assert_eq!(
        monitor(
            c,
            &["--timeout", "2", "service", "--vip", VIP, "--port", "3306"]
        )
        .0,
        2
    );
    assert_eq!(zabbix(d, dir, "halb.service[192.168.66.251,3306]"), "2");
}

/// A director of the two-director test: the seed's VRRP part, and the VIP's port 3307 proxied
/// to the MariaDB on the client host (port 3306 of the directors is their banner's).
fn director_config(state: &str, priority: u8) -> String {
    format!(
        "{}
virtual_server 192.168.66.251 3307 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 192.168.66.100 3306 {{
        weight 1
        TCP_CHECK {{
            connect_timeout 1
            retry 0
        }}
    }}
}}
",
        seed_vrrp(state, priority)
    )
}

#[test]
fn mysql_login_through_the_vip_one_master_of_two_and_a_refused_reload() {
    if !is_root() {
        return skip("needs root for network namespaces");
    }
    if !installed("mariadbd") && !installed("mysqld") {
        return skip("mariadb-server is not installed (scripts/deps.sh)");
    }
    let lab = Lab::new("mon2");
    let mut db = MariaDb::start(
        MariaDbOptions::new()
            .netns(lab.client.ns.name())
            .bind_address("0.0.0.0".parse().expect("an address")),
    )
    .expect("start MariaDB (run scripts/deps.sh as root)");
    db.sql("CREATE USER mon@'%' IDENTIFIED BY 'pw';")
        .expect("the monitoring user");
    let conf_a = lab.write("a.conf", &director_config("MASTER", 150));
    let conf_b = lab.write("b.conf", &director_config("BACKUP", 100));
    // Each endpoint on its director's own address, where the monitoring host reaches it.
    let (url_a, url_b) = ("http://192.168.66.11:9165", "http://192.168.66.12:9165");
    let daemon = |ns: &Netns, conf: &Path, name: &str, listen: &str| {
        Daemon::halb_with(
            ns,
            conf,
            lab.dir.path().join(format!("{name}.log")),
            &["--dataplane", "proxy", "--http-listen", listen],
        )
    };
    let mut a = daemon(&lab.a.ns, &conf_a, "a", "192.168.66.11:9165");
    let mut b = daemon(&lab.b.ns, &conf_b, "b", "192.168.66.12:9165");
    let socket_a = lab.dir.path().join("a.sock");
    let socket_a = socket_a.to_str().expect("UTF-8");
    let c = &lab.client.ns;
    let peers = ["vrrp", "--peer", url_a, "--peer", url_b];

    // Exactly one MASTER: OK, and the line names it.
    let ok = becomes(c, &peers, 0);
    assert!(
        ok.contains("INT MASTER on http://192.168.66.11:9165"),
        "{ok}"
    );
    assert!(ok.contains("INT_masters=1"), "{ok}");

    // A MySQL login through the VIP: OK with its time; WARNING and CRITICAL on the time; a
    // refused login is CRITICAL.
    let login = [
        "service",
        "--vip",
        VIP,
        "--port",
        "3307",
        "--mysql-user",
        "mon",
    ];
    let with = |extra: &[&'static str]| -> Vec<&str> {
        login.iter().copied().chain(extra.iter().copied()).collect()
    };
    let ok = becomes(c, &with(&["--mysql-password", "pw"]), 0);
    assert!(
        ok.contains("MySQL login as mon") && ok.contains("| time="),
        "{ok}"
    );
    assert_eq!(
        monitor(c, &with(&["--mysql-password", "pw", "-w", "0.000001"])).0,
        1
    );
    assert_eq!(
        monitor(c, &with(&["--mysql-password", "pw", "-c", "0.000001"])).0,
        2
    );
    let refused = monitor(c, &with(&["--mysql-password", "wrong"]));
    assert_eq!(refused.0, 2, "{}", refused.1);

    // The daemon's WARNING: a reload of a broken file is refused, the previous configuration
    // runs; the line carries the file's first diagnostic. A good file again: OK.
    let daemon_check = ["daemon", "--control-socket", socket_a];
    becomes(&lab.a.ns, &daemon_check, 0);
    let good = std::fs::read_to_string(&conf_a).expect("a.conf");
    std::fs::write(
        &conf_a,
        format!("{good}\nvirtual_server 192.168.66.251 {{\n"),
    )
    .expect("break a.conf");
    let reload = |ns: &Netns| {
        let out = ns
            .command(env!("CARGO_BIN_EXE_halb"))
            .args(["reload", "--control-socket", socket_a])
            .output()
            .expect("run halb reload");
        eprintln!(
            "halb reload -> {:?}: {}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out.status.code()
    };
    assert_eq!(reload(&lab.a.ns), Some(4), "a broken file is refused");
    let warn = monitor(&lab.a.ns, &daemon_check);
    assert_eq!(warn.0, 1, "{}", warn.1);
    assert!(
        warn.1.contains("a.conf:"),
        "the diagnostic's place: {}",
        warn.1
    );
    std::fs::write(&conf_a, &good).expect("restore a.conf");
    assert_eq!(reload(&lab.a.ns), Some(0));
    let ok = monitor(&lab.a.ns, &daemon_check);
    assert_eq!(ok.0, 0, "{}", ok.1);
    assert!(ok.1.contains("last reload applied"), "{}", ok.1);

    // The MariaDB stopped: the login through the VIP is CRITICAL.
    db.stop().expect("stop MariaDB");
    let down = monitor(
        c,
        &[&["--timeout", "2"][..], &with(&["--mysql-password", "pw"])].concat(),
    );
    assert_eq!(down.0, 2, "{}", down.1);

    // B stopped: A still the one MASTER, B does not answer: WARNING.
    b.terminate(Duration::from_secs(10));
    let warn = monitor(c, &[&["--timeout", "2"][..], &peers[..]].concat());
    assert_eq!(warn.0, 1, "{}", warn.1);
    assert!(
        warn.1.contains("192.168.66.12:9165 does not answer"),
        "{}",
        warn.1
    );

    // B back with another password: it drops A's adverts as failing authentication and
    // becomes MASTER as well, a split brain: CRITICAL, naming both.
    let other = director_config("BACKUP", 100).replace("auth_pass lvs50test", "auth_pass other");
    std::fs::write(&conf_b, other).expect("b.conf with another password");
    let b2 = daemon(&lab.b.ns, &conf_b, "b2", "192.168.66.12:9165");
    let split = becomes(c, &peers, 2);
    assert!(split.contains("split brain"), "{split}");

    // No director answers: CRITICAL.
    drop(b2);
    a.terminate(Duration::from_secs(10));
    let none = monitor(c, &[&["--timeout", "2"][..], &peers[..]].concat());
    assert_eq!(none.0, 2, "{}", none.1);
    assert!(none.1.contains("no director answers"), "{}", none.1);
}
