//! The decision core: whether each announced route should be in BGP now, and why not.
//!
//! Sans-IO in the style of the VRRP core: the shell feeds inputs ([`Announcer::set_quorum`],
//! [`Announcer::set_instance`], [`Announcer::set_group`], [`Announcer::drain`],
//! [`Announcer::set_connections`], [`Announcer::shutdown`]) and the time, and carries out what
//! [`Announcer::poll_event`] returns. A route is announced only when every virtual server it
//! carries traffic for has quorum, and every tracked VRRP instance and sync group is MASTER:
//! a director that would send part of the VIP's traffic nowhere must not draw any of it.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use halb_config::model::{AnnouncedRoute, BgpAnnounce, LvsConfig};
use serde::Serialize;

/// Why a route is not announced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum WithdrawReason {
    /// No verdict yet on a virtual server's quorum (the first checks are still out).
    Waiting { virtual_server: String },
    /// A virtual server of the route lost its quorum.
    QuorumLost { virtual_server: String },
    /// A tracked VRRP instance is not MASTER.
    NotMaster { instance: String },
    /// A tracked sync group is not MASTER.
    GroupNotMaster { group: String },
    /// `halb drain`.
    Drain,
    /// halb is stopping.
    Shutdown,
}

impl WithdrawReason {
    /// The reason's kind, as a metric label: `waiting`, `quorum_lost`, `not_master`,
    /// `group_not_master`, `drain`, `shutdown`.
    pub fn kind(&self) -> &'static str {
        match self {
            WithdrawReason::Waiting { .. } => "waiting",
            WithdrawReason::QuorumLost { .. } => "quorum_lost",
            WithdrawReason::NotMaster { .. } => "not_master",
            WithdrawReason::GroupNotMaster { .. } => "group_not_master",
            WithdrawReason::Drain => "drain",
            WithdrawReason::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for WithdrawReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WithdrawReason::Waiting { virtual_server } => {
                write!(f, "waiting for the first verdict on VS {virtual_server}")
            }
            WithdrawReason::QuorumLost { virtual_server } => {
                write!(f, "VS {virtual_server} has no quorum")
            }
            WithdrawReason::NotMaster { instance } => write!(f, "({instance}) is not MASTER"),
            WithdrawReason::GroupNotMaster { group } => {
                write!(f, "sync group {group} is not MASTER")
            }
            WithdrawReason::Drain => f.write_str("drained (halb drain)"),
            WithdrawReason::Shutdown => f.write_str("halb is stopping"),
        }
    }
}

/// After a withdrawal, no packet for this long means the router sends the route's flows
/// elsewhere. On IPVS the flows ECMP moved to other directors leave their entries here
/// (ESTABLISHED, 15 minutes) without a packet: they are not connections this director still
/// carries, and stopping it breaks none of them. Several BFD detection times (0.5 s by default)
/// and TCP retransmissions fit in it.
pub const DRAIN_QUIET: Duration = Duration::from_secs(2);

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "end", rename_all = "snake_case")]
pub enum DrainEnd {
    /// The withdrawn routes' virtual servers carry no connection any more.
    Idle,
    /// No packet arrived for [`DRAIN_QUIET`]: the connections still in the table (this many)
    /// are carried by other directors now.
    Quiet { connections: u64 },
    /// `drain_timeout` passed with this many connections still open.
    TimedOut { connections: u64 },
}

/// What the shell must do or report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AnnounceEvent {
    /// Announce `prefix` (`192.168.66.251/32`).
    Announced { prefix: String },
    /// Withdraw `prefix` (or: it stays withdrawn, for a new reason).
    Withdrawn {
        prefix: String,
        reason: WithdrawReason,
    },
    /// A drain that was asked for has ended.
    DrainFinished { end: DrainEnd },
}

impl fmt::Display for AnnounceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnnounceEvent::Announced { prefix } => write!(f, "Announcing route {prefix} by BGP"),
            AnnounceEvent::Withdrawn { prefix, reason } => {
                write!(f, "Withdrawing route {prefix} from BGP: {reason}")
            }
            AnnounceEvent::DrainFinished {
                end: DrainEnd::Idle,
            } => f.write_str("Drain finished: no connection left"),
            AnnounceEvent::DrainFinished {
                end: DrainEnd::Quiet { connections },
            } => write!(
                f,
                "Drain finished: no packet for {} s; the {connections} connection(s) left in the table are carried elsewhere",
                DRAIN_QUIET.as_secs()
            ),
            AnnounceEvent::DrainFinished {
                end: DrainEnd::TimedOut { connections },
            } => write!(f, "Drain timed out with {connections} connection(s) left"),
        }
    }
}

/// One route as `halb status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteStatus {
    pub prefix: String,
    pub announced: bool,
    /// Why not, when withdrawn.
    pub reason: Option<WithdrawReason>,
    /// When it was last announced or withdrawn (or when the core started).
    pub since: Instant,
}

struct Route {
    route: AnnouncedRoute,
    /// Indices in `LvsConfig::virtual_servers` of the virtual servers the route carries.
    virtual_servers: Vec<usize>,
    announced: bool,
    reason: Option<WithdrawReason>,
    since: Instant,
    /// Open connections of the route's virtual servers, since the drain began.
    connections: Option<u64>,
    /// Packets in of the route's virtual servers (a counter), and when it last moved, since
    /// the drain began; only known on IPVS.
    packets: Option<(u64, Instant)>,
}

struct Drain {
    deadline: Instant,
    finished: bool,
}

/// The decision core for every route of a `bgp_announce` block.
pub struct Announcer {
    routes: Vec<Route>,
    /// Virtual server index → (keepalived's name, quorum; `None` before the first verdict).
    quorum: HashMap<usize, (String, Option<bool>)>,
    instances: HashMap<String, bool>,
    groups: HashMap<String, bool>,
    drain_timeout: Duration,
    drain: Option<Drain>,
    stopping: bool,
    events: VecDeque<AnnounceEvent>,
}

impl Announcer {
    /// A core for `cfg`'s routes, all withdrawn until the first verdicts arrive. `vs_names`
    /// gives keepalived's name of each virtual server (`[192.168.66.251]:tcp:80`), by index.
    pub fn new(
        cfg: &BgpAnnounce,
        lvs: &LvsConfig,
        vs_names: &dyn Fn(usize) -> String,
        now: Instant,
    ) -> Announcer {
        let mut quorum = HashMap::new();
        let routes = cfg
            .routes
            .iter()
            .map(|r| {
                let virtual_servers: Vec<usize> = lvs
                    .virtual_servers
                    .iter()
                    .enumerate()
                    .filter(|(_, vs)| r.covers(vs, lvs))
                    .map(|(i, _)| i)
                    .collect();
                for &i in &virtual_servers {
                    quorum.entry(i).or_insert_with(|| (vs_names(i), None));
                }
                let reason = virtual_servers.first().map(|i| WithdrawReason::Waiting {
                    virtual_server: vs_names(*i),
                });
                Route {
                    route: r.clone(),
                    virtual_servers,
                    announced: false,
                    reason,
                    since: now,
                    connections: None,
                    packets: None,
                }
            })
            .collect();
        let mut instances = HashMap::new();
        let mut groups = HashMap::new();
        for r in &cfg.routes {
            for i in &r.track_instances {
                instances.insert(i.clone(), false);
            }
            for g in &r.track_groups {
                groups.insert(g.clone(), false);
            }
        }
        Announcer {
            routes,
            quorum,
            instances,
            groups,
            drain_timeout: Duration::from_micros(cfg.drain_timeout_us),
            drain: None,
            stopping: false,
            events: VecDeque::new(),
        }
    }

    /// A quorum verdict for virtual server `index`; virtual servers no route carries are ignored.
    pub fn set_quorum(&mut self, now: Instant, index: usize, up: bool) {
        if let Some(q) = self.quorum.get_mut(&index) {
            q.1 = Some(up);
            self.evaluate(now);
        }
    }

    /// A VRRP instance's state: MASTER or not.
    pub fn set_instance(&mut self, now: Instant, name: &str, master: bool) {
        if let Some(m) = self.instances.get_mut(name) {
            *m = master;
            self.evaluate(now);
        }
    }

    /// A sync group's state: MASTER or not.
    pub fn set_group(&mut self, now: Instant, name: &str, master: bool) {
        if let Some(m) = self.groups.get_mut(name) {
            *m = master;
            self.evaluate(now);
        }
    }

    /// `halb drain`: withdraw every route, then wait for their virtual servers' connections to
    /// end (reported by [`Announcer::set_connections`]) or for `drain_timeout`. A drain asked
    /// again while one runs keeps the first deadline.
    pub fn drain(&mut self, now: Instant) {
        if self.drain.as_ref().is_some_and(|d| !d.finished) {
            return;
        }
        self.drain = Some(Drain {
            deadline: now + self.drain_timeout,
            finished: false,
        });
        for r in &mut self.routes {
            r.connections = None;
            r.packets = None;
        }
        self.evaluate(now);
    }

    /// Ends a drain: routes whose health allows it are announced again.
    pub fn resume(&mut self, now: Instant) {
        if self.drain.take().is_some() {
            self.evaluate(now);
        }
    }

    /// Whether a drain is asked for (running or finished).
    pub fn draining(&self) -> bool {
        self.drain.is_some()
    }

    /// The open connections of the virtual servers of the route holding `prefix`, as the data
    /// plane counts them; only read while a drain runs.
    pub fn set_connections(&mut self, now: Instant, prefix: &str, connections: u64) {
        if self.drain.as_ref().is_none_or(|d| d.finished) {
            return;
        }
        if let Some(r) = self.routes.iter_mut().find(|r| r.route.prefix() == prefix) {
            r.connections = Some(connections);
        }
        self.check_drain(now);
    }

    /// The packets that have arrived for the route holding `prefix` (a counter that only grows,
    /// as IPVS's `inpkts`); only read while a drain runs. Once it stops moving for
    /// [`DRAIN_QUIET`], the drain ends even with entries left in the table.
    pub fn set_packets_in(&mut self, now: Instant, prefix: &str, packets: u64) {
        if self.drain.as_ref().is_none_or(|d| d.finished) {
            return;
        }
        if let Some(r) = self.routes.iter_mut().find(|r| r.route.prefix() == prefix) {
            match r.packets {
                Some((seen, _)) if seen == packets => {}
                _ => r.packets = Some((packets, now)),
            }
        }
        self.check_drain(now);
    }

    /// halb is stopping: every route is withdrawn, for good.
    pub fn shutdown(&mut self, now: Instant) {
        self.stopping = true;
        self.evaluate(now);
    }

    /// The drain deadline, or the moment the packets will have been quiet long enough, when a
    /// drain is pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let d = self.drain.as_ref().filter(|d| !d.finished)?;
        let quiet = self
            .routes
            .iter()
            .filter_map(|r| r.packets.map(|(_, moved)| moved + DRAIN_QUIET))
            .max();
        Some(quiet.map_or(d.deadline, |q| q.min(d.deadline)))
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.check_drain(now);
    }

    /// The next decision or report, in the order they were made.
    pub fn poll_event(&mut self) -> Option<AnnounceEvent> {
        self.events.pop_front()
    }

    /// Every route's state.
    pub fn status(&self) -> Vec<RouteStatus> {
        self.routes
            .iter()
            .map(|r| RouteStatus {
                prefix: r.route.prefix(),
                announced: r.announced,
                reason: r.reason.clone(),
                since: r.since,
            })
            .collect()
    }

    /// The virtual servers (by index) whose connections count for a route's drain.
    pub fn virtual_servers(&self, prefix: &str) -> &[usize] {
        self.routes
            .iter()
            .find(|r| r.route.prefix() == prefix)
            .map(|r| r.virtual_servers.as_slice())
            .unwrap_or(&[])
    }

    fn check_drain(&mut self, now: Instant) {
        let Some(d) = &mut self.drain else { return };
        if d.finished {
            return;
        }
        let left = self
            .routes
            .iter()
            .filter_map(|r| r.connections)
            .fold(0u64, u64::saturating_add);
        let known: Option<u64> = self
            .routes
            .iter()
            .map(|r| r.connections)
            .try_fold(0u64, |acc, c| c.map(|c| acc.saturating_add(c)));
        let quiet = self.routes.iter().all(|r| {
            r.connections == Some(0)
                || r.packets
                    .is_some_and(|(_, moved)| now.saturating_duration_since(moved) >= DRAIN_QUIET)
        });
        let end = match known {
            Some(0) => DrainEnd::Idle,
            Some(_) if quiet => DrainEnd::Quiet { connections: left },
            // What is known: a route never counted adds nothing.
            _ if now >= d.deadline => DrainEnd::TimedOut { connections: left },
            _ => return,
        };
        d.finished = true;
        self.events.push_back(AnnounceEvent::DrainFinished { end });
    }

    /// Why `r` must be withdrawn now, or `None` when it may be announced.
    fn blocker(&self, r: &Route) -> Option<WithdrawReason> {
        if self.stopping {
            return Some(WithdrawReason::Shutdown);
        }
        if self.drain.is_some() {
            return Some(WithdrawReason::Drain);
        }
        for i in &r.virtual_servers {
            if let Some((name, q)) = self.quorum.get(i) {
                match q {
                    None => {
                        return Some(WithdrawReason::Waiting {
                            virtual_server: name.clone(),
                        })
                    }
                    Some(false) => {
                        return Some(WithdrawReason::QuorumLost {
                            virtual_server: name.clone(),
                        })
                    }
                    Some(true) => {}
                }
            }
        }
        for i in &r.route.track_instances {
            if !self.instances.get(i).copied().unwrap_or(false) {
                return Some(WithdrawReason::NotMaster {
                    instance: i.clone(),
                });
            }
        }
        for g in &r.route.track_groups {
            if !self.groups.get(g).copied().unwrap_or(false) {
                return Some(WithdrawReason::GroupNotMaster { group: g.clone() });
            }
        }
        if r.virtual_servers.is_empty() {
            // The configuration check drops such routes; never announce one that slipped by.
            return Some(WithdrawReason::Waiting {
                virtual_server: r.route.prefix(),
            });
        }
        None
    }

    fn evaluate(&mut self, now: Instant) {
        let blockers: Vec<Option<WithdrawReason>> =
            self.routes.iter().map(|r| self.blocker(r)).collect();
        for (r, blocker) in self.routes.iter_mut().zip(blockers) {
            match blocker {
                None if !r.announced => {
                    r.announced = true;
                    r.reason = None;
                    r.since = now;
                    self.events.push_back(AnnounceEvent::Announced {
                        prefix: r.route.prefix(),
                    });
                }
                None => {}
                Some(reason) => {
                    let was = r.announced;
                    if was || r.reason.as_ref() != Some(&reason) {
                        if was {
                            r.since = now;
                        }
                        r.announced = false;
                        r.reason = Some(reason.clone());
                        self.events.push_back(AnnounceEvent::Withdrawn {
                            prefix: r.route.prefix(),
                            reason,
                        });
                    }
                }
            }
        }
    }
}
