//! Locality-based least connection (`ip_vs_lblc.c`): each address clients reach (the
//! destination address of their packets, as in a cache cluster) sticks to one server, chosen
//! by weighted least connection, until that server is gone, quiescent, or busier than its
//! weight while another is under half of its own.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::locality::{gives_way, Collector, LastUse, DEFAULT_EXPIRATION};
use super::{index_of, weighted_least, DestLoad, Flow, Schedule};

/// IPVS's `lblc`.
///
/// As in the kernel, a cached server is kept even when its threshold flag
/// ([`DestLoad::overloaded`]) is set: only a weight of 0, its removal, or the
/// `active > weight` rule above moves the address to another server.
#[derive(Debug, Clone)]
pub struct Lblc {
    entries: HashMap<IpAddr, Entry>,
    collector: Collector,
}

#[derive(Debug, Clone)]
struct Entry {
    dest: SocketAddr,
    last_use: Instant,
}

impl LastUse for Entry {
    fn last_use(&self) -> Instant {
        self.last_use
    }
}

impl Default for Lblc {
    fn default() -> Self {
        Lblc::new()
    }
}

impl Lblc {
    /// Entries unused for [`DEFAULT_EXPIRATION`] (a day) are dropped.
    pub fn new() -> Lblc {
        Lblc::with_expiration(DEFAULT_EXPIRATION)
    }

    /// The `lblc_expiration` sysctl.
    pub fn with_expiration(expiration: Duration) -> Lblc {
        Lblc {
            entries: HashMap::new(),
            collector: Collector::new(expiration),
        }
    }

    /// The server an address is cached to, if any.
    pub fn cached(&self, addr: IpAddr) -> Option<SocketAddr> {
        self.entries.get(&addr).map(|e| e.dest)
    }

    /// How many addresses are cached.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Schedule for Lblc {
    fn update(&mut self, _dests: &[DestLoad]) {}

    fn pick(
        &mut self,
        now: Instant,
        flow: &Flow,
        dests: &[DestLoad],
        _random: &mut dyn FnMut() -> u32,
    ) -> Option<usize> {
        self.collector.run(now, &mut self.entries);
        let key = flow.local.ip();
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.last_use = now;
            if let Some(i) = index_of(dests, entry.dest) {
                let d = &dests[i];
                if d.weight > 0 && !gives_way(d, dests) {
                    return Some(i);
                }
            }
        }
        let i = weighted_least(dests, DestLoad::overhead)?;
        let dest = dests[i].addr;
        match self.entries.get_mut(&key) {
            Some(entry) if entry.dest == dest => {}
            _ => {
                self.entries.insert(
                    key,
                    Entry {
                        dest,
                        last_use: now,
                    },
                );
            }
        }
        Some(i)
    }
}
