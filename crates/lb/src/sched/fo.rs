//! Weighted failover (`ip_vs_fo.c`): everything to the available destination with the
//! highest weight.

use std::time::Instant;

use super::{DestLoad, Flow, Schedule};

/// IPVS's `fo`. Among equal weights, the first in order.
#[derive(Debug, Clone, Copy, Default)]
pub struct WeightedFailover;

impl Schedule for WeightedFailover {
    fn update(&mut self, _dests: &[DestLoad]) {}

    fn pick(
        &mut self,
        _now: Instant,
        _flow: &Flow,
        dests: &[DestLoad],
        _random: &mut dyn FnMut() -> u32,
    ) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut highest = 0;
        for (i, d) in dests.iter().enumerate() {
            if !d.overloaded && d.weight > highest {
                best = Some(i);
                highest = d.weight;
            }
        }
        best
    }
}
