//! What `halb status` shows of the virtual servers: per real server its verdict and checkers,
//! per virtual server its quorum and whether the sorry server stands in.

use std::net::SocketAddr;

use serde::Serialize;

use super::state::{RealServerState, VsState};
use crate::table::ServiceKey;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VirtualServerStatus {
    /// Index in `LvsConfig::virtual_servers`.
    pub index: usize,
    /// keepalived's name: `[192.168.66.251]:tcp:3306`, `FWM 1`, `[GROUP]:0`.
    pub name: String,
    pub services: Vec<ServiceKey>,
    pub quorum: u32,
    pub hysteresis: u32,
    pub quorum_up: bool,
    /// The sum of the weights of the alive real servers, which quorum is judged on.
    pub alive_weight: u64,
    pub sorry_server: Option<SorryServerStatus>,
    /// `ha_suspend`: the checkers are paused because no address of the virtual server is on
    /// this host.
    pub checkers_suspended: bool,
    pub real_servers: Vec<RealServerStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SorryServerStatus {
    /// As configured (the port a DR service gives it may differ, see the table).
    pub addr: SocketAddr,
    pub inhibit: bool,
    /// In the pool: quorum is down.
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RealServerStatus {
    /// Index in the virtual server's `real_servers`.
    pub index: usize,
    /// As configured.
    pub addr: SocketAddr,
    /// Every checker is up.
    pub alive: bool,
    /// Taking new connections: alive and not replaced by the sorry server.
    pub in_pool: bool,
    /// The configured weight.
    pub weight: u32,
    /// The weight IPVS gets while in the pool (`misc_dynamic` may change it).
    pub effective_weight: u32,
    pub inhibit_on_failure: bool,
    pub failed_checkers: usize,
    pub checkers: Vec<CheckerStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckerStatus {
    /// Index in the real server's `checkers`.
    pub index: usize,
    /// `TCP_CHECK`, `MISC_CHECK`, …
    pub kind: &'static str,
    pub up: bool,
    /// Whether it has given a verdict yet (before that, `up` is its starting state: down in
    /// alpha mode, else up).
    pub has_run: bool,
    pub alpha: bool,
    /// Whether the verdict counts towards the real server's failed checkers.
    pub counted: bool,
}

pub(crate) fn vs_status(vs: &VsState) -> VirtualServerStatus {
    VirtualServerStatus {
        index: vs.index,
        name: vs.name.clone(),
        services: vs.services.iter().map(|s| s.key).collect(),
        quorum: vs.quorum,
        hysteresis: vs.hysteresis,
        quorum_up: vs.quorum_up,
        alive_weight: u64::try_from(vs.alive_weight()).unwrap_or(0),
        sorry_server: vs.sorry.as_ref().map(|s| SorryServerStatus {
            addr: SocketAddr::new(s.ip, s.port),
            inhibit: s.inhibit,
            active: s.active,
        }),
        checkers_suspended: !vs.checkers_enabled,
        real_servers: vs
            .real_servers
            .iter()
            .enumerate()
            .map(|(index, rs)| rs_status(vs, index, rs))
            .collect(),
    }
}

fn rs_status(vs: &VsState, index: usize, rs: &RealServerState) -> RealServerStatus {
    RealServerStatus {
        index,
        addr: SocketAddr::new(rs.ip, rs.port),
        alive: rs.alive,
        in_pool: vs.in_pool(rs),
        weight: rs.weight,
        effective_weight: rs.real_weight(),
        inhibit_on_failure: rs.inhibit,
        failed_checkers: rs.failed_checkers(),
        checkers: rs
            .checkers
            .iter()
            .enumerate()
            .map(|(index, c)| CheckerStatus {
                index,
                kind: c.kind,
                up: c.up,
                has_run: c.has_run,
                alpha: c.alpha,
                counted: c.counted,
            })
            .collect(),
    }
}
