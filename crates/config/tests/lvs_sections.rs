//! The LVS sections: the seed configuration, keepalived's samples, round trips, keepalived's
//! validations, and verdicts compared with `keepalived -t` on the fixtures in `fixtures/lvs/`.

use halb_config::diagnostic::{Diagnostic, Severity};
use halb_config::model::*;
use halb_config::{load, load_str, LoadOptions, Loaded};
use halb_test_support::{installed, seed_path, skip};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn opts() -> LoadOptions {
    LoadOptions {
        config_id: "lvs-test".into(),
        interfaces: None,
        max_lines: 100_000,
        script_search_path: None,
    }
}

fn read(text: &str) -> Loaded {
    load_str("test.conf", text, &opts())
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lvs")
}

fn fixture_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("fixtures directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    files
}

const SAMPLES: &str = "/usr/share/doc/keepalived/samples";

/// keepalived's sample files that have virtual servers (none, and the test says it skipped them,
/// when keepalived is not installed).
fn samples_with_virtual_servers() -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(SAMPLES) else {
        skip(format!("{SAMPLES} not found (keepalived is not installed)"));
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = dir
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("keepalived.conf"))
                && std::fs::read_to_string(p).is_ok_and(|t| t.contains("virtual_server"))
        })
        .collect();
    files.sort();
    files
}

/// The (first, last) lines of each top-level `virtual_server` / `virtual_server_group` block.
fn lvs_line_ranges(text: &str) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split(['#', '!']).next().unwrap_or("");
        let n = i as u32 + 1;
        if depth == 0 && line.trim_start().starts_with("virtual_server") {
            start = Some(n);
        }
        depth += line.matches('{').count() as i32 - line.matches('}').count() as i32;
        if depth == 0 {
            if let Some(s) = start.take() {
                out.push((s, n));
            }
        }
    }
    out
}

fn in_ranges(d: &Diagnostic, ranges: &[(u32, u32)]) -> bool {
    d.span
        .is_some_and(|s| ranges.iter().any(|(a, b)| (*a..=*b).contains(&s.line)))
}

fn line_of(d: &Diagnostic) -> u32 {
    d.span.map_or(0, |s| s.line)
}

/// `(line, message)` of every warning or error.
fn problems(l: &Loaded) -> Vec<(u32, String)> {
    l.diagnostics
        .iter()
        .filter(|d| d.severity >= Severity::Warning)
        .map(|d| (line_of(d), d.message.clone()))
        .collect()
}

/// Asserts a warning containing `text` on `line`.
#[track_caller]
fn assert_warns(l: &Loaded, line: u32, text: &str) {
    let ps = problems(l);
    assert!(
        ps.iter().any(|(n, m)| *n == line && m.contains(text)),
        "no warning with {text:?} on line {line}; got {ps:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The seed configuration.

#[test]
fn seed_master_lvs_part() {
    let seed = seed_path("keepalived-master.conf");
    let l = load(&seed, &opts());
    let lvs = &l.config.lvs;
    assert!(lvs.groups.is_empty());
    assert_eq!(lvs.virtual_servers.len(), 2);
    for (vs, port) in lvs.virtual_servers.iter().zip([3306u16, 3308]) {
        assert_eq!(
            vs.key,
            VirtualServerKey::Addr {
                ip: "192.168.66.251".parse().expect("ip"),
                port
            }
        );
        assert_eq!(vs.delay_loop_us, 20_000_000);
        assert_eq!(vs.sched, Scheduler::Wrr);
        assert_eq!(vs.forwarding, Forwarding::Dr);
        assert_eq!(vs.persistence_timeout, Some(120));
        assert_eq!(vs.protocol, Some(Protocol::Tcp));
        let sorry = vs.sorry_server.as_ref().expect("sorry server");
        assert_eq!(sorry.ip.to_string(), "192.168.66.254");
        assert_eq!(sorry.port, port);
        assert_eq!(vs.real_servers.len(), 1);
        let rs = &vs.real_servers[0];
        assert_eq!(rs.ip.to_string(), "192.168.66.253");
        assert_eq!(rs.port, port);
        assert_eq!(rs.weight, 1);
        assert_eq!(*rs.forwarding(vs), Forwarding::Dr);
        assert_eq!(rs.checkers.len(), 1);
        let Checker::Tcp(tcp) = &rs.checkers[0] else {
            panic!("expected TCP_CHECK, got {:?}", rs.checkers[0]);
        };
        assert_eq!(tcp.common.connect_timeout_us, Some(5_000_000));
        assert_eq!(tcp.common.connect_port, Some(port));
        assert_eq!(tcp.common.retry, Some(3));
        assert_eq!(tcp.common.delay_before_retry_us, Some(3_000_000));
        let t = rs
            .effective_checker_timing(vs, &rs.checkers[0])
            .expect("timed checker");
        assert_eq!(
            t,
            CheckerTiming {
                connect_timeout_us: Some(5_000_000),
                retry: 3,
                delay_before_retry_us: 3_000_000,
                delay_loop_us: 20_000_000,
                warmup_us: 20_000_000,
            }
        );
    }
    // The only findings in the LVS part: nb_get_retry, as keepalived (lines 37 and 55).
    let text = std::fs::read_to_string(&seed).expect("seed");
    let ranges = lvs_line_ranges(&text);
    let lvs_findings: Vec<_> = l
        .diagnostics
        .iter()
        .filter(|d| in_ranges(d, &ranges))
        .collect();
    assert_eq!(lvs_findings.len(), 2, "{lvs_findings:#?}");
    for (d, line) in lvs_findings.iter().zip([37, 55]) {
        assert_eq!(d.severity, Severity::Warning);
        assert_eq!(line_of(d), line);
        assert!(
            d.message
                .contains("nb_get_retry is keepalived 1.x's spelling of retry; read as retry 3"),
            "{}",
            d.message
        );
    }
    let summary = l.config.summary().virtual_servers;
    assert_eq!(summary[0].key, "192.168.66.251:3306");
    assert_eq!(summary[1].key, "192.168.66.251:3308");
    assert_eq!(
        summary[0].sorry_server.as_deref(),
        Some("192.168.66.254:3306")
    );
    assert_eq!(summary[1].real_servers[0].addr, "192.168.66.253:3308");
    assert_eq!(summary[1].real_servers[0].forwarding, "DR");
    let c = &summary[1].real_servers[0].checkers[0];
    assert_eq!(
        (
            c.kind.as_str(),
            c.connect_timeout_us,
            c.retry,
            c.delay_before_retry_us,
            c.delay_loop_us
        ),
        ("TCP_CHECK", Some(5_000_000), 3, 3_000_000, 20_000_000)
    );
}

// ---------------------------------------------------------------------------------------------
// keepalived's samples.

#[test]
fn samples_have_no_unknown_lvs_keywords() {
    for path in samples_with_virtual_servers() {
        let text = std::fs::read_to_string(&path).expect("sample");
        let ranges = lvs_line_ranges(&text);
        let l = load(&path, &opts());
        let findings: Vec<_> = l
            .diagnostics
            .iter()
            .filter(|d| in_ranges(d, &ranges))
            .map(|d| (line_of(d), d.message.clone()))
            .collect();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        match name.as_deref() {
            // keepalived says the same: "protocol specified for fwmark - protocol will be ignored".
            Some("keepalived.conf.fwmark") => {
                assert_eq!(findings.len(), 1, "{path:?}: {findings:#?}");
                assert!(findings[0].1.contains("protocol specified for fwmark"));
            }
            // The samples' SMTP_CHECK uses the deprecated `host` blocks: a note, as keepalived
            // only logs it.
            Some("keepalived.conf.SMTP_CHECK") => {
                assert!(
                    l.diagnostics
                        .iter()
                        .filter(|d| in_ranges(d, &ranges))
                        .all(|d| d.severity == Severity::Note),
                    "{path:?}: {findings:#?}"
                );
            }
            _ => assert!(findings.is_empty(), "{path:?}: {findings:#?}"),
        }
        assert!(
            !l.config.lvs.virtual_servers.is_empty(),
            "{path:?}: no virtual server read"
        );
    }
}

#[test]
fn samples_round_trip() {
    for path in samples_with_virtual_servers() {
        round_trip(&path);
    }
}

#[test]
fn fixtures_round_trip() {
    for path in fixture_files() {
        round_trip(&path);
    }
}

/// `load → to_keepalived_conf → load_str` gives the same LVS model, and the LVS part of the
/// output reads without findings except where a group is used before it is defined.
fn round_trip(path: &Path) {
    let first = load(path, &opts());
    let text = first.config.to_keepalived_conf();
    let second = read(&text);
    assert_eq!(
        first.config.lvs, second.config.lvs,
        "{path:?} round trip differs; written:\n{text}"
    );
    let ranges = lvs_line_ranges(&text);
    let findings: Vec<_> = second
        .diagnostics
        .iter()
        .filter(|d| in_ranges(d, &ranges) && d.severity >= Severity::Warning)
        .map(|d| (line_of(d), d.message.clone()))
        .collect();
    assert!(
        findings.is_empty(),
        "{path:?}: written text has findings {findings:#?}\n{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Verdicts compared with `keepalived -t`.

struct KeepalivedVerdict {
    clean: bool,
    lines: Vec<u32>,
    stderr: String,
}

/// Runs `keepalived -t -f FILE`; `None` when keepalived is not installed.
fn keepalived_check(path: &Path) -> Option<KeepalivedVerdict> {
    let out = Command::new("keepalived")
        .arg("-t")
        .arg("-f")
        .arg(path)
        .output()
        .ok()?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut lines: Vec<u32> = stderr
        .lines()
        .filter_map(|l| {
            let rest = l.split_once(": Line ")?.1;
            rest.split_once(')')?.0.parse().ok()
        })
        .collect();
    lines.dedup();
    Some(KeepalivedVerdict {
        clean: out.status.success(),
        lines,
        stderr,
    })
}

/// Fixture lines `# MARKER: ...` that document a known difference.
fn has_marker(text: &str, marker: &str) -> bool {
    text.lines()
        .any(|l| l.trim_start().starts_with(&format!("# {marker}:")))
}

#[test]
fn fixtures_match_keepalived_verdicts() {
    if !installed("keepalived") {
        return skip("keepalived is not installed: verdicts not compared");
    }
    let mut failures = Vec::new();
    for path in fixture_files() {
        let text = std::fs::read_to_string(&path).expect("fixture");
        let Some(k) = keepalived_check(&path) else {
            continue;
        };
        let l = load(&path, &opts());
        let halb_clean = l.diagnostics.is_clean();
        let name = path.display();
        eprintln!(
            "{name}: keepalived clean={} lines={:?}; halb clean={halb_clean}",
            k.clean, k.lines
        );
        if !has_marker(&text, "verdict-differs") && halb_clean != k.clean {
            failures.push(format!(
                "{name}: keepalived clean={} halb clean={halb_clean}\nkeepalived:\n{}halb: {:#?}",
                k.clean,
                k.stderr,
                problems(&l)
            ));
        }
        if has_marker(&text, "verdict-differs") && halb_clean == k.clean {
            failures.push(format!(
                "{name}: marked verdict-differs, but the verdicts agree"
            ));
        }
        let halb_lines: Vec<u32> = problems(&l).iter().map(|(n, _)| *n).collect();
        for line in &k.lines {
            let excused = text.lines().any(|t| {
                t.trim_start()
                    .starts_with(&format!("# line-differs: {line} "))
            });
            if !excused && !halb_lines.contains(line) {
                failures.push(format!(
                    "{name}: keepalived reports line {line}, halb does not\nkeepalived:\n{}halb: \
                     {:#?}",
                    k.stderr,
                    problems(&l)
                ));
            }
        }
        // What halb writes back is clean for keepalived too.
        let written = l.config.to_keepalived_conf();
        let mut out = tempfile::Builder::new()
            .prefix("halb-lvs-")
            .tempfile()
            .expect("temp file");
        out.write_all(written.as_bytes()).expect("temp file");
        if let Some(k2) = keepalived_check(out.path()) {
            if !k2.clean && !has_marker(&text, "rewrite-differs") {
                failures.push(format!(
                    "{name}: keepalived does not take halb's rewrite cleanly:\n{}\n{written}",
                    k2.stderr
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---------------------------------------------------------------------------------------------
// keepalived's validations, with the lines they are reported on.

const HEAD: &str = "    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n";

#[test]
fn virtual_server_without_real_servers_is_ignored() {
    let l = read(&format!(
        "virtual_server 10.0.0.1 80 {{\n{HEAD}    sorry_server 10.0.0.9 80\n}}\n"
    ));
    assert_warns(&l, 1, "has no real servers - ignoring");
    assert!(l.config.lvs.virtual_servers.is_empty());
}

#[test]
fn bad_addresses_and_ports() {
    let l = read(&format!(
        "virtual_server 10.0.0.256 80 {{\n{HEAD}}}\n\
         virtual_server 10.0.0.1 99999 {{\n{HEAD}}}\n\
         virtual_server 10.0.0.1 80 {{\n{HEAD}\
         \x20   sorry_server nowhere 80\n\
         \x20   real_server 10.0.0.2 0x50 {{\n    }}\n\
         \x20   real_server 10.0.0.3 80 {{\n    }}\n}}\n"
    ));
    assert_warns(
        &l,
        1,
        "Invalid virtual server IP address/port 10.0.0.256/80 - skipping",
    );
    assert_warns(
        &l,
        6,
        "Invalid virtual server IP address/port 10.0.0.1/99999 - skipping",
    );
    assert_warns(&l, 15, "Invalid sorry server IP address nowhere - skipping");
    assert_warns(
        &l,
        16,
        "Invalid real server ip address/port 10.0.0.2/0x50 - skipping",
    );
    let vss = &l.config.lvs.virtual_servers;
    assert_eq!(vss.len(), 1);
    assert_eq!(vss[0].real_servers.len(), 1);
    assert!(vss[0].sorry_server.is_none());
}

#[test]
fn unknown_scheduler_keeps_the_default() {
    let l = read(
        "virtual_server 10.0.0.1 80 {\n    lb_algo fastest\n    lb_kind NAT\n    protocol TCP\n    \
         real_server 10.0.0.2 80 {\n    }\n}\n",
    );
    assert_warns(&l, 2, "Invalid lvs_scheduler 'fastest' - ignoring");
    assert_warns(&l, 1, "no scheduler set, setting default 'wlc'");
    assert_eq!(l.config.lvs.virtual_servers[0].sched, Scheduler::Wlc);
}

#[test]
fn all_schedulers_are_known() {
    for s in Scheduler::ALL {
        let l = read(&format!(
            "virtual_server 10.0.0.1 80 {{\n    lb_algo {}\n    lb_kind NAT\n    protocol TCP\n    \
             real_server 10.0.0.2 80 {{\n    }}\n}}\n",
            s.as_str()
        ));
        assert!(l.diagnostics.is_empty(), "{s:?}: {:?}", problems(&l));
        assert_eq!(l.config.lvs.virtual_servers[0].sched, s);
    }
}

#[test]
fn group_naming_an_unknown_group() {
    let l = read(&format!(
        "virtual_server_group G1 {{\n    10.0.0.1 80\n}}\n\
         virtual_server group G2 {{\n{HEAD}    real_server 10.0.0.2 80 {{\n    }}\n}}\n"
    ));
    let note = l
        .diagnostics
        .iter()
        .find(|d| {
            d.message
                .contains("virtual_server_group 'G2' is not defined above this line")
        })
        .expect("a note");
    assert_eq!((note.severity, line_of(note)), (Severity::Note, 4));
    assert!(l.diagnostics.is_clean(), "keepalived -t takes it too");
    let l = read(&format!(
        "virtual_server_group G1 {{\n    10.0.0.1 80\n}}\n\
         virtual_server group G1 {{\n{HEAD}    real_server 10.0.0.2 80 {{\n    }}\n}}\n"
    ));
    assert!(l.diagnostics.is_empty(), "{:?}", problems(&l));
    assert_eq!(
        l.config.lvs.virtual_servers[0].ip_family,
        Some(IpFamily::Inet)
    );
}

#[test]
fn group_defined_after_its_virtual_server() {
    let l = load(&fixtures().join("group_forward.conf"), &opts());
    let vs = &l.config.lvs.virtual_servers[0];
    assert_eq!(vs.ip_family, Some(IpFamily::Inet));
    assert!(l.diagnostics.is_clean(), "{:?}", problems(&l));
    let l = load(&fixtures().join("group_forward_fwmark.conf"), &opts());
    assert_warns(
        &l,
        10,
        "protocol specified for fwmark - protocol will be ignored",
    );
    assert_eq!(l.config.lvs.virtual_servers[0].protocol, None);
}

#[test]
fn duplicate_real_servers() {
    let l = read(&format!(
        "virtual_server 10.0.0.1 80 {{\n{HEAD}\
         \x20   real_server 10.0.0.2 80 {{\n        weight 2\n    }}\n\
         \x20   real_server 10.0.0.2 80 {{\n        weight 3\n    }}\n}}\n"
    ));
    assert_warns(
        &l,
        8,
        "real server 10.0.0.2:80 is duplicated - removing second rs",
    );
    let rss = &l.config.lvs.virtual_servers[0].real_servers;
    assert_eq!(rss.len(), 1);
    assert_eq!(rss[0].weight, 2);
}

#[test]
fn weight_ranges() {
    let l = read(&format!(
        "virtual_server 10.0.0.1 80 {{\n{HEAD}    weight 0\n\
         \x20   real_server 10.0.0.2 80 {{\n        weight -1\n    }}\n\
         \x20   real_server 10.0.0.3 80 {{\n        weight 2147483648\n    }}\n\
         \x20   real_server 10.0.0.4 80 {{\n        weight 2147483647\n    }}\n\
         \x20   real_server 10.0.0.5 80 {{\n        weight 0\n    }}\n}}\n"
    ));
    assert_warns(&l, 5, "weight '0' outside range [1, 2147483647]");
    assert_warns(&l, 7, "negative number '-1'");
    assert_warns(&l, 10, "weight '2147483648' outside range [0, 2147483647]");
    let weights: Vec<u32> = l.config.lvs.virtual_servers[0]
        .real_servers
        .iter()
        .map(|r| r.weight)
        .collect();
    assert_eq!(weights, [1, 1, 2147483647, 0]);
}

#[test]
fn fwmark_zero_is_refused() {
    let l = read(&format!(
        "virtual_server fwmark 0 {{\n{HEAD}    real_server 10.0.0.2 80 {{\n    }}\n}}\n"
    ));
    assert_warns(&l, 1, "virtual server fwmark 0 is not a firewall mark");
    assert!(l.config.lvs.virtual_servers.is_empty());
}

#[test]
fn nb_get_retry_is_retry_everywhere() {
    let l = read(
        "virtual_server 10.0.0.1 80 {\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n    \
         nb_get_retry 4\n    real_server 10.0.0.2 80 {\n        nb_get_retry 5\n        \
         TCP_CHECK {\n            nb_get_retry 3\n        }\n        PING_CHECK {\n        }\n    \
         }\n}\n",
    );
    for (line, n) in [(5, 4), (7, 5), (9, 3)] {
        let d = l
            .diagnostics
            .iter()
            .find(|d| line_of(d) == line)
            .expect("a finding");
        assert_eq!(d.severity, Severity::Warning);
        assert_eq!(
            d.message,
            format!("nb_get_retry is keepalived 1.x's spelling of retry; read as retry {n}")
        );
    }
    assert!(!l.diagnostics.is_clean());
    let vs = &l.config.lvs.virtual_servers[0];
    let rs = &vs.real_servers[0];
    assert_eq!(vs.retry, Some(4));
    assert_eq!(rs.retry, Some(5));
    let timing = |i: usize| {
        rs.effective_checker_timing(vs, &rs.checkers[i])
            .expect("timed")
    };
    assert_eq!(timing(0).retry, 3);
    assert_eq!(
        timing(1).retry,
        5,
        "PING_CHECK inherits the real server's retry"
    );
}

#[test]
fn group_entries_and_their_errors() {
    let l = load(&fixtures().join("group_entries.conf"), &opts());
    let g1 = l.config.lvs.group("G1").expect("G1");
    let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
    let range = |a: &str, b: &str| GroupEntry::Range {
        first: ip(a),
        last: ip(b),
        port: 80,
    };
    assert_eq!(
        g1.entries,
        [
            range("10.0.0.1", "10.0.0.1"),
            range("10.0.1.1", "10.0.1.10"),
            range("10.0.2.0", "10.0.2.7"),
            range("10.0.3.1", "10.0.4.7"),
            GroupEntry::Fwmark {
                mark: 7,
                family: None
            },
            GroupEntry::Fwmark {
                mark: 8,
                family: Some(IpFamily::Inet)
            },
        ]
    );
    assert!(l.config.lvs.group("EMPTY").is_none());
    let g6 = l.config.lvs.group("G6").expect("G6");
    assert_eq!(g6.entries[0], range("2001:db8::1", "2001:db8::ff"));
    assert_eq!(g6.entries[1], range("2001:db8:1::", "2001:db8:1::ff"));
    assert_warns(
        &l,
        7,
        "Address mask bits not empty - 10.0.5.1/24 - skipping",
    );
    assert_warns(
        &l,
        8,
        "Address range end is not greater than address range start",
    );
    assert_warns(&l, 9, "Address range end is less than address range start");
    assert_warns(&l, 10, "Invalid netmask - 10.0.8.0/33 - skipping");
    assert_warns(&l, 11, "Invalid virtual server group IP address 10.0.9.1");
    assert_warns(&l, 14, "fwmark '9' family ipx unknown - ignoring");
    assert_warns(
        &l,
        17,
        "virtual server group EMPTY has no entries - removing",
    );
}

#[test]
fn keepalived_defaults_and_fixups() {
    let l = load(&fixtures().join("defaults.conf"), &opts());
    let vss = &l.config.lvs.virtual_servers;
    assert_warns(&l, 3, "no protocol set - defaulting to UDP");
    assert_warns(&l, 3, "no scheduler set, setting default 'wlc'");
    assert_warns(&l, 3, "no forwarding method set, setting default NAT");
    assert_eq!(vss[0].protocol, Some(Protocol::Udp));
    assert_eq!(vss[0].sched, Scheduler::Wlc);
    assert_eq!(vss[0].forwarding, Forwarding::Nat);
    assert_warns(
        &l,
        7,
        "zero port only valid for persistent services - setting",
    );
    assert_eq!(vss[1].persistence_timeout, Some(360));
    assert_eq!(vss[2].persistence_timeout, Some(360));
    assert_eq!(
        vss[2].persistence_granularity,
        Some(PersistenceGranularity::Netmask(
            "255.255.255.0".parse().expect("mask")
        ))
    );
}

#[test]
fn fwmark_services() {
    let l = load(&fixtures().join("fwmark.conf"), &opts());
    let vs = &l.config.lvs.virtual_servers[0];
    assert_eq!(vs.key, VirtualServerKey::Fwmark(5));
    assert_eq!(vs.protocol, None);
    assert!(!vs.ha_suspend);
    assert_eq!(vs.real_servers[0].port, 0, "DR real server loses its port");
    assert_eq!(vs.real_servers[1].port, 0, "NAT real server keeps no port");
    assert_eq!(vs.sorry_server.as_ref().map(|s| s.port), Some(0));
    assert_eq!(vs.ip_family, Some(IpFamily::Inet));
    let summary = l.config.summary().virtual_servers;
    assert_eq!(summary[0].key, "fwmark 5");
    assert_eq!(summary[0].protocol, "none");
}

#[test]
fn tunnel_options() {
    let l = load(&fixtures().join("tunnels.conf"), &opts());
    let vs = &l.config.lvs.virtual_servers[0];
    let gue = Forwarding::Tun(Tunnel {
        tunnel_type: TunnelType::Gue { port: 6080 },
        checksum: TunnelChecksum::Csum,
    });
    assert_eq!(vs.forwarding, gue);
    let methods: Vec<Forwarding> = vs.real_servers.iter().map(|r| *r.forwarding(vs)).collect();
    let ipip = Forwarding::Tun(Tunnel::default());
    // A bad option keeps the method and the tunnel settings the server had.
    assert_eq!(methods[0], gue);
    assert_eq!(methods[1], gue, "gre with remcsum");
    assert_eq!(methods[2], gue, "ipip with csum");
    assert_eq!(methods[3], gue, "gue without port");
    assert_eq!(methods[4], gue, "unknown type");
    assert_eq!(methods[5], gue, "unknown method");
    assert_eq!(
        methods[6],
        Forwarding::Tun(Tunnel {
            tunnel_type: TunnelType::Gre,
            checksum: TunnelChecksum::Csum
        })
    );
    assert_eq!(methods[7], Forwarding::Dr);
    assert_ne!(methods[0], ipip);
    assert_warns(&l, 9, "gre tunnels do not support remote checksum option");
    assert_warns(&l, 21, "unknown [FULLNAT] routing method for real server");
}

#[test]
fn quorum_and_hysteresis() {
    let l = load(&fixtures().join("weights.conf"), &opts());
    let vss = &l.config.lvs.virtual_servers;
    assert_warns(&l, 7, "quorum '0' outside range");
    assert_eq!(vss[0].quorum, 1);
    assert_warns(&l, 8, "hysteresis 2 >= quorum 1; setting hysteresis to 0");
    assert_eq!(vss[0].hysteresis, 0);
    assert_warns(
        &l,
        24,
        "quorum 10 for 10.0.0.1:81 exceeds total weight of real servers 4",
    );
    assert_eq!(vss[1].quorum, 4);
    assert_eq!(
        vss[1].real_servers[0].weight, 3,
        "the virtual server's weight"
    );
    assert_eq!(vss[1].real_servers[1].weight, 1);
}

// ---------------------------------------------------------------------------------------------
// Checkers.

fn one_real_server(checkers: &str) -> Loaded {
    read(&format!(
        "virtual_server 10.0.0.1 80 {{\n{HEAD}    delay_loop 30\n    \
         real_server 10.0.0.2 80 {{\n{checkers}    }}\n}}\n"
    ))
}

#[test]
fn checker_timings_follow_keepalived() {
    let l = one_real_server(
        "TCP_CHECK {\n}\nHTTP_GET {\nurl {\npath /\n}\n}\nSSL_GET {\nurl {\npath /\n}\n}\n\
         SMTP_CHECK {\n}\nDNS_CHECK {\n}\nMISC_CHECK {\nmisc_path /bin/true\n}\nUDP_CHECK {\n}\n\
         PING_CHECK {\n}\n",
    );
    assert!(l.diagnostics.is_empty(), "{:?}", problems(&l));
    let vs = &l.config.lvs.virtual_servers[0];
    let rs = &vs.real_servers[0];
    let got: Vec<(&str, Option<u64>, u32, u64, u64)> = rs
        .checkers
        .iter()
        .map(|c| {
            let t = rs.effective_checker_timing(vs, c).expect("timed");
            (
                c.kind_name(),
                t.connect_timeout_us,
                t.retry,
                t.delay_before_retry_us,
                t.warmup_us,
            )
        })
        .collect();
    let s = 1_000_000;
    assert_eq!(
        got,
        [
            ("TCP_CHECK", Some(5 * s), 1, s, 30 * s),
            ("HTTP_GET", Some(5 * s), 1, 3 * s, 30 * s),
            ("SSL_GET", Some(5 * s), 1, 3 * s, 30 * s),
            ("SMTP_CHECK", Some(5 * s), 1, s, 30 * s),
            ("DNS_CHECK", Some(5 * s), 3, 30 * s, 30 * s),
            ("MISC_CHECK", None, 0, s, 30 * s),
            ("UDP_CHECK", Some(5 * s), 1, s, 30 * s),
            ("PING_CHECK", Some(5 * s), 1, s, 30 * s),
        ]
    );
}

#[test]
fn checker_timings_inherit_real_then_virtual_server() {
    let l = read(
        "virtual_server 10.0.0.1 80 {\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n    \
         connect_timeout 7\n    retry 4\n    delay_before_retry 2\n    warmup 9\n    \
         real_server 10.0.0.2 80 {\n        delay_loop 11\n        connect_timeout 1.5\n        \
         TCP_CHECK {\n            retry 0\n        }\n        DNS_CHECK {\n            \
         delay_loop 12\n        }\n    }\n    real_server 10.0.0.3 80 {\n        \
         FILE_CHECK {\n            track_file f\n        }\n    }\n}\n",
    );
    let vs = &l.config.lvs.virtual_servers[0];
    let rs = &vs.real_servers[0];
    let tcp = rs
        .effective_checker_timing(vs, &rs.checkers[0])
        .expect("timed");
    assert_eq!(
        tcp,
        CheckerTiming {
            connect_timeout_us: Some(1_500_000),
            retry: 0,
            delay_before_retry_us: 2_000_000,
            delay_loop_us: 11_000_000,
            warmup_us: 9_000_000,
        }
    );
    let dns = rs
        .effective_checker_timing(vs, &rs.checkers[1])
        .expect("timed");
    assert_eq!((dns.retry, dns.delay_loop_us), (4, 12_000_000));
    let rs2 = &vs.real_servers[1];
    assert_eq!(rs2.effective_checker_timing(vs, &rs2.checkers[0]), None);
    let summary = l.config.summary().virtual_servers;
    let file = &summary[0].real_servers[1].checkers[0];
    assert_eq!(
        (file.kind.as_str(), file.connect_timeout_us),
        ("FILE_CHECK", None)
    );
}

#[test]
fn http_get_settings() {
    let l = one_real_server(
        "HTTP_GET {\n    virtualhost www.example.com\n    http_protocol 1.0C\n    enable_sni\n    \
         url {\n        path /health\n        digest 640205B7b0fc66c1ea91c463fac6334d\n        \
         status_code 200-204 301 404\n        regex \"ok|good\"\n        regex_options caseless \
         multiline\n        regex_max_offset 100\n    }\n    url {\n        digest \
         640205b7b0fc66c1ea91c463fac6334d\n    }\n}\n",
    );
    let vs = &l.config.lvs.virtual_servers[0];
    let Checker::Http(h) = &vs.real_servers[0].checkers[0] else {
        panic!("HTTP_GET");
    };
    assert_eq!(h.virtualhost.as_deref(), Some("www.example.com"));
    assert_eq!(h.http_protocol, Some(HttpProtocol::Http10Close));
    assert!(h.enable_sni);
    assert_eq!(h.urls.len(), 1, "the url without a path is dropped");
    let u = &h.urls[0];
    assert_eq!(u.status_codes, [(200, 204), (301, 301), (404, 404)]);
    assert_eq!(u.digest.map(|d| d[0]), Some(0x64));
    let r = u.regex.as_ref().expect("regex");
    assert_eq!(r.pattern, "ok|good");
    assert_eq!(r.options, ["caseless", "multiline"]);
    assert_eq!(r.max_offset, Some(100));
    assert_warns(&l, 21, "url has no path - ignoring");
}

#[test]
fn http_get_without_url_is_dropped() {
    // keepalived 2.2.7 crashes on this one (it frees the checker twice), so it is no fixture.
    let l = one_real_server("HTTP_GET {\n    url {\n    }\n}\n");
    assert_warns(&l, 9, "url has no path - ignoring");
    assert_warns(&l, 10, "checker has no urls specified - ignoring");
    assert!(l.config.lvs.virtual_servers[0].real_servers[0]
        .checkers
        .is_empty());
}

#[test]
fn smtp_host_blocks_become_checkers() {
    let l = one_real_server(
        "SMTP_CHECK {\n    helo_name me.example\n    retry 2\n    host {\n        connect_ip \
         10.0.0.7\n        connect_port 2525\n        delay_before_retry 4\n    }\n    host {\n        \
         connect_ip 10.0.0.8\n    }\n}\n",
    );
    let rs = &l.config.lvs.virtual_servers[0].real_servers[0];
    let smtp: Vec<&SmtpCheck> = rs
        .checkers
        .iter()
        .filter_map(|c| match c {
            Checker::Smtp(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(smtp.len(), 2);
    assert_eq!(
        smtp[0].common.connect_ip.map(|i| i.to_string()).as_deref(),
        Some("10.0.0.7")
    );
    assert_eq!(smtp[0].common.connect_port, Some(2525));
    assert_eq!(
        smtp[1].common.connect_ip.map(|i| i.to_string()).as_deref(),
        Some("10.0.0.8")
    );
    for s in &smtp {
        assert_eq!(s.helo_name.as_deref(), Some("me.example"));
        assert_eq!(s.common.retry, Some(2));
        assert_eq!(s.common.delay_before_retry_us, Some(4_000_000));
    }
    assert!(l.diagnostics.is_clean(), "{:?}", problems(&l));
}

#[test]
fn other_checkers() {
    let l = one_real_server(
        "DNS_CHECK {\n    type aaaa\n    name a.example.com\n}\nUDP_CHECK {\n    payload 01 02 ff\n    \
         require_reply 0x 02\n    max_reply_length 512\n}\nMISC_CHECK {\n    misc_path \
         \"/usr/local/bin/check 'a b' c\\\\d\"\n    misc_timeout 5\n    misc_dynamic\n    user \
         nobody nogroup\n}\nFILE_CHECK {\n    track_file weights\n    weight -10 reverse\n}\n\
         BFD_CHECK {\n    name bfd1\n    alpha\n}\n",
    );
    assert!(l.diagnostics.is_empty(), "{:?}", problems(&l));
    let c = &l.config.lvs.virtual_servers[0].real_servers[0].checkers;
    let Checker::Dns(d) = &c[0] else {
        panic!("DNS")
    };
    assert_eq!(
        (d.query_type, d.name.as_str()),
        (DnsType::Aaaa, "a.example.com")
    );
    let Checker::Udp(u) = &c[1] else {
        panic!("UDP")
    };
    assert_eq!(
        u.payload.as_ref().map(|p| p.data.clone()),
        Some(vec![1, 2, 0xff])
    );
    assert_eq!(
        u.reply,
        Some(HexBytes {
            data: vec![0, 2],
            mask: Some(vec![0x0f, 0])
        })
    );
    assert_eq!(u.max_reply_length, 512);
    let Checker::Misc(m) = &c[2] else {
        panic!("MISC")
    };
    // `c\\d` in the file: keepalived decodes escapes once per reading, so one `\` is left
    // after the line's reading and none after the command's.
    assert_eq!(m.misc_path.argv, ["/usr/local/bin/check", "a b", "cd"]);
    assert_eq!(m.misc_path.user.as_deref(), Some("nobody"));
    assert_eq!(m.misc_path.group.as_deref(), Some("nogroup"));
    assert_eq!(m.misc_timeout_us, Some(5_000_000));
    assert!(m.misc_dynamic);
    let Checker::File(f) = &c[3] else {
        panic!("FILE")
    };
    assert_eq!(
        (f.track_file.as_str(), f.weight, f.reverse),
        ("weights", Some(-10), true)
    );
    let Checker::Bfd(b) = &c[4] else {
        panic!("BFD")
    };
    assert_eq!((b.name.as_str(), b.alpha), ("bfd1", Some(true)));
}

#[test]
fn scripts_survive_the_round_trip() {
    let nasty = [
        "/bin/notify",
        "two words",
        "quote\"s and 'single'",
        "back\\slash",
        "#hash !bang {brace} $DOLLAR",
        "tab\there",
        "",
    ];
    let mut vs = VirtualServer::new(VirtualServerKey::Addr {
        ip: "10.0.0.1".parse().expect("ip"),
        port: 80,
    });
    vs.protocol = Some(Protocol::Tcp);
    vs.quorum_up = Some(Script {
        argv: nasty.iter().map(|s| s.to_string()).collect(),
        user: Some("nobody".into()),
        group: None,
    });
    vs.quorum_down = Some(Script {
        argv: vec!["/bin/plain".into()],
        user: None,
        group: None,
    });
    let mut rs = RealServer::new("10.0.0.2".parse().expect("ip"), 80);
    rs.checkers.push(Checker::Http(HttpCheck {
        urls: vec![Url {
            regex: Some(UrlRegex {
                pattern: "a \"b\" #c $d \\e".into(),
                no_match: true,
                options: vec![],
                min_offset: None,
                max_offset: None,
                stack: None,
            }),
            ..Url::new("/".into())
        }],
        ..HttpCheck::default()
    }));
    vs.real_servers.push(rs);
    let config = Config {
        lvs: LvsConfig {
            groups: vec![],
            virtual_servers: vec![vs],
        },
        ..Config::default()
    };
    let text = config.to_keepalived_conf();
    let back = read(&text);
    assert!(back.diagnostics.is_empty(), "{:?}\n{text}", problems(&back));
    assert_eq!(back.config.lvs, config.lvs, "{text}");
}

#[test]
fn link_local_checker_needs_bind_if() {
    let l = load(&fixtures().join("ipv6.conf"), &opts());
    assert_warns(
        &l,
        15,
        "Address family of virtual server and real server 10.0.0.2",
    );
    assert_warns(
        &l,
        32,
        "Checker link local address fe80::3 requires a bind_if",
    );
    let vss = &l.config.lvs.virtual_servers;
    assert_eq!(
        vss[0].real_servers.len(),
        2,
        "the tunnelled IPv4 real server stays"
    );
    assert_eq!(
        vss[0].persistence_granularity,
        Some(PersistenceGranularity::Prefix(64))
    );
    assert_eq!(vss[0].sorry_server.as_ref().map(|s| s.port), Some(443));
    assert_eq!(vss[1].real_servers[0].checkers.len(), 1);
    assert_eq!(vss[1].ip_family, Some(IpFamily::Inet6));
    let summary = l.config.summary().virtual_servers;
    assert_eq!(summary[0].key, "[2001:db8::1]:443");
    assert_eq!(summary[0].real_servers[0].addr, "[2001:db8::2]:443");
}

// ---------------------------------------------------------------------------------------------
// Robustness.

/// Every fixture and sample with each line removed, or its last word replaced by a bad value,
/// reads without a panic (and writes back to something that reads to the same model).
#[test]
fn mutated_files_never_panic() {
    let bad = ["", "-1", "x", "99999999999999999999999", "\"", "{"];
    let mut files = fixture_files();
    files.extend(samples_with_virtual_servers());
    for path in files {
        let text = std::fs::read_to_string(&path).expect("file");
        let lines: Vec<&str> = text.lines().collect();
        for i in 0..lines.len() {
            let mut variants = Vec::new();
            let mut removed = lines.clone();
            removed.remove(i);
            variants.push(removed.join("\n"));
            let words: Vec<&str> = lines[i].split_whitespace().collect();
            if words.len() > 1 {
                for b in bad {
                    let mut changed = lines.clone();
                    let line = format!("{} {b}", words[..words.len() - 1].join(" "));
                    changed[i] = &line;
                    variants.push(changed.join("\n"));
                }
            }
            for v in variants {
                let first = read(&v);
                let again = read(&first.config.to_keepalived_conf());
                assert_eq!(
                    first.config.lvs,
                    again.config.lvs,
                    "{path:?} line {} changed:\n{v}",
                    i + 1
                );
            }
        }
    }
}

#[test]
fn failback_keywords_are_read_and_bad_ones_located() {
    let l = read(
        "virtual_server 10.0.0.1 3306 {\n    lb_algo rr\n    lb_kind DR\n    protocol TCP\n    \
         sorry_server 10.0.0.3 3306\n    failback manual\n    failback_limit 3 600\n    \
         real_server 10.0.0.2 3306 {\n    }\n}\n",
    );
    assert!(problems(&l).is_empty(), "{:#?}", problems(&l));
    let vs = &l.config.lvs.virtual_servers[0];
    assert_eq!(vs.failback, Failback::Manual);
    assert_eq!(
        vs.failback_limit,
        Some(FailbackLimit {
            switches: 3,
            within_secs: 600
        })
    );
    let l = read(
        "virtual_server 10.0.0.1 3306 {\n    lb_algo rr\n    lb_kind DR\n    protocol TCP\n    \
         sorry_server 10.0.0.3 3306\n    failback sometimes\n    failback_limit 0 600\n    \
         failback_limit 3\n    real_server 10.0.0.2 3306 {\n    }\n}\n",
    );
    assert_warns(&l, 6, "failback: unknown value 'sometimes'");
    assert_warns(&l, 7, "failback_limit '0' outside range [1, 1000]");
    assert_warns(&l, 8, "failback_limit");
    let vs = &l.config.lvs.virtual_servers[0];
    assert_eq!(
        (vs.failback, vs.failback_limit),
        (Failback::Automatic, None)
    );
    let l = read(
        "virtual_server 10.0.0.1 3306 {\n    lb_algo rr\n    lb_kind DR\n    protocol TCP\n    \
         failback manual\n    real_server 10.0.0.2 3306 {\n    }\n}\n",
    );
    assert_warns(
        &l,
        5,
        "failback manual or failback_limit without a sorry_server",
    );
}
