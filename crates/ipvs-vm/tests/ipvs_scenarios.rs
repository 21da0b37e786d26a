//! halb as an LVS director on a real kernel, in one boot of the IPVS VM (see
//! `ipvs_scenarios.sh` for the topology): a client, two directors and two direct-routing real
//! servers prepared with `halb realserver start`.
//!
//! - Direct routing end to end, and the seed's case 4.3.2: a real server loses its VIP on `lo`
//!   (`halb realserver stop`). halb's DR-path check takes it out and every connection goes to the
//!   other server; keepalived, on the same topology from the same file, keeps it in and the
//!   connections sent there fail.
//! - Director failover with the connection sync daemon: a TCP connection established through the
//!   MASTER keeps working after the MASTER dies and the BACKUP takes the VIP; without
//!   `lvs_sync_daemon` (the control), the same connection is reset.
//!
//! Needs root on Debian (missing packages are installed). Run with
//! `cargo test -p halb-ipvs-vm --test ipvs_scenarios -- --nocapture` to see the figures.

use anyhow::{bail, Context, Result};
use halb_ipvs_vm::kernel_vm::{sections, KernelVm, Payload};
use std::time::{Duration, Instant};

const SCRIPT: &str = include_str!("ipvs_scenarios.sh");
const LAN: &str = include_str!("lan.sh");
const MARK: &str = "@@ipvs-scn@@ ";

fn instance(state: &str, priority: u8) -> String {
    format!(
        "vrrp_instance VI_1 {{
    state {state}
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int 1
    virtual_ipaddress {{
        10.0.0.100/24 dev eth0
    }}
}}
"
    )
}

/// The seed's shape: a VIP by VRRP, a DR virtual server, TCP_CHECK on each real server.
fn dr_conf() -> String {
    let mut s = String::from("global_defs {\n    router_id d1\n}\n");
    s += &instance("MASTER", 150);
    s += "virtual_server 10.0.0.100 80 {
    delay_loop 2
    lb_algo rr
    lb_kind DR
    protocol TCP
";
    for rs in ["10.0.0.21", "10.0.0.22"] {
        s += &format!(
            "    real_server {rs} 80 {{
        weight 1
        TCP_CHECK {{
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }}
    }}
"
        );
    }
    s + "}\n"
}

fn failover_conf(director: &str, sync: bool) -> String {
    let mut s = format!("global_defs {{\n    router_id {director}\n");
    if sync {
        s += "    lvs_sync_daemon eth0 VI_1\n";
    }
    s += "}\n";
    s += &if director == "d1" {
        instance("MASTER", 150)
    } else {
        instance("BACKUP", 100)
    };
    s + "virtual_server 10.0.0.100 9000 {
    delay_loop 3
    lb_algo rr
    lb_kind DR
    protocol TCP
    real_server 10.0.0.21 9000 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
"
}

/// The value of `key: value` in a section.
fn value<'a>(lines: &'a [String], key: &str) -> Option<&'a str> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
}

/// "r1=A r2=B fail=C" as numbers.
fn tally(s: &str) -> Result<(u32, u32, u32)> {
    let mut n = [0u32; 3];
    for (i, key) in ["r1=", "r2=", "fail="].iter().enumerate() {
        n[i] = s
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .with_context(|| format!("no {key} in {s:?}"))?
            .parse()?;
    }
    Ok((n[0], n[1], n[2]))
}

#[test]
fn director_scenarios_on_a_real_kernel() -> Result<()> {
    halb_ipvs_vm::ensure_prerequisites()?;
    let work = tempfile::tempdir()?;
    let halb = halb_ipvs_vm::halb_binary::stripped_into(work.path())?;
    let scenarios = std::env::var("IPVS_SCENARIOS").ok();
    let script = match &scenarios {
        Some(s) => format!("SCENARIOS='{s}'\n{SCRIPT}"),
        None => SCRIPT.to_string(),
    };
    let payload = Payload::new(script)
        .file("lan.sh", LAN)
        .file("dr.conf", dr_conf())
        .file("failover-sync-d1.conf", failover_conf("d1", true))
        .file("failover-sync-d2.conf", failover_conf("d2", true))
        .file("failover-nosync-d1.conf", failover_conf("d1", false))
        .file("failover-nosync-d2.conf", failover_conf("d2", false));
    let started = Instant::now();
    let output = KernelVm::new()?
        .extra_bin(&halb)
        .timeout(Duration::from_secs(600))
        .run(&payload)?;
    eprintln!(
        "ipvs scenarios: boot and scenarios in {:?}",
        started.elapsed()
    );
    eprintln!("{}", output.stdout);
    let out = sections(&output.stdout, MARK);
    if !out.contains_key("end") {
        bail!("the scenarios did not finish:\n{}", output.stdout);
    }
    let get = |name: &str| -> Vec<String> { out.get(name).cloned().unwrap_or_default() };
    let mut failures = Vec::new();

    for daemon in ["halb", "keepalived"] {
        let name = format!("dr {daemon}");
        if !out.contains_key(&name) {
            continue;
        }
        let s = get(&name);
        let (Some(before), Some(after)) = (value(&s, "before"), value(&s, "after")) else {
            failures.push(format!("{name}: no tallies:\n{}", s.join("\n")));
            continue;
        };
        let (b1, b2, bf) = tally(before)?;
        let (a1, a2, af) = tally(after)?;
        eprintln!("{name}: before {before}; after r2 lost its VIP: {after}");
        if b1 == 0 || b2 == 0 || bf != 0 {
            failures.push(format!(
                "{name}: both real servers should answer at first: {before}"
            ));
        }
        match daemon {
            "halb" => {
                let removed = value(&s, "r2_removed_ms");
                eprintln!("{name}: r2 out of the table {removed:?} ms after its VIP went");
                if removed.is_none() || a1 != 20 || a2 != 0 || af != 0 {
                    failures.push(format!(
                        "{name}: the DR-path check should take r2 out and send everything to r1: {after}\n{}",
                        s.join("\n")
                    ));
                }
            }
            _ => {
                // keepalived's TCP_CHECK to r2's own address still succeeds: r2 stays in and
                // its share of the connections fails.
                if af == 0 || value(&s, "r2_removed_ms").is_some() {
                    failures.push(format!(
                        "{name}: keepalived was expected to keep r2 and lose connections: {after}"
                    ));
                }
            }
        }
    }

    for mode in ["sync", "nosync"] {
        if !out.contains_key(&format!("sync {mode}")) {
            continue;
        }
        let s = get(&format!("sync {mode}"));
        let client = get(&format!("sync-client {mode}"));
        let ok: u32 = value(&client, "after_ok")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        eprintln!(
            "sync {mode}: VIP on d2 after {:?} ms; {ok} of 3 lines answered after the failover",
            value(&s, "vip_on_d2_ms")
        );
        let synced = s
            .iter()
            .skip_while(|l| !l.starts_with("d2_conns_before"))
            .nth(1)
            .is_some_and(|l| l.contains("10.0.0.21:9000"));
        match mode {
            "sync" if ok != 3 || !synced => failures.push(format!(
                "sync: the connection should be on d2 before the failover and survive it:\n{}\n{}",
                s.join("\n"),
                client.join("\n")
            )),
            "nosync" if ok != 0 => failures.push(format!(
                "nosync: without the sync daemon the connection should not survive:\n{}",
                client.join("\n")
            )),
            _ => {}
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("\n\n"));
    }
    Ok(())
}
