//! halb's HTTP endpoint seen by its real consumers: a Prometheus 2.42 scraping it every second
//! and a headless Chromium showing the dashboard, on a two-director segment (halb + halb) in
//! network namespaces with two real servers on a third host.
//!
//! Director A (priority 150) is MASTER, B (100) BACKUP; both serve the virtual server
//! 192.168.66.251:8080 on the userspace proxy, with real servers 192.168.66.100:8081 and :8082
//! (TCP_CHECK every second). Prometheus, chromedriver and Chromium run in B's namespace and
//! reach B's endpoint on its loopback. The test stops the real server :8081, then stops A:
//! - Prometheus's API returns `halb_vrrp_state` and `halb_real_server_up` for :8081 going from
//!   1 to 0; `promtool check metrics` finds nothing to say about a scrape;
//! - the dashboard, never reloaded, shows :8081's row as down within 2 s of the daemon's own
//!   event, and B's "Entering MASTER STATE" on its timeline.
//!
//! Screenshots go to `target/tmp/http-dashboard/`. Needs root, prometheus, promtool,
//! chromium and chromedriver (scripts/deps.sh installs them).

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use halb_test_support::{installed, is_root, skip, ChildGuard};
use serde_json::Value;
use support::vrrp_lab::{seed_vrrp, wait_for, Banner, Daemon, Lab};
use support::web::{get, get_json, Browser};

const HTTP_PORT: u16 = 9165;
const PROMETHEUS_PORT: u16 = 9090;
const DRIVER_PORT: u16 = 9515;
const STOPPED: &str = "192.168.66.100:8081";

fn config(state: &str, priority: u8) -> String {
    format!(
        "{}
virtual_server 192.168.66.251 8080 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 192.168.66.100 8081 {{
        weight 1
        TCP_CHECK {{
            connect_timeout 1
            retry 0
        }}
    }}
    real_server 192.168.66.100 8082 {{
        weight 2
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

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("http-dashboard");
    std::fs::create_dir_all(&dir).expect("a directory for the screenshots");
    dir
}

/// An instant query's result vector.
fn query(lab: &Lab, promql: &str) -> Vec<Value> {
    let q: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    get_json(
        &lab.b.ns,
        PROMETHEUS_PORT,
        &format!("/api/v1/query?query={q}"),
    )
    .and_then(|v| v["data"]["result"].as_array().cloned())
    .unwrap_or_default()
}

/// The value of a query's single sample, when there is one.
fn scalar(lab: &Lab, promql: &str) -> Option<String> {
    query(lab, promql)
        .first()
        .and_then(|s| s["value"][1].as_str().map(str::to_string))
}

#[test]
fn prometheus_and_a_browser_follow_a_real_server_stop_and_a_failover() {
    if !is_root() {
        return skip("needs root for network namespaces");
    }
    for program in ["prometheus", "promtool", "chromium", "chromedriver"] {
        if !installed(program) {
            return skip(format!(
                "{program} is not installed (scripts/deps.sh installs it)"
            ));
        }
    }
    let lab = Lab::new("obs");
    let mut rs_stopped = Some(Banner::start_on(&lab.client.ns, 8081));
    let _rs_kept = Banner::start_on(&lab.client.ns, 8082);
    let listen = format!("127.0.0.1:{HTTP_PORT}");
    let args = ["--dataplane", "proxy", "--http-listen", &listen];
    let conf_a = lab.write("a.conf", &config("MASTER", 150));
    let conf_b = lab.write("b.conf", &config("BACKUP", 100));
    let mut a = Daemon::halb_with(&lab.a.ns, &conf_a, lab.dir.path().join("a.log"), &args);
    let b = Daemon::halb_with(&lab.b.ns, &conf_b, lab.dir.path().join("b.log"), &args);
    let (a_log, b_log) = (a.log.clone(), b.log.clone());
    let logs = || {
        let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        format!("A:\n{}\nB:\n{}", read(&a_log), read(&b_log))
    };

    // B's endpoint answers, B is BACKUP and both real servers are up.
    let b_ready = wait_for(Duration::from_secs(15), || {
        get_json(&lab.b.ns, HTTP_PORT, "/api/v1/status?connections=false").is_some_and(|s| {
            s["vrrp"][0]["state"] == "BACKUP"
                && s["virtual_servers"][0]["real_servers"]
                    .as_array()
                    .is_some_and(|r| r.iter().all(|r| r["alive"] == true))
        })
    });
    assert!(
        b_ready.is_some(),
        "B never reported BACKUP with both real servers up\n{}",
        logs()
    );

    // promtool has nothing to say about a scrape.
    let metrics = get(&lab.b.ns, HTTP_PORT, "/metrics").expect("/metrics answers");
    let promtool = lab.b.ns.run_in({
        let metrics = metrics.clone();
        move || {
            use std::io::Write;
            let mut child = std::process::Command::new("promtool")
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start promtool");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(metrics.as_bytes())
                .expect("feed promtool");
            child.wait_with_output().expect("promtool's output")
        }
    });
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&promtool.stdout),
        String::from_utf8_lossy(&promtool.stderr)
    );
    assert!(
        promtool.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\n{metrics}"
    );

    // A Prometheus in B's namespace scrapes B every second.
    let prom_dir = lab.dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).expect("prometheus directory");
    let prom_conf = prom_dir.join("prometheus.yml");
    std::fs::write(
        &prom_conf,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
             - job_name: halb\n    static_configs:\n      - targets: ['{listen}']\n"
        ),
    )
    .expect("write prometheus.yml");
    let prom_log = std::fs::File::create(prom_dir.join("prometheus.log")).expect("log");
    let _prometheus = ChildGuard::spawn(
        lab.b
            .ns
            .command("prometheus")
            .arg(format!("--config.file={}", prom_conf.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom_dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"))
            .stdin(Stdio::null())
            .stdout(prom_log.try_clone().expect("log"))
            .stderr(prom_log),
    )
    .expect("start prometheus");
    let prom_logs = || std::fs::read_to_string(prom_dir.join("prometheus.log")).unwrap_or_default();
    let up_query =
        "halb_real_server_up{remote_address=\"192.168.66.100\",remote_port=\"8081\"}".to_string();
    let scraped = wait_for(Duration::from_secs(30), || {
        scalar(&lab, &up_query).as_deref() == Some("1")
            && scalar(&lab, "halb_vrrp_state{vrrp_instance=\"INT\"}").as_deref() == Some("1")
    });
    assert!(
        scraped.is_some(),
        "Prometheus never had the real server up and B BACKUP: {:?} {:?} targets {:?}\n{}",
        query(&lab, &up_query),
        query(&lab, "halb_vrrp_state"),
        get(&lab.b.ns, PROMETHEUS_PORT, "/api/v1/targets"),
        prom_logs()
    );

    // The dashboard, loaded once.
    let shots = screenshots();
    let browser = Browser::start(
        &lab.b.ns,
        DRIVER_PORT,
        &lab.dir.path().join("chromium-profile"),
        &lab.dir.path().join("chromedriver.log"),
    );
    browser.goto(&format!("http://{listen}/"));
    let row_health = format!(
        "const r = document.querySelector('[data-rs=\"{STOPPED}\"]'); return r ? r.dataset.health : null;"
    );
    let loaded = wait_for(Duration::from_secs(10), || {
        browser.eval(&row_health) == "up"
            && browser.eval("return document.getElementById('link').textContent") == "live"
    });
    assert!(
        loaded.is_some(),
        "the dashboard never showed {STOPPED} up and live"
    );
    // Gone if the page reloads.
    browser.eval("window.halbLoadedOnce = true; return null;");
    browser.screenshot(&shots.join("1-both-up.png"));

    // The real server stops: the row turns down without a reload.
    let stopped_at = Instant::now();
    drop(rs_stopped.take());
    let mut page_down = None;
    while stopped_at.elapsed() < Duration::from_secs(10) {
        if browser.eval(&row_health) == "down" {
            page_down = Some(std::time::SystemTime::now());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let page_down = page_down.unwrap_or_else(|| {
        browser.screenshot(&shots.join("failed-no-update.png"));
        panic!("the dashboard never showed {STOPPED} down\n{}", logs())
    });
    let seen_after_stop = stopped_at.elapsed();
    browser.screenshot(&shots.join("2-real-server-down.png"));
    assert_eq!(
        browser.eval("return window.halbLoadedOnce === true"),
        true,
        "the page was reloaded"
    );
    // When the daemon itself took the server out: the page must follow within 2 s.
    let events = get_json(&lab.b.ns, HTTP_PORT, "/api/v1/events?since=0").expect("events");
    let down_event = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .rev()
        .find(|e| e["data"]["RealServerDown"]["server"]["addr"] == STOPPED)
        .unwrap_or_else(|| panic!("no RealServerDown event for {STOPPED}: {events}"));
    let event_at =
        std::time::UNIX_EPOCH + Duration::from_millis(down_event["at_ms"].as_u64().expect("at_ms"));
    let lag = page_down.duration_since(event_at).unwrap_or_default();
    eprintln!(
        "dashboard: {STOPPED} shown down {seen_after_stop:?} after it stopped, {lag:?} after \
         the daemon's event"
    );
    assert!(
        lag <= Duration::from_secs(2),
        "the dashboard showed the server down {lag:?} after the daemon's event"
    );

    // Prometheus saw 1 then 0.
    let went_down = wait_for(Duration::from_secs(15), || {
        scalar(&lab, &up_query).as_deref() == Some("0")
    });
    assert!(
        went_down.is_some(),
        "Prometheus never had {STOPPED} down\n{}",
        prom_logs()
    );
    let history = query(&lab, &format!("{up_query}[2m]"));
    let values: Vec<String> = history
        .first()
        .and_then(|s| s["values"].as_array())
        .map(|v| {
            v.iter()
                .filter_map(|p| p[1].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let first_zero = values.iter().position(|v| v == "0");
    assert!(
        first_zero.is_some_and(|z| values[..z].iter().any(|v| v == "1")),
        "Prometheus's samples of {STOPPED}'s up are not 1 then 0: {values:?}"
    );
    eprintln!("prometheus: halb_real_server_up for {STOPPED} over the test: {values:?}");

    // Failover: A stops, B takes over, and the timeline says so.
    a.terminate(Duration::from_secs(10));
    let master_shown = wait_for(Duration::from_secs(10), || {
        browser.eval(
            "return [...document.querySelectorAll('#timeline li.vrrp')]\
             .some(li => li.textContent.includes('Entering MASTER STATE'))",
        ) == true
            && browser.eval(
                "const r = document.querySelector('#vrrp tr[data-instance=\"INT\"]'); \
                 return r ? r.dataset.state : null;",
            ) == "MASTER"
    });
    browser.screenshot(&shots.join("3-failover.png"));
    assert!(
        master_shown.is_some(),
        "the dashboard never showed B's failover to MASTER\n{}",
        logs()
    );
    let writes = browser.eval("return document.getElementById('writes').textContent");
    assert!(
        writes
            .as_str()
            .is_some_and(|w| w.contains("192.168.66.100:8082")),
        "after the failover B should say which server takes writes: {writes}"
    );
    let master_in_prometheus = wait_for(Duration::from_secs(15), || {
        scalar(&lab, "halb_vrrp_state{vrrp_instance=\"INT\"}").as_deref() == Some("2")
    });
    assert!(
        master_in_prometheus.is_some(),
        "Prometheus never had B's INT as MASTER (2)\n{}",
        prom_logs()
    );
    assert_eq!(
        browser.eval("return window.halbLoadedOnce === true"),
        true,
        "the page was reloaded"
    );
    eprintln!("screenshots in {}", shots.display());
}
