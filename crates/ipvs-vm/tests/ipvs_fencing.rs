//! Connection fencing on a real kernel's IPVS, keepalived against halb from the same file, in
//! one boot of the IPVS VM (see `ipvs_fencing.sh` for the topology): a client holds a
//! connection through the VIP while the traffic moves away from its server, first the real
//! server taken out while it still serves (its check port closed), then the sorry server handing
//! back (the seed's complaint: connections left on the old master for minutes after the
//! failback).
//!
//! keepalived leaves the connection's IPVS entry in place: the client either goes on talking to
//! the server left behind or stalls, its packets dropped, until the entry times out (15 minutes
//! for an established TCP connection). halb (`connection_fencing close`, the default for a
//! TCP_CHECK service) ends it: the entry is expired, the client's next packet reaches the
//! director's own stack and is answered with a reset, within a second of the switch.
//!
//! Needs root on Debian (missing packages are installed). Run with
//! `cargo test -p halb-ipvs-vm --test ipvs_fencing -- --nocapture` to see the figures.

use anyhow::{bail, Result};
use halb_ipvs_vm::kernel_vm::{sections, KernelVm, Payload};
use std::time::{Duration, Instant};

const SCRIPT: &str = include_str!("ipvs_fencing.sh");
const LAN: &str = include_str!("lan.sh");
const MARK: &str = "@@ipvs-fence@@ ";

/// The seed's shape on the lab's addresses: a VIP by VRRP, a persistent DR virtual server with
/// a sorry server, TCP_CHECK on a port of its own so that the check can fail while the server
/// serves.
fn fence_conf() -> String {
    "global_defs {
    router_id d1
}
vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    virtual_ipaddress {
        10.0.0.100/24 dev eth0
    }
}
virtual_server 10.0.0.100 9000 {
    delay_loop 1
    lb_algo wrr
    lb_kind DR
    persistence_timeout 120
    protocol TCP
    sorry_server 10.0.0.22 9000
    real_server 10.0.0.21 9000 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
            nb_get_retry 1
            delay_before_retry 1
            connect_port 9001
        }
    }
}
"
    .to_string()
}

fn value<'a>(lines: &'a [String], key: &str) -> Option<&'a str> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
}

/// What became of the client's connection after one switch.
enum Fate {
    /// Reset or closed, this many ms after the table showed the switch.
    Reset(i64),
    /// No answer within a second: the packets go nowhere.
    Stalled(i64),
    /// Still echoing when the watch ended.
    Open,
}

impl std::fmt::Display for Fate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fate::Reset(ms) => write!(f, "reset {ms} ms after the switch"),
            Fate::Stalled(ms) => {
                write!(f, "stalled (no answer within 1 s) {ms} ms after the switch")
            }
            Fate::Open => write!(f, "still open and echoing 6 s after the switch"),
        }
    }
}

fn fate(lines: &[String]) -> Option<Fate> {
    if value(lines, "open_after_switch_s").is_some() {
        return Some(Fate::Open);
    }
    let after: i64 = value(lines, "ended_after_switch_ms")?.parse().ok()?;
    let rc: i32 = value(lines, "ended_rc")?.parse().ok()?;
    Some(if rc > 128 {
        Fate::Stalled(after)
    } else {
        Fate::Reset(after)
    })
}

#[test]
fn halb_ends_connections_to_the_server_left_within_a_second_keepalived_does_not() -> Result<()> {
    halb_ipvs_vm::ensure_prerequisites()?;
    let work = tempfile::tempdir()?;
    let halb = halb_ipvs_vm::halb_binary::stripped_into(work.path())?;
    let payload = Payload::new(SCRIPT)
        .file("lan.sh", LAN)
        .file("fence.conf", fence_conf());
    let started = Instant::now();
    let output = KernelVm::new()?
        .extra_bin(&halb)
        .timeout(Duration::from_secs(400))
        .run(&payload)?;
    eprintln!(
        "ipvs fencing: boot and scenarios in {:?}",
        started.elapsed()
    );
    eprintln!("{}", output.stdout);
    let out = sections(&output.stdout, MARK);
    if !out.contains_key("end") {
        bail!("the scenarios did not finish:\n{}", output.stdout);
    }
    let mut failures = Vec::new();
    for daemon in ["keepalived", "halb"] {
        for phase in ["out", "handback"] {
            let name = format!("{phase} {daemon}");
            let lines = out.get(&name).cloned().unwrap_or_default();
            if value(&lines, "switched") != Some("yes") {
                failures.push(format!(
                    "{name}: the switch never happened:\n{}",
                    lines.join("\n")
                ));
                continue;
            }
            let fate = fate(&lines);
            let told = fate
                .as_ref()
                .map_or("no result".to_string(), Fate::to_string);
            eprintln!(
                "{name}: the switch seen in the table {} ms after its cause; the connection to \
                 the server left: {told} ({} ms after the cause)",
                value(&lines, "switch_seen_after_cause_ms").unwrap_or("?"),
                value(&lines, "ended_after_cause_ms").unwrap_or("-")
            );
            if let Some(entry) = lines.iter().skip_while(|l| *l != "conns_at_end:").nth(1) {
                eprintln!("{name}: IPVS entries at the end: {entry}");
            }
            let ok = match daemon {
                "halb" => matches!(fate, Some(Fate::Reset(ms)) if ms < 1000),
                _ => matches!(fate, Some(Fate::Open) | Some(Fate::Stalled(_))),
            };
            if !ok {
                failures.push(format!(
                    "{name}: expected {}, got {told}:\n{}",
                    if daemon == "halb" {
                        "a reset within 1 s of the switch"
                    } else {
                        "the connection left open or stalled"
                    },
                    lines.join("\n")
                ));
            }
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("\n\n"));
    }
    Ok(())
}
