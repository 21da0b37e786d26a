//! Destination hashing (`ip_vs_dh.c`): a static 256-bucket table, filled with the
//! destinations in turn, looked up by the address the client reached.

use std::time::Instant;

use super::hash::{fold, Slot, GOLDEN};
use super::{DestLoad, Flow, Schedule};

/// `IP_VS_DH_TAB_BITS`.
const TAB_BITS: u32 = 8;
const TAB_SIZE: usize = 1 << TAB_BITS;
const TAB_MASK: u32 = (1 << TAB_BITS) - 1;

/// IPVS's `dh`. Weights only tell available (above 0) from quiescent; an unavailable
/// bucket's destination gives no destination at all (dh has no fallback).
#[derive(Debug, Clone)]
pub struct DestinationHashing {
    table: Vec<Option<Slot>>,
}

impl Default for DestinationHashing {
    fn default() -> Self {
        DestinationHashing::new()
    }
}

impl DestinationHashing {
    pub fn new() -> DestinationHashing {
        DestinationHashing {
            table: vec![None; TAB_SIZE],
        }
    }
}

impl Schedule for DestinationHashing {
    /// `ip_vs_dh_reassign`: bucket `i` holds destination `i mod n`.
    fn update(&mut self, dests: &[DestLoad]) {
        for (i, bucket) in self.table.iter_mut().enumerate() {
            *bucket = (!dests.is_empty()).then(|| Slot::of(dests, i % dests.len()));
        }
    }

    fn pick(
        &mut self,
        _now: Instant,
        flow: &Flow,
        dests: &[DestLoad],
        _random: &mut dyn FnMut() -> u32,
    ) -> Option<usize> {
        let bucket = (fold(flow.local.ip()).wrapping_mul(GOLDEN) & TAB_MASK) as usize;
        self.table[bucket]?.available(dests)
    }
}
