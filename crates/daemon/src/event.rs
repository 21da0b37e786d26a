//! The daemon's event bus: every state change of the cores, typed and time-stamped, on one
//! broadcast channel. The log is its first consumer and writes keepalived's line for each event
//! as it is published (so that it keeps its place among the shells' other lines); metrics, the
//! event stream and fencing subscribe with [`EventBus::subscribe`].

use std::net::IpAddr;
use std::time::SystemTime;

use halb_check::Report;
use halb_lb::virtual_server::{Level, VsEvent};
use halb_vrrp::{State, StateChange};
use tokio::sync::broadcast;
use tracing::{info, warn};

/// One state change, when it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub at: SystemTime,
    pub kind: EventKind,
}

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A VRRP instance or sync group changed state or priority.
    Vrrp(VrrpEvent),
    /// A checker gave a verdict (with its failure kind and its probe's duration). The checker
    /// logs its own lines as it probes, so the log writer leaves these out.
    CheckerVerdict(Report),
    /// A virtual server, one of its servers or its checkers changed.
    VirtualServer(VsEvent),
    /// The daemon's own life: its configuration applied, reloads, the stop.
    Daemon(DaemonEvent),
}

/// The daemon's own life, as systemd's notifications, the metrics and `halb status` need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonEvent {
    /// The configuration read at start is applied: VRRP instances started and the virtual
    /// servers in the data plane (systemd's READY=1).
    Ready,
    /// A reload began (SIGHUP or `halb reload`); systemd's RELOADING=1.
    ReloadStarted,
    /// A reload ended, applied or refused.
    ReloadFinished(ReloadOutcome),
    /// A stop was asked for (SIGTERM, SIGINT); systemd's STOPPING=1.
    Stopping,
    /// This process handed over to a new halb (an upgrade): it stops serving and drains.
    /// `successor` is the new process's id when known (systemd's MAINPID= goes to it).
    HandedOver { successor: Option<u32> },
    /// This process took over from the previous halb: it now holds the sockets and the VRRP
    /// role (systemd's MAINPID= and READY=1 from it).
    TookOver,
}

/// How a reload ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// The new file was applied; when false the running configuration stayed.
    pub applied: bool,
    /// One line per diagnostic (`file:line:col: what`) when refused; what changed when applied.
    pub details: Vec<String>,
}

/// A VRRP state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VrrpEvent {
    /// Instance `instance` moved from `change.from` to `change.to` for `change.reason`, with
    /// effective priority `priority` then.
    Transition {
        instance: String,
        change: StateChange,
        priority: u8,
    },
    /// An instance's effective priority changed (a weighted tracker moved).
    PriorityChanged { instance: String, from: u8, to: u8 },
    /// A sync group brought its members to `state`.
    GroupSynced { group: String, state: State },
}

impl Event {
    pub fn now(kind: EventKind) -> Event {
        Event {
            at: SystemTime::now(),
            kind,
        }
    }

    /// keepalived's log lines for the event, in order; none for a checker verdict (the
    /// checker logged it).
    pub fn log_lines(&self) -> Vec<(Level, String)> {
        match &self.kind {
            EventKind::VirtualServer(e) => vec![(e.level(), e.to_string())],
            EventKind::CheckerVerdict(_) => Vec::new(),
            EventKind::Vrrp(e) => e.log_lines(),
            // The parts that publish these log their own lines, with the diagnostics.
            EventKind::Daemon(_) => Vec::new(),
        }
    }
}

impl VrrpEvent {
    /// keepalived's lines (`vrrp.c`): a MASTER that yields says why before it enters BACKUP.
    pub fn log_lines(&self) -> Vec<(Level, String)> {
        let info = |line: String| (Level::Info, line);
        match self {
            VrrpEvent::Transition {
                instance,
                change,
                priority,
            } => {
                let mut lines = Vec::new();
                match (&change.reason, change.from) {
                    (halb_vrrp::Reason::HigherPriority { from, priority: theirs }, State::Master) => {
                        lines.push(info(format!(
                            "({instance}) Master received advert from {from} with higher priority {theirs}, ours {priority}"
                        )))
                    }
                    (halb_vrrp::Reason::HigherAddress { from }, State::Master) => {
                        lines.push(info(format!(
                            "({instance}) Master received advert from {from} with same priority {priority} but higher IP address than ours"
                        )))
                    }
                    _ => {}
                }
                lines.push(info(if change.to == State::Stopped {
                    format!("Stopped {instance}")
                } else {
                    format!("({instance}) {change}")
                }));
                lines
            }
            VrrpEvent::PriorityChanged { instance, from, to } => vec![info(format!(
                "({instance}) Changing effective priority from {from} to {to}"
            ))],
            VrrpEvent::GroupSynced { group, state } => vec![info(format!(
                "VRRP_Group({group}) Syncing instances to {state} state"
            ))],
        }
    }
}

/// How many events a slow subscriber may fall behind before it loses the oldest.
const BUS_CAPACITY: usize = 1024;

/// The daemon's one event bus. Cloning gives another handle on the same bus.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new()
    }
}

impl EventBus {
    pub fn new() -> EventBus {
        EventBus {
            tx: broadcast::channel(BUS_CAPACITY).0,
        }
    }

    /// Every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Logs the event and hands it to the subscribers.
    pub fn publish(&self, kind: EventKind) {
        let event = Event::now(kind);
        for (level, line) in event.log_lines() {
            match level {
                Level::Info => info!("{line}"),
                Level::Warn => warn!("{line}"),
            }
        }
        // Nobody subscribed is fine: the log has it.
        let _ = self.tx.send(event);
    }
}

/// One VRRP instance as the other parts of the daemon see it: its state and addresses, on a
/// watch channel after every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceStatus {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub state: State,
    pub priority: u8,
    pub effective_priority: u8,
    pub vips: Vec<Vip>,
    /// The current master's address and priority, as last heard.
    pub last_master: Option<(IpAddr, u8)>,
}

/// A VRRP instance's counters (adverts, receive errors), for the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceCounters {
    pub name: String,
    pub stats: halb_vrrp::Stats,
}

/// A virtual address of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vip {
    pub address: IpAddr,
    pub prefix_len: u8,
}

impl InstanceStatus {
    /// Whether this host holds the instance's addresses now.
    pub fn is_master(&self) -> bool {
        self.state == State::Master
    }
}
