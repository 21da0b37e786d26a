//! Least connection (`ip_vs_lc.c`): the fewest `active * 256 + inactive`, weights ignored
//! except that 0 means quiescent.

use std::time::Instant;

use super::{DestLoad, Flow, Schedule};

/// IPVS's `lc`. Ties go to the first in order.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeastConnection;

impl Schedule for LeastConnection {
    fn update(&mut self, _dests: &[DestLoad]) {}

    fn pick(
        &mut self,
        _now: Instant,
        _flow: &Flow,
        dests: &[DestLoad],
        _random: &mut dyn FnMut() -> u32,
    ) -> Option<usize> {
        let mut least: Option<(usize, u64)> = None;
        for (i, d) in dests.iter().enumerate() {
            if !d.available() {
                continue;
            }
            let doh = d.overhead();
            if least.is_none_or(|(_, loh)| doh < loh) {
                least = Some((i, doh));
            }
        }
        least.map(|(i, _)| i)
    }
}
