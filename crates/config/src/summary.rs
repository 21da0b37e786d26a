//! The key values of a configuration in one normalized, comparable form.
//!
//! Both halb's model and keepalived's own dump of its parsed configuration (`keepalived -d`) are
//! reduced to a [`Summary`], so that a differential test can say "halb read this file exactly as
//! keepalived did" without depending on either side's internal layout. Times are integers in
//! microseconds, as keepalived keeps them, so that no rounding hides a difference.

use serde::{Deserialize, Serialize};

/// Everything the differential test compares, in configuration order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    pub vrrp_instances: Vec<InstanceSummary>,
    pub virtual_servers: Vec<VirtualServerSummary>,
}

/// One `vrrp_instance`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InstanceSummary {
    pub name: String,
    /// The configured interface, `None` when the instance has none.
    pub interface: Option<String>,
    pub vrid: u8,
    /// The configured priority (not the effective one after tracking).
    pub priority: u8,
    /// 2 or 3.
    pub version: u8,
    pub advert_int_us: u64,
    /// `MASTER` or `BACKUP`: the state the instance starts in, after keepalived's adjustments
    /// of the configured `state` (keepalived's dump calls it "Wantstate"; in a sync group,
    /// MASTER members of a non-owner group start as BACKUP).
    pub initial_state: String,
    /// Each `virtual_ipaddress` entry as `ADDR/PREFIX` (IPv6 in its canonical text form).
    pub vips: Vec<String>,
}

/// One `virtual_server`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VirtualServerSummary {
    /// `IP:PORT` (`[IPv6]:PORT`), `fwmark N` or `group NAME`.
    pub key: String,
    /// `TCP`, `UDP`, `SCTP` or `none`.
    pub protocol: String,
    /// IPVS scheduler name, for example `wrr`.
    pub sched: String,
    /// `None` when the service is not persistent.
    pub persistence_timeout: Option<u32>,
    pub delay_loop_us: u64,
    pub quorum: u32,
    /// `IP:PORT` of the sorry server, if any.
    pub sorry_server: Option<String>,
    pub real_servers: Vec<RealServerSummary>,
}

/// One `real_server`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RealServerSummary {
    /// `IP:PORT` (`[IPv6]:PORT`).
    pub addr: String,
    pub weight: i32,
    /// `DR`, `NAT` or `TUN`.
    pub forwarding: String,
    pub checkers: Vec<CheckerSummary>,
}

/// One health checker of a real server, with the timings keepalived resolved for it
/// (inherited from the real server and virtual server where the checker sets none).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CheckerSummary {
    /// `TCP_CHECK`, `HTTP_GET`, `SSL_GET`, `SMTP_CHECK`, `DNS_CHECK`, `MISC_CHECK`, `UDP_CHECK`,
    /// `PING_CHECK`, `FILE_CHECK`, `BFD_CHECK`.
    pub kind: String,
    /// `None` for checkers without a connection (MISC_CHECK, FILE_CHECK, BFD_CHECK).
    pub connect_timeout_us: Option<u64>,
    pub retry: u32,
    pub delay_before_retry_us: u64,
    pub delay_loop_us: u64,
}
