//! Weighted round robin (`ip_vs_wrr.c`): passes over the destinations with a falling
//! weight bar, from the highest weight down to 1 in steps of the weights' gcd, so that each
//! destination is picked in proportion to its weight and the picks are interleaved.

use std::net::SocketAddr;
use std::time::Instant;

use super::{index_of, DestLoad, Flow, Schedule};

/// IPVS's `wrr`.
#[derive(Debug, Clone, Default)]
pub struct WeightedRoundRobin {
    /// The last destination picked; `None`: the list head.
    cursor: Option<SocketAddr>,
    /// The current weight bar (`cw`).
    current: i64,
    /// The highest weight, less `step - 1` so that the last pass is at 1 (`mw`).
    max: i64,
    /// The gcd of the positive weights (`di`).
    step: i64,
}

impl WeightedRoundRobin {
    pub fn new() -> WeightedRoundRobin {
        WeightedRoundRobin {
            step: 1,
            ..WeightedRoundRobin::default()
        }
    }
}

fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Schedule for WeightedRoundRobin {
    /// `ip_vs_wrr_dest_changed`: a new step and maximum; the bar is kept where it was (on a
    /// multiple of the step, plus one), and the next pass starts from the first destination.
    fn update(&mut self, dests: &[DestLoad]) {
        self.cursor = None;
        let step = dests
            .iter()
            .map(|d| i64::from(d.weight))
            .filter(|&w| w > 0)
            .fold(0, gcd);
        self.step = if step > 0 { step } else { 1 };
        let highest = dests.iter().map(|d| i64::from(d.weight)).max().unwrap_or(0);
        self.max = highest - (self.step - 1);
        if self.current > self.max || self.current == 0 {
            self.current = self.max;
        } else if self.step > 1 {
            self.current = (self.current / self.step) * self.step + 1;
        }
    }

    fn pick(
        &mut self,
        _now: Instant,
        _flow: &Flow,
        dests: &[DestLoad],
        _random: &mut dyn FnMut() -> u32,
    ) -> Option<usize> {
        if self.max <= 0 {
            return None;
        }
        let last = self.cursor.and_then(|c| index_of(dests, c));
        let mut resume = last;
        // Once every destination was checked against the bar of 1, the one to stop at.
        let mut stop = None;
        let mut last_pass = false;
        let mut restarted = false;
        loop {
            let from = resume.map_or(0, |i| i + 1);
            for (i, d) in dests.iter().enumerate().skip(from) {
                if !d.overloaded && i64::from(d.weight) >= self.current {
                    self.cursor = Some(d.addr);
                    return Some(i);
                }
                if stop == Some(i) {
                    // All overloaded (or below the bar).
                    self.cursor = Some(d.addr);
                    return None;
                }
            }
            resume = None;
            self.current -= self.step;
            if self.current <= 0 {
                self.current = self.max;
                if last_pass || last.is_none() {
                    self.cursor = None;
                    return None;
                }
                restarted = true;
            }
            last_pass = self.current <= self.step;
            if last_pass && restarted && last.is_some() {
                // The first walk at the bar of 1 only covered what follows `last`: walk the
                // rest, up to `last`, at the same bar.
                stop = last;
            }
        }
    }
}
