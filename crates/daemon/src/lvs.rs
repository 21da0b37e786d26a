//! The virtual-server shell: the checkers (`halb_check`) report verdicts, the pure core
//! (`halb_lb::virtual_server`) turns them into the desired table and keepalived's events, and
//! a data plane holds the table. It also answers the control socket, since it owns the live
//! tables; the VRRP part's state arrives on a watch channel.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use halb_check::mysql::replica::ReplicaState;
use halb_check::mysql::FencedServers;
use halb_check::policy::PolicyState;
use halb_check::runner::{self, RunnerHandle, RunnerOptions};
use halb_check::Report;
use halb_config::model::{Config, ConnectionFencing};
use halb_dataplane::ipvs::daemon::{SyncDaemon, SyncState};
use halb_dataplane::ipvs::Ipvs;
use halb_dataplane::proxy::{Proxy, ProxyOptions};
use halb_dataplane::{ipvsadm_forward_name, ApplyError, Dataplane, PassiveFailure};
use halb_lb::table::{Change, Table};
use halb_lb::virtual_server::{CheckerId, FileStatus, Output, VirtualServers};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

use crate::conn_watch::{ConnWatch, Evidence};
use crate::control::protocol::{
    CheckerView, DestView, FailbackAnswer, LastReload, RealServerView, ServiceView, Snapshot,
    VirtualServerView,
};
use crate::control::server::Query;
use crate::event::{EventBus, EventKind, InstanceStatus};
use crate::failback::FailbackGate;
use crate::held::{RepairClock, SharedDataplane};
use crate::host::Addresses;
use crate::process;
use crate::reload::Apply;
use crate::reload_plan;
use crate::track_file::{self, effect, FileValue, Followed, TrackFiles};
use crate::writer_fence::WriterFencing;

/// Which data plane `--dataplane` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataplaneChoice {
    /// IPVS when the kernel has it, else the userspace proxy.
    Auto,
    Proxy,
    Ipvs,
}

#[derive(Debug, Clone)]
pub struct LvsOptions {
    pub dataplane: DataplaneChoice,
    /// Ask a real server's checkers to look at once when a connection to it fails.
    pub passive_checks: bool,
    /// With IPVS, add a DR_PATH_CHECK to direct-routing real servers ([`crate::dr_path`]).
    pub dr_path_checks: bool,
    pub proxy: ProxyOptions,
    /// Where the checkers send every probe's time and outcome (the metrics), when somewhere.
    pub probes: Option<mpsc::UnboundedSender<halb_check::ProbeSample>>,
    /// Where FILE_CHECK's files are watched (shared with the VRRP part).
    pub track_files: TrackFiles,
}

/// Reloads handed to the virtual servers, and the last reload's outcome for `halb status`.
pub struct Reloads {
    pub requests: mpsc::Receiver<Apply>,
    pub last: watch::Receiver<Option<LastReload>>,
}
/// How often the writer services' servers' replica state is read for `halb status`.
const REPLICA_READ: Duration = Duration::from_secs(5);

/// How often a server whose fence failed is tried again.
const FENCE_RETRY: Duration = Duration::from_secs(1);

/// A real server's stalling connections are logged at most this often (each read repeats it).
const STALL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The most checker verdicts taken together for one update of the data plane: enough for a
/// whole burst, few enough that the loop's other work (a stop, `halb status`) waits little.
const REPORT_BATCH: usize = 4096;

/// How long scripts run at shutdown (omega's `notify_down`, `quorum_down`) may take.
const SHUTDOWN_SCRIPT_GRACE: Duration = Duration::from_secs(5);

struct Shell {
    config: Arc<Config>,
    vs: VirtualServers,
    dataplane: Option<SharedDataplane>,
    /// What the data plane holds: only what landed.
    held: Table,
    /// When the data plane is next repaired (soon after a change failed).
    repair: RepairClock,
    runner: Option<RunnerHandle>,
    /// The last thing each checker said, for `halb status`.
    details: BTreeMap<CheckerId, String>,
    /// Local addresses ha_suspend knows of (the VIPs of MASTER instances).
    vips: BTreeSet<IpAddr>,
    scripts: tokio::task::JoinSet<()>,
    /// Kernel IPVS's global side (timeouts, the sync daemon), when that is the data plane.
    ipvs: Option<IpvsControl>,
    events: EventBus,
    last_reload: watch::Receiver<Option<LastReload>>,
    /// Server fencing of the `mysql_writer` virtual servers.
    writers: WriterFencing,
    /// Up verdicts whose handback waits for the returning server to catch up; tried again
    /// every second.
    held_verdicts: BTreeMap<CheckerId, Report>,
    /// `failback manual` and `failback_limit`: whether a handback may happen by itself.
    failback: FailbackGate,
    /// By virtual server: why a handback waits, for `halb status`.
    held_why: BTreeMap<usize, String>,
    /// Where the checkers send every probe's sample (the metrics), when somewhere.
    probes: Option<mpsc::UnboundedSender<halb_check::ProbeSample>>,
    /// The writer services' servers' replica state, last read.
    replicas: BTreeMap<std::net::SocketAddr, ReplicaState>,
    /// Passive detection on IPVS: the connection table's reader, when it runs.
    conn_watch: Option<ConnWatch>,
    /// When each real server's stall was last logged.
    stall_logged: BTreeMap<std::net::SocketAddr, tokio::time::Instant>,
    /// The FILE_CHECKs, and the files they follow.
    file_checks: Vec<track_file::FileCheck>,
    followed: Followed,
    file_changes: mpsc::Sender<FileValue>,
    track_files: TrackFiles,
}

/// The sync daemon follows one VRRP instance: master daemon while it is MASTER, backup
/// daemon otherwise (keepalived's `lvs_sync_daemon`).
struct IpvsControl {
    /// Shared with the blocking thread that runs a repair.
    ipvs: Arc<Ipvs>,
    /// Every service halb has put in the kernel, so reconciliation never touches others.
    owned: BTreeSet<halb_lb::table::ServiceKey>,
    sync: Option<SyncDaemonPlan>,
    running: Option<SyncState>,
}

struct SyncDaemonPlan {
    instance: Option<String>,
    daemon: SyncDaemon,
}

/// Runs the virtual servers until `stop` fires, answering `queries` meanwhile. The data plane
/// is `dataplane` when given, else the one [`LvsOptions::dataplane`] chooses. `started` fires
/// once the virtual servers are in the data plane and their checkers run.
#[allow(clippy::too_many_arguments)]
pub async fn run<A: Addresses>(
    config: Arc<Config>,
    options: LvsOptions,
    host: Arc<A>,
    dataplane: Option<Box<dyn Dataplane>>,
    mut vrrp: watch::Receiver<Vec<InstanceStatus>>,
    events: EventBus,
    mut queries: mpsc::Receiver<Query>,
    reloads: Reloads,
    mut stop: oneshot::Receiver<()>,
    started: oneshot::Sender<()>,
    mut bfd: watch::Receiver<crate::bfd::BfdView>,
) -> Result<()> {
    let Reloads {
        requests: mut reload_requests,
        last: last_reload,
    } = reloads;
    let (passive_tx, mut passive) = mpsc::unbounded_channel::<PassiveFailure>();
    let has_services = !config.lvs.virtual_servers.is_empty();
    // A data plane given by the caller is kept for a reload that brings the first services.
    let (mut given, mut dataplane, mut ipvs) = (dataplane, None, None);
    if has_services {
        match given.take() {
            Some(d) => dataplane = Some(d),
            None => {
                let (d, i) = choose_dataplane(&options, passive_tx.clone(), &config)?;
                (dataplane, ipvs) = (Some(d), i);
            }
        }
    }
    let config = if ipvs.is_some() && options.dr_path_checks {
        let mut augmented = (*config).clone();
        let added = crate::dr_path::add_checks(&mut augmented.lvs);
        if added > 0 {
            info!(
                "DR_PATH_CHECK added to {added} direct-routing real server(s): \
                 a real server without the VIP on its loopback will be taken out"
            );
        }
        Arc::new(augmented)
    } else {
        config
    };
    let file_checks = track_file::file_checks(&config);
    let (file_changes, mut file_inbox) = mpsc::channel::<FileValue>(64);
    let followed = track_file::follow(
        &options.track_files,
        &checked_files(&file_checks),
        &file_changes,
    );
    // keepalived reads the files before it sets up the services.
    let initial: Vec<(CheckerId, FileStatus)> = file_checks
        .iter()
        .map(|c| {
            let value = followed.values.get(&c.name).copied().unwrap_or(0);
            (c.id, effect::initial_checker_status(value, c.tracking))
        })
        .collect();
    let mut shell = Shell {
        vs: VirtualServers::with_files(&config.lvs, &initial),
        config: Arc::clone(&config),
        dataplane: dataplane.map(SharedDataplane::new),
        held: Table::default(),
        repair: RepairClock::new(),
        runner: None,
        details: BTreeMap::new(),
        vips: BTreeSet::new(),
        scripts: tokio::task::JoinSet::new(),
        ipvs,
        events,
        last_reload,
        writers: WriterFencing::new(&config.lvs, FencedServers::default()),
        held_verdicts: BTreeMap::new(),
        failback: FailbackGate::new(&config.lvs),
        held_why: BTreeMap::new(),
        probes: options.probes.clone(),
        replicas: BTreeMap::new(),
        conn_watch: None,
        stall_logged: BTreeMap::new(),
        file_checks,
        followed,
        file_changes,
        track_files: options.track_files.clone(),
    };
    let (stall_tx, mut stalls) = mpsc::unbounded_channel::<Evidence>();
    shell.start_conn_watch(&options, &stall_tx);
    shell.follow_sync_daemon(&vrrp.borrow());
    if has_services {
        for ip in host_addresses(&*host).await {
            let out = shell.vs.local_address_added(ip);
            shell.carry_out(out).await;
        }
        let vips = master_vips(&vrrp.borrow());
        shell.update_vips(vips).await;
        let out = shell.vs.start();
        shell.sync_table().await;
        shell.carry_out(out).await;
    }
    let (report_tx, mut reports) = mpsc::channel::<Report>(1024);
    if has_services {
        shell.start_runner(BTreeMap::new(), &report_tx);
    }
    let _ = started.send(());

    let (replica_tx, mut replica_states) = mpsc::channel(1);
    let mut replica_tick = tokio::time::interval(REPLICA_READ);
    replica_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut vrrp_running = true;
    // BFD_CHECK verdicts as last handed over, by checker.
    let mut bfd_reported = BTreeMap::new();
    // Deadlines kept across turns of the loop: a sleep made anew each turn would start over
    // whenever another branch fires first, and `halb status` asked more often than once a
    // second (a dashboard, a monitoring loop) would then hold every fence retry and every
    // held handback back for good.
    let mut fence_retry_at = tokio::time::Instant::now() + FENCE_RETRY;
    let mut handback_retry_at = fence_retry_at;
    let mut enforce_at = fence_retry_at;
    loop {
        let now = tokio::time::Instant::now();
        if !shell.writers.has_pending() {
            fence_retry_at = now + FENCE_RETRY;
        }
        if shell.held_verdicts.is_empty() {
            handback_retry_at = now + FENCE_RETRY;
        }
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep_until(shell.repair.due()), if shell.dataplane.is_some() => {
                shell.repair().await
            }
            _ = tokio::time::sleep_until(fence_retry_at), if shell.writers.has_pending() => {
                shell.writers.retry(&shell.vs, &shell.vips).await;
                fence_retry_at = tokio::time::Instant::now() + FENCE_RETRY;
            }
            _ = tokio::time::sleep_until(handback_retry_at), if !shell.held_verdicts.is_empty() => {
                let held: Vec<Report> = shell.held_verdicts.values().cloned().collect();
                for report in held {
                    shell.handle_report(report).await;
                }
                handback_retry_at = tokio::time::Instant::now() + FENCE_RETRY;
            }
            _ = tokio::time::sleep_until(enforce_at), if !shell.writers.is_empty() => {
                shell.writers.enforce(&shell.vs, &shell.vips).await;
                enforce_at = tokio::time::Instant::now() + FENCE_RETRY;
            }
            Some(report) = reports.recv() => {
                // Verdicts come in bursts (a first round of probes, a switch taking many
                // servers away): those already waiting are taken together, so that the table
                // is rebuilt and diffed once for them, not once each (10,000 first verdicts
                // made that 10,000 rebuilds of a 10,000-entry table).
                let mut batch = vec![report];
                while batch.len() < REPORT_BATCH {
                    match reports.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                shell.handle_reports(batch).await
            }
            Some(change) = file_inbox.recv() => shell.handle_file(&change).await,
            Ok(()) = bfd.changed() => {
                let view = bfd.borrow_and_update().clone();
                let verdicts = crate::bfd_check::reports(&shell.config.lvs, &view, &mut bfd_reported);
                for report in verdicts {
                    shell.handle_report(report).await;
                }
            }
            _ = replica_tick.tick(), if !shell.writers.is_empty() => {
                let targets = shell.writers.replica_targets(&shell.vs);
                let tx = replica_tx.clone();
                // Off the loop: a server that does not answer takes its connect timeout.
                tokio::task::spawn_blocking(move || {
                    let states: BTreeMap<_, _> = targets
                        .iter()
                        .filter_map(|(server, creds)| {
                            match crate::writer_fence::read_replica_state(*server, creds) {
                                Ok(Some(state)) => Some((*server, state)),
                                Ok(None) => None,
                                Err(e) => {
                                    debug!("reading the replica state of {server}: {e}");
                                    None
                                }
                            }
                        })
                        .collect();
                    let _ = tx.try_send(states);
                });
            }
            Some(states) = replica_states.recv() => shell.replicas = states,
            Some(failure) = passive.recv() => {
                if options.passive_checks {
                    if let Some(runner) = &shell.runner {
                        let n = runner.probe_now(failure.dest);
                        debug!("connection to {} through {} failed; {n} checker(s) look now",
                            failure.dest, failure.service);
                    }
                }
            }
            Some(evidence) = stalls.recv() => shell.handle_stall(evidence),
            changed = vrrp.changed(), if vrrp_running => {
                if changed.is_err() {
                    // The VRRP part ended; the stop signal follows (or, after a hand-over,
                    // the process's end). Not asked again: it would answer at once, forever.
                    vrrp_running = false;
                    continue;
                }
                let views = vrrp.borrow_and_update().clone();
                shell.follow_sync_daemon(&views);
                shell.update_vips(master_vips(&views)).await;
            }
            Some(apply) = reload_requests.recv() => {
                if shell.dataplane.is_none() && !apply.config.lvs.virtual_servers.is_empty() {
                    let chosen = match given.take() {
                        Some(d) => Ok((d, None)),
                        None => choose_dataplane(&options, passive_tx.clone(), &apply.config),
                    };
                    match chosen {
                        Ok((d, i)) => {
                            shell.dataplane = Some(SharedDataplane::new(d));
                            shell.ipvs = i;
                            shell.start_conn_watch(&options, &stall_tx);
                        }
                        Err(e) => {
                            let _ = apply.done.send(Err(format!("{e:#}")));
                            continue;
                        }
                    }
                }
                let config = if shell.ipvs.is_some() && options.dr_path_checks {
                    let mut augmented = (*apply.config).clone();
                    crate::dr_path::add_checks(&mut augmented.lvs);
                    Arc::new(augmented)
                } else {
                    Arc::clone(&apply.config)
                };
                let local = host_addresses(&*host).await;
                let lines = shell.reload(config, &local, &report_tx, &mut reports).await;
                let _ = apply.done.send(Ok(lines));
                // The checkers may have moved or be new: each BFD_CHECK hears its session's
                // state again.
                bfd_reported.clear();
                let view = bfd.borrow().clone();
                let verdicts = crate::bfd_check::reports(&shell.config.lvs, &view, &mut bfd_reported);
                for report in verdicts {
                    shell.handle_report(report).await;
                }
            }
            Some((request, answer)) = queries.recv() => {
                let failback = match &request.failback {
                    Some(vs) => Some(shell.fail_back(vs).await),
                    None => None,
                };
                let views = vrrp.borrow().clone();
                let mut snapshot = shell.snapshot(request.connections, &views).await;
                snapshot.failback = failback;
                snapshot.bfd = bfd.borrow().clone();
                let _ = answer.send(snapshot);
            }
        }
    }

    if !shell.config.lvs.virtual_servers.is_empty() || shell.dataplane.is_some() {
        let out = shell.vs.shutdown();
        shell.sync_table().await;
        shell.carry_out(out).await;
        if let Some(runner) = shell.runner.take() {
            runner.stop().await;
        }
        let _ = tokio::time::timeout(SHUTDOWN_SCRIPT_GRACE, async {
            while shell.scripts.join_next().await.is_some() {}
        })
        .await;
        shell.stop_sync_daemon();
    }
    Ok(())
}

type Chosen = (Box<dyn Dataplane>, Option<IpvsControl>);

/// The files FILE_CHECKs follow, as (name, path).
fn checked_files(checks: &[track_file::FileCheck]) -> Vec<(String, std::path::PathBuf)> {
    checks
        .iter()
        .map(|c| (c.name.clone(), c.path.clone()))
        .collect()
}

/// IPVS when asked for or when the kernel has it (`auto`), else the userspace proxy; one
/// log line says which and why.
fn choose_dataplane(
    options: &LvsOptions,
    passive_tx: mpsc::UnboundedSender<PassiveFailure>,
    config: &Config,
) -> Result<Chosen> {
    let want_ipvs = match options.dataplane {
        DataplaneChoice::Proxy => false,
        DataplaneChoice::Ipvs => true,
        DataplaneChoice::Auto => Ipvs::available_or_load(),
    };
    if want_ipvs {
        let open = || -> Result<Chosen> {
            let mut data = Ipvs::open()?;
            let control = Ipvs::open()?;
            // The kernel flushes a removed destination's connections at once only if this is
            // set when it goes; set later, the first fence would wait for the next packet.
            let fencing = config
                .lvs
                .virtual_servers
                .iter()
                .any(|vs| vs.connection_fencing() == ConnectionFencing::Close);
            if fencing {
                if let Err(e) = data.expire_connections_of_removed_dests() {
                    warn!("connection fencing will wait for each connection's next packet: {e}");
                }
            }
            let t = &config.global.lvs_timeouts;
            if t.tcp.is_some() || t.tcpfin.is_some() || t.udp.is_some() {
                control.set_timeouts(t.tcp, t.tcpfin, t.udp)?;
            }
            let sync = config.global.lvs_sync_daemon.as_ref().map(|d| {
                let vrid = d.instance.as_ref().and_then(|name| {
                    config
                        .vrrp
                        .instances
                        .iter()
                        .find(|i| &i.name == name)
                        .map(|i| i.virtual_router_id)
                });
                let mut daemon = SyncDaemon::new(
                    SyncState::Backup,
                    d.interface.clone(),
                    u32::from(d.sync_id.or(vrid).unwrap_or(0)),
                );
                daemon.max_len = d.maxlen;
                daemon.group = d.group;
                daemon.port = d.port;
                daemon.ttl = d.ttl;
                SyncDaemonPlan {
                    instance: d.instance.clone(),
                    daemon,
                }
            });
            Ok((
                Box::new(data),
                Some(IpvsControl {
                    ipvs: Arc::new(control),
                    owned: BTreeSet::new(),
                    sync,
                    running: None,
                }),
            ))
        };
        match open() {
            Ok(chosen) => {
                info!("Using the kernel's IPVS data plane");
                return Ok(chosen);
            }
            Err(e) if options.dataplane == DataplaneChoice::Ipvs => {
                anyhow::bail!("--dataplane ipvs: {e:#}");
            }
            Err(e) => warn!("IPVS is there but halb cannot use it ({e:#})"),
        }
    } else if options.dataplane == DataplaneChoice::Auto {
        info!("Using the userspace proxy data plane (this kernel offers no IPVS)");
    } else {
        info!("Using the userspace proxy data plane (--dataplane proxy)");
    }
    if config.global.lvs_sync_daemon.is_some() {
        info!("lvs_sync_daemon: the userspace proxy has no connection sync; ignored");
    }
    let proxy = halb_dataplane::proxy::ProxyOptions {
        max_connections: crate::fd_limit::proxy_capacity().min(options.proxy.max_connections),
        ..options.proxy.clone()
    };
    Ok((Box::new(Proxy::new(passive_tx, proxy)), None))
}

/// The addresses of the instances that are MASTER: on this host now.
fn master_vips(views: &[InstanceStatus]) -> BTreeSet<IpAddr> {
    views
        .iter()
        .filter(|v| v.is_master())
        .flat_map(|v| v.vips.iter().map(|vip| vip.address))
        .collect()
}

/// Every address on the host now (ha_suspend's starting point).
async fn host_addresses(host: &impl Addresses) -> Vec<IpAddr> {
    match host.host_view().await {
        Ok(view) => view
            .links
            .into_values()
            .flat_map(|link| link.addresses)
            .collect(),
        Err(e) => {
            debug!("reading the host's addresses: {e:#}");
            Vec::new()
        }
    }
}

impl Shell {
    /// Starts the checkers of the running configuration; `carried` ones resume a
    /// predecessor's verdict and retries.
    fn start_runner(
        &mut self,
        carried: BTreeMap<CheckerId, PolicyState>,
        reports: &mpsc::Sender<Report>,
    ) {
        let opts = RunnerOptions {
            script_user: self.config.global.script_user.clone(),
            log_all_failures: false,
            suspended_vs: self.vs.suspended_virtual_servers(),
            carried,
            probes: self.probes.clone(),
            fenced: self.writers.fenced(),
        };
        let runner = runner::spawn(&self.config.lvs, &opts, reports.clone());
        if let Some(watch) = &self.conn_watch {
            watch.set_watched(runner.checkers().iter().map(|c| c.real_server).collect());
        }
        self.runner = Some(runner);
    }

    /// Passive detection on IPVS (the proxy sees failed connects itself): on when asked for
    /// and IPVS is the data plane.
    fn start_conn_watch(&mut self, options: &LvsOptions, stalls: &mpsc::UnboundedSender<Evidence>) {
        if !options.passive_checks || self.ipvs.is_none() || self.conn_watch.is_some() {
            return;
        }
        match ConnWatch::start(stalls.clone()) {
            Ok(watch) => {
                if let Some(runner) = &self.runner {
                    watch.set_watched(runner.checkers().iter().map(|c| c.real_server).collect());
                }
                self.conn_watch = Some(watch);
            }
            Err(e) => warn!("passive detection on IPVS does not run: cannot start its thread: {e}"),
        }
    }

    /// New connections to a real server stall in the kernel's table: its checkers look now,
    /// with a short wait for an answer, while the evidence stands.
    /// The evidence stands until the reader's next read is due (and a margin), so that a stall
    /// read again and again never lapses between two reads, and ends soon once it is gone.
    fn handle_stall(&mut self, evidence: Evidence) {
        let Evidence { stall, stands_for } = evidence;
        let Some(runner) = &self.runner else {
            return;
        };
        let n = runner.expedite(stall.dest, stands_for);
        let now = tokio::time::Instant::now();
        let last = self.stall_logged.get(&stall.dest).copied();
        if last.is_none_or(|at| now.duration_since(at) >= STALL_LOG_EVERY) {
            self.stall_logged.insert(stall.dest, now);
            info!(
                "New connections to {} stall ({} waiting, the longest {} ms): {n} checker(s) look now",
                stall.dest,
                stall.stalled,
                stall.longest.as_millis()
            );
        }
    }

    /// A reload ([`crate::reload_plan`]): the virtual servers of `config` carry the state of
    /// those they continue, the data plane gets only the edits between the two tables (IPVS
    /// services and destinations edited in place; the proxy keeps its listeners and
    /// connections), connections to a real server that left are closed (proxy), and the
    /// checkers whose definition did not change resume their verdict and retries. `local`:
    /// the addresses on this host now. Returns one line per change.
    async fn reload(
        &mut self,
        config: Arc<Config>,
        local: &[IpAddr],
        reports_tx: &mpsc::Sender<Report>,
        reports: &mut mpsc::Receiver<Report>,
    ) -> Vec<String> {
        // The old checkers stop first; the verdicts they sent meanwhile still count.
        let mut states = match self.runner.take() {
            Some(runner) => runner.stop_keeping_states().await,
            None => BTreeMap::new(),
        };
        while let Ok(report) = reports.try_recv() {
            self.handle_report(report).await;
        }
        // The virtual servers' verdicts are the truth (a verdict lost with a stopped task
        // must not leave a checker "already down" in its policy but up here).
        for v in self.vs.status() {
            for rs in &v.real_servers {
                for c in &rs.checkers {
                    let id = CheckerId::new(v.index, rs.index, c.index);
                    if let Some(state) = states.get_mut(&id) {
                        if state.up != c.up {
                            state.retry_it = 0;
                        }
                        state.up = c.up;
                        state.has_run = c.has_run;
                    }
                }
            }
        }
        let carried = reload_plan::carried_services(&self.config.lvs, &config.lvs);
        let (mut vs, mut out) = self.vs.reloaded(&config.lvs, &carried, local);
        // A FILE_CHECK kept with the same file and weight has its state; any other takes the
        // value of its file now (a new weight, or another file, applies at once).
        let file_checks = track_file::file_checks(&config);
        let followed = track_file::follow(
            &self.track_files,
            &checked_files(&file_checks),
            &self.file_changes,
        );
        for check in &file_checks {
            let value = followed.values.get(&check.name).copied().unwrap_or(0);
            let kept = carried.checkers.get(&check.id).is_some_and(|old| {
                self.file_checks
                    .iter()
                    .any(|c| c.id == *old && c.path == check.path && c.tracking == check.tracking)
            });
            let unchanged = kept && self.followed.values.get(&check.name) == Some(&value);
            if !unchanged {
                out.extend(
                    vs.set_file_status(check.id, effect::checker_status(value, check.tracking)),
                );
            }
        }
        self.file_checks = file_checks;
        self.followed = followed;
        let seeds: BTreeMap<CheckerId, PolicyState> = carried
            .checkers
            .iter()
            .filter_map(|(new, old)| states.get(old).map(|s| (*new, *s)))
            .collect();
        self.details = carried
            .checkers
            .iter()
            .filter_map(|(new, old)| self.details.get(old).map(|d| (*new, d.clone())))
            .collect();
        let before = self.held.clone();
        self.vs = vs;
        self.config = Arc::clone(&config);
        // Up verdicts held for a writer's catch-up are not carried: their checkers resume as
        // down (the virtual servers' verdict) and report up again, through the same gate.
        self.held_verdicts.clear();
        self.held_why.clear();
        self.writers = WriterFencing::new(&config.lvs, self.writers.fenced());
        self.failback = FailbackGate::new(&config.lvs);
        self.sync_table().await;
        let mut lines: Vec<String> = self
            .table_diff(&before, &self.held)
            .iter()
            .map(describe)
            .collect();
        lines.extend(self.close_to_removed(&before));
        self.carry_out(out).await;
        let kept = seeds.len();
        if !config.lvs.virtual_servers.is_empty() {
            self.start_runner(seeds, reports_tx);
        }
        let total = self.runner.as_ref().map_or(0, |r| r.checkers().len());
        if total > kept {
            lines.push(format!(
                "{} checker(s) started afresh, {kept} kept their state",
                total - kept
            ));
        }
        lines
    }

    /// Closes the proxy's connections to destinations a reload took out of a service that
    /// stays (IPVS leaves them to the kernel's rules, as keepalived does), one line each.
    fn close_to_removed(&mut self, before: &Table) -> Vec<String> {
        let mut lines = Vec::new();
        if self.ipvs.is_some() {
            return lines;
        }
        let Some(dataplane) = self.dataplane.as_ref() else {
            return lines;
        };
        let mut dataplane = dataplane.lock();
        for (key, old) in &before.services {
            let now = self.held.services.get(key);
            for addr in old.destinations.keys() {
                if now.is_some_and(|s| s.destinations.contains_key(addr)) {
                    continue;
                }
                let closed = dataplane.drop_connections(key, *addr);
                info!(
                    "Closed {closed} connection(s) to [{}]:{} through {key}: removed from the \
                     configuration",
                    addr.ip(),
                    addr.port()
                );
                lines.push(format!(
                    "{key}: {closed} connection(s) to {addr} closed (real server removed)"
                ));
            }
        }
        lines
    }

    async fn handle_report(&mut self, report: Report) {
        self.handle_report_as(report, false).await;
    }

    /// Verdicts that arrived together. Without a gate on any of them (`failback`, a MySQL
    /// writer) each moves the core and the data plane is brought up to date once, before the
    /// outputs of them all are carried out; otherwise one after the other, as they came.
    async fn handle_reports(&mut self, batch: Vec<Report>) {
        let gated =
            !self.writers.is_empty() || batch.iter().any(|r| self.failback.governs(r.id.vs));
        if batch.len() == 1 || gated {
            for report in batch {
                self.handle_report(report).await;
            }
            return;
        }
        let mut out = Vec::new();
        for report in batch {
            self.held_verdicts.remove(&report.id);
            out.extend(self.apply_verdict(report));
        }
        self.sync_table().await;
        self.carry_out(out).await;
    }

    /// Moves the core by one verdict that passed its gates; the data plane is the caller's
    /// to bring up to date before the outputs are carried out.
    fn apply_verdict(&mut self, report: Report) -> Vec<Output> {
        let vs_index = report.id.vs;
        let on_sorry = sorry_active(&self.vs, vs_index);
        if !self.held_verdicts.keys().any(|id| id.vs == vs_index) {
            self.held_why.remove(&vs_index);
        }
        self.details.insert(report.id, report.detail.clone());
        let out = self.vs.handle_check(report.id, report.up, report.weight);
        self.events.publish(EventKind::CheckerVerdict(report));
        if on_sorry != sorry_active(&self.vs, vs_index) {
            self.failback.switched(vs_index, std::time::Instant::now());
        }
        out
    }

    /// A checker's verdict. An up verdict that would hand a virtual server back from its
    /// sorry server passes two gates first: `failback manual` / `failback_limit` (unless an
    /// operator asked, `forced`), then a MySQL writer's catch-up. Held, it waits in
    /// `held_verdicts` (tried again every second); returns why.
    async fn handle_report_as(&mut self, report: Report, forced: bool) -> Option<String> {
        let before = self.writers.routed_now(&self.vs);
        let was_held = self.held_verdicts.remove(&report.id).is_some();
        let vs_index = report.id.vs;
        let on_sorry = sorry_active(&self.vs, vs_index);
        let gated = self.failback.governs(vs_index) || !self.writers.is_empty();
        if report.up && on_sorry && gated {
            let mut trial = self.vs.clone();
            let _ = trial.handle_check(report.id, report.up, report.weight);
            let name = trial
                .vs_status(vs_index)
                .map(|v| v.name)
                .unwrap_or_default();
            let handback = !sorry_active(&trial, vs_index);
            let mut why = None;
            if handback && !forced {
                if let Some(hold) = self.failback.hold(vs_index, std::time::Instant::now()) {
                    let why_now = hold.describe(&name);
                    // Said once per hold, not at every retry.
                    if !was_held {
                        warn!("VS {name}: not handing back to the real servers: {why_now}");
                    }
                    why = Some(why_now);
                }
            }
            if why.is_none() {
                if let Some(lag) = self.writers.catch_up(&before, &trial, &self.vips).await {
                    if !was_held || forced {
                        warn!("Not handing back yet, the sorry server stays the writer: {lag}");
                    }
                    why = Some(lag);
                }
            }
            if let Some(why) = why {
                self.details
                    .insert(report.id, format!("up, handback waits: {why}"));
                self.held_verdicts.insert(report.id, report);
                self.held_why.insert(vs_index, why.clone());
                return Some(why);
            }
        }
        let out = self.apply_verdict(report);
        // The server left is fenced and the new one made writable before the table sends
        // anything to it.
        if !self.writers.is_empty() {
            self.writers.switch(&before, &self.vs, &self.vips).await;
        }
        self.sync_table().await;
        self.carry_out(out).await;
        None
    }

    /// A tracked file's value changed: each FILE_CHECK following it moves its real server.
    async fn handle_file(&mut self, change: &FileValue) {
        self.followed
            .values
            .insert(change.name.clone(), change.value);
        let mut out = Vec::new();
        for check in self.file_checks.iter().filter(|c| c.name == change.name) {
            let status = effect::checker_status(change.value, check.tracking);
            self.details.insert(
                check.id,
                format!("track_file {} reads {}", check.name, change.value),
            );
            out.extend(self.vs.set_file_status(check.id, status));
        }
        if !out.is_empty() {
            self.sync_table().await;
            self.carry_out(out).await;
        }
    }

    /// `halb failback VS`: hands virtual server `vs` back from its sorry server now, past
    /// `failback manual` and `failback_limit`; a MySQL writer's catch-up still applies.
    async fn fail_back(&mut self, vs: &str) -> FailbackAnswer {
        let fail = |message: String| FailbackAnswer {
            done: false,
            message,
        };
        let statuses = self.vs.status();
        let wanted: Option<std::net::SocketAddr> = vs.parse().ok();
        let Some(status) = statuses.iter().find(|v| {
            v.name == vs
                || v.services.iter().any(|s| {
                    matches!(s, halb_lb::table::ServiceKey::Addr { addr, .. } if Some(*addr) == wanted)
                })
        }) else {
            let names: Vec<&str> = statuses.iter().map(|v| v.name.as_str()).collect();
            return fail(format!(
                "no virtual server {vs}; the virtual servers are: {}",
                names.join(", ")
            ));
        };
        let (index, name) = (status.index, status.name.clone());
        if !sorry_active(&self.vs, index) {
            return fail(format!(
                "VS {name} is not on its sorry server: nothing to fail back"
            ));
        }
        let ready: Vec<Report> = self
            .held_verdicts
            .values()
            .filter(|r| r.id.vs == index)
            .cloned()
            .collect();
        if ready.is_empty() {
            return fail(format!(
                "VS {name}: no real server is ready to take over (none has passed its checks)"
            ));
        }
        info!("VS {name}: failback asked for over the control socket");
        let mut last_why = None;
        for report in ready {
            last_why = self.handle_report_as(report, true).await;
        }
        if sorry_active(&self.vs, index) {
            return fail(format!(
                "VS {name}: not handed back: {}",
                last_why.unwrap_or_else(
                    || "the real servers ready are not enough for its quorum".into()
                )
            ));
        }
        let routed: Vec<String> = self
            .vs
            .vs_status(index)
            .map(|v| crate::writer_fence::routed(&v))
            .unwrap_or_default()
            .iter()
            .map(|a| a.to_string())
            .collect();
        FailbackAnswer {
            done: true,
            message: format!("VS {name}: handed back to {}", routed.join(", ")),
        }
    }

    /// Starts, swaps or keeps the IPVS sync daemon as the instance it follows changes state.
    fn follow_sync_daemon(&mut self, views: &[InstanceStatus]) {
        let Some(ctl) = self.ipvs.as_mut() else {
            return;
        };
        let Some(plan) = &ctl.sync else {
            return;
        };
        let master = views
            .iter()
            .any(|v| v.is_master() && plan.instance.as_ref().is_none_or(|name| &v.name == name));
        let want = if master {
            SyncState::Master
        } else {
            SyncState::Backup
        };
        if ctl.running == Some(want) {
            return;
        }
        if let Some(old) = ctl.running.take() {
            if let Err(e) = ctl.ipvs.stop_daemon(old) {
                warn!("stopping the IPVS sync daemon: {e}");
            }
        }
        let mut daemon = plan.daemon.clone();
        daemon.state = want;
        match ctl.ipvs.start_daemon(&daemon) {
            Ok(()) => {
                info!(
                    "Starting IPVS sync daemon as {} on {} (syncid {})",
                    if master { "master" } else { "backup" },
                    daemon.interface,
                    daemon.sync_id
                );
                ctl.running = Some(want);
            }
            Err(e) => error!("starting the IPVS sync daemon on {}: {e}", daemon.interface),
        }
    }

    fn stop_sync_daemon(&mut self) {
        if let Some(ctl) = self.ipvs.as_mut() {
            if let Some(state) = ctl.running.take() {
                if let Err(e) = ctl.ipvs.stop_daemon(state) {
                    warn!("stopping the IPVS sync daemon: {e}");
                }
            }
        }
    }

    /// Brings the data plane back to the desired table, every minute and soon
    /// after a change failed. IPVS: the kernel's table is read and halb's part of it repaired
    /// (a failed change, or drift: someone ran ipvsadm), leaving services halb never owned
    /// alone. The proxy holds what it was told: what did not land is tried again.
    async fn repair(&mut self) {
        let Some(dataplane) = self.dataplane.clone() else {
            return;
        };
        let desired = self.vs.table();
        let retrying = self.repair.retrying();
        let (before, result) = match self.ipvs.as_mut() {
            Some(ctl) => {
                ctl.owned.extend(self.held.services.keys().copied());
                ctl.owned.extend(desired.services.keys().copied());
                let (ipvs, want, owned) =
                    (Arc::clone(&ctl.ipvs), desired.clone(), ctl.owned.clone());
                let reconciled =
                    tokio::task::spawn_blocking(move || ipvs.reconcile(&want, &owned)).await;
                match reconciled {
                    Ok(Ok(r)) => {
                        let landed =
                            r.changes.len() - r.result.as_ref().err().map_or(0, |e| e.failed.len());
                        if retrying && landed > 0 {
                            info!("IPVS table repaired after a failed change: {landed} change(s) applied");
                        } else if !retrying && !r.changes.is_empty() {
                            warn!(
                                "IPVS table drifted from halb's; repaired with {} change(s)",
                                r.changes.len()
                            );
                        }
                        (r.before, r.result)
                    }
                    Ok(Err(e)) => {
                        error!("reconciling the IPVS table: {e}");
                        self.repair.failed();
                        return;
                    }
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                }
            }
            None => {
                let changes = self.held.diff(&desired);
                let result = if changes.is_empty() {
                    Ok(())
                } else {
                    dataplane.apply(changes).await
                };
                (self.held.clone(), result)
            }
        };
        if self.record(&before, desired, result) {
            self.repair.settled();
        }
    }

    async fn update_vips(&mut self, vips: BTreeSet<IpAddr>) {
        let added: Vec<IpAddr> = vips.difference(&self.vips).copied().collect();
        let removed: Vec<IpAddr> = self.vips.difference(&vips).copied().collect();
        self.vips = vips;
        let mut out = Vec::new();
        for &ip in &added {
            out.extend(self.vs.local_address_added(ip));
        }
        for ip in &removed {
            out.extend(self.vs.local_address_removed(*ip));
        }
        self.drop_proxied_on(&removed);
        if !self.writers.is_empty() && !added.is_empty() {
            self.writers.take_over(&self.vs, &added).await;
        }
        if !out.is_empty() {
            self.sync_table().await;
            self.carry_out(out).await;
        }
    }

    /// The VIPs went to the other director: the proxy's connections through them can carry
    /// nothing any more (the clients' packets now reach the new MASTER, which resets them),
    /// but their server side would stay open on the database for as long as it keeps idle
    /// sessions. Close them now. IPVS needs nothing: its entries hold no server socket.
    fn drop_proxied_on(&mut self, gone: &[IpAddr]) {
        if self.ipvs.is_some() || gone.is_empty() {
            return;
        }
        let Some(dataplane) = self.dataplane.as_ref() else {
            return;
        };
        let mut dataplane = dataplane.lock();
        for service in self.held.services.values() {
            let halb_lb::table::ServiceKey::Addr { addr, .. } = service.key else {
                continue;
            };
            if !gone.contains(&addr.ip()) {
                continue;
            }
            let dests = service
                .destinations
                .keys()
                .copied()
                .chain(service.fallback.map(|f| f.addr));
            let closed: usize = dests
                .map(|d| dataplane.drop_connections(&service.key, d))
                .sum();
            if closed > 0 {
                info!(
                    "Closed {closed} connection(s) through {} now that {} is gone from this director",
                    service.key,
                    addr.ip()
                );
            }
        }
    }

    /// Brings the data plane to the core's desired table. Changes go in before the outputs
    /// of the same step are carried out, so that no new connection reaches a destination
    /// whose connections are being dropped.
    async fn sync_table(&mut self) {
        let Some(dataplane) = self.dataplane.clone() else {
            return;
        };
        let desired = self.vs.table();
        let changes = self.table_diff(&self.held, &desired);
        if changes.is_empty() {
            self.held = desired;
            return;
        }
        if let Some(ctl) = self.ipvs.as_mut() {
            ctl.owned.extend(desired.services.keys().copied());
        }
        let result = dataplane.apply(changes).await;
        let before = std::mem::take(&mut self.held);
        self.record(&before, desired, result);
    }

    /// The changes the data plane needs from `from` to `to`: IPVS holds no fallback, so a
    /// sorry server added or removed while it does not serve changes nothing there.
    fn table_diff(&self, from: &Table, to: &Table) -> Vec<Change> {
        if self.ipvs.is_some() {
            from.diff_without_fallback(to)
        } else {
            from.diff(to)
        }
    }

    /// Records as held what landed of the changes from `before` to `desired`, logs each change
    /// that did not, and brings the next repair close when one may land on a retry. Returns
    /// whether nothing is left to retry.
    fn record(&mut self, before: &Table, desired: Table, result: Result<(), ApplyError>) -> bool {
        let Err(e) = result else {
            self.held = desired;
            return true;
        };
        let name = self.dataplane.as_ref().map_or("", |d| d.name());
        for failed in &e.failed {
            error!("{name} data plane: {failed}");
        }
        self.held = e.held(before, &desired);
        if e.worth_retrying() {
            self.repair.failed();
            false
        } else {
            true
        }
    }

    async fn carry_out(&mut self, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Event(event) => self.events.publish(EventKind::VirtualServer(event)),
                Output::RunScript { script, .. } => {
                    let run_as = match process::resolve_user(&script, &self.config.global) {
                        Ok(r) => r,
                        Err(e) => {
                            error!("not running {}: {e:#}", script.argv.join(" "));
                            continue;
                        }
                    };
                    let argv = script.argv.clone();
                    self.scripts.spawn(async move {
                        process::run(&argv, run_as, Duration::from_secs(30), true).await;
                    });
                }
                Output::DropConnections { service, dest } => {
                    if let Some(dataplane) = &self.dataplane {
                        let n = dataplane
                            .run(move |d| d.drop_connections(&service, dest))
                            .await
                            .unwrap_or(0);
                        info!(
                            "Closed {n} connection(s) still open to [{}]:{} through {service}",
                            dest.ip(),
                            dest.port()
                        );
                    }
                }
                Output::SuspendCheckers { vs } => {
                    if let Some(r) = &self.runner {
                        r.suspend_vs(vs);
                    }
                }
                Output::ResumeCheckers { vs } => {
                    if let Some(r) = &self.runner {
                        r.resume_vs(vs);
                    }
                }
            }
        }
        // Reap the scripts that ended, so the set does not grow.
        while self.scripts.try_join_next().is_some() {}
    }

    async fn snapshot(&self, connections: bool, vrrp: &[InstanceStatus]) -> Snapshot {
        let (stats, conns) = match &self.dataplane {
            Some(d) => d
                .run(move |d| {
                    let conns = if connections {
                        d.connections()
                    } else {
                        Vec::new()
                    };
                    (d.stats(), conns)
                })
                .await
                .unwrap_or_default(),
            None => Default::default(),
        };
        let stats: BTreeMap<_, _> = stats.into_iter().map(|s| (s.key, s)).collect();
        let services = self
            .held
            .services
            .values()
            .map(|s| {
                let st = stats.get(&s.key);
                let dests = s
                    .destinations
                    .values()
                    .map(|d| {
                        let ds = st.and_then(|st| st.dests.iter().find(|x| x.addr == d.addr));
                        DestView {
                            addr: d.addr,
                            forward: self
                                .dataplane
                                .as_ref()
                                .map_or(ipvsadm_forward_name(&d.forwarding), |dp| {
                                    dp.forward_name(&d.forwarding)
                                })
                                .to_string(),
                            weight: d.weight,
                            active: ds.map_or(0, |x| x.active),
                            inactive: ds.map_or(0, |x| x.inactive),
                            uthreshold: d.uthreshold,
                            lthreshold: d.lthreshold,
                            counters: ds.map(|x| x.counters).unwrap_or_default(),
                            rates: ds.map(|x| x.rates).unwrap_or_default(),
                        }
                    })
                    .collect();
                ServiceView {
                    key: s.key,
                    scheduler: s.scheduler.as_str().to_string(),
                    flags: s.flags,
                    persistence: s.persistence,
                    counters: st.map(|x| x.counters).unwrap_or_default(),
                    rates: st.map(|x| x.rates).unwrap_or_default(),
                    dests,
                }
            })
            .collect();
        let virtual_servers = self
            .vs
            .status()
            .into_iter()
            .map(|v| VirtualServerView {
                name: v.name,
                index: v.index,
                services: v.services,
                quorum_up: v.quorum_up,
                sorry_server_active: v.sorry_server.as_ref().is_some_and(|s| s.active),
                failback_held: self.held_why.get(&v.index).cloned(),
                real_servers: v
                    .real_servers
                    .iter()
                    .map(|rs| RealServerView {
                        addr: rs.addr,
                        alive: rs.alive,
                        weight: rs.effective_weight,
                        replica: self.replicas.get(&rs.addr).cloned(),
                        checkers: rs
                            .checkers
                            .iter()
                            .map(|c| CheckerView {
                                kind: c.kind.to_string(),
                                up: c.up,
                                detail: self
                                    .details
                                    .get(&CheckerId::new(v.index, rs.index, c.index))
                                    .cloned()
                                    .unwrap_or_else(|| {
                                        if c.has_run {
                                            String::new()
                                        } else {
                                            "not run yet".into()
                                        }
                                    }),
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect();
        Snapshot {
            // Filled on the way out by `control::daemon_state`.
            daemon: Default::default(),
            last_reload: self.last_reload.borrow().clone(),
            failback: None,
            // Filled on the way out by `bgp::track`.
            bgp: None,
            // Filled by the caller, which follows the BFD sessions.
            bfd: Default::default(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            dataplane: self
                .dataplane
                .as_ref()
                .map(|d| d.name().to_string())
                .unwrap_or_default(),
            services,
            connections: conns,
            vrrp: vrrp.iter().map(Into::into).collect(),
            virtual_servers,
        }
    }
}

/// Whether virtual server `vs` routes to its sorry server now.
fn sorry_active(vs: &VirtualServers, index: usize) -> bool {
    vs.vs_status(index)
        .and_then(|v| v.sorry_server)
        .is_some_and(|s| s.active)
}

/// One data-plane change of a reload, for its outcome.
fn describe(change: &Change) -> String {
    match change {
        Change::AddService(s) => format!("service {} added", s.key),
        Change::EditService(s) => format!("service {} changed in place", s.key),
        Change::DelService(key) => format!("service {key} removed"),
        Change::AddDest(key, d) => {
            format!("{key}: real server {} added (weight {})", d.addr, d.weight)
        }
        Change::EditDest(key, d) => {
            format!(
                "{key}: real server {} changed in place (weight {})",
                d.addr, d.weight
            )
        }
        Change::DelDest(key, addr) => format!("{key}: real server {addr} removed"),
    }
}
