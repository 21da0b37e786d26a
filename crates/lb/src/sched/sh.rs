//! Source hashing (`ip_vs_sh.c`): a static 256-bucket table, each destination given as many
//! consecutive buckets as its weight, looked up by the client's address (and port with
//! `sh-port`).

use std::time::Instant;

use super::hash::{fold, Slot, GOLDEN};
use super::{DestLoad, Flow, Schedule};
use crate::table::SchedFlags;

/// `IP_VS_SH_TAB_BITS`.
const TAB_BITS: u32 = 8;
const TAB_SIZE: usize = 1 << TAB_BITS;
const TAB_MASK: u64 = (1 << TAB_BITS) - 1;

/// IPVS's `sh`.
///
/// With `sh-fallback` (flag-1), a client whose bucket's destination is unavailable (weight 0
/// or overloaded) is rehashed around the table until an available one is found; the other
/// clients keep theirs, since the table itself does not change. Without it, such a client
/// gets no destination.
#[derive(Debug, Clone)]
pub struct SourceHashing {
    table: Vec<Option<Slot>>,
    fallback: bool,
    port: bool,
}

impl SourceHashing {
    pub fn new(flags: SchedFlags) -> SourceHashing {
        SourceHashing {
            table: vec![None; TAB_SIZE],
            fallback: flags.flag_1,
            port: flags.flag_2,
        }
    }
}

/// `ip_vs_sh_hashkey`.
fn bucket(addr: u32, port: u16, offset: u32) -> usize {
    let key = u64::from(u32::from(port).wrapping_add(addr)) * u64::from(GOLDEN);
    (key.wrapping_add(u64::from(offset)) & TAB_MASK) as usize
}

impl Schedule for SourceHashing {
    /// `ip_vs_sh_reassign`: the destinations in turn, each for `weight` buckets (at least
    /// one, so a quiescent destination still holds one bucket), round again until the 256
    /// buckets are filled. Weights summing to more than 256 leave the last destinations out.
    fn update(&mut self, dests: &[DestLoad]) {
        let mut at = 0;
        let mut count: u64 = 0;
        for bucket in self.table.iter_mut() {
            if dests.is_empty() {
                *bucket = None;
                continue;
            }
            *bucket = Some(Slot::of(dests, at));
            count += 1;
            if count >= u64::from(dests[at].weight) {
                at = (at + 1) % dests.len();
                count = 0;
            }
        }
    }

    fn pick(
        &mut self,
        _now: Instant,
        flow: &Flow,
        dests: &[DestLoad],
        _random: &mut dyn FnMut() -> u32,
    ) -> Option<usize> {
        let addr = fold(flow.client.ip());
        let port = if self.port { flow.client.port() } else { 0 };
        let home = bucket(addr, port, 0);
        let slot = self.table[home]?;
        if let Some(i) = slot.available(dests) {
            return Some(i);
        }
        if !self.fallback {
            return None;
        }
        // `ip_vs_sh_get_fallback`: deterministic, from the client's own bucket.
        for offset in 0..TAB_SIZE as u32 {
            let roffset = (offset + home as u32) % TAB_SIZE as u32;
            let slot = self.table[bucket(addr, port, roffset)]?;
            if let Some(i) = slot.available(dests) {
                return Some(i);
            }
        }
        None
    }
}
