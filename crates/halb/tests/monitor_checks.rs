//! `halb monitor` and the Zabbix agent's UserParameters (contrib/zabbix) against a running
//! director: the seed's segment in namespaces (support::lvs_lab), halb on the director with one
//! VRRP instance holding the VIP and one virtual server with two real servers. Each check is
//! shown OK, WARNING and CRITICAL in the situation it names, and the real `zabbix_agentd -t`
//! gives the value of each UserParameter for a healthy and a failed real server. Needs root.

mod support;

use std::path::Path;
use std::time::Duration;

use halb_test_support::{installed, is_root, skip, Netns};
use support::lvs_lab::{Backend, LvsLab, VIP};
use support::vrrp_lab::{wait_for, Daemon};

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
