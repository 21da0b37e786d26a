//! Weighted random twos choice (`ip_vs_twos.c`): two destinations drawn at random in
//! proportion to their weights; the one with the lower `(active * 256 + inactive) / weight`.

use std::time::Instant;

use super::{DestLoad, Flow, Schedule};

/// IPVS's `twos`. The randomness is the caller's (`pick`'s `random`), so that a seeded
/// source gives reproducible choices.
#[derive(Debug, Clone, Copy, Default)]
pub struct TwosChoice;

impl Schedule for TwosChoice {
    fn update(&mut self, _dests: &[DestLoad]) {}

    fn pick(
        &mut self,
        _now: Instant,
        _flow: &Flow,
        dests: &[DestLoad],
        random: &mut dyn FnMut() -> u32,
    ) -> Option<usize> {
        let total: u64 = dests
            .iter()
            .filter(|d| d.available())
            .map(|d| u64::from(d.weight))
            .sum();
        if total == 0 {
            return None;
        }
        // As the kernel: draws in [0, total], so that the first destination is reached by
        // both 0 and its weight (a slight bias the kernel has too).
        let span = total + 1;
        let mut left1 = (u64::from(random()) % span) as i64;
        let mut left2 = (u64::from(random()) % span) as i64;
        let mut choice1: Option<usize> = None;
        let mut choice2: Option<usize> = None;
        for (i, d) in dests.iter().enumerate() {
            if !d.available() {
                continue;
            }
            left1 -= i64::from(d.weight);
            left2 -= i64::from(d.weight);
            if left1 <= 0 && choice1.is_none() {
                choice1 = Some(i);
            }
            if left2 <= 0 && choice2.is_none() {
                choice2 = Some(i);
            }
            if choice1.is_some() && choice2.is_some() {
                break;
            }
        }
        // Both draws are at most the total weight, so both land on a destination.
        let (c1, c2) = (choice1?, choice2?);
        let (d1, d2) = (&dests[c1], &dests[c2]);
        let cost1 = u128::from(d2.weight) * u128::from(d1.overhead());
        let cost2 = u128::from(d1.weight) * u128::from(d2.overhead());
        Some(if cost1 > cost2 { c2 } else { c1 })
    }
}
