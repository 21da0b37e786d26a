//! Passive detection on a real kernel's IPVS, in one boot of the IPVS VM (see `ipvs_passive.sh`
//! for the topology): the seed's virtual server (192.168.66.251:3306, DR, wrr, persistence 120,
//! sorry server .254, one real server .253, TCP_CHECK with the seed's timings, delay_loop 20).
//! A client connects every 15 ms; the real server's listener dies (refused connections), and
//! separately its host vanishes (no answer at all). From each fault, the time until a new client
//! connection is answered by the sorry server.
//!
//! halb reads the kernel's connection table, sees the client's new connections stay in
//! `SYN_RECV`, and expedites the real server's checkers; their own failures take it out. Without
//! that, the seed's checker needs at least its retries (3 x 3 s) after a refused connection and
//! 4 x 5 s + 9 s after a vanished host, and up to delay_loop (20 s) more: the test requires halb
//! below 5 s in both (the goal is 1.5 s; a shared, emulated CPU is slower), that every
//! connection after the first one served by the sorry server is served by it, and that none fails
//! before the fault. Then 12 s of a client every 10 ms to the healthy server: no connection may
//! fail and the real server may never leave (no false positive), and halb's CPU time with and
//! without passive detection is printed.
//!
//! `HALB_PASSIVE_FULL=1` runs the full figures instead (about ten minutes): keepalived on its
//! own LAN through the same faults in the same boot (one LAN after the other: one emulated CPU
//! cannot carry both), 60 s at a client every `HALB_PASSIVE_EVERY_US` µs (default 1000: 1,000
//! connections a second asked for; what the emulated machine achieves is printed), and the
//! table filled toward 100,000 entries for the cost of reading it.
//!
//! Needs root on Debian (missing packages are installed). Run with
//! `cargo test -p halb-ipvs-vm --test ipvs_passive -- --nocapture` to see the figures.

use anyhow::{bail, Result};
use halb_ipvs_vm::kernel_vm::{sections, KernelVm, Payload};
use std::time::{Duration, Instant};

const SCRIPT: &str = include_str!("ipvs_passive.sh");
const LAN: &str = include_str!("lan.sh");
const MARK: &str = "@@ipvs-passive@@ ";

/// The seed's `keepalived-master.conf`, its first virtual server and its VRRP instance (without
/// the sync daemon, which has no peer here), with the seed's timings.
const SEED_CONF: &str = "global_defs {
   router_id lvs50
}
vrrp_instance INT {
    state MASTER
    interface eth0
    virtual_router_id 200
    priority 100
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass lvs50test
    }
    virtual_ipaddress {
        192.168.66.251
    }
}
virtual_server 192.168.66.251 3306 {
    delay_loop 20
    lb_algo wrr
    lb_kind DR
    persistence_timeout 120
    protocol TCP
    sorry_server 192.168.66.254 3306
    real_server 192.168.66.253 3306 {
        weight 1
        TCP_CHECK {
            connect_timeout 5
            nb_get_retry 3
            delay_before_retry 3
            connect_port 3306
        }
    }
}
";

/// What halb must beat on this machine: well under the checker's own minimum (9 s).
const HALB_BOUND_MS: u64 = 5000;

fn value<'a>(lines: &'a [String], key: &str) -> Option<&'a str> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
}

fn number(lines: &[String], key: &str) -> Option<u64> {
    value(lines, key)?.split_whitespace().next()?.parse().ok()
}

#[test]
fn passive_detection_on_a_real_kernel() -> Result<()> {
    halb_ipvs_vm::ensure_prerequisites()?;
    let full = std::env::var_os("HALB_PASSIVE_FULL").is_some();
    let work = tempfile::tempdir()?;
    let halb = halb_ipvs_vm::halb_binary::stripped_into(work.path())?;
    let load = env!("CARGO_BIN_EXE_vm-conn-load");
    let every_us: u32 = std::env::var("HALB_PASSIVE_EVERY_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let settings = if full {
        format!(
            "LANS='k h'\nSCENARIOS='fault:mysql fault:host steady:60 table:100000'\n\
             STEADY_EVERY_US={every_us}\n"
        )
    } else {
        String::new()
    };
    let payload = Payload::new(format!("{settings}{SCRIPT}"))
        .file("lan.sh", LAN)
        .file("seed.conf", SEED_CONF);
    let started = Instant::now();
    let output = KernelVm::new()?
        .extra_bin(&halb)
        .extra_bin(load)
        .timeout(Duration::from_secs(if full { 1800 } else { 600 }))
        .run(&payload)?;
    eprintln!(
        "ipvs passive: boot and scenarios in {:?}",
        started.elapsed()
    );
    eprintln!("{}", output.stdout);
    let out = sections(&output.stdout, MARK);
    if !out.contains_key("end") {
        bail!("the scenarios did not finish:\n{}", output.stdout);
    }
    let get = |name: &str| -> Vec<String> { out.get(name).cloned().unwrap_or_default() };
    let mut failures = Vec::new();

    for kind in ["mysql", "host"] {
        for daemon in ["halb", "keepalived"] {
            let name = format!("fault {kind} {daemon}");
            if !out.contains_key(&name) {
                if daemon == "halb" {
                    failures.push(format!(
                        "{name}: no result:\n{}",
                        get(&format!("fault {kind}")).join("\n")
                    ));
                }
                continue;
            }
            let s = get(&name);
            let first = number(&s, "first_ms");
            eprintln!(
                "{kind} fault, {daemon}: first connection served by the sorry server {} after the fault; {}",
                first.map_or("never".into(), |ms| format!("{ms} ms")),
                value(&s, "tally").unwrap_or("?")
            );
            if daemon != "halb" {
                continue;
            }
            let log = get(&format!("fault-log {kind} {daemon}")).join("\n");
            if first.is_none_or(|ms| ms > HALB_BOUND_MS) {
                failures.push(format!(
                    "{name}: the sorry server should serve within {HALB_BOUND_MS} ms:\n{}\n{log}",
                    s.join("\n")
                ));
            }
            if number(&s, "fail_before") != Some(0)
                || number(&s, "after_first_not_sorry") != Some(0)
            {
                failures.push(format!(
                    "{name}: no failure before the fault, and only the sorry server after it:\n{}",
                    s.join("\n")
                ));
            }
        }
    }

    let steady = get("steady passive");
    if steady.is_empty() {
        failures.push("steady: no result".into());
    } else {
        let attempts = number(&steady, "attempts");
        eprintln!(
            "steady, healthy real server: {} connection(s): {}; real server removed {} time(s); \
             halb CPU {} (passive) against {} (--no-passive), in ticks of 10 ms",
            attempts.unwrap_or(0),
            value(&steady, "tally").unwrap_or("?"),
            value(&steady, "removed").unwrap_or("?"),
            value(&steady, "cpu_ticks").unwrap_or("?"),
            value(&get("steady no-passive"), "cpu_ticks").unwrap_or("?"),
        );
        let tally = value(&steady, "tally").unwrap_or("");
        if number(&steady, "removed") != Some(0)
            || tally.contains("fail")
            || tally.contains("sorry")
        {
            failures.push(format!(
                "steady: a healthy real server must stay in and serve every connection:\n{}\n{}",
                steady.join("\n"),
                get("steady-log passive").join("\n")
            ));
        }
    }
    if full {
        for mode in ["no-passive", "passive"] {
            let t = get(&format!("table 100000 {mode}"));
            eprintln!(
                "table filled toward 100,000 entries, {mode}:\n{}",
                t.join("\n")
            );
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("\n\n"));
    }
    Ok(())
}
