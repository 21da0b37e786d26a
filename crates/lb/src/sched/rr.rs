//! Round robin (`ip_vs_rr.c`): the next available destination after the last one picked.

use std::net::SocketAddr;
use std::time::Instant;

use super::{index_of, DestLoad, Flow, Schedule};

/// IPVS's `rr`. The cursor is the last destination picked, kept by address so that adding
/// destinations does not move it; when that destination is removed, the cursor steps back to
/// the one before it (as `ip_vs_rr_del_dest` does), so the rotation goes on where it was.
#[derive(Debug, Clone, Default)]
pub struct RoundRobin {
    /// `None`: the list head, before the first destination.
    cursor: Option<SocketAddr>,
    /// The order of the last `update`, to find the destination before a removed cursor.
    order: Vec<SocketAddr>,
}

impl RoundRobin {
    pub fn new() -> RoundRobin {
        RoundRobin::default()
    }
}

impl Schedule for RoundRobin {
    fn update(&mut self, dests: &[DestLoad]) {
        if let Some(cursor) = self.cursor {
            if index_of(dests, cursor).is_none() {
                let was = self.order.iter().position(|a| *a == cursor);
                self.cursor = was.and_then(|at| {
                    self.order[..at]
                        .iter()
                        .rev()
                        .find(|a| index_of(dests, **a).is_some())
                        .copied()
                });
            }
        }
        self.order = dests.iter().map(|d| d.addr).collect();
    }

    fn pick(
        &mut self,
        _now: Instant,
        _flow: &Flow,
        dests: &[DestLoad],
        _random: &mut dyn FnMut() -> u32,
    ) -> Option<usize> {
        let n = dests.len();
        // After the cursor, round to the cursor itself, which is checked last.
        let first = match self.cursor.and_then(|c| index_of(dests, c)) {
            Some(at) => at + 1,
            None => 0,
        };
        let found = (0..n)
            .map(|k| (first + k) % n)
            .find(|&i| dests[i].available())?;
        self.cursor = Some(dests[found].addr);
        Some(found)
    }
}
