//! The userspace proxy: serves the service table where the kernel has no IPVS. TCP
//! connections are relayed with `splice(2)`, UDP datagrams per client flow; each service
//! listens on its VIP with `IP_FREEBIND`, so a BACKUP is ready before VRRP gives it the
//! address. Every `lb_kind` (NAT, DR, TUN) is served the same way, as a full proxy: the real
//! servers see the director's address as the client's and need no VIP on `lo`.
//!
//! What differs from IPVS, by necessity or by choice:
//! - Firewall-mark and SCTP services cannot be proxied: [`Proxy::apply`] applies every
//!   other change, and its error names them with [`DataplaneError::Refused`].
//! - Passive failure detection: a failed connect to a real server (refused, unreachable,
//!   no answer within [`ProxyOptions::connect_timeout`]) tries the next destination, holds
//!   the failed one out of scheduling for [`ProxyOptions::failure_hold`] (a later success
//!   clears it), and sends a [`PassiveFailure`] so its checkers look now. When no
//!   destination can take a connection, the service's `fallback` (the sorry server) does;
//!   only when that fails too is the client's connection closed.
//! - Weight 0 also ends persistence for new connections (IPVS's
//!   `expire_quiescent_template=1`).
//! - Packets are estimated for TCP (see [`relay`]), exact for UDP; bytes are exact.
//! - Closed TCP entries linger [`ProxyOptions::linger`] (not IPVS's 2 min), see
//!   [`conn_table`].

mod conn_table;
mod dest;
mod handoff;
mod listener;
mod log_limit;
mod persist;
mod relay;
mod service;
mod splice;
mod stats;
mod tcp;
mod udp;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use halb_lb::table::{Change, Forwarding, ProtocolKey, ServiceKey, ServiceSettings};
use tokio::runtime::Handle;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

use crate::{
    partial, ApplyError, ConnectionEntry, Dataplane, DataplaneError, PassiveFailure, ServiceStats,
};
use conn_table::Timeouts;
pub use handoff::{HandedSocket, Listeners};
use log_limit::LogLimit;
pub use service::NewScheduler;
use service::{Choice, Service};
use stats::lock;
pub use stats::{Estimator, ESTIMATOR_PERIOD};

/// The proxy's knobs; [`Default`] gives the documented defaults.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// How long a connect to a real server may take before it counts as failed (2 s).
    pub connect_timeout: Duration,
    /// Passive failover (true): a failed connect tries the next destination, then the
    /// sorry server, and tells the checkers. False behaves as IPVS: the client's connection
    /// fails until the checkers take the server out.
    pub passive_failover: bool,
    /// How long a destination whose connect failed is skipped by new connections (2 s).
    pub failure_hold: Duration,
    /// A UDP flow ends after this long without a datagram either way (300 s, IPVS's default).
    pub udp_timeout: Duration,
    /// How long a closed TCP connection stays in the table as TIME_WAIT / CLOSE (2 s).
    pub linger: Duration,
    /// The listeners' backlog (4096).
    pub listen_backlog: i32,
    /// Relay TCP with splice(2) (true); false copies through userspace.
    pub splice: bool,
    /// The size asked for each direction's pipe (1 MiB; the kernel caps it at
    /// `/proc/sys/fs/pipe-max-size` and falls back to 64 KiB when the user's pipe quota is
    /// spent).
    pub pipe_size: usize,
    /// Makes a service's scheduler: [`halb_lb::sched::new`].
    pub new_scheduler: NewScheduler,
    /// At most this many TCP client connections at once, over every service (no limit but
    /// the descriptors): each takes two descriptors, and a client accepted beyond what the
    /// open files limit allows would fail later, at its connect to the real server. Clients
    /// beyond it are closed as soon as they are accepted.
    pub max_connections: usize,
    /// The listening sockets, shared with the daemon for an upgrade's hand-over: a service
    /// serves on a socket inherited from the previous process when there is one.
    pub listeners: Listeners,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            connect_timeout: Duration::from_secs(2),
            passive_failover: true,
            failure_hold: Duration::from_secs(2),
            udp_timeout: Duration::from_secs(300),
            linger: Duration::from_secs(2),
            listen_backlog: 4096,
            splice: true,
            pipe_size: 1 << 20,
            new_scheduler: halb_lb::sched::new,
            max_connections: usize::MAX,
            listeners: Listeners::default(),
        }
    }
}

/// What every connection task shares.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) opts: ProxyOptions,
    passive_tx: UnboundedSender<PassiveFailure>,
    epoch: Instant,
    /// One per TCP client connection being served ([`ProxyOptions::max_connections`]).
    pub(crate) slots: Arc<Semaphore>,
    /// Clients closed at once because every slot was taken.
    pub(crate) turned_away: LogLimit,
    /// Failed accepts (out of descriptors or memory).
    pub(crate) accept_failed: LogLimit,
    /// Connections to a real server that could not even get a socket: this host's shortage,
    /// not the server's fault.
    pub(crate) no_socket: LogLimit,
}

impl Ctx {
    /// The proxy's clock in milliseconds, cheap enough to stamp each relayed chunk with.
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A connect to `choice` failed: new connections skip it for the hold time, and its
    /// checkers are told (not for the sorry server, which nothing checks).
    pub(crate) fn report_failure(&self, service: &Service, choice: &Choice) {
        if choice.fallback {
            return;
        }
        let hold_ms = u64::try_from(self.opts.failure_hold.as_millis()).unwrap_or(u64::MAX);
        choice
            .dest
            .hold_failed(self.now_ms().saturating_add(hold_ms));
        // The receiver may be gone while the daemon stops; nothing to do then.
        let _ = self.passive_tx.send(PassiveFailure {
            service: service.key,
            dest: choice.dest.addr,
        });
    }

    fn timeouts(&self) -> Timeouts {
        Timeouts {
            linger: self.opts.linger,
            udp: self.opts.udp_timeout,
        }
    }
}

/// The userspace proxy data plane.
pub struct Proxy {
    ctx: Arc<Ctx>,
    runtime: Handle,
    services: Arc<Mutex<Services>>,
    estimator: AbortHandle,
}

#[derive(Default)]
struct Services {
    live: BTreeMap<ServiceKey, Live>,
    /// Deleted services whose connections still run (IPVS keeps them too); forgotten when
    /// their last connection ends.
    retired: Vec<Arc<Service>>,
}

struct Live {
    service: Arc<Service>,
    /// `None` until the listener is bound (a failed bind is retried at the next `apply`).
    listener: Option<AbortHandle>,
}

impl Proxy {
    /// A proxy with no services. Passive failures go to `passive_tx`. Must be called within
    /// a tokio runtime (it panics otherwise); its tasks run on that runtime, and
    /// [`Dataplane::apply`] may then be called from any thread.
    pub fn new(passive_tx: UnboundedSender<PassiveFailure>, options: ProxyOptions) -> Proxy {
        let runtime = Handle::current();
        let services = Arc::new(Mutex::new(Services::default()));
        let estimator = runtime
            .spawn(estimate(Arc::downgrade(&services)))
            .abort_handle();
        let total = options.max_connections.min(Semaphore::MAX_PERMITS);
        let slots = Arc::new(Semaphore::new(total));
        options.listeners.count_slots(slots.clone(), total);
        Proxy {
            ctx: Arc::new(Ctx {
                slots,
                opts: options,
                passive_tx,
                epoch: Instant::now(),
                turned_away: LogLimit::default(),
                accept_failed: LogLimit::default(),
                no_socket: LogLimit::default(),
            }),
            runtime,
            services,
            estimator,
        }
    }

    fn add_service(
        &self,
        services: &mut Services,
        settings: &ServiceSettings,
    ) -> Result<(), DataplaneError> {
        let (protocol, vip) = match settings.key {
            ServiceKey::Addr {
                protocol: protocol @ (ProtocolKey::Tcp | ProtocolKey::Udp),
                addr,
            } => (protocol, addr),
            ServiceKey::Addr { .. } => {
                return Err(DataplaneError::Refused(format!(
                "{}: the userspace proxy serves TCP and UDP only; SCTP needs the ipvs data plane",
                settings.key
            )))
            }
            ServiceKey::Fwmark { .. } => {
                return Err(DataplaneError::Refused(format!(
                    "{}: a firewall-mark service cannot be served by the userspace proxy (it \
                     sees no marks); use the ipvs data plane or a virtual_server with an address",
                    settings.key
                )))
            }
        };
        let service = Service::new(settings, protocol, vip, self.ctx.opts.new_scheduler);
        services.live.insert(
            settings.key,
            Live {
                service: Arc::new(service),
                listener: None,
            },
        );
        Ok(())
    }

    /// Binds the service's VIP socket and starts the task that serves it.
    fn listen(&self, service: &Arc<Service>) -> Result<AbortHandle, DataplaneError> {
        let what = || format!("proxy {}: binding the VIP socket", service.key);
        let io = |source| DataplaneError::Io {
            what: what(),
            source,
        };
        let (svc, ctx) = (service.clone(), self.ctx.clone());
        let listeners = &self.ctx.opts.listeners;
        let inherited = listeners.take_inherited(service.protocol, service.vip);
        let handed = inherited.is_some();
        // Served until the service goes, or until the daemon hands its sockets over.
        let closed = listeners.closed();
        let task = match service.protocol {
            ProtocolKey::Tcp => {
                let socket = match inherited {
                    Some(fd) => {
                        let socket = std::net::TcpListener::from(fd);
                        listener::prepare_inherited(&socket).map_err(io)?;
                        socket
                    }
                    None => listener::tcp(service.vip, self.ctx.opts.listen_backlog).map_err(io)?,
                };
                listeners.bound(
                    service.protocol,
                    service.vip,
                    socket.try_clone().map_err(io)?.into(),
                );
                let socket = tokio::net::TcpListener::from_std(socket).map_err(io)?;
                self.runtime.spawn(async move {
                    tokio::select! {
                        () = tcp::accept_loop(socket, svc, ctx) => {}
                        () = closed => {}
                    }
                })
            }
            ProtocolKey::Udp | ProtocolKey::Sctp => {
                let socket = match inherited {
                    Some(fd) => {
                        let socket = std::net::UdpSocket::from(fd);
                        socket.set_nonblocking(true).map_err(io)?;
                        socket
                    }
                    None => listener::udp(service.vip).map_err(io)?,
                };
                listeners.bound(
                    service.protocol,
                    service.vip,
                    socket.try_clone().map_err(io)?.into(),
                );
                let socket = tokio::net::UdpSocket::from_std(socket).map_err(io)?;
                self.runtime.spawn(async move {
                    tokio::select! {
                        () = udp::serve(Arc::new(socket), svc, ctx) => {}
                        () = closed => {}
                    }
                })
            }
        };
        if handed {
            tracing::info!(
                "proxy: listening for {} on the socket handed over by the previous process",
                service.key
            );
        } else {
            tracing::info!("proxy: listening for {}", service.key);
        }
        Ok(task.abort_handle())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.estimator.abort();
        for live in lock(&self.services).live.values() {
            if let Some(listener) = &live.listener {
                listener.abort();
            }
        }
    }
}

impl Dataplane for Proxy {
    /// Applies every change it can. A refused service (firewall mark, SCTP) fails its
    /// `AddService`; a service whose listener could not be bound fails the `AddService` or
    /// `EditService` that put it here, keeps its destinations, and its bind is tried again at
    /// the next `apply` (a caller that records only what landed sends that change again).
    /// Each failure is also logged.
    fn apply(&mut self, changes: &[Change]) -> Result<(), ApplyError> {
        // Registering sockets with tokio needs the runtime's context on this thread.
        let _runtime = self.runtime.enter();
        let services_lock = self.services.clone();
        let mut services = lock(&services_lock);
        let new_scheduler = self.ctx.opts.new_scheduler;
        let mut results: Vec<Result<(), DataplaneError>> = Vec::with_capacity(changes.len());
        for change in changes {
            let result = match change {
                Change::AddService(s) | Change::EditService(s) => match services.live.get(&s.key) {
                    Some(live) => {
                        live.service.edit(s, new_scheduler);
                        Ok(())
                    }
                    None => self.add_service(&mut services, s),
                },
                Change::DelService(key) => {
                    if let Some(live) = services.live.remove(key) {
                        if let Some(listener) = live.listener {
                            listener.abort();
                        }
                        self.ctx
                            .opts
                            .listeners
                            .unbound(live.service.protocol, live.service.vip);
                        tracing::info!("proxy: no longer serving {key}");
                        if !live.service.conns.is_empty() {
                            services.retired.push(live.service);
                        }
                    }
                    Ok(())
                }
                Change::AddDest(key, dest) | Change::EditDest(key, dest) => {
                    if let Some(live) = services.live.get(key) {
                        live.service.put_dest(dest);
                    }
                    Ok(())
                }
                Change::DelDest(key, addr) => {
                    if let Some(live) = services.live.get(key) {
                        live.service.del_dest(*addr);
                    }
                    Ok(())
                }
            };
            if let Err(e) = &result {
                tracing::warn!("{e}");
            }
            results.push(result);
        }
        // Listen last, so that the first client finds the destinations in place.
        let unbound: Vec<Arc<Service>> = services
            .live
            .values()
            .filter(|l| l.listener.is_none())
            .map(|l| l.service.clone())
            .collect();
        for service in unbound {
            match self.listen(&service) {
                Ok(listener) => {
                    if let Some(live) = services.live.get_mut(&service.key) {
                        live.listener = Some(listener);
                    }
                }
                Err(e) => {
                    tracing::warn!("{e}");
                    let put_here = changes.iter().rposition(|c| {
                        matches!(c, Change::AddService(s) | Change::EditService(s) if s.key == service.key)
                    });
                    if let Some(i) = put_here {
                        results[i] = Err(e);
                    }
                }
            }
        }
        partial::collect(changes, results)
    }

    fn stats(&self) -> Vec<ServiceStats> {
        let services: Vec<Arc<Service>> = lock(&self.services)
            .live
            .values()
            .map(|l| l.service.clone())
            .collect();
        services.iter().map(|s| s.snapshot()).collect()
    }

    fn connections(&self) -> Vec<ConnectionEntry> {
        let services: Vec<Arc<Service>> = {
            let s = lock(&self.services);
            s.live
                .values()
                .map(|l| l.service.clone())
                .chain(s.retired.iter().cloned())
                .collect()
        };
        let (now_ms, timeouts) = (self.ctx.now_ms(), self.ctx.timeouts());
        let mut entries: Vec<ConnectionEntry> = services
            .iter()
            .flat_map(|s| s.conns.entries(now_ms, &timeouts))
            .collect();
        entries.sort_by_key(|e| (e.protocol, e.virtual_addr, e.client, e.dest));
        entries
    }

    fn drop_connections(&mut self, service: &ServiceKey, dest: SocketAddr) -> usize {
        let services: Vec<Arc<Service>> = {
            let s = lock(&self.services);
            s.live
                .get(service)
                .map(|l| l.service.clone())
                .into_iter()
                .chain(s.retired.iter().filter(|r| r.key == *service).cloned())
                .collect()
        };
        let dropped: usize = services.iter().map(|s| s.conns.drop_to(dest)).sum();
        if dropped > 0 {
            tracing::info!("proxy {service}: closed {dropped} connection(s) to {dest}");
        }
        dropped
    }

    fn name(&self) -> &'static str {
        "proxy"
    }

    /// `Proxy`, whatever `lb_kind` says: the proxy accepts the client's connection itself and
    /// opens its own to the real server, which sees the director's address, not the client's,
    /// and answers the director. None of ipvsadm's four words fits: `Route` (DR) and `Tunnel`
    /// would tell the operator that the real server answers the client directly and needs the
    /// VIP on `lo`, and `Masq` (NAT) that the real server sees the client's address and routes
    /// back through the director. A tool that knows only ipvsadm's words then stops at an
    /// unknown one instead of drawing a wrong conclusion.
    fn forward_name(&self, _: &Forwarding) -> &'static str {
        "Proxy"
    }
}

/// The estimator: every [`ESTIMATOR_PERIOD`], one sample of every service and destination;
/// also forgets deleted services whose last connection ended. Stops with the proxy.
async fn estimate(services: Weak<Mutex<Services>>) {
    let mut tick = tokio::time::interval(ESTIMATOR_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(services) = services.upgrade() else {
            return;
        };
        let all: Vec<Arc<Service>> = {
            let mut s = lock(&services);
            s.retired.retain(|r| !r.conns.is_empty());
            s.live
                .values()
                .map(|l| l.service.clone())
                .chain(s.retired.iter().cloned())
                .collect()
        };
        for service in all {
            service.sample();
        }
    }
}
