//! One destination as the forwarding path sees it: its settings, its connection counts
//! (IPVS's ActiveConn / InActConn), its overload flag, its passive-failure hold and its
//! counters. Everything here is atomic, so connections update it without a lock.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

use halb_lb::sched::{DestLoad, Overload};
use halb_lb::table::Destination;

use super::log_limit::LogLimit;
use super::stats::Stats;

#[derive(Debug)]
pub(crate) struct DestState {
    pub(crate) addr: SocketAddr,
    weight: AtomicU32,
    uthreshold: AtomicU32,
    lthreshold: AtomicU32,
    /// IP_VS_DEST_F_OVERLOAD.
    overloaded: AtomicBool,
    active: AtomicU32,
    inactive: AtomicU32,
    /// Until when (the proxy's milliseconds) new connections avoid this destination after a
    /// failed connect; 0: not held.
    failed_until_ms: AtomicU64,
    pub(crate) stats: Stats,
    /// Failed connects to this destination, one log line per client otherwise.
    pub(crate) connect_failed: LogLimit,
}

impl DestState {
    pub(crate) fn new(dest: &Destination) -> DestState {
        let state = DestState {
            addr: dest.addr,
            weight: AtomicU32::new(0),
            uthreshold: AtomicU32::new(0),
            lthreshold: AtomicU32::new(0),
            overloaded: AtomicBool::new(false),
            active: AtomicU32::new(0),
            inactive: AtomicU32::new(0),
            failed_until_ms: AtomicU64::new(0),
            stats: Stats::default(),
            connect_failed: LogLimit::default(),
        };
        state.configure(dest);
        state
    }

    /// Takes a destination's new settings (`__ip_vs_update_dest`): raising the upper threshold
    /// or removing it lifts the overload flag at once.
    pub(crate) fn configure(&self, dest: &Destination) {
        let lifted = self
            .overload()
            .after_edit(&Overload::of(dest), self.overloaded.load(Relaxed));
        self.overloaded.store(lifted, Relaxed);
        self.weight.store(dest.weight, Relaxed);
        self.uthreshold.store(dest.uthreshold, Relaxed);
        self.lthreshold.store(dest.lthreshold, Relaxed);
    }

    fn overload(&self) -> Overload {
        Overload {
            uthreshold: self.uthreshold.load(Relaxed),
            lthreshold: self.lthreshold.load(Relaxed),
        }
    }

    pub(crate) fn weight(&self) -> u32 {
        self.weight.load(Relaxed)
    }

    pub(crate) fn active(&self) -> u32 {
        self.active.load(Relaxed)
    }

    pub(crate) fn inactive(&self) -> u32 {
        self.inactive.load(Relaxed)
    }

    pub(crate) fn has_connections(&self) -> bool {
        self.total() > 0
    }

    /// What the scheduler sees; `masked` destinations are shown as overloaded, which every
    /// IPVS scheduler skips, so the proxy can exclude a destination for one pick without
    /// telling the scheduler its list changed.
    pub(crate) fn load(&self, masked: bool) -> DestLoad {
        DestLoad {
            addr: self.addr,
            weight: self.weight(),
            active: self.active(),
            inactive: self.inactive(),
            overloaded: masked || self.overloaded.load(Relaxed),
        }
    }

    /// A connection now counts against this destination (`ip_vs_bind_dest`), which may make
    /// it overloaded.
    pub(crate) fn bind(&self, active: bool) {
        self.counter(active).fetch_add(1, Relaxed);
        let overloaded = self
            .overload()
            .after_connect(self.overloaded.load(Relaxed), self.total());
        self.overloaded.store(overloaded, Relaxed);
    }

    /// A connection no longer counts (`ip_vs_unbind_dest`), which may end an overload.
    pub(crate) fn unbind(&self, active: bool) {
        // Saturating: a count never goes below zero even if a caller got the class wrong.
        let _ = self
            .counter(active)
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
        let overloaded = self
            .overload()
            .after_disconnect(self.overloaded.load(Relaxed), self.total());
        self.overloaded.store(overloaded, Relaxed);
    }

    /// A connection moved between ActiveConn and InActConn.
    pub(crate) fn reclass(&self, was_active: bool) {
        let _ = self
            .counter(was_active)
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
        self.counter(!was_active).fetch_add(1, Relaxed);
    }

    fn total(&self) -> u64 {
        u64::from(self.active()) + u64::from(self.inactive())
    }

    fn counter(&self, active: bool) -> &AtomicU32 {
        if active {
            &self.active
        } else {
            &self.inactive
        }
    }

    pub(crate) fn hold_failed(&self, until_ms: u64) {
        self.failed_until_ms.store(until_ms.max(1), Relaxed);
    }

    pub(crate) fn clear_failed(&self) {
        // Cheap on the common path: only write when there is something to clear.
        if self.failed_until_ms.load(Relaxed) != 0 {
            self.failed_until_ms.store(0, Relaxed);
        }
    }

    pub(crate) fn is_held(&self, now_ms: u64) -> bool {
        now_ms < self.failed_until_ms.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use halb_lb::table::Forwarding;

    fn dest(u: u32, l: u32) -> DestState {
        DestState::new(&Destination {
            addr: "127.0.0.1:1".parse().unwrap(),
            weight: 1,
            forwarding: Forwarding::Nat,
            uthreshold: u,
            lthreshold: l,
        })
    }

    #[test]
    fn overload_sets_at_the_upper_threshold_and_clears_below_the_lower() {
        let d = dest(3, 2);
        d.bind(true);
        d.bind(false);
        assert!(!d.load(false).overloaded);
        d.bind(true);
        assert!(d.load(false).overloaded);
        d.unbind(true);
        // 2 left: not below the lower threshold yet.
        assert!(d.load(false).overloaded);
        d.unbind(false);
        assert!(!d.load(false).overloaded);
    }

    #[test]
    fn without_a_lower_threshold_overload_clears_below_three_quarters() {
        let d = dest(4, 0);
        for _ in 0..4 {
            d.bind(true);
        }
        assert!(d.load(false).overloaded);
        d.unbind(true);
        assert!(d.load(false).overloaded, "3 * 4 is not below 4 * 3");
        d.unbind(true);
        assert!(!d.load(false).overloaded);
    }

    #[test]
    fn raising_the_upper_threshold_lifts_overload() {
        let d = dest(1, 0);
        d.bind(true);
        assert!(d.load(false).overloaded);
        d.configure(&Destination {
            addr: d.addr,
            weight: 1,
            forwarding: Forwarding::Nat,
            uthreshold: 10,
            lthreshold: 0,
        });
        assert!(!d.load(false).overloaded);
    }

    #[test]
    fn reclass_moves_between_active_and_inactive() {
        let d = dest(0, 0);
        d.bind(false);
        d.reclass(false);
        assert_eq!((d.active(), d.inactive()), (1, 0));
        d.reclass(true);
        assert_eq!((d.active(), d.inactive()), (0, 1));
        d.unbind(false);
        assert!(!d.has_connections());
    }
}
