//! Weighted least connection (`ip_vs_wlc.c`): the least `(active * 256 + inactive) / weight`.

use std::time::Instant;

use super::{weighted_least, DestLoad, Flow, Schedule};

/// IPVS's `wlc` (keepalived's default scheduler).
#[derive(Debug, Clone, Copy, Default)]
pub struct WeightedLeastConnection;

impl Schedule for WeightedLeastConnection {
    fn update(&mut self, _dests: &[DestLoad]) {}

    fn pick(
        &mut self,
        _now: Instant,
        _flow: &Flow,
        dests: &[DestLoad],
        _random: &mut dyn FnMut() -> u32,
    ) -> Option<usize> {
        weighted_least(dests, DestLoad::overhead)
    }
}
