//! Large generated files: every check is linear in the size of the file, and a mistake repeated
//! thousands of times gives one finding per repetition (naming the first), printed up to a cap
//! with a count of the rest. No timing is asserted: a quadratic check would make these tests
//! run for minutes (100,000 real servers took 8 s in the old duplicate check alone, 140,000
//! took 22 s), which CI's time limit catches.

use halb_config::diagnostic::{Format, Severity, MAX_ALIKE};
use halb_config::{load_str, LoadOptions, Loaded};

fn opts() -> LoadOptions {
    LoadOptions {
        config_id: "director1".into(),
        interfaces: None,
        max_lines: 5_000_000,
        script_search_path: None,
    }
}

fn load(text: &str) -> Loaded {
    load_str("/gen/keepalived.conf", text, &opts())
}

/// The n-th address of 10.0.0.0/8.
fn addr(n: usize) -> String {
    format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
}

fn messages<'a>(loaded: &'a Loaded, containing: &str) -> Vec<&'a str> {
    loaded
        .diagnostics
        .iter()
        .filter(|d| d.message.contains(containing))
        .map(|d| d.message.as_str())
        .collect()
}

/// 100,000 real servers, ten per virtual server, as bench/gen-config.py writes them (without
/// the checkers, to keep the file small): read whole and clean.
#[test]
fn hundred_thousand_real_servers_are_read() {
    let mut text = String::from("global_defs {\n router_id scale\n}\n");
    for vs in 0..10_000 {
        text.push_str(&format!(
            "virtual_server 10.255.255.1 {} {{\n lb_algo wrr\n lb_kind DR\n protocol TCP\n",
            1024 + vs
        ));
        for rs in 0..10 {
            text.push_str(&format!(
                " real_server {} {} {{\n  weight 1\n }}\n",
                addr(vs * 10 + rs),
                1024 + vs
            ));
        }
        text.push_str("}\n");
    }
    let loaded = load(&text);
    assert!(
        loaded.diagnostics.is_clean(),
        "{}",
        loaded
            .diagnostics
            .render(&loaded.sources, Format::Short, false)
    );
    let lvs = &loaded.config.lvs;
    assert_eq!(lvs.virtual_servers.len(), 10_000);
    let real_servers: usize = lvs
        .virtual_servers
        .iter()
        .map(|v| v.real_servers.len())
        .sum();
    assert_eq!(real_servers, 100_000);
}

/// One service whose 50,000 real servers are all given twice: one finding per second copy,
/// naming the first copy's line; the model keeps each once. Printed: the first ten and a count.
#[test]
fn duplicate_real_servers_give_one_finding_each() {
    let n = 50_000;
    let mut text = String::from(
        "virtual_server 10.255.255.1 80 {\n lb_algo rr\n lb_kind NAT\n protocol TCP\n",
    );
    for i in 0..n {
        text.push_str(&format!(
            " real_server {} 80 {{\n  weight 1\n }}\n",
            addr(i)
        ));
    }
    for i in 0..n {
        text.push_str(&format!(
            " real_server {} 80 {{\n  weight 1\n }}\n",
            addr(i)
        ));
    }
    text.push_str("}\n");
    let loaded = load(&text);
    let dups: Vec<_> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.message.contains("is duplicated"))
        .collect();
    assert_eq!(dups.len(), n);
    // The second copy of the first real server: its first copy is on line 5.
    assert_eq!(
        dups[0].message,
        "VS 10.255.255.1:80: real server 10.0.0.0:80 is duplicated - removing second rs"
    );
    assert_eq!(dups[0].help.as_deref(), Some("the first is on line 5"));
    assert_eq!(loaded.config.lvs.virtual_servers[0].real_servers.len(), n);
    let out = loaded
        .diagnostics
        .render(&loaded.sources, Format::Short, false);
    assert_eq!(out.lines().count(), MAX_ALIKE + 1, "{out}");
    assert!(
        out.lines().last().is_some_and(
            |l| l.starts_with(&format!("note: {} more warning(s) like", n - MAX_ALIKE))
        ),
        "{out}"
    );
}

/// 20,000 instances on one VRID (keepalived's verdict: the file cannot run): one finding per
/// instance after the first, each naming the first, not one per pair (that was 774,345
/// findings and 164 MB of output); ten printed and the rest counted.
#[test]
fn twenty_thousand_instances_on_one_vrid() {
    let n = 20_000;
    let text: String = (0..n)
        .map(|i| {
            format!(
                "vrrp_instance VI_{i} {{\n interface eth0\n virtual_router_id 51\n \
                 virtual_ipaddress {{\n  {}\n }}\n}}\n",
                addr(i)
            )
        })
        .collect();
    let loaded = load(&text);
    let conflicts = messages(&loaded, "both use VRID 51");
    assert_eq!(conflicts.len(), n - 1);
    assert!(conflicts.iter().all(|m| m.starts_with("VI_0 and VI_")));
    assert!(loaded.diagnostics.has_errors());
    let out = loaded
        .diagnostics
        .render(&loaded.sources, Format::Short, false);
    let counted = format!("note: {} more error(s) like", n - 1 - MAX_ALIKE);
    assert!(out.lines().any(|l| l.starts_with(&counted)), "{out}");
    assert!(out.len() < 10_000, "{} bytes of output", out.len());
}

/// Thousands of scripts, track files, sync groups, groups defined after their services, VMAC
/// names and BFD instances: each found by name, not by a scan of the earlier ones (these took
/// seconds to minutes before). The verdicts stay keepalived's: a group's second claim on an
/// instance, a VMAC name in use and a BFD duplicate are still reported, once each.
#[test]
fn thousands_of_named_things_are_found_by_name() {
    let n = 10_000;
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "vrrp_script s{i} {{\n script \"/bin/true\"\n weight 0\n}}\n\
             track_file f{i} {{\n file \"/var/lib/halb-weights/f{i}\"\n weight 0\n}}\n"
        ));
    }
    // Sync groups before and after their instances (unweighted trackers: keepalived drops
    // weighted ones of a sync group's members).
    for i in (0..n / 2).step_by(2) {
        text.push_str(&format!(
            "vrrp_sync_group G{i} {{\n group {{\n  I{i}\n  I{}\n }}\n}}\n",
            i + 1
        ));
    }
    for i in 0..n {
        text.push_str(&format!(
            "vrrp_instance I{i} {{\n interface eth{}\n virtual_router_id {}\n priority 100\n \
             use_vmac vm{}\n track_script {{\n  s{i}\n }}\n track_file {{\n  f{i}\n }}\n \
             virtual_ipaddress {{\n  {}\n }}\n}}\n",
            i / 200,
            i % 200 + 1,
            // The last instance takes the first one's VMAC name.
            if i == n - 1 { 0 } else { i },
            addr(i)
        ));
    }
    for i in (n / 2..n).step_by(2) {
        text.push_str(&format!(
            "vrrp_sync_group G{i} {{\n group {{\n  I{i}\n  I{}\n }}\n}}\n",
            i + 1
        ));
    }
    // I0 and I2 are in G0 and G2 already: the group is left with no member.
    text.push_str("vrrp_sync_group G_again {\n group {\n  I0\n  I2\n }\n}\n");
    for i in 0..n {
        text.push_str(&format!(
            "virtual_server group g{i} {{\n lb_algo rr\n lb_kind NAT\n protocol TCP\n \
             real_server {} 80 {{\n  weight 1\n }}\n}}\n",
            addr(i)
        ));
    }
    for i in 0..n {
        text.push_str(&format!(
            "virtual_server_group g{i} {{\n 10.200.{}.{} 80\n}}\n",
            i / 256,
            i % 256
        ));
    }
    for i in 0..n {
        text.push_str(&format!(
            "bfd_instance b{i} {{\n neighbor_ip {}\n}}\n",
            addr(i)
        ));
    }
    text.push_str(&format!(
        "bfd_instance b_again {{\n neighbor_ip {}\n}}\n",
        addr(0)
    ));
    let loaded = load(&text);
    let c = &loaded.config;
    assert_eq!(c.vrrp.instances.len(), n);
    assert!(c
        .vrrp
        .instances
        .iter()
        .all(|i| i.track_script.len() == 1 && i.track_file.len() == 1));
    assert_eq!(c.vrrp.scripts.len(), n, "every script is tracked");
    assert_eq!(c.vrrp.sync_groups.len(), n / 2);
    assert!(c.vrrp.sync_groups.iter().all(|g| g.group.len() == 2));
    assert_eq!(c.lvs.virtual_servers.len(), n);
    assert_eq!(c.lvs.groups.len(), n);
    assert_eq!(c.bfd.len(), n);
    assert_eq!(
        messages(&loaded, "cannot exist in more than one sync group"),
        [
            "Virtual router I0 cannot exist in more than one sync group; ignoring G_again",
            "Virtual router I2 cannot exist in more than one sync group; ignoring G_again"
        ]
    );
    assert_eq!(messages(&loaded, "no matching virtual router").len(), 1);
    assert_eq!(
        messages(&loaded, "is already using vm0"),
        [format!(
            "(I{}) VRRP instance I0 is already using vm0 - ignoring name",
            n - 1
        )
        .as_str()]
    );
    assert_eq!(messages(&loaded, "has duplicate neighbor address").len(), 1);
    let warnings = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity >= Severity::Warning)
        .count();
    // The ones above, and nothing else.
    assert_eq!(
        warnings,
        5,
        "{}",
        loaded
            .diagnostics
            .render(&loaded.sources, Format::Short, false)
    );
}
