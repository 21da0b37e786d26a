//! Passive detection on a real kernel's IPVS, in one boot of the IPVS VM (see `ipvs_passive.sh`
//! for the topology): the seed's virtual server (192.168.66.251:3306, DR, wrr, persistence 120,
//! sorry server .254, one real server .253, TCP_CHECK with the seed's timings, delay_loop 20).
//! The real server and the sorry server run MariaDB (Debian's `mariadbd`, installed when
//! missing, with a data directory made on the host: see `halb_ipvs_vm::mariadb`); the seed's
//! checker is TCP_CHECK, which only connects, so the server runs with its grant tables and an
//! account for the seed's application. A client connects every 25 ms and reads the server's
//! greeting, which names the server that answered. Faults: the real server's MariaDB shuts down
//! cleanly (SIGTERM), is killed (SIGKILL), and separately its host vanishes (its link down).
//! From each fault, the time until a new client connection is greeted by the sorry server.
//!
//! halb reads the kernel's connection table, sees the client's new connections stay in
//! `SYN_RECV`, and expedites the real server's checkers; their own failures take it out. Without
//! that, the seed's checker needs at least its retries (3 x 3 s) after a refused connection and
//! 4 x 5 s + 9 s after a vanished host, and up to delay_loop (20 s) more: the test requires halb
//! below 15 s in each fault with the stall in its log (see [`HALB_BOUND_MS`]; the goal is
//! 1.5 s, printed met or not; a shared, emulated CPU is slower), and that no connection goes unserved (refused, reset, no answer to its SYN) before
//! the fault nor after the sorry server's first answer. Greetings slower than the client's 1 s limit are counted
//! apart (`fail:read-timeout`): MariaDB under emulation misses some whatever the director does.
//! Then 12 s of a client every 10 ms to the healthy server: the real server may never leave
//! (no false positive), and halb's CPU time with and without passive detection is printed.
//!
//! `HALB_PASSIVE_REPEAT=N` runs each fault N times on halb's LAN and prints the distribution.
//! `HALB_PASSIVE_CPUS=2` gives the machine two emulated CPUs (multi-threaded TCG).
//! `HALB_PASSIVE_SCENARIOS` runs only the scenarios it names (those of `ipvs_passive.sh`, for
//! example `steady:60` or `steady-light:60`, where a listener stands for MariaDB, which cannot
//! take 1,000 connections a second under emulation), and checks only those.
//! `HALB_PASSIVE_FULL=1` runs the full figures instead (the better part of an hour): keepalived
//! on its own LAN through the same faults in the same boot (one LAN after the other: one emulated
//! CPU cannot carry both), each fault 10 times for halb (unless `HALB_PASSIVE_REPEAT` says
//! otherwise), 60 s at a client every `HALB_PASSIVE_EVERY_US` µs (default 1000: 1,000
//! connections a second asked for; what the emulated machine achieves is printed), and the
//! table filled toward 100,000 entries for the cost of reading it.
//!
//! Needs root on Debian (missing packages are installed). Run with
//! `cargo test -p halb-ipvs-vm --test ipvs_passive -- --nocapture` to see the figures (2.5 to
//! 3.5 minutes of machine time on a loaded 2-core host).

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

/// What halb must beat on this machine: under the checker's own minimum after a vanished host
/// (4 x connect_timeout + 3 x delay_before_retry: 29 s). After a refusal that minimum is 9 s,
/// which a starved emulated CPU running MariaDB beside halb has come close to with passive
/// detection too (7.1 s at a host load average of 15); so the test also requires halb's log to
/// show the stall it acted on. The goal (1.5 s) is printed, met or not.
const HALB_BOUND_MS: u64 = 15000;
const GOAL_MS: u64 = 1500;

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
    // Each fault this many times on halb's LAN (keepalived's runs once).
    let repeat: usize = std::env::var("HALB_PASSIVE_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 10 } else { 1 });
    let scenarios = std::env::var("HALB_PASSIVE_SCENARIOS").unwrap_or_else(|_| {
        if full {
            "fault:mysql-stop fault:mysql-kill fault:host steady:60 steady-light:60 table:100000"
                .into()
        } else {
            "fault:mysql-stop fault:mysql-kill fault:host steady:12".into()
        }
    });
    // A scenario by its name, with or without its argument (`steady` is `steady:60`).
    let chosen = |name: &str| {
        scenarios
            .split_whitespace()
            .any(|s| s == name || s.strip_prefix(name).is_some_and(|r| r.starts_with(':')))
    };
    let settings = if full {
        format!(
            "LANS='k h'\nSCENARIOS='{scenarios}'\nSTEADY_EVERY_US={every_us}\nHALB_REPEAT={repeat}\n"
        )
    } else {
        format!("SCENARIOS='{scenarios}'\nHALB_REPEAT={repeat}\n")
    };
    // `HALB_PASSIVE_CPUS=2`: two emulated CPUs (multi-threaded TCG), which only helps on a
    // host with two cores to spare.
    let cpus: u32 = std::env::var("HALB_PASSIVE_CPUS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mariadb = halb_ipvs_vm::mariadb::prepare(work.path())?;
    let mut payload = Payload::new(format!("{settings}{SCRIPT}"))
        .file("lan.sh", LAN)
        .file("seed.conf", SEED_CONF);
    for (path, contents) in mariadb.files {
        payload = payload.file(path, contents);
    }
    let started = Instant::now();
    let output = KernelVm::new()?
        .extra_bin(&halb)
        .extra_bin(load)
        .extra_bin(&mariadb.binary)
        // Two MariaDB servers per LAN (about 80 MB each) and their data directories in RAM.
        .memory_mib(2048)
        .cpus(cpus)
        .timeout(Duration::from_secs(if full { 3600 } else { 600 }))
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

    for kind in ["mysql-stop", "mysql-kill", "host"] {
        if !chosen(&format!("fault:{kind}")) {
            continue;
        }
        for daemon in ["halb", "keepalived"] {
            let runs = if daemon == "halb" { repeat } else { 1 };
            let mut times = Vec::new();
            for run in 1..=runs {
                let name = format!("fault {kind} {daemon} {run}");
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
                    "{kind} fault, {daemon}, run {run}: first connection served by the sorry \
                     server {} after the fault ({}); {}",
                    first.map_or("never".into(), |ms| format!("{ms} ms")),
                    if first.is_some_and(|ms| ms <= GOAL_MS) {
                        "goal of 1,500 ms met"
                    } else {
                        "over the goal of 1,500 ms"
                    },
                    value(&s, "tally").unwrap_or("?")
                );
                times.extend(first);
                if daemon != "halb" {
                    continue;
                }
                let log = get(&format!("fault-log {kind} {daemon} {run}")).join("\n");
                if !log.contains(" stall") {
                    failures.push(format!(
                        "{name}: halb's log shows no stall of new connections:\n{log}"
                    ));
                }
                if first.is_none_or(|ms| ms > HALB_BOUND_MS) {
                    failures.push(format!(
                        "{name}: the sorry server should serve within {HALB_BOUND_MS} ms:\n{}\n{log}",
                        s.join("\n")
                    ));
                }
                // A MariaDB server under emulation is sometimes slow to greet (read-timeout,
                // printed in the tally); what the director decides shows as connections no
                // server took: none before the fault, none once the sorry server answers.
                if number(&s, "unserved_before") != Some(0)
                    || number(&s, "after_first_unserved") != Some(0)
                {
                    failures.push(format!(
                        "{name}: every connection taken before the fault, and by the sorry \
                         server after its first answer:\n{}",
                        s.join("\n")
                    ));
                }
            }
            if runs > 1 {
                times.sort_unstable();
                eprintln!(
                    "{kind} fault, {daemon}: {} run(s), ms to the sorry server: {times:?}; \
                     median {} ms, max {} ms, {} over 1,500 ms",
                    times.len(),
                    times.get(times.len() / 2).copied().unwrap_or(0),
                    times.last().copied().unwrap_or(0),
                    times.iter().filter(|&&t| t > 1500).count()
                );
            }
        }
    }

    for kind in ["steady", "steady-light"] {
        if !chosen(kind) {
            continue;
        }
        let steady = get(&format!("{kind} passive"));
        let without = get(&format!("{kind} no-passive"));
        if steady.is_empty() {
            failures.push(format!("{kind}: no result"));
            continue;
        }
        let attempts = number(&steady, "attempts");
        let secs: u64 = scenarios
            .split_whitespace()
            .find_map(|s| s.strip_prefix(kind)?.strip_prefix(':')?.parse().ok())
            .unwrap_or(1);
        eprintln!(
            "{kind}, healthy real server ({}): {} connection(s) in {secs} s ({} a second): {}; \
             real server removed {} time(s), {} stall line(s) logged; halb CPU {} (passive) \
             against {} (--no-passive), in ticks of 10 ms; --no-passive: {} connection(s): {}",
            if kind == "steady" {
                "MariaDB"
            } else {
                "a listener standing for it"
            },
            attempts.unwrap_or(0),
            attempts.unwrap_or(0) / secs.max(1),
            value(&steady, "tally").unwrap_or("?"),
            value(&steady, "removed").unwrap_or("?"),
            value(&steady, "stall_lines").unwrap_or("?"),
            value(&steady, "cpu_ticks").unwrap_or("?"),
            value(&without, "cpu_ticks").unwrap_or("?"),
            number(&without, "attempts").unwrap_or(0),
            value(&without, "tally").unwrap_or("?"),
        );
        // Client failures are printed, not asserted: under emulation MariaDB misses some
        // greetings with passive detection off as well (see the no-passive tally).
        let tally = value(&steady, "tally").unwrap_or("");
        if number(&steady, "removed") != Some(0) || tally.contains("sorry") {
            failures.push(format!(
                "{kind}: a healthy real server must stay in and serve every connection:\n{}\n{}",
                steady.join("\n"),
                get(&format!("{kind}-log passive")).join("\n")
            ));
        }
    }
    if chosen("table") {
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
