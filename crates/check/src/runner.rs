//! The tokio shell: one task per timed checker, each looping [`Policy`] and [`Probe`], sending
//! [`Report`]s over a channel and logging the policy's lines.
//!
//! FILE_CHECK and BFD_CHECK are not run here (they follow a file and a BFD session, not a
//! probe); the runner says so once in the log.

use crate::policy::{CheckerEvent, Policy, PolicyConfig, PolicyState, Timing, Wording};
use crate::probe::{outcome, Probe, ScriptUser};
use crate::{CheckerId, Report};
use halb_config::model::{Checker, CheckerKind, LvsConfig, RealServer, VirtualServer};
use halb_config::names;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// keepalived's name of a real server of `vs`.
fn rs_name(vs: &VirtualServer, rs: &RealServer) -> String {
    names::trio(rs.ip, vs.protocol, rs.port)
}

/// keepalived's name of `vs` in its checkers' lines, where a group's virtual servers are
/// all `[GROUP]:0`.
fn vs_name(vs: &VirtualServer) -> String {
    names::virtual_server(&vs.key, vs.protocol, 0)
}

/// Settings from outside the LVS sections.
#[derive(Debug, Clone, Default)]
pub struct RunnerOptions {
    /// The global `script_user USER [GROUP]`.
    pub script_user: ScriptUser,
    /// The global `checker_log_all_failures`.
    pub log_all_failures: bool,
    /// Virtual servers (indices) whose checkers start suspended: `ha_suspend` services whose
    /// address is not on this host.
    pub suspended_vs: Vec<usize>,
    /// Checkers that take over a predecessor's verdict and retries (a reload, for checkers
    /// whose definition did not change), by their id in the new configuration.
    pub carried: BTreeMap<CheckerId, PolicyState>,
    /// Where every probe's time and outcome goes (the metrics), when somewhere.
    pub probes: Option<mpsc::UnboundedSender<crate::ProbeSample>>,
    /// The servers halb holds read-only itself: the MYSQL_CHECKs of `mysql_writer` virtual
    /// servers fail on any other server found read-only.
    pub fenced: crate::mysql::FencedServers,
}

/// Which checkers [`RunnerHandle::probe_now`] addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeTarget {
    /// Every checker of the real servers with this address and port.
    RealServer(SocketAddr),
    Checker(CheckerId),
}

impl From<SocketAddr> for ProbeTarget {
    fn from(a: SocketAddr) -> Self {
        ProbeTarget::RealServer(a)
    }
}

impl From<CheckerId> for ProbeTarget {
    fn from(id: CheckerId) -> Self {
        ProbeTarget::Checker(id)
    }
}

/// A checker the runner runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningChecker {
    pub id: CheckerId,
    pub real_server: SocketAddr,
    pub kind: CheckerKind,
}

/// How long a probe asked for by passive evidence (see [`RunnerHandle::expedite`]) waits for
/// an answer before it counts as failed, by kind. A TCP connect (TCP_CHECK, DR_PATH_CHECK) or an
/// echo (PING_CHECK) is one round trip, under a millisecond on the LAN a director serves: 200 ms
/// without a SYN-ACK while the clients' SYNs stall too is a server that does not answer. The
/// others log in or fetch, so they keep a full second; a MISC_CHECK script is not cut short
/// (it may change things on its way), its own `misc_timeout` holds. A director so loaded that
/// its own successful probes take longer waits longer: see [`bound_after`].
pub fn expedited_bound(kind: CheckerKind) -> Option<Duration> {
    match kind {
        CheckerKind::Tcp | CheckerKind::DrPath | CheckerKind::Ping => {
            Some(Duration::from_millis(200))
        }
        CheckerKind::Misc => None,
        _ => Some(Duration::from_secs(1)),
    }
}

/// The expedited bound for a checker whose last successful probe took `last_ok`: never under
/// ten times that. Clients whose handshakes stall because the director itself is overloaded
/// must not turn into probes cut short that a healthy server fails four times in a row.
pub fn bound_after(bound: Duration, last_ok: Option<Duration>) -> Duration {
    last_ok.map_or(bound, |took| bound.max(took.saturating_mul(10)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    ProbeNow,
    /// Passive evidence standing for this long from when the command is taken.
    Expedite(Duration),
    Suspend,
    Resume,
}

/// Controls the running checkers. Dropping it stops them.
#[derive(Debug)]
pub struct RunnerHandle {
    checkers: Vec<(RunningChecker, mpsc::UnboundedSender<Command>)>,
    /// Each checker's policy state after its last result, for a reload to carry over.
    states: Vec<(CheckerId, Arc<Mutex<PolicyState>>)>,
    tasks: JoinSet<()>,
}

impl RunnerHandle {
    /// The checkers running, in configuration order.
    pub fn checkers(&self) -> Vec<RunningChecker> {
        self.checkers.iter().map(|(c, _)| c.clone()).collect()
    }

    /// Every checker's verdict and retries as they stand (see [`RunnerOptions::carried`]).
    pub fn states(&self) -> BTreeMap<CheckerId, PolicyState> {
        self.states
            .iter()
            .map(|(id, cell)| (*id, *cell.lock().unwrap_or_else(|e| e.into_inner())))
            .collect()
    }

    /// Asks for an immediate probe (a passive failure seen by the data plane); a failure then
    /// goes through the usual retries. Returns how many checkers were asked.
    pub fn probe_now(&self, which: impl Into<ProbeTarget>) -> usize {
        let which = which.into();
        self.send(
            |c| match which {
                ProbeTarget::RealServer(a) => c.real_server == a,
                ProbeTarget::Checker(id) => c.id == id,
            },
            Command::ProbeNow,
        )
    }

    /// Passive evidence against a real server that stands for `stands_for` (the kernel's
    /// connection table shows its new connections stalling): its checkers probe now, a probe
    /// waits for an answer no longer than [`expedited_bound`], and a failure's retries follow
    /// at once, while the evidence stands. The checkers' verdicts still decide, after their
    /// usual retries (see `Policy::expedite`). Returns how many checkers were asked.
    pub fn expedite(&self, which: impl Into<ProbeTarget>, stands_for: Duration) -> usize {
        let which = which.into();
        self.send(
            |c| match which {
                ProbeTarget::RealServer(a) => c.real_server == a,
                ProbeTarget::Checker(id) => c.id == id,
            },
            Command::Expedite(stands_for),
        )
    }

    /// Stops probing the real servers of virtual server `vs` (`ha_suspend`: its address left
    /// this host). Returns how many checkers were suspended.
    pub fn suspend_vs(&self, vs: usize) -> usize {
        self.send(|c| c.id.vs == vs, Command::Suspend)
    }

    /// Probes them again.
    pub fn resume_vs(&self, vs: usize) -> usize {
        self.send(|c| c.id.vs == vs, Command::Resume)
    }

    /// Stops every checker (a running MISC_CHECK script's process group is killed) and waits
    /// for their tasks to end.
    pub async fn stop(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Stops every checker as [`RunnerHandle::stop`] does and returns their verdicts and
    /// retries as they stood then (see [`RunnerOptions::carried`]).
    pub async fn stop_keeping_states(mut self) -> BTreeMap<CheckerId, PolicyState> {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        self.states()
    }

    fn send(&self, pick: impl Fn(&RunningChecker) -> bool, cmd: Command) -> usize {
        self.checkers
            .iter()
            .filter(|(c, _)| pick(c))
            .filter(|(_, tx)| tx.send(cmd).is_ok())
            .count()
    }
}

/// Starts one task per timed checker of `cfg`; verdicts go to `reports`. Must be called within
/// a tokio runtime.
pub fn spawn(cfg: &LvsConfig, opts: &RunnerOptions, reports: mpsc::Sender<Report>) -> RunnerHandle {
    let mut handle = RunnerHandle {
        checkers: Vec::new(),
        states: Vec::new(),
        tasks: JoinSet::new(),
    };
    let mut not_probes = 0usize;
    for (vs_index, vs) in cfg.virtual_servers.iter().enumerate() {
        for (rs_index, rs) in vs.real_servers.iter().enumerate() {
            for (checker_index, checker) in rs.checkers.iter().enumerate() {
                let id = CheckerId {
                    vs: vs_index,
                    rs: rs_index,
                    checker: checker_index,
                };
                let probe = match Probe::from_config(vs, rs, checker, &opts.script_user) {
                    Ok(Some(Probe::Mysql { cfg, target, .. })) if vs.mysql_writer => Probe::Mysql {
                        cfg,
                        target,
                        writer: Some(opts.fenced.clone()),
                    },
                    Ok(Some(p)) => p,
                    Ok(None) => {
                        not_probes += 1;
                        continue;
                    }
                    Err(e) => {
                        warn!(
                            "{} for service {} of VS {} not run: {e}",
                            checker.kind_name(),
                            rs_name(vs, rs),
                            vs_name(vs)
                        );
                        continue;
                    }
                };
                let Some(timing) = rs.effective_checker_timing(vs, checker) else {
                    continue;
                };
                let policy_cfg = PolicyConfig {
                    timing: Timing::from(&timing),
                    alpha: rs.effective_checker_alpha(vs, checker),
                    log_all_failures: opts.log_all_failures
                        || checker.common().is_some_and(|c| c.log_all_failures),
                    service: rs_name(vs, rs),
                    wording: wording(vs, checker),
                };
                let suspended = opts.suspended_vs.contains(&vs_index);
                let (tx, rx) = mpsc::unbounded_channel();
                let running = RunningChecker {
                    id,
                    real_server: SocketAddr::new(rs.ip, rs.port),
                    kind: checker.kind(),
                };
                let carried = opts.carried.get(&id).copied();
                let state = Arc::new(Mutex::new(carried.unwrap_or(PolicyState {
                    up: !policy_cfg.alpha,
                    has_run: false,
                    retry_it: 0,
                    weight: None,
                })));
                handle.states.push((id, Arc::clone(&state)));
                let task = CheckerTask {
                    id,
                    carried,
                    state,
                    real_server: running.real_server,
                    kind: checker.kind(),
                    probes: opts.probes.clone(),
                    label: Label::new(vs, rs),
                    probe,
                    policy_cfg,
                    suspended,
                    commands: rx,
                    reports: reports.clone(),
                };
                handle.tasks.spawn(task.run());
                handle.checkers.push((running, tx));
            }
        }
    }
    if not_probes > 0 {
        info!(
            "{not_probes} FILE_CHECK/BFD_CHECK checker(s) probe nothing (a FILE_CHECK follows its track_file)"
        );
    }
    handle
}

fn wording(vs: &VirtualServer, checker: &Checker) -> Wording {
    match checker {
        Checker::Tcp(_) => Wording::Tcp,
        Checker::Http(_) => Wording::Http,
        Checker::Ssl(_) => Wording::Ssl,
        Checker::Smtp(_) => Wording::Smtp,
        Checker::Dns(_) => Wording::Dns,
        Checker::Udp(_) => Wording::Udp,
        Checker::Ping(_) => Wording::Ping { vs: vs_name(vs) },
        Checker::Misc(m) => Wording::Misc {
            vs: vs_name(vs),
            script: m.misc_path.argv.first().cloned().unwrap_or_default(),
        },
        Checker::Mysql(_) | Checker::File(_) | Checker::Bfd(_) => Wording::Mysql,
        Checker::DrPath(_) => Wording::DrPath,
    }
}

/// The names keepalived's activation lines use.
#[derive(Debug)]
struct Label {
    rs: String,
    vs: String,
}

impl Label {
    fn new(vs: &VirtualServer, rs: &RealServer) -> Label {
        Label {
            rs: rs_name(vs, rs),
            vs: vs_name(vs),
        }
    }
}

struct CheckerTask {
    id: CheckerId,
    /// The predecessor's state to resume from (a reload).
    carried: Option<PolicyState>,
    /// Where the policy's state is published after each result.
    state: Arc<Mutex<PolicyState>>,
    real_server: SocketAddr,
    kind: CheckerKind,
    probes: Option<mpsc::UnboundedSender<crate::ProbeSample>>,
    label: Label,
    probe: Probe,
    policy_cfg: PolicyConfig,
    suspended: bool,
    commands: mpsc::UnboundedReceiver<Command>,
    reports: mpsc::Sender<Report>,
}

impl CheckerTask {
    async fn run(mut self) {
        let warmup_us =
            u64::try_from(self.policy_cfg.timing.warmup.as_micros()).unwrap_or(u64::MAX);
        let warmup = Duration::from_micros(if warmup_us == 0 {
            0
        } else {
            rand::random_range(0..=warmup_us)
        });
        let now = Instant::now().into_std();
        let mut policy = match self.carried {
            // A checker kept over a reload is not warming up: its next probe comes within
            // one delay_loop, spread like the warmup so that they do not all probe at once.
            Some(state) => {
                let loop_us =
                    u64::try_from(self.policy_cfg.timing.delay_loop.as_micros()).unwrap_or(0);
                let offset = Duration::from_micros(if loop_us == 0 {
                    0
                } else {
                    rand::random_range(0..=loop_us)
                });
                Policy::resume_from(now, self.policy_cfg.clone(), state, offset)
            }
            None => Policy::new(now, self.policy_cfg.clone(), warmup),
        };
        let Label { rs, vs } = &self.label;
        // keepalived's "Activating/Suspending healthchecker" lines are the virtual-server
        // engine's to write (it decides); here they are only traces.
        if self.suspended {
            policy.suspend();
            debug!("checker for service {rs} for VS {vs} starts suspended");
        } else {
            debug!("checker for service {rs} for VS {vs} starts, first probe in {warmup:?}");
        }
        // How long the last successful probe took (see `bound_after`).
        let mut last_ok: Option<Duration> = None;
        loop {
            let deadline = policy.poll_timeout().map(Instant::from_std);
            tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    None => return,
                    Some(Command::ProbeNow) => {
                        if policy.probe_now(Instant::now().into_std()) {
                            debug!(vs = self.id.vs, rs = self.id.rs, checker = self.id.checker,
                                "probe of {rs} brought forward");
                        }
                    }
                    Some(Command::Expedite(stands_for)) => {
                        let now = Instant::now().into_std();
                        if policy.expedite(now, now + stands_for) {
                            debug!(vs = self.id.vs, rs = self.id.rs, checker = self.id.checker,
                                "new connections to {rs} stall: probe brought forward");
                        }
                    }
                    Some(Command::Suspend) => {
                        if !policy.is_suspended() {
                            debug!("checker for service {rs} for VS {vs} suspended");
                            policy.suspend();
                        }
                    }
                    Some(Command::Resume) => {
                        if policy.is_suspended() {
                            debug!("checker for service {rs} for VS {vs} resumed");
                            policy.resume();
                        }
                    }
                },
                _ = sleep_until(deadline), if deadline.is_some() => {
                    if policy.handle_timeout(Instant::now().into_std()) {
                        let started = Instant::now();
                        let bound = expedited_bound(self.kind)
                            .filter(|_| policy.is_expedited(started.into_std()))
                            .map(|b| bound_after(b, last_ok));
                        // On the heap only while it runs: the future of `Probe::run` is as
                        // large as its largest kind's (HTTP with TLS, the MySQL client), and
                        // held inline it would make every idle checker's task that large.
                        let probe = Box::pin(self.probe.run());
                        let result = if let Some(bound) = bound {
                            match tokio::time::timeout(bound, probe).await {
                                Ok(result) => result,
                                Err(_) => Err(crate::probe::ProbeFailure::timeout(format!(
                                    "no answer from {} within {bound:?} while its new \
                                     connections stall",
                                    self.real_server
                                ))),
                            }
                        } else {
                            probe.await
                        };
                        let took = started.elapsed();
                        if result.is_ok() {
                            last_ok = Some(took);
                        }
                        if let Some(probes) = &self.probes {
                            let _ = probes.send(crate::ProbeSample {
                                id: self.id,
                                kind: self.kind,
                                duration: took,
                                failure: result.as_ref().err().map(|f| f.kind),
                                read_only: result.as_ref().ok().and_then(|ok| ok.read_only),
                            });
                        }
                        match &result {
                            Ok(ok) => debug!(vs = self.id.vs, rs = self.id.rs,
                                checker = self.id.checker, "probe ok: {}", ok.detail),
                            Err(f) => debug!(vs = self.id.vs, rs = self.id.rs,
                                checker = self.id.checker, "probe failed: {f}"),
                        }
                        let outputs = policy.handle_result(Instant::now().into_std(), outcome(&result));
                        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = policy.state();
                        self.emit(outputs, took).await;
                    }
                }
            }
        }
    }

    /// Logs the policy's events in keepalived's words and reports its verdicts.
    async fn emit(&self, events: Vec<CheckerEvent>, probe_duration: Duration) {
        for event in events {
            if let Some(line) = event.log_line() {
                info!("{line}");
            }
            let Some(verdict) = event.verdict() else {
                continue;
            };
            let report = Report {
                id: self.id,
                real_server: self.real_server,
                kind: self.kind,
                up: verdict.up,
                weight: verdict.weight,
                detail: event.detail(),
                failure: event.failure().cloned(),
                probe_duration,
            };
            // Nobody listening any more: the daemon is stopping.
            let _ = self.reports.send(report).await;
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expedited_bound_grows_with_a_slow_director() {
        let ms = Duration::from_millis;
        let tcp = expedited_bound(CheckerKind::Tcp).unwrap();
        assert_eq!(tcp, ms(200));
        assert_eq!(expedited_bound(CheckerKind::Misc), None);
        assert_eq!(bound_after(tcp, None), ms(200));
        assert_eq!(bound_after(tcp, Some(ms(1))), ms(200));
        assert_eq!(bound_after(tcp, Some(ms(80))), ms(800));
    }
}
