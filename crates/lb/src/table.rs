//! The service table: what IPVS (or the userspace proxy) must hold, in IPVS's own terms.
//!
//! A [`Table`] is the desired state; [`Table::diff`] gives the [`Change`]s that turn one table
//! into another, which is what a data plane applies.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

pub use halb_config::model::{
    Forwarding, IpFamily, PersistenceGranularity, Protocol, SchedFlags, Scheduler,
};
use serde::{Deserialize, Serialize};

/// What identifies an IPVS service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ServiceKey {
    /// `-t|-u|--sctp-service ADDR:PORT`.
    Addr {
        protocol: ProtocolKey,
        addr: SocketAddr,
    },
    /// `-f MARK` (with its family: IPVS keys firewall-mark services by both).
    Fwmark { mark: u32, inet6: bool },
}

/// [`Protocol`] with an order, so that keys sort as `ipvsadm` lists them (TCP, UDP, SCTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ProtocolKey {
    Tcp,
    Udp,
    Sctp,
}

impl From<Protocol> for ProtocolKey {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::Tcp => ProtocolKey::Tcp,
            Protocol::Udp => ProtocolKey::Udp,
            Protocol::Sctp => ProtocolKey::Sctp,
        }
    }
}

impl ProtocolKey {
    /// `TCP`, `UDP`, `SCTP`, as `ipvsadm -L` prints them.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolKey::Tcp => "TCP",
            ProtocolKey::Udp => "UDP",
            ProtocolKey::Sctp => "SCTP",
        }
    }
}

impl std::fmt::Display for ServiceKey {
    /// `TCP  192.168.66.251:3306`, `FWM  1`: ipvsadm's `-L -n` spelling.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceKey::Addr { protocol, addr } => write!(f, "{}  {}", protocol.as_str(), addr),
            ServiceKey::Fwmark { mark, inet6 } => {
                write!(f, "FWM  {mark}{}", if *inet6 { " IPv6" } else { "" })
            }
        }
    }
}

/// Persistence of a service (`-p TIMEOUT -M NETMASK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persistence {
    pub timeout_s: u32,
    /// `None`: the whole address (255.255.255.255, or /128).
    pub granularity: Option<PersistenceGranularity>,
}

/// One service with its scheduler; the destinations are in [`Service::destinations`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub key: ServiceKey,
    pub scheduler: Scheduler,
    pub flags: SchedFlags,
    pub persistence: Option<Persistence>,
    /// `persistence_engine NAME` (`--pe`): the kernel's only one is `sip`.
    pub persistence_engine: Option<String>,
    /// The sorry server, where a proxy may send a connection when every destination refused
    /// it, before the checkers have taken them out. IPVS has no such thing and ignores it.
    pub fallback: Option<Destination>,
    /// Keyed by the destination's address (a real server's, or the sorry server's).
    pub destinations: BTreeMap<SocketAddr, Destination>,
}

/// What a service's settings are, without its destinations (an `EditService` changes these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSettings {
    pub key: ServiceKey,
    pub scheduler: Scheduler,
    pub flags: SchedFlags,
    pub persistence: Option<Persistence>,
    pub persistence_engine: Option<String>,
    pub fallback: Option<Destination>,
}

impl Service {
    pub fn settings(&self) -> ServiceSettings {
        ServiceSettings {
            key: self.key,
            scheduler: self.scheduler,
            flags: self.flags,
            persistence: self.persistence,
            persistence_engine: self.persistence_engine.clone(),
            fallback: self.fallback,
        }
    }
}

/// One destination (`-r ADDR:PORT -g|-m|-i -w WEIGHT -x U -y L`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub addr: SocketAddr,
    /// 0: quiescent — kept for the connections it has, given no new ones.
    pub weight: u32,
    pub forwarding: Forwarding,
    /// Upper connection threshold; 0: none.
    pub uthreshold: u32,
    /// Lower connection threshold; 0: none.
    pub lthreshold: u32,
}

impl Destination {
    pub fn ip(&self) -> IpAddr {
        self.addr.ip()
    }
}

/// The whole desired table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub services: BTreeMap<ServiceKey, Service>,
}

/// One step from one table to another, in the order a data plane must apply them
/// (a service exists before its destinations are added; destinations go before their service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    AddService(ServiceSettings),
    EditService(ServiceSettings),
    DelService(ServiceKey),
    AddDest(ServiceKey, Destination),
    EditDest(ServiceKey, Destination),
    DelDest(ServiceKey, SocketAddr),
}

impl Table {
    /// The changes that turn `self` into `target`: deletions of destinations, then of
    /// services, then additions and edits of services, then of destinations.
    pub fn diff(&self, target: &Table) -> Vec<Change> {
        let mut dels = Vec::new();
        let mut svc_dels = Vec::new();
        let mut svc_adds = Vec::new();
        let mut dest_adds = Vec::new();
        for (key, old) in &self.services {
            match target.services.get(key) {
                None => svc_dels.push(Change::DelService(*key)),
                Some(new) => {
                    for addr in old.destinations.keys() {
                        if !new.destinations.contains_key(addr) {
                            dels.push(Change::DelDest(*key, *addr));
                        }
                    }
                }
            }
        }
        for (key, new) in &target.services {
            let old = self.services.get(key);
            match old {
                None => svc_adds.push(Change::AddService(new.settings())),
                Some(old) if old.settings() != new.settings() => {
                    svc_adds.push(Change::EditService(new.settings()))
                }
                Some(_) => {}
            }
            for (addr, dest) in &new.destinations {
                match old.and_then(|o| o.destinations.get(addr)) {
                    None => dest_adds.push(Change::AddDest(*key, *dest)),
                    Some(was) if was != dest => dest_adds.push(Change::EditDest(*key, *dest)),
                    Some(_) => {}
                }
            }
        }
        dels.extend(svc_dels);
        dels.extend(svc_adds);
        dels.extend(dest_adds);
        dels
    }

    /// [`Table::diff`] for a data plane that holds no fallback (IPVS: the sorry server is a
    /// destination there only while it serves). An edit of a service whose only change is its
    /// fallback is dropped: the kernel's entry would be rewritten with the same settings, an
    /// edit the change of the configuration does not need.
    pub fn diff_without_fallback(&self, target: &Table) -> Vec<Change> {
        self.diff(target)
            .into_iter()
            .filter(|change| match change {
                Change::EditService(new) => self.services.get(&new.key).is_none_or(|old| {
                    let mut old = old.settings();
                    old.fallback = new.fallback;
                    old != *new
                }),
                _ => true,
            })
            .collect()
    }

    /// Applies changes as a data plane would (used to check `diff` and by data planes that
    /// keep a copy of what they hold).
    pub fn apply(&mut self, changes: &[Change]) {
        for change in changes {
            match change {
                Change::AddService(s) | Change::EditService(s) => {
                    let entry = self.services.entry(s.key).or_insert_with(|| Service {
                        key: s.key,
                        scheduler: s.scheduler,
                        flags: s.flags,
                        persistence: s.persistence,
                        persistence_engine: s.persistence_engine.clone(),
                        fallback: s.fallback,
                        destinations: BTreeMap::new(),
                    });
                    entry.scheduler = s.scheduler;
                    entry.flags = s.flags;
                    entry.persistence = s.persistence;
                    entry.persistence_engine = s.persistence_engine.clone();
                    entry.fallback = s.fallback;
                }
                Change::DelService(key) => {
                    self.services.remove(key);
                }
                Change::AddDest(key, d) | Change::EditDest(key, d) => {
                    if let Some(s) = self.services.get_mut(key) {
                        s.destinations.insert(d.addr, *d);
                    }
                }
                Change::DelDest(key, addr) => {
                    if let Some(s) = self.services.get_mut(key) {
                        s.destinations.remove(addr);
                    }
                }
            }
        }
    }
}
