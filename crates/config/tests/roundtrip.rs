//! The model, written back out as keepalived.conf and read again, is unchanged; and no input,
//! however broken, makes the pipeline panic.

use halb_config::{load, load_str, LoadOptions};
use halb_test_support::skip;
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn opts() -> LoadOptions {
    LoadOptions {
        config_id: "director1".into(),
        interfaces: None,
        max_lines: 200_000,
        script_search_path: None,
    }
}

const SAMPLES: &str = "/usr/share/doc/keepalived/samples";

fn sample_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let dirs = [
        PathBuf::from(SAMPLES),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../halb/tests/corpus"),
        halb_test_support::shared_dir().join("seed"),
    ];
    for dir in dirs {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(_) if dir == Path::new(SAMPLES) => {
                skip(format!("{SAMPLES} not found (keepalived is not installed)"));
                continue;
            }
            Err(e) => panic!("cannot read {}: {e}", dir.display()),
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if p.is_file() && (name.starts_with("keepalived.conf") || name.ends_with(".conf")) {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

fn assert_round_trip(name: &str, config: &halb_config::model::Config) {
    let written = config.to_keepalived_conf();
    let again = load_str("/written/keepalived.conf", &written, &opts());
    assert_eq!(
        *config, again.config,
        "{name}: the written-back configuration reads differently:\n{written}"
    );
    let errors: Vec<_> = again
        .diagnostics
        .iter()
        .filter(|d| d.message.starts_with("unknown keyword"))
        .map(|d| d.message.clone())
        .collect();
    assert!(
        errors.is_empty(),
        "{name}: halb wrote keywords it does not read: {errors:?}\n{written}"
    );
}

#[test]
fn samples_and_corpus_round_trip() {
    let files = sample_files();
    assert!(
        files.len() >= 20,
        "expected keepalived's samples and halb's corpus, found {files:?}"
    );
    for f in &files {
        let loaded = load(f, &opts());
        assert_round_trip(&f.display().to_string(), &loaded.config);
    }
}

/// Inputs the fuzzer found that once changed on a round trip.
#[test]
fn fuzz_findings_round_trip() {
    let cases = [
        // A kept keyword that is an empty quoted word.
        "global_defs {\n    vrrp_iptables {\n        \"\" x\n    }\n}\n",
        // A word starting with '@' (a conditional when unquoted at the start of a line).
        "global_defs {\n    notification_email {\n        @x\n    }\n}\n",
        // Words with comment characters, braces and backslashes.
        "global_defs {\n    router_id \"a#b{c}\\\\d\"\n}\n",
        // A definition that doubles itself on every substitution round (braced: an unbraced
        // name must end its word to be substituted).
        "$X=${X}${X}\n$X",
        // A multi-line definition that opens a block and refers to itself: endless nesting.
        "$X=n{\\\n${X}${X}\n$X",
        // One whose second line includes it twice: failing includes emit nothing, lines double.
        "$X=)\\\ninclude ${X}${X}\n$X",
    ];
    for text in cases {
        let loaded = load_str("/fuzz/keepalived.conf", text, &opts());
        assert_round_trip(text, &loaded.config);
    }
}

/// A generated VRRP instance, as keepalived.conf text.
fn instance() -> impl Strategy<Value = String> {
    (
        1u8..=255,
        1u8..=254,
        prop::sample::select(vec!["MASTER", "BACKUP"]),
        prop::collection::vec((1u8..=254, 8u8..=32), 1..4),
        any::<bool>(),
        1u32..=5,
    )
        .prop_map(|(vrid, prio, state, vips, nopreempt, advert)| {
            let vips: String = vips
                .iter()
                .map(|(h, p)| format!("        10.1.{vrid}.{h}/{p}\n"))
                .collect();
            format!(
                "vrrp_instance VI_{vrid} {{\n    state {state}\n    interface eth0\n    virtual_router_id {vrid}\n    priority {prio}\n    advert_int {advert}\n{}    virtual_ipaddress {{\n{vips}    }}\n}}\n",
                if nopreempt && state == "BACKUP" { "    nopreempt\n" } else { "" }
            )
        })
}

/// A generated virtual server with real servers and checkers, as keepalived.conf text.
fn virtual_server() -> impl Strategy<Value = String> {
    (
        1u16..=65535,
        prop::sample::select(vec!["rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"]),
        prop::sample::select(vec!["DR", "NAT", "TUN"]),
        prop::option::of(1u32..=3600),
        1u32..=120,
        prop::collection::vec((1u8..=254, 1u32..=100, 1u32..=10, 0u32..=5, prop::sample::select(vec!["TCP_CHECK", "HTTP_GET", "MISC_CHECK"])), 1..5),
        prop::option::of(1u8..=254),
    )
        .prop_map(|(port, sched, kind, persistence, delay, reals, sorry)| {
            let mut s = format!(
                "virtual_server 10.2.0.1 {port} {{\n    delay_loop {delay}\n    lb_algo {sched}\n    lb_kind {kind}\n    protocol TCP\n"
            );
            if let Some(p) = persistence {
                s.push_str(&format!("    persistence_timeout {p}\n"));
            }
            if let Some(h) = sorry {
                s.push_str(&format!("    sorry_server 10.3.0.{h} {port}\n"));
            }
            let mut seen = std::collections::BTreeSet::new();
            for (host, weight, timeout, retry, checker) in reals {
                if !seen.insert(host) {
                    continue;
                }
                s.push_str(&format!("    real_server 10.2.1.{host} {port} {{\n        weight {weight}\n"));
                match checker {
                    "HTTP_GET" => s.push_str(&format!(
                        "        HTTP_GET {{\n            url {{\n                path /health\n                status_code 200\n            }}\n            connect_timeout {timeout}\n            retry {retry}\n        }}\n"
                    )),
                    "MISC_CHECK" => s.push_str(&format!(
                        "        MISC_CHECK {{\n            misc_path \"/usr/bin/test -e /tmp\"\n            misc_timeout {timeout}\n        }}\n"
                    )),
                    _ => s.push_str(&format!(
                        "        TCP_CHECK {{\n            connect_timeout {timeout}\n            retry {retry}\n            delay_before_retry 1\n        }}\n"
                    )),
                }
                s.push_str("    }\n");
            }
            s.push_str("}\n");
            s
        })
}

fn configuration() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(instance(), 0..3),
        prop::collection::vec(virtual_server(), 0..3),
    )
        .prop_map(|(instances, servers)| {
            let mut s = String::from("global_defs {\n    router_id generated\n}\n");
            // VRIDs must be unique per interface: keep the first of each.
            let mut vrids = std::collections::BTreeSet::new();
            for i in instances {
                let vrid = i.lines().nth(3).unwrap_or_default().to_string();
                if vrids.insert(vrid) {
                    s.push_str(&i);
                }
            }
            let mut ports = std::collections::BTreeSet::new();
            for v in servers {
                let head = v.lines().next().unwrap_or_default().to_string();
                if ports.insert(head) {
                    s.push_str(&v);
                }
            }
            s
        })
}

/// Words that steer random text towards the parser's interesting paths.
fn tokenish() -> impl Strategy<Value = String> {
    let tokens = prop::sample::select(vec![
        "{",
        "}",
        "\"",
        "'",
        "#",
        "!",
        "\\",
        "$X",
        "${X}",
        "$X=1",
        "$M= \\",
        "@director1 ",
        "@^x ",
        "~SEQ(N,1,3) ",
        "~LST(A,1,2) ",
        "include /none ",
        "vrrp_instance V",
        "virtual_server 10.0.0.1 80",
        "real_server 10.0.0.2 80",
        "TCP_CHECK",
        "HTTP_GET",
        "url",
        "virtual_ipaddress",
        "priority 300",
        "virtual_router_id 0",
        "advert_int 0.001",
        "authentication",
        "auth_pass 123456789",
        "\n",
        " ",
        "nb_get_retry 3",
        "sorry_server 1.2.3.4 5",
        "global_defs",
        "vrrp_sync_group",
        "group",
        "notify \"/x y\"",
    ]);
    prop::collection::vec(
        prop_oneof![tokens.prop_map(str::to_string), "[ -~]{0,8}"],
        0..80,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn generated_configurations_round_trip(text in configuration()) {
        let loaded = load_str("/gen/keepalived.conf", &text, &opts());
        let unclean: Vec<_> = loaded.diagnostics.iter().filter(|d| d.severity != halb_config::diagnostic::Severity::Note).map(|d| d.message.clone()).collect();
        // Generated text is valid keepalived: nothing but the per-file notes may be reported.
        prop_assert!(unclean.is_empty() || unclean.iter().all(|m| m.contains("script")), "{unclean:?}\n{text}");
        assert_round_trip("generated", &loaded.config);
        // What was generated is what was read.
        let summary = loaded.config.summary();
        let instances = text.matches("vrrp_instance").count();
        let servers = text.matches("virtual_server ").count();
        prop_assert_eq!(summary.vrrp_instances.len(), instances);
        prop_assert_eq!(summary.virtual_servers.len(), servers);
    }

    #[test]
    fn any_text_reads_without_panic_and_round_trips(text in tokenish()) {
        let loaded = load_str("/any/keepalived.conf", &text, &opts());
        let _ = loaded.diagnostics.render(&loaded.sources, halb_config::diagnostic::Format::Human, false);
        let _ = loaded.config.summary();
        assert_round_trip("random", &loaded.config);
    }

    #[test]
    fn arbitrary_bytes_read_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let loaded = load_str("/bytes/keepalived.conf", &text, &opts());
        let _ = loaded.diagnostics.render(&loaded.sources, halb_config::diagnostic::Format::Short, false);
    }
}
