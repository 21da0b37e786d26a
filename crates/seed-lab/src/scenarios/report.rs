//! The report: per scenario a timeline, figures per event and the replication state
//! afterwards, all computed here from the records (pure functions, tested without a lab), and
//! its text and JSON forms.
//!
//! An *event* is something the lab does (stop a server, kill it, stop a director, start it
//! again); its window runs until the next event or the end of the scenario. Per event and per
//! port written:
//! - the longest time without a successful write, over the gaps between acknowledged writes
//!   that end in the window (at one write per second, 1 s is the normal value);
//! - the attempts that failed, and which instance acknowledged the others;
//! - rows acknowledged in the window but missing afterwards on either master of the pair, and
//!   rows whose attempt failed but which were written all the same ("in doubt");
//! - rows on both masters: acknowledged by one master while the other acknowledged writes less
//!   than two write periods before and after it: the application writing to both masters in
//!   turn, which a clean failover or handback (each a single switch) never shows;
//! - connections of the application still open on the server traffic moved away from, and
//!   for how long after the move (the seed saw 5–10 minutes).

use crate::topology::ReplicaStatus;
use crate::writer::{describe_attempt, Attempt, ConnectionSample, Op, Records};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

/// What the lab did, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    pub at: f64,
    pub label: String,
}

/// Something the lab saw after an event, and how long after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub at: f64,
    pub what: String,
    pub after_s: f64,
}

/// Which connections to watch after traffic moved away from a server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LingerSpec {
    /// The instance traffic moved away from (`254:3306`).
    pub server: String,
    /// Only connections from this address (a director's), or all.
    pub source: Option<String>,
    /// When the move happened (seconds on the timeline).
    pub since: f64,
}

/// The application's connections left on the old server after a move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lingering {
    pub server: String,
    pub source: Option<String>,
    pub since: f64,
    /// Open at the last look before the move.
    pub open_before: u32,
    /// The most seen open after the move.
    pub open_after_max: u32,
    /// When the first look after the move that found none came, after the move (an upper
    /// bound of how long they stayed); `None` when they were still open at the last look.
    pub closed_within_s: Option<f64>,
    /// How long after the move the last look was.
    pub watched_s: f64,
}

/// Figures of the writes to one port in one event's window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteFigures {
    pub port: u16,
    pub longest_without_write_s: f64,
    pub attempts: usize,
    pub failed: usize,
    /// Failed attempts that were opening a new connection (the VIP refused or the login
    /// failed), as opposed to a pooled connection found broken.
    pub failed_connecting: usize,
    /// Acknowledged writes by the instance that took them.
    pub acknowledged_by: BTreeMap<String, usize>,
    /// Acknowledged ids missing afterwards on at least one master of the pair.
    pub missing_afterwards: Vec<u64>,
    /// Failed attempts whose row exists all the same.
    pub in_doubt_written: usize,
    /// Acknowledged rows taken while the other master was taking writes too.
    pub on_both_masters: usize,
}

/// Figures of one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventFigures {
    pub event: String,
    pub at: f64,
    pub until: f64,
    pub writes: Vec<WriteFigures>,
    /// Per port read: (attempts, failed).
    pub reads: BTreeMap<u16, (usize, usize)>,
    pub observed: Vec<Observation>,
    pub lingering: Vec<Lingering>,
}

/// One instance's replication, afterwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceState {
    pub server: String,
    pub running: bool,
    pub replica: ReplicaStatus,
    pub rows: usize,
}

/// A dual-master pair, afterwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairState {
    pub port: u16,
    pub instances: Vec<InstanceState>,
    /// Both have exactly the same (id, account) rows.
    pub consistent: bool,
    pub only_on_a: Vec<u64>,
    pub only_on_b: Vec<u64>,
    /// How long after the application stopped the two held the same rows.
    pub caught_up_after_s: Option<f64>,
}

impl PairState {
    pub fn replication_running(&self) -> bool {
        self.instances
            .iter()
            .all(|i| i.running && i.replica.running())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

/// A line of the timeline as printed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineLine {
    pub at: f64,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioReport {
    /// The seed's section: `4.2`, `4.3.1`, `5`, `6.2`, `6.3`.
    pub id: String,
    pub name: String,
    pub title: String,
    pub ok: bool,
    /// Why the scenario stopped early, if it did.
    pub error: Option<String>,
    pub duration_s: f64,
    pub timeline: Vec<TimelineLine>,
    pub events: Vec<EventFigures>,
    pub replication: Vec<PairState>,
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
    /// `halb status` of each director at a telling moment: (heading, text).
    pub statuses: Vec<(String, String)>,
    /// Every attempt, event and connection sample.
    pub records: Records,
    /// The unkind scenarios' figures (one writer or two, lost rows and updates, divergence).
    #[serde(default)]
    pub safety: Option<super::safety::SafetyFigures>,
}

/// What was left after the topology was taken down.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Teardown {
    pub namespaces_left: Vec<String>,
    pub processes_left: Vec<u32>,
}

impl Teardown {
    pub fn clean(&self) -> bool {
        self.namespaces_left.is_empty() && self.processes_left.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub master_config: String,
    pub backup_config: String,
    pub dataplane: String,
    pub rate: f64,
    pub pool: usize,
    pub setup_s: f64,
    pub total_s: f64,
    pub scenarios: Vec<ScenarioReport>,
    pub teardown: Teardown,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.teardown.clean() && self.scenarios.iter().all(|s| s.ok)
    }
}

/// " (unchanged)" after one of the seed's own files.
fn unchanged(config: &str) -> &'static str {
    if config.starts_with("the seed's") && !config.contains(" with ") {
        " (unchanged)"
    } else {
        ""
    }
}

/// When a write was acknowledged (its start plus its duration).
fn acked_at(a: &Attempt) -> f64 {
    a.at + a.took_ms / 1e3
}

/// The longest time without a success in the window `[start, end)`, from the successes (given
/// sorted): each gap between consecutive successes counts in the window where it ends, so the
/// outage after an event is the event's even though the last success before it came earlier;
/// a gap still open at `end` counts up to `end`.
pub fn longest_gap(successes: &[f64], start: f64, end: f64) -> f64 {
    let before = successes.iter().rev().find(|&&t| t <= start).copied();
    let mut points: Vec<f64> = vec![before.unwrap_or(start)];
    points.extend(successes.iter().copied().filter(|&t| t > start && t < end));
    points.push(end);
    points.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max)
}

/// Which acknowledged writes (by index into `writes`, each (time, server)) were taken while
/// another server acknowledged writes both less than `window` before and less than `window`
/// after.
pub fn on_both_masters(writes: &[(f64, String)], window: f64) -> BTreeSet<usize> {
    let mut flagged = BTreeSet::new();
    for (i, (t, server)) in writes.iter().enumerate() {
        let other = |w: &&(f64, String)| &w.1 != server;
        let before = writes
            .iter()
            .filter(other)
            .any(|(u, _)| *u < *t && *t - *u < window);
        let after = writes
            .iter()
            .filter(other)
            .any(|(u, _)| *u > *t && *u - *t < window);
        if before && after {
            flagged.insert(i);
        }
    }
    flagged
}

/// The lingering figure from the watcher's samples of `spec.server`.
pub fn lingering(samples: &[ConnectionSample], spec: &LingerSpec) -> Lingering {
    let count = |s: &ConnectionSample| match &spec.source {
        Some(src) => s.by_source.get(src).copied().unwrap_or(0),
        None => s.total(),
    };
    let of_server: Vec<&ConnectionSample> =
        samples.iter().filter(|s| s.server == spec.server).collect();
    let open_before = of_server
        .iter()
        .rev()
        .find(|s| s.at <= spec.since && s.up)
        .map(|s| count(s))
        .unwrap_or(0);
    let after: Vec<&&ConnectionSample> = of_server
        .iter()
        .filter(|s| s.at > spec.since && s.up)
        .collect();
    let open_after_max = after.iter().map(|s| count(s)).max().unwrap_or(0);
    let last_open = after.iter().rposition(|s| count(s) > 0);
    let closed_within_s = match last_open {
        None => after.first().map(|s| s.at - spec.since),
        Some(i) => after.get(i + 1).map(|s| s.at - spec.since),
    };
    Lingering {
        server: spec.server.clone(),
        source: spec.source.clone(),
        since: spec.since,
        open_before,
        open_after_max,
        closed_within_s,
        watched_s: after.last().map(|s| s.at - spec.since).unwrap_or(0.0),
    }
}

/// The final rows of a pair, for the figures: (id, account) on A and on B.
#[derive(Debug, Clone, Default)]
pub struct FinalRows {
    pub a: BTreeSet<(u64, String)>,
    pub b: BTreeSet<(u64, String)>,
}

/// Figures per event from the records, the marks, the watched moves and the final rows of each
/// port's pair.
pub fn event_figures(
    records: &Records,
    marks: &[Mark],
    observations: &[Observation],
    lingering_specs: &[LingerSpec],
    end: f64,
    rate: f64,
    final_rows: &BTreeMap<u16, FinalRows>,
) -> Vec<EventFigures> {
    let window = 2.0 / rate.max(0.01);
    let mut written_ports: Vec<u16> = records
        .attempts
        .iter()
        .filter(|a| a.op == Op::Write)
        .map(|a| a.port)
        .collect();
    written_ports.sort_unstable();
    written_ports.dedup();
    let mut read_ports: Vec<u16> = records
        .attempts
        .iter()
        .filter(|a| a.op == Op::Read)
        .map(|a| a.port)
        .collect();
    read_ports.sort_unstable();
    read_ports.dedup();

    // Per port, the acknowledged writes of the whole scenario and which of them were taken on
    // both masters at once.
    let mut both: HashMap<u16, (Vec<&Attempt>, BTreeSet<usize>)> = HashMap::new();
    for &port in &written_ports {
        let mut acked: Vec<&Attempt> = records
            .attempts
            .iter()
            .filter(|a| a.op == Op::Write && a.port == port && a.ok)
            .collect();
        acked.sort_by(|x, y| acked_at(x).total_cmp(&acked_at(y)));
        let list: Vec<(f64, String)> = acked
            .iter()
            .map(|a| (acked_at(a), a.server.clone().unwrap_or_default()))
            .collect();
        let flagged = on_both_masters(&list, window);
        both.insert(port, (acked, flagged));
    }

    let mut out = Vec::new();
    for (i, mark) in marks.iter().enumerate() {
        let until = marks.get(i + 1).map(|m| m.at).unwrap_or(end);
        let in_window = |a: &Attempt| a.at >= mark.at && a.at < until;
        let mut writes = Vec::new();
        for &port in &written_ports {
            let attempts: Vec<&Attempt> = records
                .attempts
                .iter()
                .filter(|a| a.op == Op::Write && a.port == port && in_window(a))
                .collect();
            let (acked, flagged) = &both[&port];
            let successes: Vec<f64> = acked.iter().map(|a| acked_at(a)).collect();
            let mut acknowledged_by = BTreeMap::new();
            for a in attempts.iter().filter(|a| a.ok) {
                *acknowledged_by
                    .entry(a.server.clone().unwrap_or_else(|| "?".into()))
                    .or_insert(0) += 1;
            }
            let rows = final_rows.get(&port);
            let present = |a: &Attempt, set: &BTreeSet<(u64, String)>| {
                let tag = a.tag.clone().unwrap_or_default();
                match a.id {
                    Some(id) => set.contains(&(id, tag)),
                    None => set.iter().any(|(_, t)| *t == tag),
                }
            };
            let missing_afterwards = match rows {
                Some(r) => attempts
                    .iter()
                    .filter(|a| a.ok && !(present(a, &r.a) && present(a, &r.b)))
                    .filter_map(|a| a.id)
                    .collect(),
                None => Vec::new(),
            };
            let in_doubt_written = match rows {
                Some(r) => attempts
                    .iter()
                    .filter(|a| !a.ok)
                    .filter(|a| {
                        let tag = a.tag.clone().unwrap_or_default();
                        r.a.iter().chain(r.b.iter()).any(|(_, t)| *t == tag)
                    })
                    .count(),
                None => 0,
            };
            let on_both = acked
                .iter()
                .enumerate()
                .filter(|(j, a)| flagged.contains(j) && in_window(a))
                .count();
            writes.push(WriteFigures {
                port,
                longest_without_write_s: longest_gap(&successes, mark.at, until),
                attempts: attempts.len(),
                failed: attempts.iter().filter(|a| !a.ok).count(),
                failed_connecting: attempts
                    .iter()
                    .filter(|a| !a.ok && a.new_connection)
                    .count(),
                acknowledged_by,
                missing_afterwards,
                in_doubt_written,
                on_both_masters: on_both,
            });
        }
        let reads = read_ports
            .iter()
            .map(|&port| {
                let of_port: Vec<&Attempt> = records
                    .attempts
                    .iter()
                    .filter(|a| a.op == Op::Read && a.port == port && in_window(a))
                    .collect();
                (
                    port,
                    (of_port.len(), of_port.iter().filter(|a| !a.ok).count()),
                )
            })
            .collect();
        out.push(EventFigures {
            event: mark.label.clone(),
            at: mark.at,
            until,
            writes,
            reads,
            observed: observations
                .iter()
                .filter(|o| o.at >= mark.at && o.at < until)
                .cloned()
                .collect(),
            lingering: lingering_specs
                .iter()
                .filter(|s| s.since >= mark.at && s.since < until)
                .map(|s| lingering(&records.samples, s))
                .collect(),
        });
    }
    out
}

/// The timeline as printed: every event, and per stream each failure and each change of the
/// answering server; runs of the same failure are folded into one line.
pub fn timeline_lines(records: &Records) -> Vec<TimelineLine> {
    let mut lines: Vec<TimelineLine> = records
        .events
        .iter()
        .map(|e| TimelineLine {
            at: e.at,
            text: format!("{:<10} {}", e.source, e.text),
        })
        .collect();
    let mut attempts: Vec<&Attempt> = records.attempts.iter().collect();
    attempts.sort_by(|x, y| x.at.total_cmp(&y.at));
    let mut streams: BTreeMap<(Op, u16), Vec<&Attempt>> = BTreeMap::new();
    for a in attempts {
        streams.entry((a.op, a.port)).or_default().push(a);
    }
    for list in streams.values() {
        let mut shown: Option<(bool, Option<String>)> = None;
        let mut i = 0;
        while i < list.len() {
            let a = list[i];
            if a.ok {
                let state = (true, a.server.clone());
                if shown.as_ref() != Some(&state) {
                    lines.push(TimelineLine {
                        at: a.at,
                        text: describe_attempt(a),
                    });
                    shown = Some(state);
                }
                i += 1;
                continue;
            }
            // A run of failures with the same error.
            let mut j = i + 1;
            while j < list.len() && !list[j].ok && list[j].error == a.error {
                j += 1;
            }
            let mut text = describe_attempt(a);
            if j - i > 1 {
                let _ = write!(text, "  (×{} until {:.1}s)", j - i, list[j - 1].at);
            }
            lines.push(TimelineLine { at: a.at, text });
            shown = Some((false, None));
            i = j;
        }
    }
    lines.sort_by(|x, y| x.at.total_cmp(&y.at));
    lines
}

fn fmt_s(s: f64) -> String {
    format!("{s:.1} s")
}

fn render_lingering(l: &Lingering) -> String {
    let from = match &l.source {
        Some(s) => format!(" from {s}"),
        None => String::new(),
    };
    let how_long = match l.closed_within_s {
        Some(s) if l.open_after_max == 0 && l.open_before == 0 => {
            format!("none open (looked {} after)", fmt_s(s))
        }
        Some(s) => format!("all closed within {} of the move", fmt_s(s)),
        None => format!(
            "STILL OPEN {} after the move (up to {} seen)",
            fmt_s(l.watched_s),
            l.open_after_max
        ),
    };
    format!(
        "{}{from}: {} open before the move; {how_long}",
        l.server, l.open_before
    )
}

impl ScenarioReport {
    /// The scenario's section of the text report.
    pub fn render(&self, out: &mut String) {
        let verdict = if self.ok { "ok" } else { "FAILED" };
        let _ = writeln!(
            out,
            "\n== {} {} ({}): {verdict}, {:.1} s",
            self.id, self.title, self.name, self.duration_s
        );
        if let Some(e) = &self.error {
            let _ = writeln!(out, "   stopped early: {e}");
        }
        out.push_str("-- timeline\n");
        for l in &self.timeline {
            let _ = writeln!(out, "  {:>7.1}s  {}", l.at, l.text);
        }
        out.push_str("-- figures per event\n");
        for e in &self.events {
            let _ = writeln!(
                out,
                "  at {:.1}s: {} (window {:.1} s)",
                e.at,
                e.event,
                e.until - e.at
            );
            for o in &e.observed {
                let _ = writeln!(out, "      {:<24} +{:.1} s", o.what, o.after_s);
            }
            for w in &e.writes {
                let by: Vec<String> = w
                    .acknowledged_by
                    .iter()
                    .map(|(s, n)| format!("{s} ×{n}"))
                    .collect();
                let _ = writeln!(
                    out,
                    "    writes :{}  longest without a write {}, failed {} of {} ({} opening a \
                     connection), taken by {}",
                    w.port,
                    fmt_s(w.longest_without_write_s),
                    w.failed,
                    w.attempts,
                    w.failed_connecting,
                    if by.is_empty() {
                        "none".to_string()
                    } else {
                        by.join(", ")
                    }
                );
                let missing = if w.missing_afterwards.is_empty() {
                    "0".to_string()
                } else {
                    format!(
                        "{} (ids {:?})",
                        w.missing_afterwards.len(),
                        w.missing_afterwards
                    )
                };
                let _ = writeln!(
                    out,
                    "                 acknowledged but missing afterwards {missing}, \
                     failed but written {}, on both masters {}",
                    w.in_doubt_written, w.on_both_masters
                );
            }
            if !e.reads.is_empty() {
                let reads: Vec<String> = e
                    .reads
                    .iter()
                    .map(|(p, (n, f))| format!(":{p} failed {f} of {n}"))
                    .collect();
                let _ = writeln!(out, "    reads   {}", reads.join(", "));
            }
            for l in &e.lingering {
                let _ = writeln!(
                    out,
                    "    left open on the old server: {}",
                    render_lingering(l)
                );
            }
        }
        out.push_str("-- replication afterwards\n");
        for p in &self.replication {
            let inst: Vec<String> = p
                .instances
                .iter()
                .map(|i| {
                    let mut s = format!(
                        "{} IO {} SQL {}",
                        i.server, i.replica.io_running, i.replica.sql_running
                    );
                    if !i.running {
                        s.push_str(" (mariadbd DOWN)");
                    }
                    for err in [&i.replica.last_io_error, &i.replica.last_sql_error] {
                        if !err.is_empty() {
                            let _ = write!(s, " [{err}]");
                        }
                    }
                    s
                })
                .collect();
            let rows: Vec<String> = p.instances.iter().map(|i| i.rows.to_string()).collect();
            let consistency = if p.consistent {
                format!(
                    "same rows on both ({}){}",
                    rows.join(" = "),
                    p.caught_up_after_s
                        .map(|s| format!(", caught up {s:.1} s after the application stopped"))
                        .unwrap_or_default()
                )
            } else {
                format!(
                    "ROWS DIFFER ({}): only on A {:?}, only on B {:?}",
                    rows.join(" vs "),
                    p.only_on_a,
                    p.only_on_b
                )
            };
            let _ = writeln!(out, "  :{}  {}; {consistency}", p.port, inst.join(", "));
        }
        out.push_str("-- checks\n");
        for c in &self.checks {
            let _ = writeln!(
                out,
                "  {:<6} {}{}",
                if c.ok { "ok" } else { "FAILED" },
                c.what,
                if c.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", c.detail)
                }
            );
        }
        for n in &self.notes {
            let _ = writeln!(out, "  note: {n}");
        }
        for (heading, text) in &self.statuses {
            let _ = writeln!(out, "-- {heading}");
            for line in text.lines() {
                let _ = writeln!(out, "  | {line}");
            }
        }
    }
}

impl Report {
    /// The whole text report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("halb lab: the seed's test plan on the seed's configuration\n");
        let _ = writeln!(
            out,
            "  d1 192.168.66.6  runs {}{}\n  d2 192.168.66.12 runs {}{}",
            self.master_config,
            unchanged(&self.master_config),
            self.backup_config,
            unchanged(&self.backup_config)
        );
        let _ = writeln!(
            out,
            "  data plane: {}; application: {} attempt(s)/s per stream through VIP \
             192.168.66.251, pools of {} connection(s)",
            self.dataplane, self.rate, self.pool
        );
        let _ = writeln!(
            out,
            "  A = 192.168.66.253 (real server, even ids), B = 192.168.66.254 (sorry server, odd ids)"
        );
        let _ = writeln!(
            out,
            "  a pool throws a connection away only when a statement on it fails, so after a \
             switch each pooled\n  connection fails once; failures \"opening a connection\" are \
             the ones the VIP itself caused"
        );
        let _ = writeln!(out, "  topology built in {:.1} s", self.setup_s);
        for s in &self.scenarios {
            s.render(&mut out);
        }
        out.push_str("\n== summary\n");
        for s in &self.scenarios {
            if let Some(why) = s.error.as_deref().and_then(|e| e.strip_prefix("not run: ")) {
                let _ = writeln!(out, "  {:<6} {:<14} NOT RUN ({why})", s.id, s.name);
                continue;
            }
            let worst_gap = s
                .events
                .iter()
                .flat_map(|e| e.writes.iter())
                .map(|w| w.longest_without_write_s)
                .fold(0.0, f64::max);
            let failed: usize = s
                .events
                .iter()
                .flat_map(|e| e.writes.iter())
                .map(|w| w.failed)
                .sum();
            let missing: usize = s
                .events
                .iter()
                .flat_map(|e| e.writes.iter())
                .map(|w| w.missing_afterwards.len())
                .sum();
            let both: usize = s
                .events
                .iter()
                .flat_map(|e| e.writes.iter())
                .map(|w| w.on_both_masters)
                .sum();
            let left: Vec<&Lingering> = s
                .events
                .iter()
                .flat_map(|e| e.lingering.iter())
                .filter(|l| l.closed_within_s.is_none())
                .collect();
            let lingering = if left.is_empty() {
                "0".to_string()
            } else {
                let n: u32 = left.iter().map(|l| l.open_after_max).sum();
                let on: Vec<&str> = left.iter().map(|l| l.server.as_str()).collect();
                format!("{n} (on {})", on.join(", "))
            };
            let _ = writeln!(
                out,
                "  {:<6} {:<14} {:<6} longest without a write {:>5}, failed writes {:>2}, \
                 missing rows {missing}, on both masters {both}, connections left open {lingering}",
                s.id,
                s.name,
                if s.ok { "ok" } else { "FAILED" },
                fmt_s(worst_gap),
                failed,
            );
        }
        let _ = writeln!(
            out,
            "  teardown: {}; total {:.1} s",
            if self.teardown.clean() {
                "every namespace removed, every process stopped".to_string()
            } else {
                format!(
                    "LEFT namespaces {:?}, processes {:?}",
                    self.teardown.namespaces_left, self.teardown.processes_left
                )
            },
            self.total_s
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(at: f64, ok: bool, server: &str, id: u64, seq: u64) -> Attempt {
        Attempt {
            op: Op::Write,
            port: 3306,
            seq,
            at,
            took_ms: 0.0,
            ok,
            id: ok.then_some(id),
            server: ok.then(|| server.to_string()),
            connection: None,
            new_connection: false,
            tag: Some(format!("t-{seq}")),
            error: (!ok).then(|| "closed by the other side".to_string()),
        }
    }

    #[test]
    fn the_longest_gap_spans_the_window_edges() {
        let s = [0.0, 1.0, 2.0, 7.5, 8.5];
        assert_eq!(longest_gap(&s, 2.5, 10.0), 5.5);
        // Nothing after the window: the gap runs to its end.
        assert_eq!(longest_gap(&[0.0, 1.0], 1.5, 4.0), 3.0);
        // Nothing before: from the start.
        assert_eq!(longest_gap(&[3.0], 0.0, 4.0), 3.0);
        assert_eq!(longest_gap(&[], 0.0, 2.0), 2.0);
    }

    #[test]
    fn a_clean_failover_and_handback_is_not_on_both_masters() {
        let seq: Vec<(f64, String)> = [
            (0.0, "A"),
            (1.0, "A"),
            (2.5, "B"),
            (3.5, "B"),
            (4.5, "A"),
            (5.5, "A"),
        ]
        .iter()
        .map(|(t, s)| (*t, s.to_string()))
        .collect();
        assert!(on_both_masters(&seq, 2.0).is_empty());
    }

    #[test]
    fn interleaved_masters_are_on_both_masters() {
        let seq: Vec<(f64, String)> = [(0.0, "A"), (1.0, "B"), (2.0, "A"), (3.0, "B"), (10.0, "A")]
            .iter()
            .map(|(t, s)| (*t, s.to_string()))
            .collect();
        // The second and third are each between writes to the other; the fourth has none
        // after it in time.
        assert_eq!(
            on_both_masters(&seq, 2.0).into_iter().collect::<Vec<_>>(),
            vec![1, 2]
        );
    }

    fn sample(at: f64, n: u32) -> ConnectionSample {
        ConnectionSample {
            at,
            server: "254:3306".into(),
            up: true,
            by_source: [("192.168.66.6".to_string(), n)].into_iter().collect(),
        }
    }

    #[test]
    fn lingering_connections_are_timed_from_the_move() {
        let spec = LingerSpec {
            server: "254:3306".into(),
            source: None,
            since: 10.0,
        };
        let closed = [
            sample(9.5, 2),
            sample(10.5, 2),
            sample(11.0, 1),
            sample(11.5, 0),
        ];
        let l = lingering(&closed, &spec);
        assert_eq!((l.open_before, l.open_after_max), (2, 2));
        assert_eq!(l.closed_within_s, Some(1.5));
        let open = [sample(9.5, 2), sample(10.5, 2), sample(30.0, 2)];
        let l = lingering(&open, &spec);
        assert_eq!(l.closed_within_s, None);
        assert_eq!(l.watched_s, 20.0);
        let only = LingerSpec {
            source: Some("192.168.66.12".into()),
            ..spec
        };
        let l = lingering(&open, &only);
        assert_eq!((l.open_before, l.open_after_max), (0, 0));
        assert_eq!(l.closed_within_s, Some(0.5));
    }

    #[test]
    fn figures_per_event() {
        let mut attempts = vec![
            write(0.0, true, "253:3306", 2, 1),
            write(1.0, true, "253:3306", 4, 2),
            write(2.0, false, "", 0, 3),
            write(3.0, true, "254:3306", 5, 4),
            write(4.0, true, "254:3306", 7, 5),
        ];
        // The failed attempt 3 was written all the same, as id 6 on A.
        attempts[2].tag = Some("t-3".into());
        let records = Records {
            attempts,
            ..Records::default()
        };
        let marks = vec![
            Mark {
                at: 0.0,
                label: "start".into(),
            },
            Mark {
                at: 1.5,
                label: "stop 253:3306".into(),
            },
        ];
        let mut rows = FinalRows::default();
        for (id, tag) in [(2, "t-1"), (4, "t-2"), (6, "t-3"), (5, "t-4")] {
            rows.a.insert((id, tag.to_string()));
            rows.b.insert((id, tag.to_string()));
        }
        // Id 7 reached B only.
        rows.b.insert((7, "t-5".to_string()));
        let finals: BTreeMap<u16, FinalRows> = [(3306, rows)].into_iter().collect();
        let figures = event_figures(&records, &marks, &[], &[], 5.0, 1.0, &finals);
        assert_eq!(figures.len(), 2);
        let first = &figures[0].writes[0];
        assert_eq!((first.attempts, first.failed), (2, 0));
        assert_eq!(first.acknowledged_by.get("253:3306"), Some(&2));
        let second = &figures[1].writes[0];
        assert_eq!((second.attempts, second.failed), (3, 1));
        assert_eq!(second.failed_connecting, 0);
        assert_eq!(second.longest_without_write_s, 2.0);
        assert_eq!(second.missing_afterwards, vec![7]);
        assert_eq!(second.in_doubt_written, 1);
        assert_eq!(second.on_both_masters, 0);
    }

    #[test]
    fn the_timeline_folds_runs_of_failures() {
        let records = Records {
            attempts: vec![
                write(0.0, true, "253:3306", 2, 1),
                write(1.0, true, "253:3306", 4, 2),
                write(2.0, false, "", 0, 3),
                write(3.0, false, "", 0, 4),
                write(4.0, true, "254:3306", 5, 5),
            ],
            events: vec![crate::writer::Event {
                at: 1.5,
                source: "lab".into(),
                text: "stop".into(),
            }],
            samples: Vec::new(),
        };
        let lines: Vec<String> = timeline_lines(&records)
            .into_iter()
            .map(|l| l.text)
            .collect();
        assert_eq!(
            lines,
            vec![
                "write:3306 ok on 253:3306, id 2",
                "lab        stop",
                "write:3306 FAILED: closed by the other side  (×2 until 3.0s)",
                "write:3306 ok on 254:3306, id 5",
            ]
        );
    }
}
