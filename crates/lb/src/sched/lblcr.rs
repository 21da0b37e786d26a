//! Locality-based least connection with replication (`ip_vs_lblcr.c`): each address clients
//! reach maps to a set of servers; a connection goes to the least loaded of the set, and the
//! set grows by the cluster's least loaded server when its own is busier than its weight
//! while another is under half of its own. A set unchanged for the expiration time loses its
//! most loaded member.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::locality::{gives_way, Collector, LastUse, DEFAULT_EXPIRATION};
use super::{index_of, weighted_least, DestLoad, Flow, Schedule};

/// IPVS's `lblcr`.
///
/// The set shrinks, as in the kernel, when it has more than one member and was last changed
/// more than `lblcr_expiration` ago (a day by default). A member removed from the service is
/// dropped from every set at the next `update` (the kernel keeps it until the set shrinks).
#[derive(Debug, Clone)]
pub struct Lblcr {
    entries: HashMap<IpAddr, Entry>,
    collector: Collector,
}

#[derive(Debug, Clone)]
struct Entry {
    /// Newest first, as the kernel adds members at the head of the list.
    set: Vec<SocketAddr>,
    last_use: Instant,
    last_mod: Instant,
}

impl LastUse for Entry {
    fn last_use(&self) -> Instant {
        self.last_use
    }
}

impl Default for Lblcr {
    fn default() -> Self {
        Lblcr::new()
    }
}

impl Lblcr {
    /// Entries unused, and sets unchanged, for [`DEFAULT_EXPIRATION`] (a day) expire.
    pub fn new() -> Lblcr {
        Lblcr::with_expiration(DEFAULT_EXPIRATION)
    }

    /// The `lblcr_expiration` sysctl.
    pub fn with_expiration(expiration: Duration) -> Lblcr {
        Lblcr {
            entries: HashMap::new(),
            collector: Collector::new(expiration),
        }
    }

    /// The server set of an address, newest first.
    pub fn set(&self, addr: IpAddr) -> Option<&[SocketAddr]> {
        self.entries.get(&addr).map(|e| e.set.as_slice())
    }

    /// How many addresses have a set.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `ip_vs_dest_set_min`: the set's weighted least-loaded member that can take a connection.
fn set_min(set: &[SocketAddr], dests: &[DestLoad]) -> Option<usize> {
    let mut members = set.iter().filter_map(|a| index_of(dests, *a));
    let mut least = members.find(|&i| dests[i].available())?;
    let mut loh = dests[least].overhead();
    for i in members {
        let d = &dests[i];
        if d.overloaded {
            continue;
        }
        let doh = d.overhead();
        if u128::from(loh) * u128::from(d.weight)
            > u128::from(doh) * u128::from(dests[least].weight)
        {
            least = i;
            loh = doh;
        }
    }
    Some(least)
}

/// `ip_vs_dest_set_max`: the set's weighted most-loaded member (weight above 0).
fn set_max(set: &[SocketAddr], dests: &[DestLoad]) -> Option<usize> {
    let mut members = set.iter().filter_map(|a| index_of(dests, *a));
    let mut most = members.find(|&i| dests[i].weight > 0)?;
    let mut moh = dests[most].overhead();
    for i in members {
        let d = &dests[i];
        let doh = d.overhead();
        if d.weight > 0
            && u128::from(moh) * u128::from(d.weight)
                < u128::from(doh) * u128::from(dests[most].weight)
        {
            most = i;
            moh = doh;
        }
    }
    Some(most)
}

impl Schedule for Lblcr {
    fn update(&mut self, dests: &[DestLoad]) {
        self.entries.retain(|_, e| {
            e.set.retain(|a| index_of(dests, *a).is_some());
            !e.set.is_empty()
        });
    }

    fn pick(
        &mut self,
        now: Instant,
        flow: &Flow,
        dests: &[DestLoad],
        _random: &mut dyn FnMut() -> u32,
    ) -> Option<usize> {
        self.collector.run(now, &mut self.entries);
        let expiration = self.collector.expiration;
        let key = flow.local.ip();
        let Some(entry) = self.entries.get_mut(&key) else {
            let i = weighted_least(dests, DestLoad::overhead)?;
            self.entries.insert(
                key,
                Entry {
                    set: vec![dests[i].addr],
                    last_use: now,
                    last_mod: now,
                },
            );
            return Some(i);
        };
        entry.last_use = now;
        let least = set_min(&entry.set, dests);
        if entry.set.len() > 1 && now.saturating_duration_since(entry.last_mod) > expiration {
            if let Some(most) = set_max(&entry.set, dests) {
                let addr = dests[most].addr;
                entry.set.retain(|a| *a != addr);
                entry.last_mod = now;
            }
        }
        // As the kernel, the member chosen before the shrink is used even if it was the one
        // dropped.
        if let Some(i) = least {
            if !gives_way(&dests[i], dests) {
                return Some(i);
            }
        }
        let i = weighted_least(dests, DestLoad::overhead)?;
        let addr = dests[i].addr;
        if !entry.set.contains(&addr) {
            entry.set.insert(0, addr);
            entry.last_mod = now;
        }
        Some(i)
    }
}
