//! The VRRP sections (`vrrp_instance`, `vrrp_sync_group`, `vrrp_script`, `track_file`): values,
//! keepalived's checks at keepalived's lines, and the round trip through the writer.
//!
//! `fixtures/vrrp/*.conf` end with what `keepalived -t` (2.2.7, Debian) said about them, on a
//! host with `lo` and `eth0`:
//!   `! expect keepalived -t exit N, lines: L...`  its exit status and the lines it named;
//!   `! expect halb lines: L...`   where halb reports what keepalived reports without a line;
//!   `! expect needs whole-file checks`  findings that need `vrrp::finish`.
//! `keepalived_agrees` (ignored by default: it needs keepalived and such a host) runs keepalived
//! again to check that the record is current.

use halb_config::diagnostic::{Diagnostics, Severity};
use halb_config::model::*;
use halb_config::read::Ctx;
use halb_config::sections::{global_defs, vrrp};
use halb_config::source::SourceMap;
use halb_config::{load, load_str, preprocess, tree, LoadOptions, Loaded};
use halb_test_support::skip;
use std::path::{Path, PathBuf};

fn interfaces() -> Vec<String> {
    vec!["lo".into(), "eth0".into()]
}

fn opts() -> LoadOptions {
    LoadOptions {
        config_id: "director1".into(),
        interfaces: Some(interfaces()),
        max_lines: 100_000,
        script_search_path: None,
    }
}

fn seed_path() -> PathBuf {
    halb_test_support::seed_path("keepalived-master.conf")
}

/// What a load with the whole-file checks gives: the VRRP part, `global_defs`, diagnostics.
struct Finished {
    vrrp: VrrpConfig,
    global: GlobalDefs,
    diagnostics: Diagnostics,
}

/// Reads the VRRP sections and `global_defs` of a file and runs [`vrrp::finish`] before
/// folding, as `sections::read_config` is meant to.
fn load_finished(path: &Path, text: Option<&str>) -> Finished {
    let mut sources = SourceMap::new();
    let mut diagnostics = Diagnostics::new();
    let owned = text.map(str::to_string);
    let main = path.to_path_buf();
    let read = move |p: &Path| match &owned {
        Some(t) if p == main => Ok(t.clone()),
        Some(_) => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
        None => preprocess::read_fs(p),
    };
    let pp = preprocess::Options {
        config_id: "director1".into(),
        read_file: &read,
        glob: &preprocess::glob_fs,
        max_lines: 100_000,
    };
    let lines = preprocess::preprocess(path, &pp, &mut sources, &mut diagnostics);
    let nodes = tree::build(lines, &mut diagnostics);
    let ifs = interfaces();
    let mut global = GlobalDefs::default();
    let mut config = VrrpConfig::default();
    {
        let mut ctx = Ctx::new(&mut diagnostics);
        ctx.interfaces = Some(&ifs);
        for node in &nodes {
            match node.name() {
                "global_defs" => global_defs::read(node, &mut ctx, &mut global),
                name if vrrp::TOP_LEVEL.contains(&name) => {
                    vrrp::read_top(node, &mut ctx, &mut config)
                }
                _ => {}
            }
        }
        vrrp::finish(&mut config, &global, &mut ctx);
    }
    vrrp::fold_into_global(&mut config, &mut global);
    Finished {
        vrrp: config,
        global,
        diagnostics,
    }
}

fn finished_str(text: &str) -> Finished {
    load_finished(Path::new("/test/keepalived.conf"), Some(text))
}

/// Lines with a warning or error.
fn warned_lines(d: &Diagnostics) -> Vec<u32> {
    let mut v: Vec<u32> = d
        .iter()
        .filter(|d| d.severity >= Severity::Warning)
        .filter_map(|d| d.span.map(|s| s.line))
        .collect();
    v.sort();
    v.dedup();
    v
}

fn messages(d: &Diagnostics) -> Vec<String> {
    d.iter()
        .map(|d| {
            let line = d.span.map(|s| s.line).unwrap_or(0);
            format!("{line}: {:?}: {}", d.severity, d.message)
        })
        .collect()
}

fn has(d: &Diagnostics, line: u32, needle: &str) -> bool {
    d.iter().any(|x| {
        x.severity >= Severity::Warning
            && x.span.is_some_and(|s| s.line == line)
            && x.message.contains(needle)
    })
}

// ---------------------------------------------------------------------------------------------
// The seed

#[test]
fn seed_vrrp_parts() {
    let loaded = load(&seed_path(), &opts());
    let d = &loaded.diagnostics;
    let v = &loaded.config.vrrp;
    assert_eq!(v.instances.len(), 1);
    let i = &v.instances[0];
    assert_eq!(i.name, "INT");
    assert_eq!(i.state, VrrpState::Master);
    assert_eq!(i.interface.as_deref(), Some("eth0"));
    assert_eq!(i.virtual_router_id, 200);
    assert_eq!(i.priority, 100);
    assert_eq!(i.advert_int_us, 1_000_000);
    assert_eq!(
        i.authentication,
        Some(Authentication {
            auth_type: AuthType::Pass,
            auth_pass: "lvs50tes".into()
        })
    );
    assert_eq!(
        i.virtual_ipaddress,
        vec![VirtualAddress::new("192.168.66.251".parse().unwrap())]
    );
    assert_eq!(i.virtual_ipaddress[0].prefix, 32);

    // The truncation is reported at the value: `        auth_pass lvs50test`.
    let trunc = d
        .iter()
        .find(|x| x.message == "Truncating auth_pass to 8 characters")
        .expect("truncation warning");
    let span = trunc.span.expect("placed");
    assert_eq!((span.line, span.start, span.len), (19, 18, 9));
    assert_eq!(trunc.severity, Severity::Warning);

    assert_eq!(v.sync_groups.len(), 1);
    assert_eq!(v.sync_groups[0].name, "VG1");
    assert_eq!(v.sync_groups[0].group, vec!["INT".to_string()]);
    assert!(
        has(d, 5, "Sync group VG1 has only 1 virtual router(s)"),
        "{:#?}",
        messages(d)
    );

    assert!(
        has(d, 13, "lvs_sync_daemon_interface"),
        "{:#?}",
        messages(d)
    );
    assert!(d
        .iter()
        .any(|x| x.message.contains("deprecated") && x.span.is_some_and(|s| s.line == 13)));
    let sync = loaded
        .config
        .global
        .lvs_sync_daemon
        .as_ref()
        .expect("folded");
    assert_eq!(sync.interface, "eth0");
    assert_eq!(sync.instance.as_deref(), Some("INT"));

    let summary = loaded.config.summary().vrrp_instances;
    assert_eq!(
        summary,
        vec![halb_config::summary::InstanceSummary {
            name: "INT".into(),
            interface: Some("eth0".into()),
            vrid: 200,
            priority: 100,
            version: 2,
            advert_int_us: 1_000_000,
            initial_state: "BACKUP".into(),
            vips: vec!["192.168.66.251/32".into()],
        }]
    );
    // Exactly the lines keepalived -t names for the VRRP part (12 only without eth0).
    let vrrp_lines: Vec<u32> = warned_lines(d).into_iter().filter(|l| *l <= 24).collect();
    assert_eq!(vrrp_lines, vec![5, 13, 19], "{:#?}", messages(d));
}

#[test]
fn seed_without_eth0_warns_at_the_interface() {
    let mut o = opts();
    o.interfaces = Some(vec!["lo".into()]);
    let loaded = load(&seed_path(), &o);
    assert!(
        has(
            &loaded.diagnostics,
            12,
            "interface eth0 for vrrp_instance INT doesn't exist"
        ),
        "{:#?}",
        messages(&loaded.diagnostics)
    );
    // The model keeps what the file says.
    assert_eq!(
        loaded.config.vrrp.instances[0].interface.as_deref(),
        Some("eth0")
    );
}

// ---------------------------------------------------------------------------------------------
// keepalived's samples

fn samples_with_vrrp() -> Vec<PathBuf> {
    let dir = Path::new("/usr/share/doc/keepalived/samples");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("keepalived.conf"))
                && std::fs::read_to_string(p).is_ok_and(|t| t.contains("vrrp_"))
        })
        .collect();
    files.sort();
    files
}

/// The line ranges of the top-level VRRP blocks of a file.
fn vrrp_ranges(path: &Path) -> Vec<(u32, u32)> {
    let mut sources = SourceMap::new();
    let mut d = Diagnostics::new();
    let pp = preprocess::Options {
        config_id: "director1".into(),
        read_file: &preprocess::read_fs,
        glob: &preprocess::glob_fs,
        max_lines: 100_000,
    };
    let nodes = tree::build(
        preprocess::preprocess(path, &pp, &mut sources, &mut d),
        &mut d,
    );
    nodes
        .iter()
        .filter(|n| vrrp::TOP_LEVEL.contains(&n.name()))
        .map(|n| {
            let end = n
                .block
                .as_ref()
                .and_then(|b| b.close)
                .map(|c| c.line)
                .unwrap_or(u32::MAX);
            (n.span().line, end)
        })
        .collect()
}

#[test]
fn samples_have_no_unknown_vrrp_keywords() {
    let samples = samples_with_vrrp();
    if samples.is_empty() {
        return skip("keepalived's samples are not installed");
    }
    for path in samples {
        let loaded = load(&path, &opts());
        let ranges = vrrp_ranges(&path);
        assert!(
            !ranges.is_empty(),
            "{}: no VRRP section found",
            path.display()
        );
        for d in loaded.diagnostics.iter() {
            let Some(span) = d.span else { continue };
            let inside = ranges.iter().any(|(a, b)| (*a..=*b).contains(&span.line));
            assert!(
                !(inside && d.message.starts_with("unknown keyword")),
                "{}:{}: {}",
                path.display(),
                span.line,
                d.message
            );
        }
    }
}

fn assert_vrrp_round_trip(name: &str, loaded: &Loaded) {
    let written = loaded.config.to_keepalived_conf();
    let again = load_str("/written/keepalived.conf", &written, &opts());
    assert_eq!(
        loaded.config.vrrp, again.config.vrrp,
        "{name}: the written-back VRRP part reads differently:\n{written}"
    );
    assert_eq!(
        loaded.config.global.lvs_sync_daemon, again.config.global.lvs_sync_daemon,
        "{name}: lvs_sync_daemon"
    );
}

#[test]
fn samples_round_trip() {
    for path in samples_with_vrrp() {
        let loaded = load(&path, &opts());
        assert_vrrp_round_trip(&path.display().to_string(), &loaded);
    }
    let seed = load(&seed_path(), &opts());
    assert_vrrp_round_trip("seed", &seed);
}

#[test]
fn fixtures_round_trip() {
    for path in fixture_files() {
        let loaded = load(&path, &opts());
        assert_vrrp_round_trip(&path.display().to_string(), &loaded);
    }
}

// ---------------------------------------------------------------------------------------------
// keepalived -t verdicts

struct Expect {
    exit: i32,
    keepalived_lines: Vec<u32>,
    halb_lines: Vec<u32>,
    needs_finish: bool,
    /// halb calls it an error although `keepalived -t` only warns, because keepalived's VRRP
    /// process then exits at start (seen in the kernel lab).
    halb_error: bool,
}

fn numbers(s: &str) -> Vec<u32> {
    s.split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

fn expectations(path: &Path) -> Expect {
    let text = std::fs::read_to_string(path).expect("fixture");
    let mut e = Expect {
        exit: -1,
        keepalived_lines: Vec::new(),
        halb_lines: Vec::new(),
        needs_finish: false,
        halb_error: false,
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("! expect keepalived -t exit ") {
            let (code, lines) = rest.split_once(", lines:").expect("format");
            e.exit = code.trim().parse().expect("exit code");
            e.keepalived_lines = numbers(lines);
        } else if let Some(rest) = line.strip_prefix("! expect halb lines:") {
            e.halb_lines = numbers(rest);
        } else if line == "! expect needs whole-file checks" {
            e.needs_finish = true;
        } else if line.starts_with("! expect halb error") {
            e.halb_error = true;
        }
    }
    assert!(e.exit >= 0, "{}: no expectation recorded", path.display());
    e
}

fn fixture_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vrrp");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("fixtures")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    files.sort();
    files
}

fn check_verdict(path: &Path, e: &Expect, d: &Diagnostics, what: &str) {
    let name = path.display();
    let lines = warned_lines(d);
    assert_eq!(
        e.exit == 0,
        d.is_clean(),
        "{name} ({what}): keepalived exit {}, halb: {:#?}",
        e.exit,
        messages(d)
    );
    // keepalived: 4 = cannot run (halb: errors), 5 = runs with fix-ups (halb: warnings).
    assert_eq!(
        e.exit == 4 || e.halb_error,
        d.has_errors(),
        "{name} ({what}): keepalived exit {}, halb: {:#?}",
        e.exit,
        messages(d)
    );
    for l in e.keepalived_lines.iter().chain(&e.halb_lines) {
        assert!(
            lines.contains(l),
            "{name} ({what}): nothing reported at line {l}: {:#?}",
            messages(d)
        );
    }
}

#[test]
fn fixtures_match_keepalived_verdicts() {
    for path in fixture_files() {
        let e = expectations(&path);
        let finished = load_finished(&path, None);
        check_verdict(&path, &e, &finished.diagnostics, "with whole-file checks");
        if !e.needs_finish {
            let loaded = load(&path, &opts());
            check_verdict(&path, &e, &loaded.diagnostics, "load");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Checks at their lines

#[test]
fn missing_vrid_is_reported_at_the_instance() {
    let f = finished_str(
        "vrrp_instance A {\n interface eth0\n virtual_ipaddress {\n  10.0.0.1\n }\n}\n",
    );
    assert!(has(&f.diagnostics, 1, "the virtual router id must be set"));
    // It cannot run, so keepalived drops it, and so does the model.
    assert!(f.vrrp.instances.is_empty());
}

#[test]
fn vrid_and_priority_ranges() {
    let f = finished_str(
        "vrrp_instance A {\n interface eth0\n virtual_router_id 0\n priority 300\n state MASTER\n virtual_ipaddress {\n  10.0.0.1\n }\n}\n",
    );
    assert!(has(&f.diagnostics, 3, "virtual_router_id"));
    assert!(has(&f.diagnostics, 4, "priority"));
    // A bad priority is keepalived's default 100, even with state MASTER.
    let f = finished_str(
        "vrrp_instance A {\n interface eth0\n virtual_router_id 1\n priority 300\n state MASTER\n virtual_ipaddress {\n  10.0.0.1\n }\n}\n",
    );
    assert!(has(&f.diagnostics, 4, "priority"));
    assert_eq!(f.vrrp.instances[0].priority, 100);
}

#[test]
fn interface_that_does_not_exist() {
    let f = finished_str("vrrp_instance A {\n interface eth9\n virtual_router_id 1\n virtual_ipaddress {\n  10.0.0.1\n }\n}\n");
    assert!(has(
        &f.diagnostics,
        2,
        "interface eth9 for vrrp_instance A doesn't exist"
    ));
    assert!(
        !f.diagnostics.has_errors(),
        "a warning, as keepalived -t counts it"
    );
}

#[test]
fn duplicate_vrid_on_one_interface_and_family() {
    let text = "\
vrrp_instance A {
 interface eth0
 virtual_router_id 7
 virtual_ipaddress {
  10.0.0.1
 }
}
vrrp_instance B {
 interface eth0
 virtual_router_id 7
 virtual_ipaddress {
  10.0.0.2
 }
}
vrrp_instance C {
 interface eth0
 virtual_router_id 7
 virtual_ipaddress {
  fe80::7
 }
}
vrrp_instance D {
 interface eth0
 virtual_router_id 7
 mcast_dst_ip 224.0.0.19
 virtual_ipaddress {
  10.0.0.3
 }
}
";
    let f = finished_str(text);
    assert!(has(
        &f.diagnostics,
        8,
        "A and B both use VRID 7 with IPv4 on interface eth0"
    ));
    assert_eq!(
        warned_lines(&f.diagnostics),
        vec![8],
        "{:#?}",
        messages(&f.diagnostics)
    );
}

/// One finding per instance that conflicts (naming the first one it meets), not one per pair:
/// with 2,000 instances on one VRID that is 1,999 findings, not 1,999,000.
#[test]
fn many_instances_on_one_vrid_give_one_finding_each() {
    let text: String = (0..2000)
        .map(|i| {
            format!(
                "vrrp_instance VI_{i} {{\n interface eth0\n virtual_router_id 51\n \
                 virtual_ipaddress {{\n  10.9.{}.{}\n }}\n}}\n",
                i / 256,
                i % 256
            )
        })
        .collect();
    let f = finished_str(&text);
    let conflicts: Vec<&str> = f
        .diagnostics
        .iter()
        .filter(|d| d.message.contains("both use VRID 51"))
        .map(|d| d.message.as_str())
        .collect();
    assert_eq!(conflicts.len(), 1999);
    assert_eq!(
        conflicts[1998],
        "VI_0 and VI_1999 both use VRID 51 with IPv4 on interface eth0"
    );
}

#[test]
fn sync_group_members_before_and_after() {
    let text = "\
vrrp_sync_group G {
 group {
  A
  NOPE
  B
 }
}
vrrp_instance A {
 interface eth0
 virtual_router_id 1
 virtual_ipaddress {
  10.0.0.1
 }
}
vrrp_instance B {
 interface eth0
 virtual_router_id 2
 virtual_ipaddress {
  10.0.0.2
 }
}
vrrp_sync_group H {
 group {
  B
 }
}
";
    let f = finished_str(text);
    let d = &f.diagnostics;
    assert!(
        has(
            d,
            4,
            "Virtual router NOPE specified in sync group G doesn't exist"
        ),
        "{:#?}",
        messages(d)
    );
    assert!(has(
        d,
        24,
        "Virtual router B cannot exist in more than one sync group; ignoring H"
    ));
    assert!(has(d, 22, "Sync group H, no matching virtual router found"));
    assert_eq!(f.vrrp.sync_groups.len(), 1);
    assert_eq!(
        f.vrrp.sync_groups[0].group,
        vec!["A".to_string(), "B".to_string()]
    );
    // Without the whole-file checks the model is completed all the same.
    let loaded = load_str("/t.conf", text, &opts());
    assert_eq!(loaded.config.vrrp, f.vrrp);
}

#[test]
fn sync_group_with_one_instance() {
    let text = "vrrp_instance A {\n interface eth0\n virtual_router_id 1\n virtual_ipaddress {\n  10.0.0.1\n }\n}\nvrrp_sync_group G {\n group {\n  A\n }\n}\n";
    let loaded = load_str("/t.conf", text, &opts());
    assert!(has(
        &loaded.diagnostics,
        8,
        "Sync group G has only 1 virtual router(s)"
    ));
    assert!(!loaded.diagnostics.has_errors());
}

#[test]
fn nopreempt_with_state_master() {
    let text = "vrrp_instance A {\n state MASTER\n priority 100\n nopreempt\n interface eth0\n virtual_router_id 1\n virtual_ipaddress {\n  10.0.0.1\n }\n}\n";
    let loaded = load_str("/t.conf", text, &opts());
    assert!(has(
        &loaded.diagnostics,
        1,
        "nopreempt will not work with initial state MASTER"
    ));
    assert!(!loaded.config.vrrp.instances[0].nopreempt);
}

#[test]
fn track_script_must_be_defined_first() {
    let text = "\
vrrp_instance A {
 interface eth0
 virtual_router_id 1
 track_script {
  chk
 }
 virtual_ipaddress {
  10.0.0.1
 }
}
vrrp_script chk {
 script /bin/true
}
";
    let loaded = load_str("/t.conf", text, &opts());
    assert!(has(&loaded.diagnostics, 5, "track script chk not found"));
    assert!(loaded.config.vrrp.instances[0].track_script.is_empty());
    // keepalived drops a script nothing tracks.
    assert!(loaded.config.vrrp.scripts.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Values

#[test]
fn priority_and_state_derive_from_each_other() {
    let f = finished_str(
        "\
vrrp_instance A {
 state MASTER
 interface eth0
 virtual_router_id 1
 virtual_ipaddress {
  10.0.0.1
 }
}
vrrp_instance B {
 priority 255
 interface eth0
 virtual_router_id 2
 virtual_ipaddress {
  10.0.0.2
 }
}
vrrp_instance C {
 interface eth0
 virtual_router_id 3
 virtual_ipaddress {
  10.0.0.3
 }
}
",
    );
    let got: Vec<(VrrpState, u8)> = f
        .vrrp
        .instances
        .iter()
        .map(|i| (i.state, i.priority))
        .collect();
    assert_eq!(
        got,
        vec![
            (VrrpState::Master, 255),
            (VrrpState::Master, 255),
            (VrrpState::Backup, 100)
        ]
    );
    assert!(f.diagnostics.is_clean(), "{:#?}", messages(&f.diagnostics));
}

#[test]
fn notify_scripts_use_keepalived_quoting() {
    let text = r#"
vrrp_instance A {
 interface eth0
 virtual_router_id 1
 virtual_ipaddress {
  10.0.0.1
 }
 notify_master "/usr/bin/alert 'new master' \"x y\"" nobody nogroup
 notify /usr/bin/log
 notify_master /usr/bin/second
}
"#;
    let loaded = load_str("/t.conf", text, &opts());
    let n = &loaded.config.vrrp.instances[0].notify;
    let master = n.master.as_ref().expect("notify_master");
    assert_eq!(master.argv, ["/usr/bin/alert", "new master", "x y"]);
    assert_eq!(master.user.as_deref(), Some("nobody"));
    assert_eq!(master.group.as_deref(), Some("nogroup"));
    assert_eq!(
        n.notify.as_ref().map(|s| s.argv.clone()),
        Some(vec!["/usr/bin/log".to_string()])
    );
    assert!(has(
        &loaded.diagnostics,
        10,
        "notify_master script already specified"
    ));
    assert_vrrp_round_trip("notify", &loaded);
}

#[test]
fn vrrp_script_values() {
    let text = "\
global_defs {
 vrrp_version 2
}
vrrp_script chk {
 script \"/bin/check --fast\"
 interval 3
 timeout 2
 weight -10 reverse
 rise 4
 fall 5
 user nobody nogroup
 init_fail
}
vrrp_instance A {
 interface eth0
 virtual_router_id 1
 track_script {
  chk
  chk weight 5
 }
 virtual_ipaddress {
  10.0.0.1
 }
}
";
    let loaded = load_str("/t.conf", text, &opts());
    let s = &loaded.config.vrrp.scripts[0];
    assert_eq!(s.script.argv, ["/bin/check", "--fast"]);
    assert_eq!(s.script.user.as_deref(), Some("nobody"));
    assert_eq!(s.script.group.as_deref(), Some("nogroup"));
    assert_eq!((s.interval_us, s.timeout_us), (3_000_000, Some(2_000_000)));
    assert_eq!(
        (s.weight, s.weight_reverse, s.rise, s.fall, s.init_fail),
        (-10, true, 4, 5, true)
    );
    let t = &loaded.config.vrrp.instances[0].track_script;
    assert_eq!(t.len(), 1, "the duplicate is ignored");
    assert_eq!(t[0].weight, None, "None: the script's own weight");
    assert!(has(&loaded.diagnostics, 19, "duplicate track_script chk"));
    assert_vrrp_round_trip("vrrp_script", &loaded);
}

#[test]
fn addresses_and_peers() {
    let text = "\
vrrp_instance A {
 interface eth0
 virtual_router_id 1
 unicast_src_ip 10.0.0.9
 unicast_peer {
  10.0.0.10 min_ttl 2 max_ttl 64
 }
 virtual_ipaddress {
  10.0.0.1/24 dev eth0 brd 10.0.0.255 scope link label eth0:vip no_track
  10.0.0.2 peer 10.0.0.3 preferred_lft forever
 }
 virtual_ipaddress_excluded {
  2001:db8::1/64
 }
}
";
    let loaded = load_str("/t.conf", text, &opts());
    assert!(
        loaded.diagnostics.is_clean(),
        "{:#?}",
        messages(&loaded.diagnostics)
    );
    let i = &loaded.config.vrrp.instances[0];
    let a = &i.virtual_ipaddress[0];
    assert_eq!(a.prefix, 24);
    assert_eq!(a.dev.as_deref(), Some("eth0"));
    assert_eq!(
        a.broadcast,
        Some(Broadcast::Address("10.0.0.255".parse().unwrap()))
    );
    assert_eq!(a.scope.as_deref(), Some("link"));
    assert_eq!(a.label.as_deref(), Some("eth0:vip"));
    assert_eq!(a.options, ["no_track"]);
    let b = &i.virtual_ipaddress[1];
    assert_eq!(b.peer, Some("10.0.0.3".parse().unwrap()));
    assert_eq!(b.options, ["preferred_lft", "forever"]);
    assert_eq!(i.virtual_ipaddress_excluded[0].prefix, 64);
    assert_eq!(
        i.unicast_peer,
        vec![UnicastPeer {
            address: "10.0.0.10".parse().unwrap(),
            min_ttl: Some(2),
            max_ttl: Some(64)
        }]
    );
    assert_vrrp_round_trip("addresses", &loaded);
}

#[test]
fn ipv6_instances_are_version_3() {
    let text = "vrrp_instance A {\n interface eth0\n virtual_router_id 1\n advert_int 0.25\n virtual_ipaddress {\n  fe80::1\n }\n}\n";
    let loaded = load_str("/t.conf", text, &opts());
    let s = &loaded.config.summary().vrrp_instances[0];
    assert_eq!((s.version, s.advert_int_us), (3, 250_000));
    assert_eq!(s.vips, ["fe80::1/128"]);
    assert!(
        loaded.diagnostics.is_clean(),
        "{:#?}",
        messages(&loaded.diagnostics)
    );
}

#[test]
fn advert_int_follows_the_version() {
    let f = finished_str(
        "global_defs {\n vrrp_version 3\n}\nvrrp_instance A {\n interface eth0\n virtual_router_id 1\n advert_int 0.5\n virtual_ipaddress {\n  10.0.0.1\n }\n}\n",
    );
    assert!(
        f.diagnostics.is_clean(),
        "v3 carries centiseconds: {:#?}",
        messages(&f.diagnostics)
    );
    let i = &f.vrrp.instances[0];
    assert_eq!(i.effective_version(f.global.vrrp_version), 3);
    assert_eq!(i.effective_advert_int_us(3), 500_000);
    // With the default version 2 keepalived rounds to whole seconds, and says so.
    let f2 = finished_str(
        "vrrp_instance A {\n interface eth0\n virtual_router_id 1\n advert_int 1.5\n virtual_ipaddress {\n  10.0.0.1\n }\n}\n",
    );
    assert!(has(
        &f2.diagnostics,
        1,
        "VRRPv2 advertisement interval 1.5s must be an integer"
    ));
    assert_eq!(f2.vrrp.instances[0].effective_advert_int_us(2), 2_000_000);
}

#[test]
fn global_strict_mode_applies_to_instances() {
    let f = finished_str(
        "global_defs {\n vrrp_strict\n}\nvrrp_instance A {\n state MASTER\n priority 100\n interface eth0\n virtual_router_id 1\n authentication {\n  auth_type PASS\n  auth_pass x\n }\n virtual_ipaddress {\n  10.0.0.1\n }\n}\n",
    );
    let i = &f.vrrp.instances[0];
    assert_eq!(i.state, VrrpState::Backup);
    assert_eq!(i.authentication, None);
    assert!(has(
        &f.diagnostics,
        4,
        "State MASTER must match being address owner"
    ));
    assert!(has(
        &f.diagnostics,
        4,
        "Strict mode does not support authentication"
    ));
}

#[test]
fn advert_policy_keywords_are_typed_and_checked() {
    let f = finished_str(
        "global_defs {\n vrrp_lower_prio_no_advert maybe\n vrrp_down_timer_adverts 7\n vrrp_higher_prio_send_advert\n}\n\
         vrrp_instance A {\n interface eth0\n virtual_router_id 1\n check_unicast_src\n lower_prio_no_advert off\n higher_prio_send_advert nope\n down_timer_adverts 101\n virtual_ipaddress {\n  10.0.0.1\n }\n}\n\
         vrrp_instance B {\n interface eth0\n virtual_router_id 2\n strict_mode\n lower_prio_no_advert false\n virtual_ipaddress {\n  10.0.0.2\n }\n}\n",
    );
    assert!(has(&f.diagnostics, 2, "vrrp_lower_prio_no_advert: 'maybe'"));
    assert!(has(&f.diagnostics, 11, "higher_prio_send_advert: 'nope'"));
    assert!(has(
        &f.diagnostics,
        12,
        "down_timer_adverts '101' outside range"
    ));
    let g = &f.global;
    assert!(
        !g.vrrp_lower_prio_no_advert,
        "a bad value keeps the default"
    );
    assert!(g.vrrp_higher_prio_send_advert);
    assert_eq!(g.vrrp_down_timer_adverts, 7);
    let a = &f.vrrp.instances[0];
    assert!(a.check_unicast_src);
    assert_eq!(a.lower_prio_no_advert, Some(false));
    assert_eq!(a.higher_prio_send_advert, None);
    assert_eq!(a.down_timer_adverts, None);
    assert_eq!(a.effective_down_timer_adverts(g), 7);
    assert!(a.effective_higher_prio_send_advert(g));
    assert!(a.other.is_empty(), "{:?}", a.other);
    // Strict mode: keepalived resets what it forbids, and the global down timer too.
    let b = &f.vrrp.instances[1];
    assert!(has(
        &f.diagnostics,
        17,
        "Strict mode requires no lower priority advert"
    ));
    assert!(has(
        &f.diagnostics,
        17,
        "down_timer_adverts is incompatible with strict mode"
    ));
    assert_eq!(b.lower_prio_no_advert, Some(true));
    assert!(!b.effective_higher_prio_send_advert(g));
    assert_eq!(b.effective_down_timer_adverts(g), 3);
}

#[test]
fn lvs_sync_daemon_interface_folds_once() {
    let text = "\
vrrp_instance A {
 interface eth0
 virtual_router_id 1
 lvs_sync_daemon_interface eth0
 virtual_ipaddress {
  10.0.0.1
 }
}
vrrp_instance B {
 interface eth0
 virtual_router_id 2
 lvs_sync_daemon_interface lo
 virtual_ipaddress {
  10.0.0.2
 }
}
";
    let loaded = load_str("/t.conf", text, &opts());
    assert!(has(
        &loaded.diagnostics,
        12,
        "already been specified as eth0"
    ));
    let sync = loaded
        .config
        .global
        .lvs_sync_daemon
        .as_ref()
        .expect("folded");
    assert_eq!(
        (sync.interface.as_str(), sync.instance.as_deref()),
        ("eth0", Some("A"))
    );
    // A global one wins.
    let with_global = format!("global_defs {{\n lvs_sync_daemon lo B\n}}\n{text}");
    let loaded = load_str("/t.conf", &with_global, &opts());
    let sync = loaded
        .config
        .global
        .lvs_sync_daemon
        .as_ref()
        .expect("global");
    assert_eq!(
        (sync.interface.as_str(), sync.instance.as_deref()),
        ("lo", Some("B"))
    );
}

#[test]
fn model_serializes_without_positions() {
    let loaded = load(&seed_path(), &opts());
    let json = serde_json::to_string(&loaded.config.vrrp).expect("serializes");
    assert!(
        !json.contains("span") && !json.contains("pending"),
        "{json}"
    );
    let back: VrrpConfig = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back, loaded.config.vrrp);
}

// ---------------------------------------------------------------------------------------------
// Random VRRP sections: no panic, and the written model reads back the same

fn vrrp_line() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let lines = prop::sample::select(vec![
        "state MASTER",
        "state BACKUP",
        "state X",
        "interface eth0",
        "interface lo",
        "interface nosuch0",
        "virtual_router_id 1",
        "virtual_router_id 2",
        "virtual_router_id 0",
        "priority 255",
        "priority 1",
        "priority 50",
        "advert_int 0.5",
        "advert_int 3",
        "advert_int 0.015",
        "version 3",
        "version 2",
        "native_ipv6",
        "nopreempt",
        "preempt",
        "preempt_delay 2.5",
        "strict_mode",
        "strict_mode off",
        "accept",
        "no_accept",
        "authentication {\nauth_type PASS\nauth_pass secret\n}",
        "authentication {\nauth_type AH\n}",
        "virtual_ipaddress {\n10.0.0.1/24 dev eth0 brd - label eth0:x\n10.0.0.2 peer 10.0.0.3\n}",
        "virtual_ipaddress {\nfe80::1\n2001:db8::1/64 no_track\n}",
        "virtual_ipaddress_excluded {\n10.9.0.1\nfe80::9\n}",
        "virtual_routes {\n10.5.0.0/16 via 10.0.0.254 dev eth0\n}",
        "virtual_rules {\nfrom 10.0.0.0/8 table 5 preference 10\n}",
        "track_interface {\neth0 weight -5 reverse\nlo\n}",
        "track_script {\nchk weight 3 noreverse\n}",
        "track_script {\nchk\n}",
        "track_file {\ntf weight 0\n}",
        "dont_track_primary",
        "mcast_src_ip 10.0.0.8",
        "unicast_src_ip 10.0.0.8",
        "mcast_dst_ip 224.0.0.30",
        "unicast_peer {\n10.0.0.20 max_ttl 9\n}",
        "unicast_ttl 4",
        "garp_master_delay 3",
        "garp_master_repeat 0",
        "garp_master_refresh 9",
        "garp_lower_prio_repeat 2",
        "notify \"/bin/x 'a b' \\\"c\\\"\" root",
        "notify_fault /bin/y",
        "notify_stop \"\"",
        "smtp_alert off",
        "use_vmac vrrp1 02:00:00:00:00:",
        "vmac_xmit_base",
        "skip_check_adv_addr",
        "lvs_sync_daemon_interface eth0",
        "promote_secondaries",
        "track_process {\np\n}",
        "debug 2",
        "garp_extra_if all 5",
        "unicast_fault_no_peer",
    ]);
    lines.prop_map(str::to_string)
}

fn vrrp_text() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    (
        prop::collection::vec(prop::collection::vec(vrrp_line(), 0..12), 1..4),
        prop::collection::vec(prop::sample::select(vec!["I0", "I1", "I2", "X"]), 0..4),
        any::<bool>(),
    )
        .prop_map(|(instances, members, group_first)| {
            let mut s = String::from(
                "vrrp_script chk {\n script \"/bin/true\"\n weight 2\n}\ntrack_file tf {\n file /tmp/x\n}\n",
            );
            let group = format!(
                "vrrp_sync_group G {{\ngroup {{\n{}\n}}\n}}\n",
                members.join("\n")
            );
            if group_first {
                s.push_str(&group);
            }
            for (i, lines) in instances.iter().enumerate() {
                s.push_str(&format!("vrrp_instance I{i} {{\n{}\n}}\n", lines.join("\n")));
            }
            if !group_first {
                s.push_str(&group);
            }
            s
        })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

    #[test]
    fn random_vrrp_sections_round_trip(text in vrrp_text()) {
        let loaded = load_str("/gen/keepalived.conf", &text, &opts());
        let _ = loaded.config.summary();
        let written = loaded.config.to_keepalived_conf();
        let again = load_str("/written/keepalived.conf", &written, &opts());
        proptest::prop_assert_eq!(
            &loaded.config.vrrp, &again.config.vrrp,
            "{}\n--- written ---\n{}", text, written
        );
        let finished = finished_str(&text);
        proptest::prop_assert_eq!(&finished.vrrp, &loaded.config.vrrp);
    }
}

#[test]
fn scheduling_keywords_are_typed_and_checked() {
    let f = finished_str(
        "global_defs {\n vrrp_rt_priority 120\n vrrp_priority -21\n vrrp_rlimit_rttime 0\n bfd_rt_priority 0\n\
         bfd_priority -5\n bfd_rlimit_rtime 20000\n vrrp_cpu_affinity 0 1\n bfd_cpu_affinity 0 x\n\
         checker_rt_priority 50\n checker_priority -10\n vrrp_rt_priority high\n}\n",
    );
    let d = &f.diagnostics;
    assert!(has(
        d,
        2,
        "vrrp process real-time priority 120 greater than maximum 99 - setting to 99"
    ));
    assert!(has(d, 3, "vrrp_priority '-21' outside range [-20, 19]"));
    assert!(has(
        d,
        4,
        "vrrp_rlimit_rttime '0' outside range [1, 4294967295]"
    ));
    assert!(has(
        d,
        5,
        "bfd process real-time priority 0 less than minimum 1 - setting to 1"
    ));
    assert!(has(d, 9, "bfd_cpu_affinity: invalid number 'x'"));
    assert!(has(d, 12, "vrrp_rt_priority: invalid number 'high'"));
    // Read, kept, and said to be without effect: a note, which leaves the file clean.
    for line in [10, 11] {
        assert!(
            d.iter().any(|x| x.severity == Severity::Note
                && x.span.is_some_and(|s| s.line == line)
                && x.message.contains("is not applied")),
            "no note at line {line}"
        );
    }
    let g = &f.global;
    let vrrp = &g.vrrp_scheduling;
    assert_eq!(
        vrrp.rt_priority,
        Some(99),
        "clamped; a later bad line keeps it"
    );
    assert_eq!(vrrp.nice, None);
    assert_eq!(vrrp.rlimit_rttime_us, None);
    assert_eq!(vrrp.effective_rlimit_rttime_us(), Some(10_000));
    assert_eq!(vrrp.cpu_affinity, vec![0, 1]);
    let bfd = &g.bfd_scheduling;
    assert_eq!(bfd.rt_priority, Some(1));
    assert_eq!(bfd.nice, Some(-5));
    assert_eq!(bfd.rlimit_rttime_us, Some(20_000), "the older spelling");
    assert!(bfd.cpu_affinity.is_empty(), "a bad CPU drops the set");
    let checker: Vec<&str> = g.other.iter().map(|s| s.keyword.as_str()).collect();
    assert_eq!(checker, ["checker_rt_priority", "checker_priority"]);
    assert_eq!(Scheduling::default().effective_rlimit_rttime_us(), None);
}

#[test]
fn scheduling_keywords_round_trip() {
    let text =
        "global_defs {\n vrrp_rt_priority 50\n vrrp_rlimit_rttime 20000\n vrrp_cpu_affinity 1\n\
                bfd_priority -10\n}\n";
    let first = load_str("/test/keepalived.conf", text, &opts());
    assert!(first.diagnostics.is_clean(), "{:?}", first.diagnostics);
    let written = first.config.to_keepalived_conf();
    assert!(written.contains("vrrp_rt_priority 50"), "{written}");
    let second = load_str("/test/keepalived.conf", &written, &opts());
    assert_eq!(second.config.global, first.config.global);
}
