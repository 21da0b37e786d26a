//! What happened to a virtual server, as typed values: the log line (keepalived's words, by
//! [`std::fmt::Display`]), metrics, the event stream and fencing all read the same value.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use halb_config::names::CheckerId;
use serde::{Deserialize, Serialize};

/// How loud an event is in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Level {
    /// keepalived logs all of its virtual-server events at LOG_INFO.
    Info,
    /// Something the configuration or the caller got wrong (a report for a checker that does
    /// not exist).
    Warn,
}

/// A virtual server: its index in `LvsConfig::virtual_servers` and keepalived's name of it
/// (`[192.168.66.251]:tcp:3306`, `FWM 1`, `[GROUP]:0`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VsRef {
    pub index: usize,
    pub name: String,
}

/// A real or sorry server of a virtual server: its configured address and keepalived's name
/// of it (`[192.168.66.253]:tcp:3306`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRef {
    pub addr: SocketAddr,
    pub name: String,
}

/// What became of a virtual server's checkers (`ha_suspend`, start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckerActivity {
    /// At start, or the virtual server's address arrived.
    Activating,
    /// At start, an `ha_suspend` virtual server whose address is not here.
    Deactivating,
    /// The virtual server's address left this host.
    Suspending,
}

/// Why a verdict was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IgnoredVerdict {
    /// The checker is one halb does not run (FILE_CHECK).
    NotRun,
    /// No such checker in the configuration.
    Unknown,
}

/// A state change of a virtual server, of one of its servers, or of its checkers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VsEvent {
    /// Real server `rs` came up: its last failed checker, `cause`, reported up. `inhibit`:
    /// it was held at weight 0 (`inhibit_on_failure`) and is enabled again.
    RealServerUp {
        vs: VsRef,
        rs: usize,
        server: ServerRef,
        inhibit: bool,
        cause: CheckerId,
    },
    /// Real server `rs` went down: checker `cause` failed. `inhibit`: it stays at weight 0.
    RealServerDown {
        vs: VsRef,
        rs: usize,
        server: ServerRef,
        inhibit: bool,
        cause: CheckerId,
    },
    /// A `misc_dynamic` checker changed the weight real server `rs` has in the table.
    WeightChanged {
        vs: VsRef,
        rs: usize,
        server: ServerRef,
        from: u32,
        to: u32,
        alive: bool,
    },
    /// The alive servers' weights reach the quorum again (`threshold` is quorum+hysteresis).
    QuorumGained {
        vs: VsRef,
        quorum: u32,
        hysteresis: u32,
        threshold: i64,
        alive_weight: i64,
    },
    /// The alive servers' weights fell below the quorum (`at_start`: the first evaluation
    /// found it missing).
    QuorumLost {
        vs: VsRef,
        quorum: u32,
        hysteresis: u32,
        threshold: i64,
        alive_weight: i64,
        at_start: bool,
    },
    /// Quorum is lost: the sorry server takes the traffic. `inhibit`: it was waiting at
    /// weight 0 (`sorry_server_inhibit`).
    SorryServerIn {
        vs: VsRef,
        server: ServerRef,
        inhibit: bool,
    },
    /// Quorum is back: the sorry server leaves (or goes back to weight 0 with `inhibit`).
    SorryServerOut {
        vs: VsRef,
        server: ServerRef,
        inhibit: bool,
    },
    /// The alive real servers go back into the pool after the sorry server stood in.
    AliveServersIn { vs: VsRef },
    /// The alive real servers leave the pool: the sorry server stands in.
    AliveServersOut { vs: VsRef },
    /// A timed checker of `server` was activated, deactivated or suspended.
    CheckerActivity {
        vs: VsRef,
        server: ServerRef,
        activity: CheckerActivity,
    },
    /// Stopping: `server` leaves the table. `inhibited`: it was held at weight 0.
    ServiceShutdown {
        vs: VsRef,
        server: ServerRef,
        inhibited: bool,
    },
    /// A verdict for a checker that does not count.
    VerdictIgnored {
        checker: CheckerId,
        why: IgnoredVerdict,
    },
    /// A virtual server names a group that is not configured: it has no services.
    GroupMissing { vs: VsRef, group: String },
    /// A group's range is longer than halb expands: only its first `kept` addresses serve.
    GroupRangeTruncated {
        vs: VsRef,
        first: IpAddr,
        last: IpAddr,
        kept: u32,
    },
}

impl VsEvent {
    pub fn level(&self) -> Level {
        match self {
            VsEvent::VerdictIgnored { .. }
            | VsEvent::GroupMissing { .. }
            | VsEvent::GroupRangeTruncated { .. } => Level::Warn,
            _ => Level::Info,
        }
    }

    /// The virtual server the event is about, if one.
    pub fn vs(&self) -> Option<usize> {
        match self {
            VsEvent::RealServerUp { vs, .. }
            | VsEvent::RealServerDown { vs, .. }
            | VsEvent::WeightChanged { vs, .. }
            | VsEvent::QuorumGained { vs, .. }
            | VsEvent::QuorumLost { vs, .. }
            | VsEvent::SorryServerIn { vs, .. }
            | VsEvent::SorryServerOut { vs, .. }
            | VsEvent::AliveServersIn { vs }
            | VsEvent::AliveServersOut { vs }
            | VsEvent::CheckerActivity { vs, .. }
            | VsEvent::ServiceShutdown { vs, .. }
            | VsEvent::GroupMissing { vs, .. }
            | VsEvent::GroupRangeTruncated { vs, .. } => Some(vs.index),
            VsEvent::VerdictIgnored { checker, .. } => Some(checker.vs),
        }
    }
}

impl fmt::Display for VsEvent {
    /// keepalived's log line for the event (`check/ipwrapper.c`), word for word.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VsEvent::RealServerUp {
                vs,
                server,
                inhibit,
                ..
            }
            | VsEvent::RealServerDown {
                vs,
                server,
                inhibit,
                ..
            } => {
                let up = matches!(self, VsEvent::RealServerUp { .. });
                let (verb, prep) = match (up, inhibit) {
                    (true, false) => ("Adding", "to"),
                    (true, true) => ("Enabling", "of"),
                    (false, false) => ("Removing", "from"),
                    (false, true) => ("Disabling", "of"),
                };
                write!(f, "{verb} service {} {prep} VS {}", server.name, vs.name)
            }
            VsEvent::WeightChanged {
                vs,
                server,
                from,
                to,
                alive,
                ..
            } => write!(
                f,
                "Changing weight from {from} to {to} for {}active service {} of VS {}",
                if *alive { "" } else { "in" },
                server.name,
                vs.name
            ),
            VsEvent::QuorumGained {
                vs,
                quorum,
                hysteresis,
                threshold,
                alive_weight,
            } => write!(
                f,
                "Gained quorum {quorum}+{hysteresis}={threshold} <= {alive_weight} for VS {}",
                vs.name
            ),
            // keepalived prints `quorum-hysteresis=threshold` even at start, where the
            // threshold is quorum + hysteresis: the line is kept as operators know it.
            VsEvent::QuorumLost {
                vs,
                quorum,
                hysteresis,
                threshold,
                alive_weight,
                at_start,
            } => write!(
                f,
                "{} {quorum}-{hysteresis}={threshold} > {alive_weight} for VS {}",
                if *at_start {
                    "Starting with quorum down"
                } else {
                    "Lost quorum"
                },
                vs.name
            ),
            VsEvent::SorryServerIn {
                vs,
                server,
                inhibit,
            } => write!(
                f,
                "{} sorry server {} to VS {}",
                if *inhibit { "Enabling" } else { "Adding" },
                server.name,
                vs.name
            ),
            VsEvent::SorryServerOut {
                vs,
                server,
                inhibit,
            } => write!(
                f,
                "{} sorry server {} from VS {}",
                if *inhibit { "Disabling" } else { "Removing" },
                server.name,
                vs.name
            ),
            VsEvent::AliveServersIn { vs } => {
                write!(f, "Adding alive servers to the pool for VS {}", vs.name)
            }
            VsEvent::AliveServersOut { vs } => {
                write!(f, "Removing alive servers from the pool for VS {}", vs.name)
            }
            VsEvent::CheckerActivity {
                vs,
                server,
                activity,
            } => write!(
                f,
                "{} healthchecker for service {} for VS {}",
                match activity {
                    CheckerActivity::Activating => "Activating",
                    CheckerActivity::Deactivating => "Deactivating",
                    CheckerActivity::Suspending => "Suspending",
                },
                server.name,
                vs.name
            ),
            VsEvent::ServiceShutdown {
                vs,
                server,
                inhibited,
            } => write!(
                f,
                "Shutting down {}service {} from VS {}",
                if *inhibited { "(inhibited) " } else { "" },
                server.name,
                vs.name
            ),
            VsEvent::VerdictIgnored { checker, why } => match why {
                IgnoredVerdict::NotRun => write!(
                    f,
                    "Verdict for checker {} of real server {} of virtual server {}, which halb \
                     does not run (FILE_CHECK) - ignoring",
                    checker.checker, checker.rs, checker.vs
                ),
                IgnoredVerdict::Unknown => write!(
                    f,
                    "Verdict for unknown checker {} of real server {} of virtual server {} - \
                     ignoring",
                    checker.checker, checker.rs, checker.vs
                ),
            },
            VsEvent::GroupMissing { vs, group } => write!(
                f,
                "Virtual server group {group} specified but not configured - virtual server {} \
                 has no services",
                vs.name
            ),
            VsEvent::GroupRangeTruncated {
                vs,
                first,
                last,
                kept,
            } => write!(
                f,
                "VS {}: group range {first}-{last} has more than {kept} addresses - using the \
                 first {kept}",
                vs.name
            ),
        }
    }
}
