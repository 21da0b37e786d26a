//! What lblc and lblcr share: the test for a cached destination that should give way, and
//! the expiry of their tables (`ip_vs_lblc_check_expire` / `ip_vs_lblcr_check_expire`),
//! which the kernel runs from a timer every minute and which runs here, for the minutes
//! that have passed, before each pick.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::DestLoad;

/// `lblc_expiration` / `lblcr_expiration` default: an entry unused for a day is dropped.
pub const DEFAULT_EXPIRATION: Duration = Duration::from_secs(24 * 60 * 60);

/// `CHECK_EXPIRE_INTERVAL`.
const CHECK_INTERVAL: Duration = Duration::from_secs(60);
/// `ENTRY_TIMEOUT`: when the table is over its size, entries idle this long go first.
const ENTRY_TIMEOUT: Duration = Duration::from_secs(6 * 60);
/// `COUNT_FOR_FULL_EXPIRATION`: a full expiry pass every 30 checks.
const COUNT_FOR_FULL_EXPIRATION: u32 = 30;
/// `IP_VS_LBLC_TAB_SIZE * 16`: the size over which idle entries are collected early.
const MAX_ENTRIES: usize = 1024 * 16;
/// Past this many missed checks (a long time without picks), one full pass stands for
/// them all.
const MAX_CATCH_UP: u32 = 2 * COUNT_FOR_FULL_EXPIRATION;

/// `is_overloaded` of lblc/lblcr (not the threshold flag): the cached destination has more
/// active connections than its weight while some destination is under half its weight.
pub(crate) fn gives_way(dest: &DestLoad, dests: &[DestLoad]) -> bool {
    dest.active > dest.weight
        && dests
            .iter()
            .any(|d| u64::from(d.active) * 2 < u64::from(d.weight))
}

pub(crate) trait LastUse {
    fn last_use(&self) -> Instant;
}

/// The periodic collection of a locality table.
#[derive(Debug, Clone)]
pub(crate) struct Collector {
    /// The next timer run; `None` until the first pick starts the clock.
    next_check: Option<Instant>,
    counter: u32,
    pub(crate) expiration: Duration,
}

impl Collector {
    pub(crate) fn new(expiration: Duration) -> Collector {
        Collector {
            next_check: None,
            counter: 1,
            expiration,
        }
    }

    /// Runs the checks due by `now`, each as of its own time.
    pub(crate) fn run<E: LastUse>(&mut self, now: Instant, entries: &mut HashMap<IpAddr, E>) {
        let Some(mut at) = self.next_check else {
            self.next_check = Some(now + CHECK_INTERVAL);
            return;
        };
        let mut runs = 0;
        while at <= now {
            if runs == MAX_CATCH_UP {
                self.full_check(now, entries);
                self.counter = 1;
                at = now + CHECK_INTERVAL;
                break;
            }
            self.check(at, entries);
            at += CHECK_INTERVAL;
            runs += 1;
        }
        self.next_check = Some(at);
    }

    fn check<E: LastUse>(&mut self, at: Instant, entries: &mut HashMap<IpAddr, E>) {
        if self.counter % COUNT_FOR_FULL_EXPIRATION == 0 {
            self.full_check(at, entries);
            self.counter = 1;
            return;
        }
        if entries.len() <= MAX_ENTRIES {
            self.counter += 1;
            return;
        }
        let goal = ((entries.len() - MAX_ENTRIES) * 4 / 3).min(MAX_ENTRIES / 2);
        let mut dropped = 0;
        entries.retain(|_, e| {
            if dropped >= goal || at.saturating_duration_since(e.last_use()) < ENTRY_TIMEOUT {
                return true;
            }
            dropped += 1;
            false
        });
    }

    fn full_check<E: LastUse>(&self, at: Instant, entries: &mut HashMap<IpAddr, E>) {
        entries.retain(|_, e| at.saturating_duration_since(e.last_use()) < self.expiration);
    }
}
