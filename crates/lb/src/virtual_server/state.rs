//! The run-time state of one virtual server, its real servers and their checkers, in
//! keepalived's terms (`virtual_server_t`, `real_server_t`, `checker_t`).

use std::net::{IpAddr, SocketAddr};

use halb_config::model::{ConnectionFencing, Forwarding, Protocol, Script};
use halb_config::names;
use serde::{Deserialize, Serialize};

use super::vs_event::{ServerRef, VsRef};
use crate::table::{Persistence, SchedFlags, Scheduler, ServiceKey};

/// Whether halb closes connections that keepalived would leave open. A per-virtual-server
/// choice, from the file's `connection_fencing` ([`ConnectionFencing`]); the default drops
/// both, except for web services, which drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionDrops {
    /// When quorum comes back and the sorry server leaves the pool (or goes to weight 0 with
    /// `sorry_server_inhibit`), drop the connections still open to it: with a dual-master pair
    /// behind the virtual server, a client left on the sorry server keeps writing to the other
    /// master.
    pub on_sorry_handback: bool,
    /// When a real server leaves the pool while connections may still reach it (a check
    /// failed while the server still answers its clients, the sorry server took over, its
    /// weight went to 0), drop the connections still open to it.
    pub on_real_server_removal: bool,
}

impl From<ConnectionFencing> for ConnectionDrops {
    fn from(fencing: ConnectionFencing) -> Self {
        let close = fencing == ConnectionFencing::Close;
        ConnectionDrops {
            on_sorry_handback: close,
            on_real_server_removal: close,
        }
    }
}

impl Default for ConnectionDrops {
    /// `connection_fencing close`.
    fn default() -> Self {
        ConnectionFencing::Close.into()
    }
}

/// IPVS's largest weight (keepalived's IPVS_WEIGHT_LIMIT).
const WEIGHT_LIMIT: i64 = i32::MAX as i64;

/// keepalived's `real_weight()`: the weight IPVS gets for an effective weight that dynamic
/// checkers may have pushed out of range.
pub(crate) fn real_weight(effective: i64) -> u32 {
    // Clamped into 0..=i32::MAX first, so the conversion cannot fail.
    u32::try_from(effective.clamp(0, WEIGHT_LIMIT)).unwrap_or(0)
}

/// One IPVS service a virtual server puts in the table (a group gives several).
#[derive(Debug, Clone)]
pub(crate) struct ServiceSpec {
    pub key: ServiceKey,
    /// The service's port; 0 for a firewall-mark service. DR and TUN destinations take it.
    pub port: u16,
}

/// What every service of a virtual server is created with.
#[derive(Debug, Clone)]
pub(crate) struct ServiceTemplate {
    pub scheduler: Scheduler,
    pub flags: SchedFlags,
    pub persistence: Option<Persistence>,
    pub persistence_engine: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct CheckerState {
    /// The configuration keyword, for `halb status`.
    pub kind: &'static str,
    /// Whether the checker counts towards the real server's failed checkers (a checker whose
    /// kind halb does not run never fails).
    pub counted: bool,
    /// Whether keepalived runs it on a timer (and so logs its activation and suspension):
    /// not FILE_CHECK nor BFD_CHECK.
    pub timed: bool,
    pub alpha: bool,
    pub up: bool,
    pub has_run: bool,
    /// What this checker's `misc_dynamic` weight or FILE_CHECK value adds to the real
    /// server's configured weight (keepalived's `cur_weight`).
    pub weight_delta: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct RealServerState {
    pub ip: IpAddr,
    /// As configured (what keepalived prints); a destination's port depends on the service
    /// and the forwarding method, see [`VsState::dest_addr`].
    pub port: u16,
    /// The configured weight (`iweight`).
    pub weight: u32,
    /// The configured weight plus what dynamic checkers add (`effective_weight`).
    pub effective_weight: i64,
    pub forwarding: Forwarding,
    pub uthreshold: u32,
    pub lthreshold: u32,
    pub inhibit: bool,
    pub notify_up: Option<Script>,
    pub notify_down: Option<Script>,
    pub alive: bool,
    pub checkers: Vec<CheckerState>,
}

impl RealServerState {
    pub fn failed_checkers(&self) -> usize {
        self.checkers.iter().filter(|c| c.counted && !c.up).count()
    }

    pub fn real_weight(&self) -> u32 {
        real_weight(self.effective_weight)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct SorryState {
    pub ip: IpAddr,
    pub port: u16,
    pub inhibit: bool,
    pub forwarding: Forwarding,
    /// In the pool with its weight: quorum is down (keepalived's `ISALIVE(vs->s_svr)`).
    pub active: bool,
}

/// keepalived gives the sorry server this weight.
pub(crate) const SORRY_WEIGHT: u32 = 1;

#[derive(Debug, Clone)]
pub(crate) struct VsState {
    pub index: usize,
    /// keepalived's `FMT_VS`: `[192.168.66.251]:tcp:3306`, `FWM 1`, `[GROUP]:0`.
    pub name: String,
    /// The configured protocol (none for firewall-mark services), for `FMT_RS`.
    pub protocol: Option<Protocol>,
    pub services: Vec<ServiceSpec>,
    pub template: ServiceTemplate,
    pub quorum: u32,
    pub hysteresis: u32,
    pub quorum_up: bool,
    pub quorum_up_script: Option<Script>,
    pub quorum_down_script: Option<Script>,
    pub omega: bool,
    pub ha_suspend: bool,
    /// How many times an address of this virtual server is on this host (keepalived counts
    /// an address present on several interfaces several times).
    pub local_addresses: u32,
    pub checkers_enabled: bool,
    pub sorry: Option<SorryState>,
    pub real_servers: Vec<RealServerState>,
    pub drops: ConnectionDrops,
}

impl VsState {
    /// The virtual server as events name it.
    pub fn vs_ref(&self) -> VsRef {
        VsRef {
            index: self.index,
            name: self.name.clone(),
        }
    }

    /// A server of this virtual server as events name it (keepalived's `FMT_RS`).
    pub fn server_ref(&self, ip: IpAddr, port: u16) -> ServerRef {
        ServerRef {
            addr: SocketAddr::new(ip, port),
            name: names::trio(ip, self.protocol, port),
        }
    }

    /// Real server `rs` as events name it.
    pub fn rs_ref(&self, rs: usize) -> ServerRef {
        let server = &self.real_servers[rs];
        self.server_ref(server.ip, server.port)
    }

    pub fn sorry_active(&self) -> bool {
        self.sorry.as_ref().is_some_and(|s| s.active)
    }

    /// A destination's address in a service, as keepalived programs it: NAT keeps the real
    /// server's port; DR and TUN cannot change the port, so the destination takes the
    /// service's (0 for a firewall-mark service).
    pub fn dest_addr(
        service: &ServiceSpec,
        ip: IpAddr,
        port: u16,
        forwarding: &Forwarding,
    ) -> SocketAddr {
        match forwarding {
            Forwarding::Nat => SocketAddr::new(ip, port),
            Forwarding::Dr | Forwarding::Tun(_) => SocketAddr::new(ip, service.port),
        }
    }

    /// Whether the real server takes new connections: alive, and the sorry server is not
    /// standing in (keepalived only changes IPVS "if we have quorum or no sorry server").
    pub fn in_pool(&self, rs: &RealServerState) -> bool {
        rs.alive && !self.sorry_active()
    }

    /// The real server's weight in the table, or `None` when it is not there. With
    /// `inhibit_on_failure` it stays at weight 0 while out of the pool.
    pub fn rs_table_weight(&self, rs: &RealServerState) -> Option<u32> {
        if self.in_pool(rs) {
            Some(rs.real_weight())
        } else if rs.inhibit {
            Some(0)
        } else {
            None
        }
    }

    /// Whether keepalived holds the real server in IPVS (its `rs->set`).
    pub fn rs_set(&self, rs: &RealServerState) -> bool {
        self.rs_table_weight(rs).is_some()
    }

    /// The sorry server's weight in the table: 1 while quorum is down, 0 with
    /// `sorry_server_inhibit` otherwise, else absent.
    pub fn sorry_table_weight(&self) -> Option<u32> {
        let sorry = self.sorry.as_ref()?;
        if sorry.active {
            Some(SORRY_WEIGHT)
        } else if sorry.inhibit {
            Some(0)
        } else {
            None
        }
    }

    /// The sum of the weights of the alive real servers (`weigh_live_realservers`).
    pub fn alive_weight(&self) -> i64 {
        self.real_servers
            .iter()
            .filter(|rs| rs.alive)
            .map(|rs| i64::from(rs.real_weight()))
            .sum()
    }

    /// Whether `ip` is an address this virtual server serves (for `ha_suspend`).
    pub fn serves_address(&self, ip: IpAddr) -> bool {
        self.services
            .iter()
            .any(|s| matches!(s.key, ServiceKey::Addr { addr, .. } if addr.ip() == ip))
    }
}
