//! The `bfd_instance`s: one [`halb_bfd::Session`] each, run over RFC 5881's single-hop UDP
//! sockets. Received datagrams are checked (TTL, codec), matched to a session by Your
//! Discriminator or, while that is 0, by the neighbour's address, and fed to it; what does not
//! pass is dropped and counted. Every change of a session is published on a watch channel that
//! the VRRP part (`track_bfd`) and the virtual servers (`BFD_CHECK`) follow.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use halb_bfd::packet::{decode, encode};
use halb_bfd::{Event, Session, SessionConfig, State, Stats};
use halb_config::model::BfdInstance;
use halb_sys::bfd_socket::{BfdListener, BfdSender, Datagram};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

/// Packets dropped before reaching a session, for `halb status` and /metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BfdCounters {
    /// Not a control packet (the codec's checks of RFC 5880 §6.8.6).
    pub malformed: u64,
    /// A TTL / hop limit below what the session accepts (RFC 5881 §5).
    pub bad_ttl: u64,
    /// No session for its source address and discriminator.
    pub unmatched: u64,
}

/// One session as the other parts see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionView {
    pub name: String,
    pub neighbor: IpAddr,
    pub state: String,
    pub up: bool,
    pub local_diag: String,
    pub remote_diag: String,
    pub local_discriminator: u32,
    pub remote_discriminator: u32,
    pub packets_received: u64,
    pub packets_sent: u64,
    /// Dropped by the session: authentication present, or a discriminator not its own.
    pub packets_dropped: u64,
    /// How often it left Up.
    pub down_transitions: u64,
    /// Whether `track_bfd` / `BFD_CHECK` follow it (`vrrp`, `checker`).
    pub vrrp: bool,
    pub checker: bool,
}

/// Every session, and the packets no session took.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BfdView {
    pub sessions: Vec<SessionView>,
    pub counters: BfdCounters,
}

impl BfdView {
    /// Whether the named session is Up; `None` when there is no such session.
    pub fn is_up(&self, name: &str) -> Option<bool> {
        self.sessions.iter().find(|s| s.name == name).map(|s| s.up)
    }
}

struct Running {
    config: BfdInstance,
    session: Session,
    sender: Option<BfdSender>,
}

/// The running sessions; [`BfdPart::stop`] ends them.
pub enum BfdPart {
    Task(tokio::task::JoinHandle<()>),
    Thread(tokio::sync::oneshot::Sender<()>),
}

impl BfdPart {
    pub fn stop(self) {
        match self {
            BfdPart::Task(task) => task.abort(),
            BfdPart::Thread(stop) => {
                let _ = stop.send(());
            }
        }
    }
}

/// Starts the sessions of `instances`: with `thread`, on a thread of their own scheduled so
/// (`bfd_rt_priority`, …), else on a task of the caller's runtime. With no instances, nothing
/// is started.
///
/// A thread apart from the VRRP one: keepalived schedules its BFD process apart (`bfd_*`
/// keywords of its own), and a session at 50 ms × 3 must not wait behind the VRRP loop's
/// netlink calls, notify scripts or a reload's mapping, nor VRRP behind a burst of BFD
/// packets.
pub fn spawn(
    instances: &[BfdInstance],
    thread: Option<halb_config::model::Scheduling>,
) -> anyhow::Result<(watch::Receiver<BfdView>, Option<BfdPart>)> {
    let (tx, rx) = watch::channel(BfdView::default());
    if instances.is_empty() {
        return Ok((rx, None));
    }
    let instances = instances.to_vec();
    let sessions = async move {
        if let Err(e) = run(instances, tx).await {
            error!("BFD: {e:#}; the bfd_instances do not run");
        }
    };
    let Some(scheduling) = thread else {
        return Ok((rx, Some(BfdPart::Task(tokio::spawn(sessions)))));
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // Its end is `stop`'s (or the daemon's): nothing waits for the output.
    let _output = crate::part_thread::spawn("halb-bfd", "bfd", scheduling, move || async move {
        tokio::select! {
            () = sessions => {}
            _ = stopped => {}
        }
    })?;
    Ok((rx, Some(BfdPart::Thread(stop))))
}

/// A nonzero discriminator no other session of ours has, unguessable from outside
/// (RFC 5880 §6.3 asks for uniqueness; randomness makes a restart visible to the neighbour).
fn discriminator(taken: &[u32]) -> u32 {
    let mut bytes = [0u8; 4];
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_ok();
    let mut d = if random {
        u32::from_ne_bytes(bytes)
    } else {
        std::process::id().wrapping_mul(2_654_435_761)
    };
    while d == 0 || taken.contains(&d) {
        d = d.wrapping_add(1);
    }
    d
}

async fn run(instances: Vec<BfdInstance>, tx: watch::Sender<BfdView>) -> anyhow::Result<()> {
    let now = Instant::now();
    let mut sessions: Vec<Running> = Vec::new();
    for (i, b) in instances.into_iter().enumerate() {
        let taken: Vec<u32> = sessions
            .iter()
            .map(|s| s.session.local_discriminator())
            .collect();
        let local = discriminator(&taken);
        let config = SessionConfig {
            local_discriminator: local,
            desired_min_tx: std::time::Duration::from_micros(b.min_tx_us),
            required_min_rx: std::time::Duration::from_micros(b.min_rx_us),
            idle_tx: std::time::Duration::from_micros(b.idle_tx_us),
            detect_mult: b.multiplier,
            passive: b.passive,
            seed: u64::from(local),
        };
        let first_port = 49152 + (local % 16384) as u16 + i as u16;
        let sender = match BfdSender::bind(b.neighbor_ip, b.source_ip, b.ttl, first_port) {
            Ok(s) => Some(s),
            Err(e) => {
                error!("BFD ({}) cannot send to {}: {e}", b.name, b.neighbor_ip);
                None
            }
        };
        info!(
            "BFD ({}) started towards {} (min_tx {} ms, min_rx {} ms, multiplier {}{})",
            b.name,
            b.neighbor_ip,
            b.min_tx_us as f64 / 1000.0,
            b.min_rx_us as f64 / 1000.0,
            b.multiplier,
            if b.passive { ", passive" } else { "" }
        );
        sessions.push(Running {
            session: Session::new(config, now),
            config: b,
            sender,
        });
    }
    let v4 = if sessions.iter().any(|s| s.config.neighbor_ip.is_ipv4()) {
        Some(BfdListener::bind(false)?)
    } else {
        None
    };
    let v6 = if sessions.iter().any(|s| s.config.neighbor_ip.is_ipv6()) {
        Some(BfdListener::bind(true)?)
    } else {
        None
    };
    let mut counters = BfdCounters::default();
    let mut by_discriminator: HashMap<u32, usize> = HashMap::new();
    for (i, s) in sessions.iter().enumerate() {
        by_discriminator.insert(s.session.local_discriminator(), i);
    }
    flush(&mut sessions);
    tx.send_replace(view(&sessions, counters));
    // Packet counts alone are published at most this often; changes of state at once.
    let refresh = std::time::Duration::from_secs(1);
    let mut published = Instant::now();
    loop {
        let deadline = sessions
            .iter()
            .filter_map(|s| s.session.poll_timeout())
            .min();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let before = counters;
        tokio::select! {
            received = recv(v4.as_ref()) => {
                handle(received, &mut sessions, &by_discriminator, &mut counters);
            }
            received = recv(v6.as_ref()) => {
                handle(received, &mut sessions, &by_discriminator, &mut counters);
            }
            () = sleep => {
                let now = Instant::now();
                for s in &mut sessions {
                    if s.session.poll_timeout().is_some_and(|t| t <= now) {
                        s.session.handle_timeout(now);
                    }
                }
            }
        }
        let changed = flush(&mut sessions);
        if changed || counters != before || published.elapsed() >= refresh {
            tx.send_replace(view(&sessions, counters));
            published = Instant::now();
        }
        if tx.is_closed() {
            return Ok(());
        }
    }
}

async fn recv(listener: Option<&BfdListener>) -> std::io::Result<Datagram> {
    match listener {
        Some(l) => l.recv().await,
        None => std::future::pending().await,
    }
}

/// Matches one datagram to its session (RFC 5880 §6.8.6, RFC 5881 §3 and §5) and feeds it.
fn handle(
    received: std::io::Result<Datagram>,
    sessions: &mut [Running],
    by_discriminator: &HashMap<u32, usize>,
    counters: &mut BfdCounters,
) {
    let d = match received {
        Ok(d) => d,
        Err(e) => {
            warn!("BFD: receiving: {e}");
            return;
        }
    };
    let packet = match decode(&d.payload) {
        Ok(p) => p,
        Err(e) => {
            counters.malformed += 1;
            debug!("BFD: discarding bogus packet from {}: {e}", d.from);
            return;
        }
    };
    let from = d.from.ip();
    let index = if packet.your_discriminator != 0 {
        by_discriminator
            .get(&packet.your_discriminator)
            .copied()
            .filter(|&i| sessions[i].config.neighbor_ip == from)
    } else {
        sessions.iter().position(|s| s.config.neighbor_ip == from)
    };
    let Some(index) = index else {
        counters.unmatched += 1;
        debug!(
            "BFD: discarding packet from {} (session is not found - your discriminator field \
             is 0x{:08x})",
            d.from, packet.your_discriminator
        );
        return;
    };
    let running = &mut sessions[index];
    if let Some(ttl) = d.ttl {
        if !running.config.accepts_ttl(ttl) {
            counters.bad_ttl += 1;
            debug!(
                "BFD ({}): discarding packet from {} with ttl {ttl}",
                running.config.name, d.from
            );
            return;
        }
    }
    if let Err(e) = running.session.handle_packet(Instant::now(), &packet) {
        debug!(
            "BFD ({}): discarding packet from {}: {e}",
            running.config.name, d.from
        );
    }
}

/// Sends what the sessions want sent and logs their changes; true when a state changed.
fn flush(sessions: &mut [Running]) -> bool {
    let mut changed = false;
    for s in sessions.iter_mut() {
        while let Some(packet) = s.session.poll_transmit() {
            if let Some(sender) = &s.sender {
                if let Err(e) = sender.send(&encode(&packet)) {
                    debug!(
                        "BFD ({}): sending to {}: {e}",
                        s.config.name, s.config.neighbor_ip
                    );
                }
            }
        }
        while let Some(event) = s.session.poll_event() {
            changed = true;
            let Event::StateChanged {
                to,
                diag,
                remote_diag,
                ..
            } = event;
            // keepalived's words (bfd_scheduler.c), with "BFD" before the name, which the
            // log shares with the VRRP instances here.
            match to {
                State::Down | State::AdminDown => warn!(
                    "BFD ({}) Entering {to} state (Local diagnostic - {diag}, Remote \
                     diagnostic - {remote_diag})",
                    s.config.name
                ),
                State::Up => info!("BFD ({}) Entering {to} state", s.config.name),
                State::Init => info!("BFD ({}) Entering {to} state", s.config.name),
            }
        }
    }
    changed
}

fn view(sessions: &[Running], counters: BfdCounters) -> BfdView {
    BfdView {
        sessions: sessions
            .iter()
            .map(|s| {
                let Stats {
                    packets_received,
                    packets_sent,
                    dropped_auth,
                    dropped_discriminator,
                    down_transitions,
                } = s.session.stats();
                SessionView {
                    name: s.config.name.clone(),
                    neighbor: s.config.neighbor_ip,
                    state: s.session.state().to_string(),
                    up: s.session.state() == State::Up,
                    local_diag: s.session.local_diag().to_string(),
                    remote_diag: s.session.remote_diag().to_string(),
                    local_discriminator: s.session.local_discriminator(),
                    remote_discriminator: s.session.remote_discriminator(),
                    packets_received,
                    packets_sent,
                    packets_dropped: dropped_auth + dropped_discriminator,
                    down_transitions,
                    vrrp: s.config.vrrp,
                    checker: s.config.checker,
                }
            })
            .collect(),
        counters,
    }
}
