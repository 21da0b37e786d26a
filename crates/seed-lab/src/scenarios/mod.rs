//! The seed's test plan, one function per section, run back to back on one [`Topology`]:
//!
//! | id | name | the seed's section |
//! |---|---|---|
//! | 4.2 | `forwarding` | the VIP forwards both ports to A; both directors hold the table |
//! | 4.3.1 | `real-server` | MariaDB A:3306 stopped and started again under the application |
//! | 5 | `director` | halb on the MASTER director stopped and started again |
//! | 6.2 | `mysql-failure` | the writer's instance fails and comes back; ids, lost rows, lingering connections |
//! | 6.3 | `crash` | `kill -9` of one instance while the others keep serving |
//!
//! Each scenario runs the application ([`crate::writer`]) for its whole length, marks what the
//! lab does on a [`Timeline`], waits on halb's live state (its control socket) rather than on
//! fixed sleeps, and leaves the topology as it found it: every instance up, d1 MASTER, the
//! sorry servers out, replication running. [`run_plan`] turns all of it into a [`Report`].

mod compare;
mod crash;
mod director;
mod director_partition;
mod early_failback;
mod flap;
mod forwarding;
mod mysql_failure;
mod real_server;
pub mod report;
pub mod safety;
mod slow_master;
mod watch;

pub use compare::{run_compare, Comparison, Mode};

use crate::topology::{
    process_alive, server_label, wait_for, Cancel, Side, Topology, TopologyOptions, PORTS,
};
use crate::writer::{Load, LoadOptions, Op, Stream, Timeline};
use anyhow::{bail, Result};
use report::{
    Check, EventFigures, FinalRows, InstanceState, LingerSpec, Mark, Observation, PairState,
    Report, ScenarioReport, Teardown,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One section of the seed's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scenario {
    Forwarding,
    RealServer,
    Director,
    MysqlFailure,
    Crash,
    SlowMaster,
    EarlyFailback,
    Flap,
    DirectorPartition,
}

impl Scenario {
    /// The scenarios that break the seed's setup, each run with the seed's files and with
    /// halb's safety keywords ([`run_compare`]).
    pub const UNKIND: [Scenario; 4] = [
        Scenario::SlowMaster,
        Scenario::EarlyFailback,
        Scenario::Flap,
        Scenario::DirectorPartition,
    ];

    pub fn is_unkind(self) -> bool {
        Scenario::UNKIND.contains(&self)
    }

    pub const ALL: [Scenario; 5] = [
        Scenario::Forwarding,
        Scenario::RealServer,
        Scenario::Director,
        Scenario::MysqlFailure,
        Scenario::Crash,
    ];

    /// The seed's section number.
    pub fn id(self) -> &'static str {
        match self {
            Scenario::Forwarding => "4.2",
            Scenario::RealServer => "4.3.1",
            Scenario::Director => "5",
            Scenario::MysqlFailure => "6.2",
            Scenario::Crash => "6.3",
            Scenario::SlowMaster => "U1",
            Scenario::EarlyFailback => "U2",
            Scenario::Flap => "U3",
            Scenario::DirectorPartition => "U4",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Forwarding => "forwarding",
            Scenario::RealServer => "real-server",
            Scenario::Director => "director",
            Scenario::MysqlFailure => "mysql-failure",
            Scenario::Crash => "crash",
            Scenario::SlowMaster => "slow-master",
            Scenario::EarlyFailback => "early-failback",
            Scenario::Flap => "flap",
            Scenario::DirectorPartition => "director-partition",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Scenario::Forwarding => "Forwarding on both ports",
            Scenario::RealServer => "Real server 3306 stopped and restarted",
            Scenario::Director => "MASTER director stopped and restarted",
            Scenario::MysqlFailure => "The writer's MySQL instance fails, then comes back",
            Scenario::Crash => "One instance killed while the others keep serving",
            Scenario::SlowMaster => {
                "The real server stops answering new connections in time while old ones write"
            }
            Scenario::EarlyFailback => {
                "The real server returns while its replication from the sorry server is held back"
            }
            Scenario::Flap => "The real server fails and returns five times, 25 s apart",
            Scenario::DirectorPartition => {
                "Both directors MASTER while they disagree about the real server's health"
            }
        }
    }

    /// By id (`6.2`) or name (`mysql-failure`).
    pub fn parse(text: &str) -> Result<Scenario> {
        Scenario::ALL
            .into_iter()
            .chain(Scenario::UNKIND)
            .find(|s| s.id() == text || s.name() == text)
            .ok_or_else(|| {
                let known: Vec<String> = Scenario::ALL
                    .iter()
                    .chain(Scenario::UNKIND.iter())
                    .map(|s| format!("{} ({})", s.name(), s.id()))
                    .collect();
                anyhow::anyhow!("no scenario {text:?}; there are: {}", known.join(", "))
            })
    }
}

/// How to run the plan.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub load: LoadOptions,
    /// Print each scenario's timeline to stderr while it runs.
    pub live: bool,
    /// How long to watch for connections left open on a server traffic moved away from.
    pub linger_watch: Duration,
    /// How long to wait for halb's checkers (the seed's delay_loop is 20 s, with 3 retries 3 s
    /// apart and a 5 s connect timeout).
    pub checker_timeout: Duration,
    /// `early-failback`: how long the returning server's replication stays held back (two of
    /// the seed's `delay_loop`s, so its checkers see it back well within it).
    pub replication_hold: Duration,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            load: LoadOptions::default(),
            live: false,
            linger_watch: Duration::from_secs(15),
            checker_timeout: Duration::from_secs(120),
            replication_hold: Duration::from_secs(40),
        }
    }
}

/// Builds the topology, runs `scenarios` in order, takes everything down and reports. A
/// scenario that fails is reported and the topology is brought back before the next one; if
/// that fails, the rest are reported as not run.
pub fn run_plan(
    topology: &TopologyOptions,
    plan: &PlanOptions,
    scenarios: &[Scenario],
) -> Result<Report> {
    let started = Instant::now();
    let mut lab = Topology::build(topology)?;
    let setup_s = started.elapsed().as_secs_f64();
    let namespaces = lab.namespaces();
    let mut pids: BTreeSet<u32> = lab.pids().into_iter().collect();
    let mut reports = Vec::new();
    let mut broken: Option<String> = None;
    for &scenario in scenarios {
        if let Some(why) = &broken {
            reports.push(not_run(scenario, why));
            continue;
        }
        if lab.cancel.is_cancelled() {
            reports.push(not_run(scenario, "interrupted"));
            continue;
        }
        let report = run_scenario(&mut lab, plan, scenario);
        pids.extend(lab.pids());
        let failed = !report.ok;
        reports.push(report);
        if failed && !lab.cancel.is_cancelled() {
            if let Err(e) = lab.heal(Duration::from_secs(180)) {
                broken = Some(format!("the topology could not be restored: {e:#}"));
            }
            pids.extend(lab.pids());
        }
    }
    drop(lab);
    let teardown = Teardown {
        namespaces_left: namespaces
            .into_iter()
            .filter(|n| halb_sys::netns::named(n).exists())
            .collect(),
        processes_left: pids.into_iter().filter(|&p| process_alive(p)).collect(),
    };
    Ok(Report {
        master_config: topology.master_config.to_string(),
        backup_config: topology.backup_config.to_string(),
        dataplane: topology.dataplane.clone(),
        rate: plan.load.rate,
        pool: plan.load.pool,
        setup_s,
        total_s: started.elapsed().as_secs_f64(),
        scenarios: reports,
        teardown,
    })
}

fn not_run(scenario: Scenario, why: &str) -> ScenarioReport {
    ScenarioReport {
        id: scenario.id().into(),
        name: scenario.name().into(),
        title: scenario.title().into(),
        ok: false,
        error: Some(format!("not run: {why}")),
        duration_s: 0.0,
        timeline: Vec::new(),
        events: Vec::new(),
        replication: Vec::new(),
        checks: Vec::new(),
        notes: Vec::new(),
        statuses: Vec::new(),
        records: Default::default(),
        safety: None,
    }
}

/// The application under a scenario: the seed's program writing on `write_ports` (the seed
/// wrote on :3306 only) and reading on both ports.
fn application(write_ports: &[u16]) -> Vec<Stream> {
    let writes = write_ports.iter().map(|&port| Stream {
        op: Op::Write,
        port,
    });
    let reads = PORTS.map(|port| Stream { op: Op::Read, port });
    writes.chain(reads).collect()
}

/// Runs one scenario on a running topology; never fails: what went wrong is in the report.
pub fn run_scenario(lab: &mut Topology, plan: &PlanOptions, scenario: Scenario) -> ScenarioReport {
    let streams = match scenario {
        Scenario::Forwarding
        | Scenario::RealServer
        | Scenario::Director
        | Scenario::MysqlFailure => application(&[3306]),
        // Writers on both ports, so that the killed instance's own traffic is seen.
        Scenario::Crash => application(&[3306, 3308]),
        Scenario::SlowMaster
        | Scenario::EarlyFailback
        | Scenario::Flap
        | Scenario::DirectorPartition => unkind_application(),
    };
    if scenario.is_unkind() {
        // The counter starts at 0 on both masters, whatever the scenario before left.
        let reset = lab.db(Side::A, 3306).and_then(|a| {
            a.reset_counter()?;
            let b = lab.db(Side::B, 3306)?;
            if !b.applied_all_of(a, 30)? {
                bail!("254:3306 did not apply the counter's reset within 30 s");
            }
            Ok(())
        });
        if let Err(e) = reset {
            return not_run(scenario, &format!("{e:#}"));
        }
    }
    let mut session = match Session::start(lab, plan, scenario, &streams) {
        Ok(s) => s,
        Err(e) => return not_run(scenario, &format!("{e:#}")),
    };
    let outcome = match scenario {
        Scenario::Forwarding => forwarding::run(&mut session),
        Scenario::RealServer => real_server::run(&mut session),
        Scenario::Director => director::run(&mut session),
        Scenario::MysqlFailure => mysql_failure::run(&mut session),
        Scenario::Crash => crash::run(&mut session),
        Scenario::SlowMaster => slow_master::run(&mut session),
        Scenario::EarlyFailback => early_failback::run(&mut session),
        Scenario::Flap => flap::run(&mut session),
        Scenario::DirectorPartition => director_partition::run(&mut session),
    };
    session.finish(outcome.err())
}

/// The application of the unkind scenarios: inserts and counter updates on :3306.
fn unkind_application() -> Vec<Stream> {
    vec![Stream::write(3306), Stream::update(3306)]
}

/// A scenario while it runs: the application, the watchers, the marks and what was seen.
pub(crate) struct Session<'a> {
    pub lab: &'a mut Topology,
    pub timeline: Arc<Timeline>,
    plan: &'a PlanOptions,
    scenario: Scenario,
    streams: Vec<Stream>,
    load: Option<Load>,
    /// Further instances of the application ([`Session::start_another_application`]).
    other_loads: Vec<Load>,
    /// The real server's returns and the handbacks that followed.
    returns: Vec<safety::Return>,
    watchers: Vec<watch::Watcher>,
    marks: Vec<Mark>,
    observations: Vec<Observation>,
    linger: Vec<LingerSpec>,
    checks: Vec<(Check, bool)>,
    notes: Vec<String>,
    statuses: Vec<(String, String)>,
    started: Instant,
    restarts: u32,
}

impl<'a> Session<'a> {
    fn start(
        lab: &'a mut Topology,
        plan: &'a PlanOptions,
        scenario: Scenario,
        streams: &[Stream],
    ) -> Result<Session<'a>> {
        let timeline = Timeline::new(plan.live.then(|| scenario.id().to_string()));
        if plan.live {
            eprintln!("\n== {} {}", scenario.id(), scenario.title());
        }
        let netns = lab.client_netns()?;
        let logs = lab
            .directors
            .iter()
            .map(|d| (d.name.to_string(), d.log.clone()))
            .collect();
        let watchers = vec![
            watch::connections(
                netns.clone(),
                Arc::clone(&timeline),
                Duration::from_millis(500),
            ),
            watch::logs(logs, Arc::clone(&timeline)),
        ];
        let mut session = Session {
            lab,
            timeline,
            plan,
            scenario,
            streams: streams.to_vec(),
            load: None,
            other_loads: Vec::new(),
            returns: Vec::new(),
            watchers,
            marks: Vec::new(),
            observations: Vec::new(),
            linger: Vec::new(),
            checks: Vec::new(),
            notes: Vec::new(),
            statuses: Vec::new(),
            started: Instant::now(),
            restarts: 0,
        };
        session.start_application()?;
        Ok(session)
    }

    fn start_application(&mut self) -> Result<()> {
        let described: Vec<String> = self
            .streams
            .iter()
            .map(|s| format!("{}:{}", s.op.name(), s.port))
            .collect();
        let tag = if self.restarts == 0 {
            self.scenario.id().to_string()
        } else {
            format!("{}r{}", self.scenario.id(), self.restarts)
        };
        self.mark(&format!(
            "application {}: {}",
            if self.restarts == 0 {
                "starts"
            } else {
                "restarted"
            },
            described.join(", ")
        ));
        self.load = Some(Load::start(
            &self.lab.client_netns()?,
            &self.timeline,
            &self.streams,
            &tag,
            &self.plan.load,
        ));
        let since = self.timeline.now();
        let streams = self.streams.clone();
        for s in streams {
            self.wait_attempts(s.op, s.port, None, 1, since, Duration::from_secs(30))?;
        }
        Ok(())
    }

    /// Stops the application and starts it again with new pools (the seed restarted its
    /// program while A was down).
    pub fn restart_application(&mut self) -> Result<()> {
        if let Some(load) = self.load.take() {
            load.stop();
        }
        self.restarts += 1;
        self.start_application()
    }

    /// Starts another instance of the application, with its own pools, from `host`'s
    /// namespace (its rows tagged `tag`), beside the running one.
    pub fn start_another_application(&mut self, host: &str, tag: &str) -> Result<()> {
        let netns = self.lab.host(host)?.ns.path();
        self.mark(&format!(
            "another instance of the application starts on {host} (new pools)"
        ));
        self.other_loads.push(Load::start(
            &netns,
            &self.timeline,
            &self.streams,
            tag,
            &self.plan.load,
        ));
        Ok(())
    }

    /// Stops the instances [`Session::start_another_application`] started.
    pub fn stop_other_applications(&mut self) {
        for load in self.other_loads.drain(..) {
            load.stop();
        }
    }

    /// Records a return of the real server and the handback that followed it.
    pub fn returned(&mut self, returned_at: f64, handback_at: Option<f64>) {
        self.returns.push(safety::Return {
            returned_at,
            handback_at,
        });
    }

    /// Waits `d` (or until the run is cancelled).
    pub fn pause(&self, d: Duration) -> Result<()> {
        let until = Instant::now() + d;
        while Instant::now() < until {
            self.cancel().check()?;
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Watches d1 for up to `d`: the first time its virtual server on `port` leaves the sorry
    /// server (an observation), or `None`.
    pub fn watch_handback(&mut self, port: u16, d: Duration) -> Result<Option<f64>> {
        let until = Instant::now() + d;
        let mut seen = None;
        while Instant::now() < until {
            self.cancel().check()?;
            if seen.is_none() && !self.lab.director("d1")?.sorry_server_active(port)? {
                seen = Some(self.observe(&format!(
                    "halb: {} back in for :{port} (sorry server out)",
                    server_label(Side::A, port)
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(seen)
    }

    pub fn cancel(&self) -> Cancel {
        self.lab.cancel
    }

    /// The scenario's id (`U1`), for tags.
    pub fn scenario_id(&self) -> &'static str {
        self.scenario.id()
    }

    pub fn checker_timeout(&self) -> Duration {
        self.plan.checker_timeout
    }

    pub fn replication_hold(&self) -> Duration {
        self.plan.replication_hold
    }

    /// Something the lab does: an event of the timeline and the start of a window of figures.
    pub fn mark(&mut self, label: &str) -> f64 {
        let at = self.timeline.event("lab", label);
        self.marks.push(Mark {
            at,
            label: label.to_string(),
        });
        at
    }

    /// Something the lab saw at `at`, timed from the last mark.
    pub fn observe_at(&mut self, what: &str, at: f64) {
        let since = self.marks.last().map(|m| m.at).unwrap_or(0.0);
        self.timeline
            .event("lab", format!("{what} (+{:.1} s)", at - since));
        self.observations.push(Observation {
            at,
            what: what.to_string(),
            after_s: at - since,
        });
    }

    /// Something the lab sees now.
    pub fn observe(&mut self, what: &str) -> f64 {
        let at = self.timeline.now();
        self.observe_at(what, at);
        at
    }

    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// A check the test suite holds halb to (`required`) or a figure reported as a check.
    pub fn check(&mut self, what: &str, ok: bool, detail: impl Into<String>, required: bool) {
        self.checks.push((
            Check {
                what: what.to_string(),
                ok,
                detail: detail.into(),
            },
            required,
        ));
    }

    pub fn status_of(&mut self, director: &str, heading: &str) {
        let text = match self.lab.director(director).and_then(|d| d.status_text()) {
            Ok(t) => t,
            Err(e) => format!("(no status: {e:#})"),
        };
        self.statuses.push((heading.to_string(), text));
    }

    /// Waits until `n` consecutive attempts of a stream started after `since` succeeded (on
    /// `server` when given); records an observation at the first of them and returns its time.
    pub fn wait_attempts(
        &mut self,
        op: Op,
        port: u16,
        server: Option<&str>,
        n: usize,
        since: f64,
        timeout: Duration,
    ) -> Result<f64> {
        let timeline = Arc::clone(&self.timeline);
        let mut first = None;
        let what = format!(
            "{n} successful {}s on :{port}{}",
            op.name(),
            server
                .map(|s| format!(" answered by {s}"))
                .unwrap_or_default()
        );
        wait_for(&what, timeout, self.cancel(), || {
            let records = timeline.records();
            let list: Vec<_> = records
                .attempts
                .iter()
                .filter(|a| a.op == op && a.port == port && a.at >= since)
                .collect();
            let good = |a: &&crate::writer::Attempt| {
                a.ok && server.is_none_or(|s| a.server.as_deref() == Some(s))
            };
            let tail = list.iter().rev().take_while(|a| good(a)).count();
            if tail >= n {
                first = Some(list[list.len() - tail].at);
                return Ok(true);
            }
            Ok(false)
        })?;
        let at = first.unwrap_or_else(|| self.timeline.now());
        if let Some(server) = server {
            self.observe_at(
                &format!("{}s on :{port} answered by {server}", op.name()),
                at,
            );
        }
        Ok(at)
    }

    /// Waits for writes on `port` answered by `server` (two in a row), after the last mark.
    pub fn wait_writes(&mut self, port: u16, server: &str, timeout: Duration) -> Result<f64> {
        let since = self.marks.last().map(|m| m.at).unwrap_or(0.0);
        self.wait_attempts(Op::Write, port, Some(server), 2, since, timeout)
    }

    /// Waits until d1 (the MASTER) has its virtual server on `port` on the sorry server
    /// (`active`) or back on the real server; records the observation.
    pub fn wait_sorry_server(&mut self, port: u16, active: bool) -> Result<f64> {
        self.wait_sorry_server_on("d1", port, active)
    }

    /// [`Session::wait_sorry_server`] on `director`.
    pub fn wait_sorry_server_on(&mut self, director: &str, port: u16, active: bool) -> Result<f64> {
        let timeout = self.checker_timeout();
        let cancel = self.cancel();
        let d1 = self.lab.director(director)?;
        let what = if active {
            format!(
                "halb: sorry server {} in for :{port}",
                server_label(Side::B, port)
            )
        } else {
            format!(
                "halb: {} back in for :{port} (sorry server out)",
                server_label(Side::A, port)
            )
        };
        let what = format!("{what} on {director}");
        wait_for(&what, timeout, cancel, || {
            d1.sorry_server_active(port).map(|a| a == active)
        })?;
        Ok(self.observe(&what))
    }

    /// Starts A's instance on `port` again (marked as `mark`), waits until the sorry server B
    /// is out, then for `attempts` (how many of each operation) answered by A, and watches the
    /// connections left on B.
    pub fn restart_and_hand_back(
        &mut self,
        port: u16,
        mark: &str,
        attempts: &[(Op, usize)],
    ) -> Result<()> {
        let a = server_label(Side::A, port);
        self.mark(mark);
        self.lab.db_mut(Side::A, port)?.server.restart()?;
        self.observe(&format!("mariadbd {a} accepts connections"));
        let handback = self.wait_sorry_server(port, false)?;
        for &(op, count) in attempts {
            self.wait_attempts(op, port, Some(&a), count, handback, Duration::from_secs(60))?;
        }
        self.watch_lingering(&[(&server_label(Side::B, port), None)], handback);
        Ok(())
    }

    /// Waits until a director's VRRP instance is in `state`; records the observation.
    pub fn wait_vrrp(&mut self, director: &str, state: &str, timeout: Duration) -> Result<f64> {
        let cancel = self.cancel();
        let d = self.lab.director(director)?;
        let what = format!("{director} {state}");
        wait_for(&what, timeout, cancel, || Ok(d.vrrp_state()? == state))?;
        Ok(self.observe(&what))
    }

    /// Watches the application's connections on each `(server, source)` (from `source` only,
    /// if given) after traffic moved away at `since`, until none is left anywhere or the watch
    /// time is over.
    pub fn watch_lingering(&mut self, servers: &[(&str, Option<&str>)], since: f64) {
        let specs: Vec<LingerSpec> = servers
            .iter()
            .map(|(server, source)| LingerSpec {
                server: server.to_string(),
                source: source.map(str::to_string),
                since,
            })
            .collect();
        let timeline = Arc::clone(&self.timeline);
        let watch = self.plan.linger_watch;
        let _ = wait_for("connections to close", watch, self.cancel(), || {
            let samples = timeline.records().samples;
            Ok(specs.iter().all(|spec| {
                // Two looks after the move, so a connection closed at once is seen as closed.
                let looks = samples
                    .iter()
                    .filter(|s| s.server == spec.server && s.at > since)
                    .count();
                looks >= 2 && report::lingering(&samples, spec).closed_within_s.is_some()
            }))
        });
        self.linger.extend(specs);
    }

    /// Ends the scenario: stops the application, waits for each pair to hold the same rows
    /// (bounded), reads the replication state and computes the figures.
    fn finish(mut self, error: Option<anyhow::Error>) -> ScenarioReport {
        let end = self.timeline.now();
        if let Some(load) = self.load.take() {
            load.stop();
        }
        self.stop_other_applications();
        self.watchers.clear();
        let stopped = Instant::now();
        let records = self.timeline.records();

        let written: BTreeSet<u16> = self
            .streams
            .iter()
            .filter(|s| s.op == Op::Write)
            .map(|s| s.port)
            .collect();
        for &port in &written {
            let last = records
                .attempts
                .iter()
                .filter(|a| a.op == Op::Write && a.port == port)
                .max_by(|x, y| x.at.total_cmp(&y.at));
            let ok = last.is_some_and(|a| a.ok);
            let detail = match last {
                Some(a) => crate::writer::describe_attempt(a),
                None => "no write attempted".into(),
            };
            self.check(
                &format!("writes succeed at the end on :{port}"),
                ok,
                detail,
                true,
            );
        }

        let mut final_rows = BTreeMap::new();
        let mut pairs = Vec::new();
        for port in PORTS {
            let (pair, rows) = self.pair_state(port, stopped);
            final_rows.insert(port, rows);
            pairs.push(pair);
        }
        let running = self.lab.wait_replication_running(Duration::from_secs(30));
        // The state after the wait, so a thread that was reconnecting shows as running.
        for pair in &mut pairs {
            for inst in &mut pair.instances {
                if let Some((side, port)) = parse_label(&inst.server) {
                    if let Ok(db) = self.lab.db(side, port) {
                        inst.running = db.is_running();
                        if let Ok(r) = db.replica_status() {
                            inst.replica = r;
                        }
                    }
                }
            }
        }
        self.check(
            "replication running both ways on both pairs",
            running.is_ok() && pairs.iter().all(PairState::replication_running),
            running.err().map(|e| format!("{e:#}")).unwrap_or_default(),
            true,
        );
        for p in &pairs {
            self.check(
                &format!("the two masters of :{} hold the same rows", p.port),
                p.consistent,
                if p.consistent {
                    String::new()
                } else {
                    format!("only on A {:?}, only on B {:?}", p.only_on_a, p.only_on_b)
                },
                false,
            );
        }

        let safety = self.scenario.is_unkind().then(|| {
            let rows = final_rows.get(&3306).cloned().unwrap_or_default();
            let after = self.pair_after(3306);
            safety::figures(
                3306,
                &records,
                &self.marks,
                end,
                &rows,
                &self.returns,
                after,
            )
        });
        let events: Vec<EventFigures> = report::event_figures(
            &records,
            &self.marks,
            &self.observations,
            &self.linger,
            end,
            self.plan.load.rate,
            &final_rows,
        );
        let required_ok = self.checks.iter().all(|(c, required)| c.ok || !required);
        if self.plan.live {
            eprintln!(
                "{:>6} {:>7.1}s  lab        scenario {}",
                self.scenario.id(),
                self.timeline.now(),
                if error.is_none() && required_ok {
                    "done"
                } else {
                    "FAILED"
                }
            );
        }
        ScenarioReport {
            id: self.scenario.id().into(),
            name: self.scenario.name().into(),
            title: self.scenario.title().into(),
            ok: error.is_none() && required_ok,
            error: error.map(|e| format!("{e:#}")),
            duration_s: self.started.elapsed().as_secs_f64(),
            timeline: report::timeline_lines(&records),
            events,
            replication: pairs,
            checks: self.checks.into_iter().map(|(c, _)| c).collect(),
            notes: self.notes,
            statuses: self.statuses,
            records,
            safety,
        }
    }

    /// Once the application stopped: waits (bounded) until each master applied what the other
    /// wrote, then reads the counters, which are writable, and runs pt-table-checksum.
    fn pair_after(&self, port: u16) -> safety::PairAfter {
        let mut after = safety::PairAfter::default();
        let (Ok(a), Ok(b)) = (self.lab.db(Side::A, port), self.lab.db(Side::B, port)) else {
            return after;
        };
        for (x, y) in [(a, b), (b, a)] {
            if let Err(e) = x.applied_all_of(y, 30) {
                after.checksum_error = Some(format!("{e:#}"));
            }
        }
        after.counter_a = a.counter().ok();
        after.counter_b = b.counter().ok();
        after.writable = [a, b]
            .iter()
            .filter(|d| {
                d.server
                    .value("SELECT @@global.read_only")
                    .is_ok_and(|v| v == "0")
            })
            .map(|d| d.label())
            .collect();
        match self.lab.checksum(port) {
            Ok(c) => after.checksum = Some(c),
            Err(e) => after.checksum_error = Some(format!("{e:#}")),
        }
        after
    }

    /// Waits (up to 60 s) for A and B of `port` to hold the same rows; their state and rows.
    fn pair_state(&self, port: u16, stopped: Instant) -> (PairState, FinalRows) {
        let read = |side| -> Result<BTreeSet<(u64, String)>> {
            Ok(self.lab.db(side, port)?.table_rows()?.into_iter().collect())
        };
        let mut rows = FinalRows::default();
        // One read whatever happens next, so an interrupted run still reports real rows.
        if let (Ok(a), Ok(b)) = (read(Side::A), read(Side::B)) {
            rows.a = a;
            rows.b = b;
        }
        let caught_up = rows.a == rows.b
            || wait_for(
                &format!("the :{port} pair to hold the same rows"),
                Duration::from_secs(60),
                self.cancel(),
                || {
                    rows.a = read(Side::A)?;
                    rows.b = read(Side::B)?;
                    Ok(rows.a == rows.b)
                },
            )
            .is_ok();
        let instances = [Side::A, Side::B]
            .into_iter()
            .map(|side| {
                let label = server_label(side, port);
                let (running, replica) = match self.lab.db(side, port) {
                    Ok(db) => (
                        db.is_running(),
                        db.replica_status().unwrap_or_else(|e| unknown(&e)),
                    ),
                    Err(e) => (false, unknown(&e)),
                };
                let count = match side {
                    Side::A => rows.a.len(),
                    Side::B => rows.b.len(),
                };
                InstanceState {
                    server: label,
                    running,
                    replica,
                    rows: count,
                }
            })
            .collect();
        let only = |x: &BTreeSet<(u64, String)>, y: &BTreeSet<(u64, String)>| {
            x.difference(y).map(|(id, _)| *id).collect::<Vec<u64>>()
        };
        let pair = PairState {
            port,
            instances,
            consistent: rows.a == rows.b,
            only_on_a: only(&rows.a, &rows.b),
            only_on_b: only(&rows.b, &rows.a),
            caught_up_after_s: caught_up.then(|| stopped.elapsed().as_secs_f64()),
        };
        (pair, rows)
    }
}

fn unknown(e: &anyhow::Error) -> crate::topology::ReplicaStatus {
    crate::topology::ReplicaStatus {
        io_running: "unknown".into(),
        sql_running: "unknown".into(),
        last_io_error: format!("{e:#}"),
        ..Default::default()
    }
}

/// `253:3306` back to its instance.
fn parse_label(label: &str) -> Option<(Side, u16)> {
    let (host, port) = label.split_once(':')?;
    let side = match host {
        "253" => Side::A,
        "254" => Side::B,
        _ => return None,
    };
    Some((side, port.parse().ok()?))
}

/// Fails when a scenario is asked to run on a topology that is not at its start.
pub(crate) fn expect_start_state(lab: &Topology) -> Result<()> {
    for db in &lab.databases {
        if !db.is_running() {
            bail!("MariaDB {} is not running", db.label());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_parse_by_id_and_name() {
        assert_eq!(Scenario::parse("6.2").unwrap(), Scenario::MysqlFailure);
        assert_eq!(Scenario::parse("crash").unwrap(), Scenario::Crash);
        let e = Scenario::parse("7").unwrap_err().to_string();
        assert!(e.contains("forwarding (4.2)"), "{e}");
    }

    #[test]
    fn labels_map_back_to_instances() {
        assert_eq!(parse_label("254:3308"), Some((Side::B, 3308)));
        assert_eq!(parse_label("1:2"), None);
    }
}
