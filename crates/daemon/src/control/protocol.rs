//! What crosses the control socket.

use std::net::SocketAddr;

use halb_dataplane::{ConnectionEntry, Counters, Rates};
use halb_lb::table::{Persistence, SchedFlags, ServiceKey};
use serde::{Deserialize, Serialize};

use crate::event::InstanceStatus;

/// A request line.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Request {
    /// Include the connection table (`-c`): it can be large.
    #[serde(default)]
    pub connections: bool,
    /// `halb reload`: read the configuration file again and apply it; the answer is a
    /// [`ReloadAnswer`] instead of a snapshot.
    #[serde(default)]
    pub reload: bool,
    /// `halb upgrade`: start the halb binary found on disk, which takes over from this
    /// process (`halb run --takeover`); the answer is an [`UpgradeAnswer`].
    #[serde(default)]
    pub upgrade: bool,
    /// `halb failback VS`: hand virtual server VS (its name in `halb status`, or its
    /// `IP:PORT`) back from its sorry server now; the answer is a snapshot with
    /// [`Snapshot::failback`] set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failback: Option<String>,
    /// `halb drain` (`true`: withdraw every announced route; `false`: let them follow their
    /// health again). Answered with a snapshot once the routes are withdrawn; `bgp.drain` in
    /// later snapshots says when the connections have ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<bool>,
}

/// How an upgrade asked for on the control socket began: the successor was started. Whether
/// it took over shows when the control socket answers from its process id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeAnswer {
    /// The process id of the new halb.
    pub successor_pid: u32,
    /// The program it runs, and its arguments.
    pub command: Vec<String>,
}

/// How a `halb failback` ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailbackAnswer {
    /// The virtual server routes to its real servers again.
    pub done: bool,
    /// What happened, or why not (an unknown virtual server, nothing to fail back, a
    /// returning MySQL writer that has not caught up).
    pub message: String,
}

/// How a reload asked for on the control socket ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadAnswer {
    /// The new file is running; when false the running configuration stayed.
    pub applied: bool,
    /// The diagnostics (`file:line:col: what`) when refused; what changed when applied.
    pub details: Vec<String>,
}

/// The last reload, for `halb status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastReload {
    /// When it ended, in seconds since the Unix epoch.
    pub at_unix: u64,
    pub applied: bool,
    pub details: Vec<String>,
}

/// Everything `halb status` shows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: String,
    /// `proxy`, `ipvs`, or empty when the configuration has no virtual servers.
    pub dataplane: String,
    pub services: Vec<ServiceView>,
    pub connections: Vec<ConnectionEntry>,
    pub vrrp: Vec<VrrpView>,
    pub virtual_servers: Vec<VirtualServerView>,
    /// The daemon's own life: configuration applied, reloads.
    #[serde(default)]
    pub daemon: DaemonView,
    /// The last reload (SIGHUP or `halb reload`) since the daemon started, if any.
    #[serde(default)]
    pub last_reload: Option<LastReload>,
    /// The answer to a `halb failback` request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failback: Option<FailbackAnswer>,
    /// Route announcement (`bgp_announce`), when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<BgpView>,
    /// The `bfd_instance` sessions and the BFD packets no session took.
    #[serde(default)]
    pub bfd: crate::bfd::BfdView,
}

/// Route announcement as `halb status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpView {
    pub announcements: Vec<AnnouncementView>,
    pub sessions: Vec<BgpSessionView>,
    #[serde(default)]
    pub drain: DrainView,
}

/// One announced route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnouncementView {
    /// `192.168.66.251/32`.
    pub prefix: String,
    pub announced: bool,
    /// Why not, when withdrawn.
    pub reason: Option<String>,
    /// The reason's kind (`quorum_lost`, `drain`, …), when withdrawn.
    #[serde(default)]
    pub reason_kind: Option<String>,
    /// Since when (seconds since the Unix epoch).
    pub since: u64,
}

/// One BGP session of BIRD's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpSessionView {
    /// BIRD's protocol name (`halb_n0`).
    pub protocol: String,
    pub neighbor: String,
    /// BIRD's session state: `Established`, `Active`, `Connect`, `Idle`, …
    pub state: String,
    /// Since when, as BIRD prints it.
    pub since: String,
    /// The rest of BIRD's line (the last error, when any).
    pub info: String,
}

/// A drain asked with `halb drain`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainView {
    pub asked: bool,
    /// The connections have ended (or `drain_timeout` passed: `timed_out`).
    pub finished: bool,
    pub timed_out: bool,
    /// The withdrawn routes' open connections, last counted.
    pub connections: Option<u64>,
}

/// The daemon's own life, from its typed events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonView {
    pub pid: u32,
    /// When it started, in seconds since the Unix epoch.
    pub started: u64,
    /// The configuration read at start is applied: VRRP instances started, virtual servers in
    /// the data plane.
    pub ready: bool,
    /// A reload is under way.
    pub reloading: bool,
    /// Reloads finished since the start, applied or refused.
    pub reloads: u64,
    pub last_reload: Option<ReloadView>,
    /// A stop was asked for.
    pub stopping: bool,
}

/// How the last reload ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadView {
    /// When it ended, in seconds since the Unix epoch.
    pub at: u64,
    /// The new file was applied; when false the previous configuration still runs.
    pub applied: bool,
    /// The diagnostics of a refused file, or what changed.
    pub details: Vec<String>,
}

/// One service as `ipvsadm -L -n` shows it, with its counters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceView {
    pub key: ServiceKey,
    pub scheduler: String,
    pub flags: SchedFlags,
    pub persistence: Option<Persistence>,
    pub counters: Counters,
    pub rates: Rates,
    pub dests: Vec<DestView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DestView {
    pub addr: SocketAddr,
    /// ipvsadm's name (`Masq`, `Route`, `Tunnel`) on IPVS; `Proxy` on the userspace proxy.
    pub forward: String,
    pub weight: u32,
    pub active: u32,
    pub inactive: u32,
    pub uthreshold: u32,
    pub lthreshold: u32,
    pub counters: Counters,
    pub rates: Rates,
}

/// One VRRP instance, as `halb status` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpView {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    /// `MASTER`, `BACKUP`, `FAULT`, `INIT`, `STOP`.
    pub state: String,
    pub priority: u8,
    pub effective_priority: u8,
    pub virtual_addresses: Vec<String>,
    /// The current master's address and priority, as last heard.
    pub last_master: Option<String>,
}

impl From<&InstanceStatus> for VrrpView {
    fn from(status: &InstanceStatus) -> Self {
        VrrpView {
            name: status.name.clone(),
            interface: status.interface.clone(),
            vrid: status.vrid,
            state: status.state.to_string(),
            priority: status.priority,
            effective_priority: status.effective_priority,
            virtual_addresses: status
                .vips
                .iter()
                .map(|v| format!("{}/{}", v.address, v.prefix_len))
                .collect(),
            last_master: status
                .last_master
                .map(|(ip, prio)| format!("{ip} (priority {prio})")),
        }
    }
}

/// One virtual server of the configuration with its real servers' health.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VirtualServerView {
    /// keepalived's name of the service: `[192.168.66.251]:tcp:3306`.
    pub name: String,
    /// Its index in the configuration's virtual servers.
    #[serde(default)]
    pub index: usize,
    /// The services it puts in the data plane (one, or a group's).
    #[serde(default)]
    pub services: Vec<ServiceKey>,
    pub quorum_up: bool,
    pub sorry_server_active: bool,
    /// Why a real server that is ready stays out while the sorry server stands in
    /// (`failback manual`, `failback_limit`, a MySQL writer's catch-up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failback_held: Option<String>,
    pub real_servers: Vec<RealServerView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RealServerView {
    pub addr: SocketAddr,
    pub alive: bool,
    pub weight: u32,
    /// A `mysql_writer`'s server: its replica state, read every few seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<halb_check::mysql::replica::ReplicaState>,
    pub checkers: Vec<CheckerView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckerView {
    /// `TCP_CHECK`, `MYSQL_CHECK`, …
    pub kind: String,
    pub up: bool,
    /// The last thing the checker said (its failure, or MySQL's read_only).
    pub detail: String,
}
