//! `halb status`: the running daemon's tables in `ipvsadm -L -n`'s layout (so scripts that
//! parse ipvsadm parse this), then the VRRP instances and every real server's checkers.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args as ClapArgs;
use halb_lb::table::{PersistenceGranularity, SchedFlags, ServiceKey};

use crate::control::protocol::{Request, ServiceView, Snapshot};
use crate::control::{client, DEFAULT_SOCKET};

#[derive(ClapArgs)]
pub struct Args {
    /// The daemon's control socket.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    control_socket: PathBuf,
    /// Counters, as `ipvsadm -L -n --stats`.
    #[arg(long, conflicts_with_all = ["rate", "connections"])]
    stats: bool,
    /// Rates, as `ipvsadm -L -n --rate`.
    #[arg(long, conflicts_with = "connections")]
    rate: bool,
    /// The connection table, as `ipvsadm -L -n -c`.
    #[arg(short = 'c', long)]
    connections: bool,
    /// Print exact numbers (no K/M/G), as `--exact`.
    #[arg(long)]
    exact: bool,
    /// The whole snapshot as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> ExitCode {
    let request = Request {
        connections: args.connections || args.json,
        ..Request::default()
    };
    let snapshot = match client::query(&args.control_socket, &request) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("halb status: {e:#}");
            return ExitCode::from(1);
        }
    };
    let out = if args.json {
        serde_json::to_string_pretty(&snapshot).unwrap_or_default() + "\n"
    } else {
        let layout = if args.stats {
            Layout::Stats
        } else if args.rate {
            Layout::Rate
        } else if args.connections {
            Layout::Connections
        } else {
            Layout::List
        };
        render(&snapshot, layout, args.exact)
    };
    print!("{out}");
    ExitCode::SUCCESS
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    List,
    Stats,
    Rate,
    Connections,
}

/// The whole text of `halb status`.
pub fn render(s: &Snapshot, layout: Layout, exact: bool) -> String {
    let mut out = String::new();
    if layout == Layout::Connections {
        render_connections(s, &mut out);
        return out;
    }
    let _ = writeln!(
        out,
        "IP Virtual Server version 1.2.1 (size=4096) [halb {}, {} data plane]",
        s.version,
        if s.dataplane.is_empty() {
            "no"
        } else {
            &s.dataplane
        }
    );
    render_services(&s.services, layout, exact, &mut out);
    if !s.vrrp.is_empty() {
        out.push_str("\nVRRP instances\n");
        let _ = writeln!(
            out,
            "  {:<16} {:<10} {:>4} {:<7} {:>8}  Virtual addresses",
            "Name", "Interface", "VRID", "State", "Priority"
        );
        for v in &s.vrrp {
            let prio = if v.priority == v.effective_priority {
                v.priority.to_string()
            } else {
                format!("{}({})", v.effective_priority, v.priority)
            };
            let _ = writeln!(
                out,
                "  {:<16} {:<10} {:>4} {:<7} {:>8}  {}",
                v.name,
                v.interface,
                v.vrid,
                v.state,
                prio,
                v.virtual_addresses.join(" ")
            );
        }
    }
    render_bfd(&s.bfd, &mut out);
    if !s.virtual_servers.is_empty() {
        out.push_str("\nReal servers\n");
        for vs in &s.virtual_servers {
            let mut notes = Vec::new();
            if !vs.quorum_up {
                notes.push("quorum lost");
            }
            if vs.sorry_server_active {
                notes.push("sorry server in use");
            }
            let _ = writeln!(
                out,
                "  VS {}{}",
                vs.name,
                if notes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", notes.join(", "))
                }
            );
            if let Some(why) = &vs.failback_held {
                let _ = writeln!(out, "    failback held: {why}");
            }
            for rs in &vs.real_servers {
                let _ = writeln!(
                    out,
                    "    -> {:<28} {:<5} weight {}",
                    rs.addr.to_string(),
                    if rs.alive { "UP" } else { "DOWN" },
                    rs.weight
                );
                if let Some(r) = &rs.replica {
                    let _ = writeln!(out, "       {}", r.summary());
                }
                for c in &rs.checkers {
                    let _ = writeln!(
                        out,
                        "       {:<12} {:<5} {}",
                        c.kind,
                        if c.up { "up" } else { "down" },
                        c.detail
                    );
                }
            }
        }
    }
    if let Some(b) = &s.bgp {
        render_bgp(b, &mut out);
    }
    if let Some(r) = &s.last_reload {
        let _ = writeln!(
            out,
            "\nLast reload: {}, {}",
            utc(r.at_unix),
            if r.applied {
                format!("applied ({} change(s))", r.details.len())
            } else {
                format!(
                    "refused, the running configuration stayed ({} diagnostic(s))",
                    r.details.len()
                )
            }
        );
        if !r.applied {
            for line in &r.details {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    out
}

/// Route announcement: each route (announced or withdrawn, why, since), each BGP session, and
/// a drain under way.
fn render_bgp(b: &crate::control::protocol::BgpView, out: &mut String) {
    out.push_str("\nBGP announcements\n");
    for a in &b.announcements {
        let state = if a.announced {
            "announced"
        } else {
            "withdrawn"
        };
        let why = a
            .reason
            .as_ref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<20} {state:<9} since {}{why}",
            a.prefix,
            utc(a.since)
        );
    }
    if !b.sessions.is_empty() {
        out.push_str("\nBGP sessions\n");
        for s in &b.sessions {
            let _ = writeln!(
                out,
                "  {:<10} {:<20} {:<12} since {} {}",
                s.protocol, s.neighbor, s.state, s.since, s.info
            );
        }
    }
    if b.drain.asked {
        let left = b
            .drain
            .connections
            .map(|n| format!("{n} connection(s) left"))
            .unwrap_or_else(|| "connections not counted yet".into());
        let what = match (b.drain.finished, b.drain.timed_out) {
            (true, true) => format!("timed out, {left}"),
            (true, false) => "finished: no connection left".to_string(),
            _ => format!("under way, {left}"),
        };
        let _ = writeln!(out, "\nDrain: {what}");
    }
}

/// `2026-12-07 14:20:31 UTC` for seconds since the Unix epoch (the civil calendar from a day
/// count, as in Howard Hinnant's `civil_from_days`).
fn utc(unix: u64) -> String {
    let days = i64::try_from(unix / 86_400).unwrap_or(0);
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn service_name(key: &ServiceKey) -> String {
    let name = key.to_string();
    // ipvsadm cuts IPv4 names at 33 characters.
    match key {
        ServiceKey::Addr { addr, .. } if addr.is_ipv4() => name.chars().take(33).collect(),
        _ => name,
    }
}

/// `sh-fallback,sh-port` / `mh-…` / `flag-1,…`, as ipvsadm's `print_sched_flags`.
fn sched_flags(scheduler: &str, flags: &SchedFlags) -> String {
    let names: [&str; 3] = match scheduler {
        "sh" => ["sh-fallback", "sh-port", "flag-3"],
        "mh" => ["mh-fallback", "mh-port", "flag-3"],
        _ => ["flag-1", "flag-2", "flag-3"],
    };
    [flags.flag_1, flags.flag_2, flags.flag_3]
        .iter()
        .zip(names)
        .filter(|(on, _)| **on)
        .map(|(_, n)| n)
        .collect::<Vec<_>>()
        .join(",")
}

fn render_services(services: &[ServiceView], layout: Layout, exact: bool, out: &mut String) {
    match layout {
        Layout::Stats => {
            let _ = writeln!(
                out,
                "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
                "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
            );
        }
        Layout::Rate => {
            let _ = writeln!(
                out,
                "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
                "Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
            );
        }
        _ => {
            out.push_str("Prot LocalAddress:Port Scheduler Flags\n");
            out.push_str("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n");
        }
    }
    for s in services {
        let name = service_name(&s.key);
        match layout {
            Layout::Stats => {
                let _ = write!(out, "{name:<33}");
                let c = &s.counters;
                for v in [c.conns, c.inpkts, c.outpkts, c.inbytes, c.outbytes] {
                    largenum(out, v, exact);
                }
                out.push('\n');
            }
            Layout::Rate => {
                let _ = write!(out, "{name:<33}");
                let r = &s.rates;
                for v in [r.cps, r.inpps, r.outpps, r.inbps, r.outbps] {
                    largenum(out, v, exact);
                }
                out.push('\n');
            }
            _ => {
                let _ = write!(out, "{name} {}", s.scheduler);
                let flags = sched_flags(&s.scheduler, &s.flags);
                if !flags.is_empty() {
                    let _ = write!(out, " ({flags})");
                }
                if let Some(p) = &s.persistence {
                    let _ = write!(out, " persistent {}", p.timeout_s);
                    match p.granularity {
                        Some(PersistenceGranularity::Netmask(m)) if m.to_bits() != u32::MAX => {
                            let _ = write!(out, " mask {m}");
                        }
                        Some(PersistenceGranularity::Prefix(len)) if len != 128 => {
                            let _ = write!(out, " mask {len}");
                        }
                        _ => {}
                    }
                }
                if s.flags.ops {
                    out.push_str(" ops");
                }
                out.push('\n');
            }
        }
        for d in &s.dests {
            let mut dname = d.addr.to_string();
            if d.addr.is_ipv4() {
                dname.truncate(28);
            }
            match layout {
                Layout::Stats => {
                    let _ = write!(out, "  -> {dname:<28}");
                    let c = &d.counters;
                    for v in [c.conns, c.inpkts, c.outpkts, c.inbytes, c.outbytes] {
                        largenum(out, v, exact);
                    }
                    out.push('\n');
                }
                Layout::Rate => {
                    let r = &d.rates;
                    let _ = write!(
                        out,
                        "  -> {dname:<28} {:>8} {:>8} {:>8}",
                        r.cps, r.inpps, r.outpps
                    );
                    largenum(out, r.inbps, exact);
                    largenum(out, r.outbps, exact);
                    out.push('\n');
                }
                _ => {
                    let _ = writeln!(
                        out,
                        "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}",
                        d.forward, d.weight, d.active, d.inactive
                    );
                }
            }
        }
    }
}

/// ipvsadm's `print_largenum`: nine columns, K/M/G/T beyond 100 million unless `--exact`.
fn largenum(out: &mut String, v: u64, exact: bool) {
    if exact {
        let len = v.to_string().len();
        let width = if len <= 8 { 9 } else { len + 1 };
        let _ = write!(out, "{v:>width$}");
        return;
    }
    let _ = match v {
        0..=99_999_999 => write!(out, "{v:>9}"),
        100_000_000..=999_999_999 => write!(out, "{:>8}K", v / 1_000),
        1_000_000_000..=99_999_999_999 => write!(out, "{:>8}M", v / 1_000_000),
        100_000_000_000..=99_999_999_999_999 => write!(out, "{:>8}G", v / 1_000_000_000),
        _ => write!(out, "{:>8}T", v / 1_000_000_000_000),
    };
}

fn render_connections(s: &Snapshot, out: &mut String) {
    out.push_str("IPVS connection entries\n");
    let _ = writeln!(
        out,
        "pro expire {:<11} {:<18} {:<18} destination",
        "state", "source", "virtual"
    );
    for c in &s.connections {
        let _ = writeln!(
            out,
            "{:<3} {:02}:{:02}  {:<11} {:<18} {:<18} {}",
            c.protocol.as_str(),
            c.expires_s / 60,
            c.expires_s % 60,
            c.state,
            c.client.to_string(),
            c.virtual_addr.to_string(),
            c.dest
        );
    }
}

/// The `bfd_instance` sessions, and the packets no session took.
fn render_bfd(bfd: &halb_daemon::bfd::BfdView, out: &mut String) {
    if bfd.sessions.is_empty() {
        return;
    }
    out.push_str("\nBFD sessions\n");
    let _ = writeln!(
        out,
        "  {:<16} {:<24} {:<9} {:>8} {:>8} {:>7} {:>5}  Diagnostic (local / remote)",
        "Name", "Neighbor", "State", "Received", "Sent", "Dropped", "Downs"
    );
    for b in &bfd.sessions {
        let _ = writeln!(
            out,
            "  {:<16} {:<24} {:<9} {:>8} {:>8} {:>7} {:>5}  {} / {}",
            b.name,
            b.neighbor,
            b.state,
            b.packets_received,
            b.packets_sent,
            b.packets_dropped,
            b.down_transitions,
            b.local_diag,
            b.remote_diag
        );
    }
    let c = &bfd.counters;
    let _ = writeln!(
        out,
        "  Dropped before a session: {} malformed, {} with a wrong TTL, {} unmatched",
        c.malformed, c.bad_ttl, c.unmatched
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_times_are_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_827_696), "2000-02-29 12:34:56 UTC");
        assert_eq!(utc(1_796_655_600), "2026-12-07 15:00:00 UTC");
    }
    use crate::control::protocol::DestView;
    use halb_dataplane::{Counters, Rates};
    use halb_lb::table::{Persistence, ProtocolKey};

    fn seed_service() -> ServiceView {
        ServiceView {
            key: ServiceKey::Addr {
                protocol: ProtocolKey::Tcp,
                addr: "192.168.66.251:3306".parse().unwrap(),
            },
            scheduler: "wrr".into(),
            flags: SchedFlags::default(),
            persistence: Some(Persistence {
                timeout_s: 120,
                granularity: None,
            }),
            counters: Counters {
                conns: 12,
                inpkts: 345,
                outpkts: 300,
                inbytes: 123_456_789_012,
                outbytes: 99,
            },
            rates: Rates::default(),
            dests: vec![DestView {
                addr: "192.168.66.253:3306".parse().unwrap(),
                forward: "Route".into(),
                weight: 1,
                active: 2,
                inactive: 0,
                uthreshold: 0,
                lthreshold: 0,
                counters: Counters::default(),
                rates: Rates::default(),
            }],
        }
    }

    #[test]
    fn list_layout_is_ipvsadms() {
        let mut out = String::new();
        render_services(&[seed_service()], Layout::List, false, &mut out);
        assert_eq!(
            out,
            "Prot LocalAddress:Port Scheduler Flags\n\
             \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
             TCP  192.168.66.251:3306 wrr persistent 120\n\
             \x20 -> 192.168.66.253:3306          Route   1      2          0         \n"
        );
    }

    #[test]
    fn stats_layout_is_ipvsadms() {
        let mut out = String::new();
        render_services(&[seed_service()], Layout::Stats, false, &mut out);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes"
        );
        assert_eq!(
            lines[2],
            "TCP  192.168.66.251:3306                12      345      300     123G       99"
        );
    }

    #[test]
    fn sched_flags_named_as_ipvsadm_names_them() {
        let f = SchedFlags {
            flag_1: true,
            flag_2: true,
            ..SchedFlags::default()
        };
        assert_eq!(sched_flags("sh", &f), "sh-fallback,sh-port");
        assert_eq!(sched_flags("rr", &f), "flag-1,flag-2");
    }
}
