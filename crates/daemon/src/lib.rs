//! The daemon behind `halb run`, like `keepalived -f FILE`: the VRRP part (instances, sync
//! groups, VIPs, gratuitous ARP), the virtual servers (checkers, quorum, sorry server) on a data
//! plane, and the control socket `halb status` reads. The binary parses arguments and calls
//! [`run`]; everything else lives here.

pub mod bfd;
mod bfd_check;
mod bgp;
mod conn_watch;
pub mod control;
mod daemon;
mod dr_path;
pub mod dump;
pub mod event;
mod failback;
mod fd_limit;
mod handover;
mod held;
pub mod host;
pub mod http;
mod lvs;
mod notify;
mod part_thread;
mod process;
mod reload;
pub mod reload_plan;
mod sd_notify;
mod service_status;
mod track_bfd;
pub mod track_file;
mod track_script;
mod upgrade;
mod vip_lease;
pub mod vrrp_map;
mod writer_fence;

use std::path::PathBuf;

use halb_config::model::Config;
use tracing::error;

pub use event::{
    DaemonEvent, Event, EventBus, EventKind, InstanceCounters, InstanceStatus, ReloadOutcome,
    VrrpEvent,
};
pub use handover::{socket_path as handover_socket_path, HandOverOptions};
pub use lvs::DataplaneChoice;
pub use reload::{ConfigReader, Reread};
pub use upgrade::SuccessorCommand;

/// How `halb run` was asked to run, beyond the configuration itself.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where `halb status` reaches the daemon (a unix socket, mode 0600).
    pub control_socket: PathBuf,
    /// The data plane: kernel IPVS, the userspace proxy, or IPVS when the kernel has it.
    pub dataplane: DataplaneChoice,
    /// Passive failure detection: the proxy tries the next real server when a connect fails
    /// and asks the checkers to look at once; on IPVS, new connections that stall in the
    /// kernel's connection table expedite the checkers of their real server.
    pub passive: bool,
    /// With IPVS, add a DR-path check to direct-routing real servers.
    pub dr_path_checks: bool,
    /// Taking over from a running halb (an upgrade), and handing over to the next one.
    pub handover: HandOverOptions,
    /// Where keepalived's dumps are asked for (SIGUSR1, SIGUSR2, the JSON signal) and written.
    pub dumps: DumpRequests,
    /// How a reload (SIGHUP, `halb reload`) reads the configuration again; `None`: reloads are
    /// refused.
    pub reload: Option<ConfigReader>,
    /// Where the read-only HTTP endpoint (metrics, JSON API, dashboard) listens; none: off.
    pub http_listen: Option<std::net::SocketAddr>,
    /// How `halb upgrade` starts the successor that takes over; `None`: upgrades are refused.
    pub successor: Option<SuccessorCommand>,
}

/// Requests for keepalived's dump files, and the directory they go to. [`run`] turns SIGUSR1,
/// SIGUSR2 and `SIGRTMIN+2` into requests; a test can ask directly with [`DumpRequests::request`].
#[derive(Debug, Clone)]
pub struct DumpRequests {
    tx: tokio::sync::broadcast::Sender<dump::DumpKind>,
    dir: PathBuf,
}

impl Default for DumpRequests {
    /// keepalived's directory: `$TMPDIR` when absolute, else `/tmp`.
    fn default() -> Self {
        DumpRequests::new(dump::dump_dir(std::env::var_os("TMPDIR").as_deref()))
    }
}

impl DumpRequests {
    /// Dumps written into `dir`.
    pub fn new(dir: PathBuf) -> DumpRequests {
        DumpRequests {
            tx: tokio::sync::broadcast::channel(8).0,
            dir,
        }
    }

    /// Asks the running daemon to write the dump `kind`; nothing happens when none runs.
    pub fn request(&self, kind: dump::DumpKind) {
        let _ = self.tx.send(kind);
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    pub(crate) fn subscribe(&self) -> tokio::sync::broadcast::Receiver<dump::DumpKind> {
        self.tx.subscribe()
    }
}

/// Runs every part of the daemon on this host until SIGTERM or SIGINT; SIGHUP reloads,
/// SIGUSR1, SIGUSR2 and `SIGRTMIN+2` write keepalived's dumps. The parts share `config`: a
/// file of 10,000 real servers is held once, not once per part. VRRP and BFD run on threads
/// of their own, scheduled as `vrrp_*` and `bfd_*` say (see [`part_thread`]).
pub async fn run(config: Config, options: &Options) -> anyhow::Result<()> {
    let config = std::sync::Arc::new(config);
    use anyhow::Context;
    use tokio::signal::unix::{signal, SignalKind};
    // Signals first: a SIGTERM during start-up must still clean up.
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let stop = async move {
        tokio::select! {
            _ = sigterm.recv() => {}
            _ = sigint.recv() => {}
        }
    };
    dump_on_signals(&options.dumps)?;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let (hangup_tx, hangups) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        while sighup.recv().await.is_some() {
            // A reload already waiting covers this one too.
            let _ = hangup_tx.try_send(());
        }
    });
    fd_limit::raise_soft_limit();
    let host = std::sync::Arc::new(host::SystemHost::connect()?);
    let events = EventBus::new();
    sd_notify::spawn(
        &events,
        &config,
        options.reload.clone(),
        options.handover.takeover,
    );
    // keepalived's `*_rlimit_rttime`, for the real-time threads about to start.
    part_thread::limit_rt_time(&[
        &config.global.vrrp_scheduling,
        &config.global.bfd_scheduling,
    ]);
    run_with(
        config,
        options,
        host,
        None,
        events,
        stop,
        Some(hangups),
        Threads::Own,
    )
    .await
}

/// Where the VRRP and BFD parts run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Threads {
    /// Each on an OS thread of its own, scheduled as `vrrp_*` / `bfd_*` say: `halb run`.
    Own,
    /// As tasks on the caller's runtime, whose clock a test may pause.
    Shared,
}

/// keepalived's dump signals (`keepalived --signum=DATA|STATS|JSON`): SIGUSR1, SIGUSR2 and
/// `SIGRTMIN+2` (lib/signals.h `SIGJSON`), each turned into a request the VRRP part answers.
fn dump_on_signals(dumps: &DumpRequests) -> anyhow::Result<()> {
    use anyhow::Context;
    use dump::DumpKind;
    use tokio::signal::unix::{signal, SignalKind};
    for (number, name, kind) in [
        (libc::SIGUSR1, "SIGUSR1", DumpKind::Data),
        (libc::SIGUSR2, "SIGUSR2", DumpKind::Stats),
        (libc::SIGRTMIN() + 2, "SIGRTMIN+2", DumpKind::Json),
    ] {
        let mut received = signal(SignalKind::from_raw(number))
            .with_context(|| format!("installing the {name} handler"))?;
        let dumps = dumps.clone();
        tokio::spawn(async move {
            while received.recv().await.is_some() {
                dumps.request(kind);
            }
        });
    }
    Ok(())
}

/// Runs every part of the daemon on `host` until `stop` completes, publishing every state
/// change on `events`: [`DaemonEvent::Ready`] once the VRRP instances have started and the
/// virtual servers are in the data plane, [`DaemonEvent::Stopping`] when `stop` completes.
/// `dataplane`: the data plane to use instead of the one [`Options::dataplane`] chooses.
pub async fn run_on<H: host::Addresses + host::VrrpSockets>(
    config: &Config,
    options: &Options,
    host: std::sync::Arc<H>,
    dataplane: Option<Box<dyn halb_dataplane::Dataplane>>,
    events: EventBus,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let config = std::sync::Arc::new(config.clone());
    run_with(
        config,
        options,
        host,
        dataplane,
        events,
        stop,
        None,
        Threads::Shared,
    )
    .await
}

/// [`run_on`], with the SIGHUPs that ask for reloads, and the VRRP and BFD parts where
/// `threads` says.
// Each argument is a different input of the daemon; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
async fn run_with<H: host::Addresses + host::VrrpSockets>(
    config: std::sync::Arc<Config>,
    options: &Options,
    host: std::sync::Arc<H>,
    dataplane: Option<Box<dyn halb_dataplane::Dataplane>>,
    events: EventBus,
    stop: impl std::future::Future<Output = ()>,
    hangups: Option<tokio::sync::mpsc::Receiver<()>>,
    threads: Threads,
) -> anyhow::Result<()> {
    let (views_tx, views) = tokio::sync::watch::channel(Vec::new());
    let (counters_tx, counters) = tokio::sync::watch::channel(Vec::new());
    let (query_tx, queries) = tokio::sync::mpsc::channel(16);
    let listeners = halb_dataplane::proxy::Listeners::default();
    let handover_path = handover::socket_path(&options.control_socket);
    let (release_tx, mut release_rx) = tokio::sync::mpsc::channel(1);
    let lvs_queries = query_tx.clone();
    // Every snapshot leaves with the daemon's own state (ready, reloads) added.
    let query_tx = control::daemon_state::track(&events, query_tx);
    // And with the announced routes, when the file has `bgp_announce`.
    let (bgp_status_tx, bgp_status) = tokio::sync::watch::channel(Default::default());
    let (drains_tx, drains) = tokio::sync::mpsc::channel(4);
    let query_tx = if config.bgp.is_some() {
        bgp::track(query_tx, bgp_status, drains_tx)
    } else {
        query_tx
    };
    // Before anything publishes: the endpoint numbers and counts every event from the first.
    // Observability must not keep the load balancer down: a port already taken is logged, and
    // the daemon runs without the endpoint.
    // The checkers' probe samples for the endpoint; taken by the endpoint when it starts.
    let (probes, probes_rx) = match options.http_listen {
        Some(_) => {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        }
        None => (None, None),
    };
    let probes_rx = std::sync::Arc::new(std::sync::Mutex::new(probes_rx));
    let start_http = {
        let (queries, counters, events) = (query_tx.clone(), counters, events.clone());
        let listen = options.http_listen;
        move || {
            let probes = probes_rx.lock().unwrap_or_else(|e| e.into_inner()).take();
            let sources = probes.map(|probes| http::Sources {
                queries: queries.clone(),
                vrrp_counters: counters.clone(),
                events: events.clone(),
                probes,
            });
            async move {
                match http::HttpServer::start(listen?, sources?).await {
                    Ok(server) => Some(server),
                    Err(e) => {
                        error!("{e:#}; running without it");
                        None
                    }
                }
            }
        }
    };
    let (reload_tx, reload_requests) = tokio::sync::mpsc::channel(4);
    let (upgrade_tx, upgrade_requests) = tokio::sync::mpsc::channel(1);
    tokio::spawn(upgrade::serve(options.successor.clone(), upgrade_requests));
    let (vrrp_reloads_tx, vrrp_reloads) = tokio::sync::mpsc::channel(1);
    let (lvs_reloads_tx, lvs_reloads) = tokio::sync::mpsc::channel(1);
    let (last_reload_tx, last_reload) = tokio::sync::watch::channel(None);
    let reloads = tokio::spawn(reload::serve(
        options.reload.clone(),
        hangups,
        reload_requests,
        reload::Parts {
            vrrp: vrrp_reloads_tx,
            lvs: lvs_reloads_tx,
            last: last_reload_tx,
            bus: events.clone(),
        },
    ));
    let serve = {
        let (views, listeners, path) = (views.clone(), listeners.clone(), handover_path.clone());
        let (control_path, query_tx) = (options.control_socket.clone(), query_tx.clone());
        move || -> anyhow::Result<(control::server::ControlServer, handover::Server)> {
            let control = control::server::ControlServer::start_with(
                &control_path,
                query_tx.clone(),
                control::server::Handlers {
                    reloads: Some(reload_tx.clone()),
                    upgrades: Some(upgrade_tx.clone()),
                },
            )?;
            let handover = handover::Server::start(
                &path,
                views.clone(),
                listeners.clone(),
                release_tx.clone(),
            )?;
            Ok((control, handover))
        }
    };
    // Taking over: the running daemon keeps its control socket and HTTP port until it lets go.
    let predecessor = if options.handover.takeover {
        let path = handover_path.clone();
        let (predecessor, sockets) =
            tokio::task::spawn_blocking(move || handover::Predecessor::connect(&path)).await??;
        listeners.inherit(sockets);
        Some(predecessor)
    } else {
        None
    };
    let serving = std::sync::Arc::new(std::sync::Mutex::new(None));
    if predecessor.is_none() {
        // Before anything publishes: the endpoint numbers and counts every event from the
        // first.
        let http = start_http().await;
        *serving.lock().unwrap_or_else(|e| e.into_inner()) = Some((serve()?, http));
    }
    let (resume_tx, resume) = tokio::sync::mpsc::channel(1);
    if let Some(predecessor) = predecessor {
        let (listeners, serving) = (listeners.clone(), serving.clone());
        tokio::spawn(async move {
            match handover::release_when_ready(predecessor, &listeners).await {
                Ok(masters) => {
                    // The VRRP part resumes them and says it took over (TookOver).
                    let _ = resume_tx.send(masters).await;
                    match serve() {
                        Ok(s) => {
                            let http = start_http().await;
                            *serving.lock().unwrap_or_else(|e| e.into_inner()) = Some((s, http));
                        }
                        Err(e) => error!("{e:#}"),
                    }
                }
                Err(e) => error!("taking over: {e:#}"),
            }
        });
    }
    let handed_over = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let released: handover::ReleaseSlot = Default::default();
    let (stop_tx, stop_lvs) = tokio::sync::oneshot::channel();
    let (vrrp_started, vrrp_ready) = tokio::sync::oneshot::channel();
    let (lvs_started, lvs_ready) = tokio::sync::oneshot::channel();
    let bus = events.clone();
    tokio::spawn(async move {
        // A part that failed to start drops its sender: no READY=1 then.
        if vrrp_ready.await.is_ok() && lvs_ready.await.is_ok() {
            bus.publish(EventKind::Daemon(DaemonEvent::Ready));
        }
    });
    let bus = events.clone();
    let stop = {
        let (handed_over, released) = (handed_over.clone(), released.clone());
        async move {
            tokio::select! {
                () = stop => bus.publish(EventKind::Daemon(DaemonEvent::Stopping)),
                Some(request) = release_rx.recv() => {
                    *released.lock().unwrap_or_else(|e| e.into_inner()) = Some(request);
                    handed_over.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }
    };
    // keepalived writes `init_file` values while it reads the configuration.
    track_file::init_files(&config, false);
    let track_files = track_file::TrackFiles::default();
    let lvs_options = lvs::LvsOptions {
        dataplane: options.dataplane,
        passive_checks: options.passive,
        dr_path_checks: options.dr_path_checks,
        proxy: halb_dataplane::proxy::ProxyOptions {
            passive_failover: options.passive,
            listeners: listeners.clone(),
            ..halb_dataplane::proxy::ProxyOptions::default()
        },
        probes,
        track_files: track_files.clone(),
    };
    let (bfd_view, bfd_task) = bfd::spawn(
        &config.bfd,
        (threads == Threads::Own).then(|| config.global.bfd_scheduling.clone()),
    )?;
    let lvs = tokio::spawn(lvs::run(
        std::sync::Arc::clone(&config),
        lvs_options,
        std::sync::Arc::clone(&host),
        dataplane,
        views.clone(),
        events.clone(),
        queries,
        lvs::Reloads {
            requests: lvs_reloads,
            last: last_reload,
        },
        stop_lvs,
        lvs_started,
        bfd_view.clone(),
    ));
    let announcing = tokio::spawn(bgp::run(
        std::sync::Arc::clone(&config),
        options.control_socket.clone(),
        bgp::Inputs {
            queries: lvs_queries,
            views: views.clone(),
            bus: events.clone(),
            drains,
            status: bgp_status_tx,
        },
    ));
    let vrrp_handover = handover::VrrpHandOver {
        taking_over: options.handover.takeover,
        resume,
        handed_over: handed_over.clone(),
    };
    let events_on_handover = events.clone();
    let vrrp_part = daemon::Part {
        host,
        views: views_tx,
        counters: counters_tx,
        bus: events,
        dumps: options.dumps.clone(),
        started: vrrp_started,
        reloads: vrrp_reloads,
        handover: vrrp_handover,
        track_files,
        bfd: bfd_view.clone(),
    };
    let vrrp = match threads {
        Threads::Shared => daemon::run(&config, vrrp_part, stop).await,
        Threads::Own => run_vrrp_thread(std::sync::Arc::clone(&config), vrrp_part, stop).await,
    };
    reloads.abort();
    if let Some(task) = bfd_task {
        task.stop();
    }
    let request = released.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(handover::ReleaseRequest { successor, reply }) = request {
        // Handed over: the sockets go to the new process, which the reply lets go on; this
        // one lets its connections finish and leaves the data plane as it is.
        events_on_handover.publish(EventKind::Daemon(DaemonEvent::HandedOver { successor }));
        drop(serving.lock().unwrap_or_else(|e| e.into_inner()).take());
        listeners.close();
        // The HTTP endpoint's task lets go of its port when next polled; the new process
        // binds it as soon as it has the answer.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        // Under systemd the new process is the service's main process from here: said
        // before it goes on, so that its READY=1 comes from the main process.
        if let Some(pid) = successor {
            sd_notify::hand_main_pid(pid);
        }
        let _ = reply.send(handover::masters(&views.borrow()));
        // A stop asked for while draining (`systemctl stop` signals every process of the
        // service) ends the drain.
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            () = handover::drain(&listeners, options.handover.drain_timeout) => {}
            _ = sigterm.recv() => tracing::info!("Stopped while draining; closing the remaining connections"),
        }
        return vrrp;
    }
    // Routes withdrawn (the bus said Stopping) before the data plane goes.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), announcing).await;
    let _ = stop_tx.send(());
    match lvs.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => error!("virtual servers: {e:#}"),
        Err(e) => error!("the virtual servers' task failed: {e}"),
    }
    vrrp
}

/// Runs the VRRP part on a thread of its own (see [`part_thread`]) until `stop` completes,
/// which this runtime watches and passes on.
async fn run_vrrp_thread<H: host::Addresses + host::VrrpSockets>(
    config: std::sync::Arc<Config>,
    part: daemon::Part<H>,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let scheduling = config.global.vrrp_scheduling.clone();
    let done = part_thread::spawn("halb-vrrp", "vrrp", scheduling, move || async move {
        // The rtnetlink connection of the VRRP part is driven here too: adding, renewing and
        // removing VIPs must not wait for the busy runtime either.
        let part = daemon::Part::on_this_runtime(part)?;
        daemon::run(&config, part, async move {
            // A dropped sender (the caller gone) stops too.
            let _ = stop_rx.await;
        })
        .await
    })?;
    let mut stop = std::pin::pin!(stop);
    let mut done = std::pin::pin!(done);
    let output = tokio::select! {
        output = &mut done => output,
        () = &mut stop => {
            let _ = stop_tx.send(());
            done.await
        }
    };
    output.unwrap_or_else(|_| Err(anyhow::anyhow!("the VRRP thread ended without an answer")))
}
