//! Shortest expected delay (`ip_vs_sed.c`): the least `(active + 1) / weight`, the delay the
//! new connection itself would see. Inactive connections are not counted.

use std::time::Instant;

use super::{weighted_least, DestLoad, Flow, Schedule};

/// IPVS's `sed`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShortestExpectedDelay;

/// `ip_vs_sed_dest_overhead`.
pub(crate) fn expected_delay(d: &DestLoad) -> u64 {
    u64::from(d.active) + 1
}

impl Schedule for ShortestExpectedDelay {
    fn update(&mut self, _dests: &[DestLoad]) {}

    fn pick(
        &mut self,
        _now: Instant,
        _flow: &Flow,
        dests: &[DestLoad],
        _random: &mut dyn FnMut() -> u32,
    ) -> Option<usize> {
        weighted_least(dests, expected_delay)
    }
}
