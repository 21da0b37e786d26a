//! Data planes: what holds the service table and forwards the packets. [`Dataplane`] is the
//! seam between the load-balancing core (`halb-lb`, which computes the desired table) and the
//! forwarding: the userspace [`proxy`], or kernel IPVS.

pub mod ipvs;
pub mod partial;
pub mod proxy;

use std::net::SocketAddr;

use halb_lb::table::{Change, Forwarding, ServiceKey};
use serde::{Deserialize, Serialize};

pub use partial::{ApplyError, Failed};

/// A data plane: holds the service table and forwards new connections by it.
pub trait Dataplane: Send {
    /// Applies changes in order (as [`halb_lb::table::Table::diff`] produces them), trying
    /// every one whatever the earlier ones gave; the error says which landed and which did not
    /// (see [`ApplyError::held`]). It may block (IPVS waits for the kernel's answers): async
    /// callers run it off their workers.
    fn apply(&mut self, changes: &[Change]) -> Result<(), ApplyError>;

    /// Counters and rates of every service and destination, in `ipvsadm -L` order.
    fn stats(&self) -> Vec<ServiceStats>;

    /// The connection table (`ipvsadm -L -c`).
    fn connections(&self) -> Vec<ConnectionEntry>;

    /// Closes the connections still open through `service` to `dest`; returns how many.
    fn drop_connections(&mut self, service: &ServiceKey, dest: SocketAddr) -> usize;

    /// `proxy` or `ipvs`, for the log and `halb status`.
    fn name(&self) -> &'static str;

    /// How connections reach a destination configured with `forwarding`, as `halb status`
    /// prints it in ipvsadm's Forward column: ipvsadm's own names where the data plane forwards
    /// as configured (IPVS).
    fn forward_name(&self, forwarding: &Forwarding) -> &'static str {
        ipvsadm_forward_name(forwarding)
    }
}

/// ipvsadm's names of the forwarding methods.
pub fn ipvsadm_forward_name(forwarding: &Forwarding) -> &'static str {
    match forwarding {
        Forwarding::Nat => "Masq",
        Forwarding::Dr => "Route",
        Forwarding::Tun(_) => "Tunnel",
    }
}

/// A data plane's failure, with what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Refused(String),
}

/// IPVS's counters (`ipvsadm --stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
}

/// IPVS's rate estimates, per second (`ipvsadm --rate`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rates {
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestStats {
    pub addr: SocketAddr,
    pub active: u32,
    pub inactive: u32,
    pub counters: Counters,
    pub rates: Rates,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStats {
    pub key: ServiceKey,
    pub counters: Counters,
    pub rates: Rates,
    pub dests: Vec<DestStats>,
}

/// One connection (`ipvsadm -L -c -n`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionEntry {
    pub protocol: halb_lb::table::ProtocolKey,
    pub client: SocketAddr,
    pub virtual_addr: SocketAddr,
    pub dest: SocketAddr,
    /// IPVS's state name: `ESTABLISHED`, `FIN_WAIT`, `CLOSE_WAIT`, `UDP`, …
    pub state: String,
    /// Seconds until the entry expires (IPVS's `expire`).
    pub expires_s: u32,
}

/// A passive failure seen by a data plane: a connection to `dest` failed, so the checkers of
/// that real server should look now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassiveFailure {
    pub service: ServiceKey,
    pub dest: SocketAddr,
}
