//! Reload on a real kernel's IPVS, keepalived against halb, in one boot of the IPVS VM (see
//! `ipvs_reload.sh` for the topology: one LAN per daemon, as IPVS state is per network
//! namespace). Both start from the same file and go through the same files step by step: a
//! weight changed, a real server added and removed, a virtual server added, a checker's timing
//! changed, a VIP added, persistence_timeout changed, a sorry server added, a broken file, back
//! to the first file. keepalived is reloaded by SIGHUP, halb by `halb reload`.
//!
//! After each step the two kernels' tables (`ipvsadm -S -n`) must be equal. What each daemon
//! changed is not taken from its own word: every netlink message it sent is traced (strace in
//! the machine) and decoded, and each service's and destination's counters are compared with
//! the step before (a deleted and re-added entry starts again from zero). halb must make exactly
//! the edits the change of its table requires, reset no counter, and keep a client's
//! connection through the VIP (a line echoed every second) open through every reload. What
//! keepalived did differently is printed beside it.
//!
//! The cycle runs once and then its first four steps again (14 reloads); `HALB_RELOADS=100`
//! runs 100. Needs root on Debian
//! (missing packages are installed). Run with
//! `cargo test -p halb-ipvs-vm --test ipvs_reload -- --nocapture` to see the figures.

use anyhow::{bail, Context, Result};
use halb_ipvs_vm::kernel_vm::{sections, KernelVm, Payload};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const SCRIPT: &str = include_str!("ipvs_reload.sh");
const LAN: &str = include_str!("lan.sh");
const MARK: &str = "@@ipvs-reload@@ ";
const DAEMONS: [(&str, &str); 2] = [("k", "keepalived"), ("h", "halb")];

/// One file of the cycle.
#[derive(Clone, Copy)]
struct Step {
    weight_r2: u32,
    with_r3: bool,
    second_service: bool,
    timeout_r1: u32,
    extra_vip: bool,
    persistence: u32,
    sorry: bool,
}

const BASE: Step = Step {
    weight_r2: 1,
    with_r3: false,
    second_service: false,
    timeout_r1: 3,
    extra_vip: false,
    persistence: 120,
    sorry: false,
};

/// A real server with a TCP_CHECK patient enough for an emulated CPU shared with a busy host: a
/// live server must not fail its check by accident, or the tables would move for no reload.
fn real_server(addr: &str, port: u16, weight: u32, connect_timeout: u32) -> String {
    format!(
        "    real_server {addr} {port} {{
        weight {weight}
        TCP_CHECK {{
            connect_timeout {connect_timeout}
            retry 1
            delay_before_retry 1
        }}
    }}
"
    )
}

fn file(step: Step) -> String {
    let extra_vip = if step.extra_vip {
        "        10.0.0.101/24 dev eth0\n"
    } else {
        ""
    };
    let mut s = format!(
        "global_defs {{
    router_id d1
}}
vrrp_instance VI_1 {{
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    virtual_ipaddress {{
        10.0.0.100/24 dev eth0
{extra_vip}    }}
}}
virtual_server 10.0.0.100 9000 {{
    delay_loop 2
    lb_algo wrr
    lb_kind DR
    persistence_timeout {}
    protocol TCP
",
        step.persistence
    );
    if step.sorry {
        s += "    sorry_server 10.0.0.24 9000\n";
    }
    s += &real_server("10.0.0.21", 9000, 1, step.timeout_r1);
    s += &real_server("10.0.0.22", 9000, step.weight_r2, 3);
    if step.with_r3 {
        s += &real_server("10.0.0.23", 9000, 1, 3);
    }
    // Nothing answers there: down from the start, and it must stay down through every reload.
    s += &real_server("10.0.0.25", 9000, 1, 3);
    s += "}\n";
    if step.second_service {
        s += "virtual_server 10.0.0.100 9001 {
    delay_loop 2
    lb_algo rr
    lb_kind DR
    protocol TCP
";
        s += &real_server("10.0.0.21", 9001, 1, 3);
        s += &real_server("10.0.0.22", 9001, 1, 3);
        s += "}\n";
    }
    s
}

/// What one step of the cycle changes.
type Edit = fn(&mut Step);

/// The cycle: each file, its name, and whether it is the broken one.
fn cycle() -> Vec<(String, &'static str, bool)> {
    let edits: [(&str, Edit); 8] = [
        ("weight-changed", |s| s.weight_r2 = 3),
        ("real-server-added", |s| s.with_r3 = true),
        ("real-server-removed", |s| s.with_r3 = false),
        ("virtual-server-added", |s| s.second_service = true),
        ("checker-timing-changed", |s| s.timeout_r1 = 4),
        ("vip-added", |s| s.extra_vip = true),
        ("persistence-timeout-changed", |s| s.persistence = 300),
        ("sorry-server-added", |s| s.sorry = true),
    ];
    let mut step = BASE;
    let mut out = Vec::new();
    for (name, edit) in edits {
        edit(&mut step);
        out.push((file(step), name, false));
    }
    // An unclosed block at the end: a file both must refuse, keeping what runs.
    out.push((
        format!("{}virtual_server 10.0.0.100 80 {{\n", file(step)),
        "broken-file",
        true,
    ));
    out.push((file(BASE), "back-to-the-first-file", false));
    out
}

/// IPVS generic-netlink commands (linux/ip_vs.h).
fn command_name(cmd: u8) -> &'static str {
    match cmd {
        1 => "new service",
        2 => "set service",
        3 => "del service",
        5 => "new dest",
        6 => "set dest",
        7 => "del dest",
        9 => "new daemon",
        10 => "del daemon",
        12 => "set config",
        16 => "zero",
        17 => "flush",
        _ => "read",
    }
}

/// One IPVS command a daemon sent, decoded from the traced message.
#[derive(Debug, Clone)]
struct Command {
    time: f64,
    cmd: u8,
    what: String,
}

impl Command {
    fn is_add(&self) -> bool {
        matches!(self.cmd, 1 | 5)
    }
    fn is_del(&self) -> bool {
        matches!(self.cmd, 3 | 7 | 17)
    }
    fn is_edit(&self) -> bool {
        matches!(self.cmd, 2 | 6)
    }
}

/// Netlink attributes of `buf`: (type without flags, payload).
fn attrs(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_le_bytes([buf[0], buf[1]]) as usize;
        let kind = u16::from_le_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((kind, &buf[4..len]));
        buf = &buf[((len + 3) & !3).min(buf.len())..];
    }
    out
}

fn addr_port(nested: &[(u16, &[u8])], addr_attr: u16, port_attr: u16) -> String {
    let addr = nested
        .iter()
        .find(|(k, _)| *k == addr_attr)
        .filter(|(_, v)| v.len() >= 4)
        .map(|(_, v)| format!("{}.{}.{}.{}", v[0], v[1], v[2], v[3]))
        .unwrap_or_else(|| "?".into());
    let port = nested
        .iter()
        .find(|(k, _)| *k == port_attr)
        .filter(|(_, v)| v.len() >= 2)
        .map(|(_, v)| u16::from_be_bytes([v[0], v[1]]).to_string())
        .unwrap_or_else(|| "?".into());
    format!("{addr}:{port}")
}

/// Decodes "TIME HEX" (HEX as strace writes it: \xNN...).
fn decode(line: &str) -> Option<Command> {
    let (time, hex) = line.split_once(' ')?;
    let bytes: Vec<u8> = hex
        .split("\\x")
        .filter(|b| !b.is_empty())
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    let cmd = *bytes.first()?;
    let top = attrs(bytes.get(4..)?);
    let service = top
        .iter()
        .find(|(k, _)| *k == 1)
        .map(|(_, v)| addr_port(&attrs(v), 3, 4));
    let dest = top
        .iter()
        .find(|(k, _)| *k == 2)
        .map(|(_, v)| addr_port(&attrs(v), 1, 2));
    let what = match (service, dest) {
        (Some(s), Some(d)) => format!("{} {d} of {s}", command_name(cmd)),
        (Some(s), None) => format!("{} {s}", command_name(cmd)),
        _ => command_name(cmd).to_string(),
    };
    Some(Command {
        time: time.parse().ok()?,
        cmd,
        what,
    })
}

/// An `ipvsadm -S -n` table as entries (a service "-t VIP:PORT", a destination "-t VIP:PORT -r
/// RS:PORT") and their options.
fn entries(table: &[String]) -> BTreeMap<String, String> {
    table
        .iter()
        .filter_map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            let key_len = match *t.first()? {
                "-A" => 3,
                "-a" => 5,
                _ => return None,
            };
            Some((t.get(1..key_len)?.join(" "), t.get(key_len..)?.join(" ")))
        })
        .collect()
}

/// The least a daemon must send to turn table `old` into `new`: additions (a new service and
/// each of its destinations), deletions (a service with its destinations is one), edits.
fn minimal(old: &[String], new: &[String]) -> (usize, usize, usize) {
    let (o, n) = (entries(old), entries(new));
    let service_of = |k: &str| k.split(" -r ").next().unwrap_or(k).to_string();
    let adds = n.keys().filter(|k| !o.contains_key(*k)).count();
    let dels = o
        .keys()
        .filter(|k| !n.contains_key(*k))
        .filter(|k| !k.contains(" -r ") || n.contains_key(&service_of(k)))
        .count();
    let edits = n
        .iter()
        .filter(|(k, v)| o.get(*k).is_some_and(|ov| ov != *v))
        .count();
    (adds, dels, edits)
}

/// Counters of each service and destination from `ipvsadm -L -n --stats --exact`.
fn counters(stats: &[String]) -> BTreeMap<String, Vec<u64>> {
    let mut out = BTreeMap::new();
    let mut service = String::new();
    for l in stats {
        let t: Vec<&str> = l.split_whitespace().collect();
        let key = match t.first() {
            Some(&"TCP") | Some(&"UDP") | Some(&"SCTP") if t.len() > 2 => {
                service = format!("{} {}", t[0], t[1]);
                service.clone()
            }
            Some(&"->") if t.len() > 2 && !service.is_empty() => format!("{service} -> {}", t[1]),
            _ => continue,
        };
        let values: Vec<u64> = t[2..].iter().filter_map(|v| v.parse().ok()).collect();
        out.insert(key, values);
    }
    out
}

/// What one daemon showed after one step.
#[derive(Default, Clone)]
struct Seen {
    applied: f64,
    table: Vec<String>,
    stats: Vec<String>,
    vips: Vec<String>,
}

fn seen(lines: &[String], prefix: &str) -> Seen {
    let mut s = Seen::default();
    for l in lines {
        let Some(rest) = l.strip_prefix(prefix).and_then(|r| r.strip_prefix(' ')) else {
            continue;
        };
        if let Some(t) = rest.strip_prefix("applied ") {
            s.applied = t.trim().parse().unwrap_or(0.0);
        } else if let Some(t) = rest.strip_prefix("table ") {
            s.table.push(t.to_string());
        } else if let Some(t) = rest.strip_prefix("stats ") {
            s.stats.push(t.to_string());
        } else if let Some(t) = rest.strip_prefix("vip ") {
            s.vips.push(t.to_string());
        }
    }
    s
}

fn count(cmds: &[&Command]) -> (usize, usize, usize) {
    (
        cmds.iter().filter(|c| c.is_add()).count(),
        cmds.iter().filter(|c| c.is_del()).count(),
        cmds.iter().filter(|c| c.is_edit()).count(),
    )
}

fn show((a, d, e): (usize, usize, usize)) -> String {
    format!("+{a} -{d} ~{e}")
}

#[test]
fn halb_reloads_edit_only_what_changed_and_keep_a_connection_keepalived_beside_it() -> Result<()> {
    let reloads: usize = match std::env::var("HALB_RELOADS") {
        Ok(n) => n
            .parse()
            .with_context(|| format!("HALB_RELOADS={n} is not a number of reloads"))?,
        Err(_) => 14,
    };
    halb_ipvs_vm::ensure_prerequisites()?;
    let work = tempfile::tempdir()?;
    let halb = halb_ipvs_vm::halb_binary::stripped_into(work.path())?;
    let cycle = cycle();
    let mut payload = Payload::new(SCRIPT)
        .file("lan.sh", LAN)
        .file("configs/base.conf", file(BASE));
    for (i, (text, _, _)) in cycle.iter().enumerate() {
        payload = payload.file(format!("configs/c{i:02}.conf"), text.clone());
    }
    let steps: String = (0..reloads)
        .map(|i| {
            let c = i % cycle.len();
            format!("c{c:02}.conf {}\n", cycle[c].1)
        })
        .collect();
    payload = payload.file("steps", steps);
    let started = Instant::now();
    let output = KernelVm::new()?
        .extra_bin(&halb)
        .extra_bin("/usr/bin/strace")
        .timeout(Duration::from_secs(300 + 40 * reloads as u64))
        .run(&payload)?;
    eprintln!(
        "ipvs reload: boot and {reloads} reloads in {:?}",
        started.elapsed()
    );
    let out = sections(&output.stdout, MARK);
    if !out.contains_key("end") || out.keys().any(|k| k.starts_with("failed")) {
        bail!("the run did not finish:\n{}", output.stdout);
    }

    // Each step's section, in order.
    let mut step_sections: Vec<(usize, String, Vec<String>)> = out
        .iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix("step ")?;
            let (n, name) = rest.split_once(' ')?;
            Some((n.parse().ok()?, name.to_string(), v.clone()))
        })
        .collect();
    step_sections.sort_by_key(|(n, _, _)| *n);
    if step_sections.len() != reloads + 1 {
        bail!(
            "{} steps reported, expected {}:\n{}",
            step_sections.len(),
            reloads + 1,
            output.stdout
        );
    }

    let mut commands: BTreeMap<&str, Vec<Command>> = BTreeMap::new();
    for (_, daemon) in DAEMONS {
        let lines = out
            .get(&format!("trace {daemon}"))
            .with_context(|| format!("no trace of {daemon}"))?;
        let decoded: Vec<Command> = lines.iter().filter_map(|l| decode(l)).collect();
        if decoded.is_empty() {
            bail!("no IPVS command in {daemon}'s trace: {lines:?}");
        }
        if let Some(n) = lines
            .iter()
            .find_map(|l| l.strip_prefix("sockopt_commands "))
        {
            if n.trim() != "0" {
                eprintln!("{daemon} also used the socket-option interface {n} times (not counted)");
            }
        }
        commands.insert(daemon, decoded);
    }

    // The daemons' shutdown is no step's.
    let stopping: f64 = out
        .get("stopping")
        .and_then(|l| l.iter().find_map(|l| l.strip_prefix("at ")))
        .and_then(|t| t.trim().parse().ok())
        .context("no time of the daemons' shutdown")?;
    let mut failures = Vec::new();
    let mut totals: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    let mut resets: BTreeMap<&str, usize> = BTreeMap::new();
    let mut differing_tables = 0;
    let mut previous: Option<BTreeMap<&str, Seen>> = None;
    for (i, (n, name, lines)) in step_sections.iter().enumerate() {
        let now: BTreeMap<&str, Seen> = DAEMONS.iter().map(|(p, d)| (*d, seen(lines, p))).collect();
        let Some(before) = previous.replace(now.clone()) else {
            continue;
        };
        let broken = cycle[(n - 1) % cycle.len()].2;
        let next_applied = |d: &str| {
            step_sections
                .get(i + 1)
                .map(|(_, _, l)| seen(l, if d == "halb" { "h" } else { "k" }).applied)
                .unwrap_or(stopping)
        };
        let (k, h) = (&now["keepalived"], &now["halb"]);
        if k.table != h.table {
            differing_tables += 1;
            failures.push(format!(
                "step {n} {name}: the tables differ\nkeepalived:\n{}\nhalb:\n{}",
                k.table.join("\n"),
                h.table.join("\n")
            ));
        }
        if k.vips != h.vips {
            failures.push(format!(
                "step {n} {name}: the addresses differ: keepalived {:?}, halb {:?}",
                k.vips, h.vips
            ));
        }
        let settled_ms = lines
            .iter()
            .find_map(|l| l.strip_prefix("settled_after_ms "))
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("?");
        let mut line = format!("step {n:3} {name:28} settled in {settled_ms:>5} ms");
        for (_, daemon) in DAEMONS {
            let sent: Vec<&Command> = commands[daemon]
                .iter()
                .filter(|c| c.time >= now[daemon].applied && c.time < next_applied(daemon))
                .collect();
            let counted = count(&sent);
            let t = totals.entry(daemon).or_default();
            *t = (t.0 + counted.0, t.1 + counted.1, t.2 + counted.2);
            let least = minimal(&before[daemon].table, &now[daemon].table);
            let (old, new) = (
                counters(&before[daemon].stats),
                counters(&now[daemon].stats),
            );
            let reset: Vec<&String> = new
                .iter()
                .filter(|(key, v)| {
                    old.get(*key)
                        .is_some_and(|o| o.iter().zip(v.iter()).any(|(a, b)| b < a))
                })
                .map(|(key, _)| key)
                .collect();
            *resets.entry(daemon).or_default() += reset.len();
            line += &format!(" | {daemon} {} (least {})", show(counted), show(least));
            let writes: Vec<&str> = sent
                .iter()
                .filter(|c| c.is_add() || c.is_del() || c.is_edit())
                .map(|c| c.what.as_str())
                .collect();
            if counted != least || !reset.is_empty() {
                eprintln!("step {n} {name}: {daemon} sent {writes:?}; counters reset: {reset:?}");
            }
            if daemon == "halb" {
                if counted != least {
                    failures.push(format!(
                        "step {n} {name}: halb sent {} where its table's change needs {}: {writes:?}",
                        show(counted),
                        show(least)
                    ));
                }
                if !reset.is_empty() {
                    failures.push(format!(
                        "step {n} {name}: counters of {reset:?} started again from zero under halb \
                         (deleted and re-added)"
                    ));
                }
                if broken && (before[daemon].table != now[daemon].table || !writes.is_empty()) {
                    failures.push(format!(
                        "step {n} {name}: halb changed its table on a broken file: {writes:?}"
                    ));
                }
            }
        }
        if broken {
            let rc = lines
                .iter()
                .find_map(|l| l.strip_prefix("h reload_rc "))
                .unwrap_or("?");
            if rc == "0" {
                failures.push(format!(
                    "step {n} {name}: `halb reload` accepted the broken file"
                ));
            }
        }
        eprintln!("{line}");
    }
    for (_, daemon) in DAEMONS {
        let t = totals.get(daemon).copied().unwrap_or_default();
        eprintln!(
            "{daemon}: {reloads} reloads, IPVS commands sent {} (additions, deletions, edits), \
             counters reset {}",
            show(t),
            resets.get(daemon).copied().unwrap_or_default()
        );
        let client = out
            .get(&format!("client {daemon}"))
            .map(|l| l.join(" "))
            .unwrap_or_default();
        eprintln!(
            "{daemon}: the connection through the VIP: {}",
            client.trim()
        );
        if daemon == "halb" && !client.contains("client: open") {
            failures.push(format!(
                "halb: the connection through the VIP did not survive: {client}"
            ));
        }
    }
    eprintln!("tables differing after a step: {differing_tables} of {reloads}");
    if !failures.is_empty() {
        eprintln!("the machine's whole output:\n{}", output.stdout);
        for (_, daemon) in DAEMONS {
            let log = out
                .get(&format!("log {daemon}"))
                .cloned()
                .unwrap_or_default();
            eprintln!(
                "{daemon}'s log (reloads, changes, failures):\n{}",
                log.join("\n")
            );
        }
        bail!("{}", failures.join("\n\n"));
    }
    Ok(())
}
