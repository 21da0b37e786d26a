//! Weighted overflow (`ip_vs_ovf.c`): the destination with the highest weight until its
//! active connections exceed its weight, then the next highest.

use std::time::Instant;

use super::{DestLoad, Flow, Schedule};

/// IPVS's `ovf`. A destination takes connections while `active <= weight` (the kernel skips
/// it once `active > weight`); among equal weights, the first in order.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overflow;

impl Schedule for Overflow {
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
            if d.overloaded || d.active > d.weight || d.weight == 0 {
                continue;
            }
            if best.is_none() || d.weight > highest {
                best = Some(i);
                highest = d.weight;
            }
        }
        best
    }
}
