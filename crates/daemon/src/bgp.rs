//! The shell of route announcement (`bgp_announce`): BIRD as a supervised child, the
//! announcement core fed with the virtual servers' quorum and the VRRP states, its decisions
//! carried out as `enable`/`disable` of per-route static protocols on BIRD's control socket.
//!
//! Inputs are read from the same snapshot `halb status` shows (quorum per virtual server,
//! connections per service) and from the VRRP views: at once when a virtual server or VRRP event
//! arrives on the bus (and once more a [`TICK`] later), every tick while a drain runs, and at
//! least every [`IDLE_READ`] otherwise. A route so follows a quorum loss within milliseconds plus
//! BIRD's own handling, and a director whose health does not change does not pay for a full
//! snapshot ten times a second (on a small or emulated CPU that cost is what delays BFD).
//! The stop withdraws every route and then stops BIRD with SIGTERM (a Cease notification
//! closes each session); a killed halb takes BIRD with it (see `halb_announce::bird_process`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use halb_announce::bird_process::{BirdPaths, BirdSupervisor};
use halb_announce::bird_reply::parse_protocols;
use halb_announce::bird_socket::BirdSocket;
use halb_announce::{bird_conf, AnnounceEvent, Announcer, DrainEnd};
use halb_config::model::{BgpAnnounce, BirdControl, Config};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::control::protocol::{
    AnnouncementView, BgpSessionView, BgpView, DrainView, Request, Snapshot,
};
use crate::control::server::Query;
use crate::event::{DaemonEvent, EventBus, EventKind, InstanceStatus};

/// How often the inputs are read while a drain runs, and after an event.
const TICK: Duration = Duration::from_millis(100);
/// How often the inputs are read when no event says something changed: a safety net.
const IDLE_READ: Duration = Duration::from_secs(1);
/// How often BIRD's sessions are read for `halb status`.
const SESSIONS_EVERY: Duration = Duration::from_secs(1);

/// The sysctls that let a director take over a flow another director began (ECMP moved it
/// here): IPVS creates an entry for a TCP or SCTP packet that is not a SYN / INIT, and
/// conntrack accepts a TCP connection it sees in the middle.
const SCALE_OUT_SYSCTLS: &[(&str, &str)] = &[
    ("/proc/sys/net/ipv4/vs/sloppy_tcp", "1"),
    ("/proc/sys/net/ipv4/vs/sloppy_sctp", "1"),
    ("/proc/sys/net/netfilter/nf_conntrack_tcp_loose", "1"),
];

/// What the announcement shell needs from the rest of the daemon.
pub(crate) struct Inputs {
    pub queries: mpsc::Sender<Query>,
    pub views: watch::Receiver<Vec<InstanceStatus>>,
    pub bus: EventBus,
    /// `halb drain` and `halb drain --resume`: `true` drains.
    pub drains: mpsc::Receiver<(bool, oneshot::Sender<()>)>,
    pub status: watch::Sender<BgpView>,
}

/// Where the supervised BIRD's files go: beside the control socket.
pub(crate) fn bird_paths(cfg: &BgpAnnounce, control_socket: &Path) -> Option<BirdPaths> {
    let BirdControl::Supervised { binary } = &cfg.bird else {
        return None;
    };
    let dir = control_socket
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Some(BirdPaths {
        binary: binary.clone(),
        config: dir.join("bird-halb.conf"),
        socket: dir.join("bird-halb.ctl"),
    })
}

/// Runs until the daemon stops (the bus says Stopping, or it closes); every route withdrawn
/// and BIRD stopped on return.
pub(crate) async fn run(config: Arc<Config>, control_socket: PathBuf, mut inputs: Inputs) {
    let Some(cfg) = config.bgp.clone() else {
        return;
    };
    let mut stopping = inputs.bus.subscribe();
    let now = Instant::now();
    let names: Vec<String> = config
        .lvs
        .virtual_servers
        .iter()
        .map(|vs| halb_config::names::virtual_server(&vs.key, vs.protocol, 0))
        .collect();
    let mut core = Announcer::new(
        &cfg,
        &config.lvs,
        &|i| names.get(i).cloned().unwrap_or_default(),
        now,
    );
    let announced = Arc::new(Mutex::new(vec![false; cfg.routes.len()]));
    let (socket_path, mut supervisor) = match bird_paths(&cfg, &control_socket) {
        Some(paths) => {
            let socket = paths.socket.clone();
            let render = {
                let (cfg, announced) = (cfg.clone(), announced.clone());
                Box::new(move || {
                    let a = announced.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    bird_conf::render(&cfg, &|i| a.get(i).copied().unwrap_or(false))
                })
            };
            match BirdSupervisor::start(paths, render) {
                Ok(s) => (socket, Some(s)),
                Err(e) => {
                    warn!("bgp_announce: cannot start BIRD's supervisor: {e}; announcing nothing");
                    return;
                }
            }
        }
        None => match &cfg.bird {
            BirdControl::Existing { socket } => (socket.clone(), None),
            BirdControl::Supervised { .. } => return,
        },
    };
    let mut bird = Bird::new(socket_path);
    // The data plane is known from the first snapshot on.
    let mut dataplane_seen = false;
    // Reads still owed after an event: the one it triggers, and one a tick later in case the
    // snapshot lagged behind the event.
    let mut owed: u8 = 0;
    let mut next_read = Instant::now();
    let mut pending_drain: Vec<oneshot::Sender<()>> = Vec::new();
    let mut drain_view = DrainView::default();
    let mut sessions: Vec<BgpSessionView> = Vec::new();
    let mut sessions_read = Instant::now() - SESSIONS_EVERY;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut stop = false;
        tokio::select! {
            _ = tick.tick() => {}
            event = stopping.recv() => match event {
                Ok(e) if matches!(e.kind, EventKind::Daemon(DaemonEvent::Stopping)) => stop = true,
                Ok(e) if matches!(e.kind, EventKind::VirtualServer(_) | EventKind::Vrrp(_)) => owed = 2,
                Err(broadcast::error::RecvError::Lagged(_)) => owed = 2,
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Closed) => stop = true,
            },
            request = inputs.drains.recv() => match request {
                Some((true, done)) => {
                    info!("Drain asked for: withdrawing every announced route");
                    core.drain(Instant::now());
                    drain_view = DrainView { asked: true, finished: false, connections: None, timed_out: false };
                    pending_drain.push(done);
                }
                Some((false, done)) => {
                    info!("Drain ended: routes follow their health again");
                    core.resume(Instant::now());
                    drain_view = DrainView::default();
                    let _ = done.send(());
                }
                None => {}
            },
        }
        let now = Instant::now();
        let due = owed > 0 || core.draining() || !dataplane_seen || now >= next_read;
        if stop {
            core.shutdown(now);
        } else if let Some(snapshot) = match due {
            true => query(&inputs.queries).await,
            false => None,
        } {
            owed = owed.saturating_sub(1);
            next_read = now + IDLE_READ;
            if !dataplane_seen {
                dataplane_seen = true;
                if snapshot.dataplane == "ipvs" {
                    set_scale_out_sysctls();
                }
            }
            for vs in &snapshot.virtual_servers {
                core.set_quorum(now, vs.index, vs.quorum_up);
            }
            let views = inputs.views.borrow().clone();
            for v in &views {
                core.set_instance(now, &v.name, v.is_master());
            }
            for g in &config.vrrp.sync_groups {
                let master = !g.group.is_empty()
                    && g.group
                        .iter()
                        .all(|m| views.iter().any(|v| &v.name == m && v.is_master()));
                core.set_group(now, &g.name, master);
            }
            if core.draining() {
                let counts = count_connections(&core, &cfg, &snapshot);
                drain_view.connections = Some(counts.iter().map(|c| c.connections).sum());
                let ipvs = snapshot.dataplane == "ipvs";
                for c in counts {
                    core.set_connections(now, &c.prefix, c.connections);
                    // Only IPVS keeps entries of flows the router moved elsewhere; the proxy's
                    // connections end where they began.
                    if ipvs {
                        core.set_packets_in(now, &c.prefix, c.packets_in);
                    }
                }
            }
            core.handle_timeout(now);
        }
        while let Some(event) = core.poll_event() {
            match &event {
                AnnounceEvent::Announced { prefix } | AnnounceEvent::Withdrawn { prefix, .. } => {
                    let up = matches!(event, AnnounceEvent::Announced { .. });
                    info!("{event}");
                    if let Some(i) = cfg.routes.iter().position(|r| &r.prefix() == prefix) {
                        announced.lock().unwrap_or_else(|e| e.into_inner())[i] = up;
                        bird.set_route(i, up);
                    }
                }
                AnnounceEvent::DrainFinished { end } => {
                    info!("{event}");
                    drain_view.finished = true;
                    match end {
                        DrainEnd::TimedOut { connections } => {
                            drain_view.timed_out = true;
                            drain_view.connections = Some(*connections);
                        }
                        DrainEnd::Quiet { connections } => {
                            drain_view.connections = Some(*connections);
                        }
                        DrainEnd::Idle => {}
                    }
                }
            }
        }
        // Answered once the routes are withdrawn: the caller then watches the connections end.
        for done in pending_drain.drain(..) {
            let _ = done.send(());
        }
        // A BIRD reached afresh (started late, restarted, or a command failed) is told every
        // route's state, whatever its configuration file said.
        if bird.needs_sync {
            let states = announced.lock().unwrap_or_else(|e| e.into_inner()).clone();
            bird.sync(&states);
        }
        if stop {
            break;
        }
        if sessions_read.elapsed() >= SESSIONS_EVERY {
            sessions_read = Instant::now();
            sessions = bird.sessions(&cfg);
        }
        inputs
            .status
            .send_replace(view(&core, &sessions, &drain_view));
    }
    inputs
        .status
        .send_replace(view(&core, &sessions, &drain_view));
    if let Some(s) = supervisor.take() {
        // Blocking (it waits for BIRD): off the runtime's threads.
        let _ = tokio::task::spawn_blocking(move || drop(s)).await;
    }
    info!("Route announcement stopped");
}

/// The snapshot the control socket would answer with (no connection table).
async fn query(queries: &mpsc::Sender<Query>) -> Option<Snapshot> {
    let (tx, rx) = oneshot::channel();
    queries.send((Request::default(), tx)).await.ok()?;
    rx.await.ok()
}

/// One route's traffic on the data plane, over the services of its virtual servers.
struct RouteTraffic {
    prefix: String,
    /// Open connections, active and inactive.
    connections: u64,
    /// Packets in, a counter.
    packets_in: u64,
}

/// Each route's open connections and packets in.
fn count_connections(
    core: &Announcer,
    cfg: &BgpAnnounce,
    snapshot: &Snapshot,
) -> Vec<RouteTraffic> {
    cfg.routes
        .iter()
        .map(|r| {
            let prefix = r.prefix();
            let services: Vec<_> = core
                .virtual_servers(&prefix)
                .iter()
                .filter_map(|&i| snapshot.virtual_servers.iter().find(|v| v.index == i))
                .flat_map(|vs| {
                    snapshot
                        .services
                        .iter()
                        .filter(move |s| vs.services.contains(&s.key))
                })
                .collect();
            let connections = services
                .iter()
                .flat_map(|s| s.dests.iter())
                .map(|d| u64::from(d.active) + u64::from(d.inactive))
                .sum();
            let packets_in = services.iter().map(|s| s.counters.inpkts).sum();
            RouteTraffic {
                prefix,
                connections,
                packets_in,
            }
        })
        .collect()
}

fn set_scale_out_sysctls() {
    for (path, value) in SCALE_OUT_SYSCTLS {
        match std::fs::write(path, value) {
            Ok(()) => info!(
                "bgp_announce on IPVS: set {} = {value}, so a director picks up flows begun on another",
                sysctl_name(path)
            ),
            Err(e) => warn!("bgp_announce on IPVS: cannot set {}: {e}", sysctl_name(path)),
        }
    }
}

fn sysctl_name(path: &str) -> String {
    path.trim_start_matches("/proc/sys/").replace('/', ".")
}

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn view(core: &Announcer, sessions: &[BgpSessionView], drain: &DrainView) -> BgpView {
    let now = Instant::now();
    let wall = SystemTime::now();
    BgpView {
        announcements: core
            .status()
            .into_iter()
            .map(|s| AnnouncementView {
                prefix: s.prefix,
                announced: s.announced,
                reason_kind: s.reason.as_ref().map(|r| r.kind().to_string()),
                reason: s.reason.map(|r| r.to_string()),
                since: unix_seconds(wall - now.saturating_duration_since(s.since)),
            })
            .collect(),
        sessions: sessions.to_vec(),
        drain: drain.clone(),
    }
}

/// BIRD's control socket, connected when needed and again after BIRD restarts.
struct Bird {
    path: PathBuf,
    socket: Option<BirdSocket>,
    /// The error last logged, so that a BIRD that stays away is not logged every tick.
    last_error: Option<String>,
    /// BIRD must be told every route's state (a new connection, or a command that failed).
    needs_sync: bool,
}

impl Bird {
    fn new(path: PathBuf) -> Bird {
        Bird {
            path,
            socket: None,
            last_error: None,
            needs_sync: true,
        }
    }

    /// Enables (announces) or disables (withdraws) route `index`'s static protocol.
    fn set_route(&mut self, index: usize, up: bool) {
        let verb = if up { "enable" } else { "disable" };
        if self
            .command(&format!("{verb} {}", bird_conf::static_protocol(index)))
            .is_none()
        {
            self.needs_sync = true;
        }
    }

    /// Tells BIRD every route's state.
    fn sync(&mut self, states: &[bool]) {
        self.needs_sync = false;
        for (i, up) in states.iter().enumerate() {
            self.set_route(i, *up);
            if self.needs_sync {
                return;
            }
        }
    }

    /// Runs `command`; a failure is logged (BIRD restarted by the supervisor reads the
    /// decisions from its new configuration file).
    fn command(&mut self, command: &str) -> Option<halb_announce::bird_reply::Reply> {
        for _ in 0..2 {
            if self.socket.is_none() {
                match BirdSocket::connect(&self.path) {
                    Ok(s) => {
                        self.socket = Some(s);
                        self.needs_sync = true;
                    }
                    Err(e) => {
                        self.log(format!("{e:#}"));
                        return None;
                    }
                }
            }
            let socket = self.socket.as_mut()?;
            match socket.command(command) {
                Ok(reply) => {
                    self.last_error = None;
                    return Some(reply);
                }
                Err(e) => {
                    self.log(format!("{e:#}"));
                    // Connect again once: BIRD may have been restarted.
                    self.socket = None;
                }
            }
        }
        None
    }

    fn log(&mut self, e: String) {
        if self.last_error.as_deref() != Some(e.as_str()) {
            warn!("bgp_announce: {e}");
            self.last_error = Some(e);
        }
    }

    fn sessions(&mut self, cfg: &BgpAnnounce) -> Vec<BgpSessionView> {
        let Some(reply) = self.command("show protocols") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for row in parse_protocols(&reply) {
            if row.proto != "BGP" {
                continue;
            }
            let (state, info) = match row.info.split_once(' ') {
                Some((s, rest)) => (s.to_string(), rest.to_string()),
                None => (row.info.clone(), String::new()),
            };
            let neighbor = cfg
                .neighbors
                .iter()
                .enumerate()
                .find(|(i, _)| bird_conf::bgp_protocol(*i) == row.name)
                .map(|(_, n)| n.address.to_string())
                .unwrap_or_default();
            out.push(BgpSessionView {
                protocol: row.name,
                neighbor,
                state: if state.is_empty() { row.state } else { state },
                since: row.since,
                info,
            });
        }
        out
    }
}

/// Answers queries on the returned sender by asking `inner` and adding the announcement view;
/// a drain request goes to the announcement shell first and is answered once the routes are
/// withdrawn.
pub(crate) fn track(
    inner: mpsc::Sender<Query>,
    status: watch::Receiver<BgpView>,
    drains: mpsc::Sender<(bool, oneshot::Sender<()>)>,
) -> mpsc::Sender<Query> {
    let (tx, mut queries) = mpsc::channel::<Query>(16);
    tokio::spawn(async move {
        while let Some((request, answer)) = queries.recv().await {
            let (inner, status, drains) = (inner.clone(), status.clone(), drains.clone());
            tokio::spawn(async move {
                if let Some(drain) = request.drain {
                    let (done, withdrawn) = oneshot::channel();
                    if drains.send((drain, done)).await.is_err() || withdrawn.await.is_err() {
                        return;
                    }
                }
                let (inner_tx, inner_rx) = oneshot::channel();
                if inner.send((request, inner_tx)).await.is_err() {
                    return;
                }
                if let Ok(mut snapshot) = inner_rx.await {
                    snapshot.bgp = Some(status.borrow().clone());
                    let _ = answer.send(snapshot);
                }
            });
        }
    });
    tx
}
