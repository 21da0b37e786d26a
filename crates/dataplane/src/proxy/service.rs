//! One proxied service: its destinations, scheduler, persistence templates and sorry server
//! (behind one lock, taken once per new connection or UDP flow), its counters and its
//! connection table.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use halb_lb::sched::{DestLoad, Flow, Schedule};
use halb_lb::table::{
    Destination, ProtocolKey, SchedFlags, Scheduler, ServiceKey, ServiceSettings,
};

use super::conn_table::ConnTable;
use super::dest::DestState;
use super::log_limit::LogLimit;
use super::persist::Templates;
use super::stats::{lock, Stats};
use crate::{DestStats, ServiceStats};

/// Makes a scheduler (normally [`halb_lb::sched::new`]).
pub type NewScheduler = fn(Scheduler, SchedFlags) -> Box<dyn Schedule>;

#[derive(Debug)]
pub(crate) struct Service {
    pub(crate) key: ServiceKey,
    pub(crate) protocol: ProtocolKey,
    pub(crate) vip: SocketAddr,
    pub(crate) stats: Stats,
    pub(crate) conns: Arc<ConnTable>,
    picker: Mutex<Picker>,
    /// Clients that found no destination (IPVS rate-limits its "no destination available"
    /// too).
    pub(crate) unavailable: LogLimit,
}

/// Where a new connection goes.
#[derive(Debug, Clone)]
pub(crate) struct Choice {
    pub(crate) dest: Arc<DestState>,
    /// The service's sorry server, chosen because no destination could take the connection.
    pub(crate) fallback: bool,
}

struct Picker {
    kind: (Scheduler, SchedFlags),
    scheduler: Box<dyn Schedule>,
    /// In address order: the order the scheduler is told about and picks from.
    dests: Vec<Arc<DestState>>,
    /// Removed destinations that still have connections (IPVS's trash): their counts stay
    /// right, and a destination added back gets its state again.
    retired: HashMap<SocketAddr, Arc<DestState>>,
    fallback: Option<Arc<DestState>>,
    templates: Option<Templates>,
    /// Reused for each pick.
    loads: Vec<DestLoad>,
    random: u64,
}

impl std::fmt::Debug for Picker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Picker")
            .field("kind", &self.kind)
            .field("dests", &self.dests)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl Service {
    pub(crate) fn new(
        settings: &ServiceSettings,
        protocol: ProtocolKey,
        vip: SocketAddr,
        new_scheduler: NewScheduler,
    ) -> Service {
        let mut scheduler = new_scheduler(settings.scheduler, settings.flags);
        scheduler.update(&[]);
        let picker = Picker {
            kind: (settings.scheduler, settings.flags),
            scheduler,
            dests: Vec::new(),
            retired: HashMap::new(),
            fallback: settings
                .fallback
                .as_ref()
                .map(|d| Arc::new(DestState::new(d))),
            templates: settings.persistence.map(Templates::new),
            loads: Vec::new(),
            random: RandomState::new().hash_one(vip) | 1,
        };
        Service {
            key: settings.key,
            protocol,
            vip,
            stats: Stats::default(),
            conns: Arc::new(ConnTable::default()),
            picker: Mutex::new(picker),
            unavailable: LogLimit::default(),
        }
    }

    /// `EditService`: a new scheduler if its kind or flags changed, new templates if the
    /// persistence changed, the new sorry server.
    pub(crate) fn edit(&self, settings: &ServiceSettings, new_scheduler: NewScheduler) {
        let mut p = lock(&self.picker);
        if p.kind != (settings.scheduler, settings.flags) {
            p.kind = (settings.scheduler, settings.flags);
            p.scheduler = new_scheduler(settings.scheduler, settings.flags);
            p.tell_scheduler();
        }
        if p.templates.as_ref().map(Templates::persistence) != settings.persistence {
            p.templates = settings.persistence.map(Templates::new);
        }
        p.fallback = match (&p.fallback, &settings.fallback) {
            (Some(old), Some(new)) if old.addr == new.addr => {
                old.configure(new);
                Some(old.clone())
            }
            (_, new) => new.as_ref().map(|d| Arc::new(DestState::new(d))),
        };
    }

    /// `AddDest` / `EditDest`.
    pub(crate) fn put_dest(&self, dest: &Destination) {
        let mut p = lock(&self.picker);
        match p.dests.binary_search_by_key(&dest.addr, |d| d.addr) {
            Ok(i) => p.dests[i].configure(dest),
            Err(i) => {
                let state = match p.retired.remove(&dest.addr) {
                    Some(state) => {
                        state.configure(dest);
                        state
                    }
                    None => Arc::new(DestState::new(dest)),
                };
                p.dests.insert(i, state);
            }
        }
        p.tell_scheduler();
    }

    /// `DelDest`: no new connections; the open ones go on (unless dropped).
    pub(crate) fn del_dest(&self, addr: SocketAddr) {
        let mut p = lock(&self.picker);
        if let Ok(i) = p.dests.binary_search_by_key(&addr, |d| d.addr) {
            let state = p.dests.remove(i);
            if state.has_connections() {
                p.retired.insert(addr, state);
            }
            p.tell_scheduler();
        }
    }

    /// Where the next attempt for `flow` goes, given the destinations this connection
    /// already `tried`: first the scheduler's choice among the destinations not held as
    /// failed; else the sorry server; else the destinations still held as failed (they may
    /// be back), so that no client is refused while a real server may be alive.
    pub(crate) fn choose(
        &self,
        now: Instant,
        now_ms: u64,
        flow: &Flow,
        tried: &[SocketAddr],
    ) -> Option<Choice> {
        let mut p = lock(&self.picker);
        let untried = |d: &DestState| !tried.contains(&d.addr);
        if let Some(dest) = p.pick(now, flow, |d| untried(d) && !d.is_held(now_ms)) {
            return Some(Choice {
                dest,
                fallback: false,
            });
        }
        if let Some(fallback) = p.fallback.as_ref().filter(|f| untried(f)) {
            return Some(Choice {
                dest: fallback.clone(),
                fallback: true,
            });
        }
        p.pick(now, flow, untried).map(|dest| Choice {
            dest,
            fallback: false,
        })
    }

    /// A connection from `client` was served by `dest`: persistent services bind the client's
    /// network to it (again).
    pub(crate) fn remember(&self, flow: &Flow, dest: SocketAddr, now: Instant) {
        let mut p = lock(&self.picker);
        if let Some(templates) = p.templates.as_mut() {
            templates.remember(flow.client.ip(), dest, now);
        }
    }

    pub(crate) fn snapshot(&self) -> ServiceStats {
        let dests = lock(&self.picker).dests.clone();
        ServiceStats {
            key: self.key,
            counters: self.stats.counters.snapshot(),
            rates: self.stats.rates(),
            dests: dests
                .iter()
                .map(|d| DestStats {
                    addr: d.addr,
                    active: d.active(),
                    inactive: d.inactive(),
                    counters: d.stats.counters.snapshot(),
                    rates: d.stats.rates(),
                })
                .collect(),
        }
    }

    /// One estimator sample for the service and each destination; forgets the removed
    /// destinations whose last connection has ended.
    pub(crate) fn sample(&self) {
        self.stats.sample();
        let everyone: Vec<Arc<DestState>> = {
            let mut p = lock(&self.picker);
            p.retired.retain(|_, d| d.has_connections());
            p.dests
                .iter()
                .chain(p.retired.values())
                .chain(p.fallback.iter())
                .cloned()
                .collect()
        };
        for d in everyone {
            d.stats.sample();
        }
    }
}

impl Picker {
    /// IPVS calls `update_service` whenever the destination list or a weight changes.
    fn tell_scheduler(&mut self) {
        self.loads.clear();
        self.loads.extend(self.dests.iter().map(|d| d.load(false)));
        self.scheduler.update(&self.loads);
    }

    /// A destination for `flow` among those `allowed`: the persistence template's if it is
    /// still allowed and not quiescent, else the scheduler's. Destinations not allowed are
    /// shown to the scheduler as overloaded; if that leaves a hashing scheduler (sh, dh, mh,
    /// lblc) with no answer while allowed destinations remain, the least loaded of them is
    /// taken, so a dead real server never makes a client fail.
    fn pick(
        &mut self,
        now: Instant,
        flow: &Flow,
        allowed: impl Fn(&DestState) -> bool,
    ) -> Option<Arc<DestState>> {
        if let Some(addr) = self
            .templates
            .as_ref()
            .and_then(|t| t.lookup(flow.client.ip(), now))
        {
            // Unlike IPVS's default (expire_quiescent_template=0), a quiescent destination
            // loses its persistent clients: weight 0 means "no new connections".
            if let Some(d) = self.dests.iter().find(|d| d.addr == addr) {
                if d.weight() > 0 && allowed(d) {
                    return Some(d.clone());
                }
            }
        }
        self.loads.clear();
        let mut masked = false;
        for d in &self.dests {
            let excluded = !allowed(d);
            masked |= excluded;
            self.loads.push(d.load(excluded));
        }
        let state = &mut self.random;
        let mut random = || xorshift(state);
        match self.scheduler.pick(now, flow, &self.loads, &mut random) {
            Some(i) if i < self.dests.len() && allowed(&self.dests[i]) => {
                Some(self.dests[i].clone())
            }
            _ if masked => self.least_loaded(),
            _ => None,
        }
    }

    /// The destination with the fewest connections per weight (wlc's measure) among those
    /// the last pick did not mask.
    fn least_loaded(&self) -> Option<Arc<DestState>> {
        self.loads
            .iter()
            .enumerate()
            .filter(|(_, l)| l.available())
            .min_by(|(_, a), (_, b)| {
                (u128::from(a.overhead()) * u128::from(b.weight))
                    .cmp(&(u128::from(b.overhead()) * u128::from(a.weight)))
            })
            .map(|(i, _)| self.dests[i].clone())
    }
}

fn xorshift(state: &mut u64) -> u32 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    (x >> 32) as u32
}
