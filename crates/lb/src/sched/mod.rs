//! The IPVS schedulers (`net/netfilter/ipvs/ip_vs_*.c`), as pure state machines: each picks a
//! destination for a new connection (or a UDP flow) from the service's destinations and their
//! connection counts, with the kernel's semantics.
//!
//! Each scheduler sees the destinations in the order the caller keeps them (IPVS's
//! `svc->destinations` list): ties, round-robin cursors and hash tables follow that order.

use std::net::SocketAddr;
use std::time::Instant;

use crate::table::{Destination, SchedFlags, Scheduler};

mod dh;
mod fo;
mod hash;
mod lblc;
mod lblcr;
mod lc;
mod locality;
mod mh;
mod nq;
mod ovf;
mod rr;
mod sed;
mod sh;
mod twos;
mod wlc;
mod wrr;

pub use dh::DestinationHashing;
pub use fo::WeightedFailover;
pub use lblc::Lblc;
pub use lblcr::Lblcr;
pub use lc::LeastConnection;
pub use locality::DEFAULT_EXPIRATION;
pub use mh::{Maglev, MH_DEFAULT_TABLE_INDEX, MH_PRIMES};
pub use nq::NeverQueue;
pub use ovf::Overflow;
pub use rr::RoundRobin;
pub use sed::ShortestExpectedDelay;
pub use sh::SourceHashing;
pub use twos::TwosChoice;
pub use wlc::WeightedLeastConnection;
pub use wrr::WeightedRoundRobin;

/// What a scheduler sees of one destination when it picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestLoad {
    pub addr: SocketAddr,
    /// 0: quiescent, never picked.
    pub weight: u32,
    /// IPVS's ActiveConn (established connections).
    pub active: u32,
    /// IPVS's InActConn (connections in any other state).
    pub inactive: u32,
    /// IP_VS_DEST_F_OVERLOAD: the upper threshold was reached (see [`Overload`]).
    pub overloaded: bool,
}

impl DestLoad {
    /// May take new connections: a weight above 0 and no overload flag (what every
    /// scheduler but lblc's cache checks before picking a destination).
    pub fn available(&self) -> bool {
        self.weight > 0 && !self.overloaded
    }

    /// `ip_vs_dest_conn_overhead`: an active connection costs 256 inactive ones.
    pub fn overhead(&self) -> u64 {
        (u64::from(self.active) << 8) + u64::from(self.inactive)
    }

    /// `ip_vs_dest_totalconns`: what the thresholds of [`Overload`] count.
    pub fn total_conns(&self) -> u64 {
        u64::from(self.active) + u64::from(self.inactive)
    }
}

/// The connection (or datagram flow) being scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// The client's address and port.
    pub client: SocketAddr,
    /// The address and port the client reached (the VIP).
    pub local: SocketAddr,
}

/// One service's scheduler.
pub trait Schedule: Send {
    /// The service's destinations changed (added, removed, weight changed): IPVS's
    /// `update_service`. `dests` is the new list, in the order later `pick`s will pass it.
    fn update(&mut self, dests: &[DestLoad]);

    /// The index in `dests` of the destination for `flow`, or `None` when none can take it
    /// (IPVS logs "no destination available"). `random` is a source of uniform u32s (`twos`).
    fn pick(
        &mut self,
        now: Instant,
        flow: &Flow,
        dests: &[DestLoad],
        random: &mut dyn FnMut() -> u32,
    ) -> Option<usize>;
}

/// A scheduler of that kind with the service's flags.
///
/// `flag_1` is sh/mh's fallback and `flag_2` their port hashing; the other schedulers ignore
/// the flags, as IPVS does.
pub fn new(kind: Scheduler, flags: SchedFlags) -> Box<dyn Schedule> {
    match kind {
        Scheduler::Rr => Box::new(RoundRobin::new()),
        Scheduler::Wrr => Box::new(WeightedRoundRobin::new()),
        Scheduler::Lc => Box::new(LeastConnection),
        Scheduler::Wlc => Box::new(WeightedLeastConnection),
        Scheduler::Lblc => Box::new(Lblc::new()),
        Scheduler::Lblcr => Box::new(Lblcr::new()),
        Scheduler::Dh => Box::new(DestinationHashing::new()),
        Scheduler::Sh => Box::new(SourceHashing::new(flags)),
        Scheduler::Sed => Box::new(ShortestExpectedDelay),
        Scheduler::Nq => Box::new(NeverQueue),
        Scheduler::Fo => Box::new(WeightedFailover),
        Scheduler::Ovf => Box::new(Overflow),
        Scheduler::Mh => Box::new(Maglev::new(flags)),
        Scheduler::Twos => Box::new(TwosChoice),
    }
}

/// IPVS's connection thresholds (`ip_vs_dest_totalconns` against `u_threshold` /
/// `l_threshold`): when a destination becomes overloaded and when it stops being so.
///
/// The flag has hysteresis: it is set when a new connection brings the total (active +
/// inactive) to the upper threshold, and cleared only when a closing connection brings it
/// below the lower threshold — or, without one, below 3/4 of the upper threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Overload {
    pub uthreshold: u32,
    pub lthreshold: u32,
}

impl Overload {
    pub fn of(dest: &Destination) -> Overload {
        Overload {
            uthreshold: dest.uthreshold,
            lthreshold: dest.lthreshold,
        }
    }

    /// The flag after a connection was bound to the destination (`ip_vs_bind_dest`), with
    /// `total` its connections now, the new one included.
    pub fn after_connect(&self, overloaded: bool, total: u64) -> bool {
        overloaded || (self.uthreshold != 0 && total >= u64::from(self.uthreshold))
    }

    /// The flag after a connection left the destination (`ip_vs_unbind_dest`), with `total`
    /// its connections now.
    pub fn after_disconnect(&self, overloaded: bool, total: u64) -> bool {
        if self.lthreshold != 0 {
            overloaded && total >= u64::from(self.lthreshold)
        } else if self.uthreshold != 0 {
            overloaded && total * 4 >= u64::from(self.uthreshold) * 3
        } else {
            false
        }
    }

    /// The flag after the destination's thresholds changed from `self` to `new`
    /// (`__ip_vs_update_dest`): removing or raising the upper threshold lifts it at once.
    pub fn after_edit(&self, new: &Overload, overloaded: bool) -> bool {
        overloaded && new.uthreshold != 0 && new.uthreshold <= self.uthreshold
    }

    /// Both rules at once, for a caller that only sees counts: set at the upper threshold,
    /// cleared below the lower mark, unchanged in between.
    pub fn next(&self, overloaded: bool, total: u64) -> bool {
        if self.uthreshold != 0 && total >= u64::from(self.uthreshold) {
            true
        } else {
            self.after_disconnect(overloaded, total)
        }
    }
}

/// The kernel's weighted least-connection scan (wlc, sed, lblc, lblcr): the first available
/// destination, then each later one not overloaded whose `overhead / weight` is strictly
/// lower, compared as cross products (`h1 * w2 > h2 * w1`) as the kernel does, so a weight of
/// 0 never wins and ties keep the earlier destination.
pub(crate) fn weighted_least(
    dests: &[DestLoad],
    overhead: impl Fn(&DestLoad) -> u64,
) -> Option<usize> {
    let first = dests.iter().position(DestLoad::available)?;
    let mut least = first;
    let mut loh = overhead(&dests[first]);
    for (i, d) in dests.iter().enumerate().skip(first + 1) {
        if d.overloaded {
            continue;
        }
        let doh = overhead(d);
        if u128::from(loh) * u128::from(d.weight)
            > u128::from(doh) * u128::from(dests[least].weight)
        {
            least = i;
            loh = doh;
        }
    }
    Some(least)
}

/// Where `addr` is in `dests`.
pub(crate) fn index_of(dests: &[DestLoad], addr: SocketAddr) -> Option<usize> {
    dests.iter().position(|d| d.addr == addr)
}
