//! Never queue (`ip_vs_nq.c`): the first idle destination (no active connection) if there
//! is one, else shortest expected delay.

use std::time::Instant;

use super::sed::expected_delay;
use super::{DestLoad, Flow, Schedule};

/// IPVS's `nq`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NeverQueue;

impl Schedule for NeverQueue {
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
            if d.active == 0 {
                return Some(i);
            }
            let doh = expected_delay(d);
            let better = match least {
                None => true,
                Some((l, loh)) => {
                    u128::from(loh) * u128::from(d.weight)
                        > u128::from(doh) * u128::from(dests[l].weight)
                }
            };
            if better {
                least = Some((i, doh));
            }
        }
        least.map(|(i, _)| i)
    }
}
