//! Counters and rate estimates, with IPVS's meaning: the counters grow on the forwarding
//! path (atomics, no lock), and an [`Estimator`] turns them into per-second rates every
//! [`ESTIMATOR_PERIOD`] the way `net/netfilter/ipvs/ip_vs_est.c` does.
//!
//! "In" is what the clients send (towards the real servers), "out" what comes back, as in
//! `ipvsadm --stats`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use crate::{Counters, Rates};

/// How often the kernel's estimator samples the counters; its fixed-point scaling assumes it.
pub const ESTIMATOR_PERIOD: Duration = Duration::from_secs(2);

/// The counters of one service or destination, updated without a lock.
#[derive(Debug, Default)]
pub(crate) struct StatCounters {
    conns: AtomicU64,
    inpkts: AtomicU64,
    outpkts: AtomicU64,
    inbytes: AtomicU64,
    outbytes: AtomicU64,
}

impl StatCounters {
    pub(crate) fn add_conn(&self) {
        self.conns.fetch_add(1, Relaxed);
    }

    pub(crate) fn add_in(&self, packets: u64, bytes: u64) {
        self.inpkts.fetch_add(packets, Relaxed);
        self.inbytes.fetch_add(bytes, Relaxed);
    }

    pub(crate) fn add_out(&self, packets: u64, bytes: u64) {
        self.outpkts.fetch_add(packets, Relaxed);
        self.outbytes.fetch_add(bytes, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Counters {
        Counters {
            conns: self.conns.load(Relaxed),
            inpkts: self.inpkts.load(Relaxed),
            outpkts: self.outpkts.load(Relaxed),
            inbytes: self.inbytes.load(Relaxed),
            outbytes: self.outbytes.load(Relaxed),
        }
    }
}

/// Counters plus their estimator: what a service or a destination carries.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) counters: StatCounters,
    estimator: Mutex<Estimator>,
}

impl Stats {
    /// Takes one estimator sample; called every [`ESTIMATOR_PERIOD`].
    pub(crate) fn sample(&self) {
        let totals = self.counters.snapshot();
        lock(&self.estimator).sample(totals);
    }

    pub(crate) fn rates(&self) -> Rates {
        lock(&self.estimator).rates()
    }
}

/// IPVS's rate estimator: every 2 s, the increase of each counter is scaled to a fixed-point
/// per-second rate (connections and packets by 2^10, bytes by 2^5) and folded into an
/// exponentially weighted average with weight 1/4, so that the average covers about the last
/// 8 s. Pure: the caller supplies the totals at each sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimator {
    last: Option<Counters>,
    cps: i64,
    inpps: i64,
    outpps: i64,
    inbps: i64,
    outbps: i64,
}

impl Estimator {
    /// Folds in the counters' totals, taken [`ESTIMATOR_PERIOD`] after the previous sample.
    /// The first sample only sets the base (a new estimator starts from the counters it is
    /// given, like the kernel's `ip_vs_start_estimator`).
    pub fn sample(&mut self, totals: Counters) {
        let Some(last) = self.last.replace(totals) else {
            return;
        };
        // Over 2 s: (delta / 2) << 10 == delta << 9 for cps/pps, (delta / 2) << 5 == delta << 4
        // for bps.
        fold(&mut self.cps, delta(totals.conns, last.conns) << 9);
        fold(&mut self.inpps, delta(totals.inpkts, last.inpkts) << 9);
        fold(&mut self.outpps, delta(totals.outpkts, last.outpkts) << 9);
        fold(&mut self.inbps, delta(totals.inbytes, last.inbytes) << 4);
        fold(&mut self.outbps, delta(totals.outbytes, last.outbytes) << 4);
    }

    /// The rates per second, rounded as `ip_vs_read_estimator` rounds them.
    pub fn rates(&self) -> Rates {
        let unscale =
            |avg: i64, shift: u32| ((avg.max(0) + ((1 << (shift - 1)) - 1)) >> shift) as u64;
        Rates {
            cps: unscale(self.cps, 10),
            inpps: unscale(self.inpps, 10),
            outpps: unscale(self.outpps, 10),
            inbps: unscale(self.inbps, 5),
            outbps: unscale(self.outbps, 5),
        }
    }
}

/// A counter's growth as a signed value (a counter never shrinks, but the kernel's arithmetic
/// is signed and so is this, so a reset would not wrap to a huge rate).
fn delta(now: u64, before: u64) -> i64 {
    now.wrapping_sub(before) as i64
}

/// `avg += (rate - avg) >> 2`, with the arithmetic shift of the kernel's `s64`.
fn fold(avg: &mut i64, rate: i64) {
    *avg += (rate - *avg) >> 2;
}

/// A poisoned lock only means another thread panicked while holding it; the data is
/// counters, still usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(conns: u64, bytes: u64) -> Counters {
        Counters {
            conns,
            inpkts: conns * 10,
            outpkts: conns * 20,
            inbytes: bytes,
            outbytes: bytes * 2,
        }
    }

    #[test]
    fn first_sample_sets_the_base_only() {
        let mut e = Estimator::default();
        e.sample(totals(1_000, 1_000_000));
        assert_eq!(e.rates(), Rates::default());
    }

    #[test]
    fn a_steady_rate_converges_to_itself() {
        // 100 connections and 1 MB per second, sampled every 2 s.
        let mut e = Estimator::default();
        for i in 0..60u64 {
            e.sample(totals(200 * i, 2_000_000 * i));
        }
        let r = e.rates();
        assert_eq!(r.cps, 100);
        assert_eq!(r.inpps, 1_000);
        assert_eq!(r.outpps, 2_000);
        assert_eq!(r.inbps, 1_000_000);
        assert_eq!(r.outbps, 2_000_000);
    }

    #[test]
    fn one_sample_moves_a_quarter_of_the_way() {
        let mut e = Estimator::default();
        e.sample(totals(0, 0));
        // 400 connections in 2 s: 200/s, of which the average takes a quarter.
        e.sample(totals(400, 0));
        assert_eq!(e.rates().cps, 50);
        // Traffic stops: the average decays by a quarter per sample.
        e.sample(totals(400, 0));
        let scaled = (200i64 << 10) / 4;
        let decayed = scaled - (scaled >> 2);
        assert_eq!(e.rates().cps, ((decayed + 511) >> 10) as u64);
    }

    #[test]
    fn an_idle_estimate_decays_to_zero() {
        let mut e = Estimator::default();
        e.sample(totals(0, 0));
        e.sample(totals(1_000, 10_000_000));
        for _ in 0..100 {
            e.sample(totals(1_000, 10_000_000));
        }
        assert_eq!(e.rates(), Rates::default());
    }
}
