//! Maglev hashing (`ip_vs_mh.c`, after Eisenbud et al., NSDI 2016, §3.4): each destination
//! walks its own permutation of a prime-sized lookup table and claims free entries in turn,
//! as many per round as its weight share; clients are looked up by a hash of their address
//! (and port with `mh-port`). When the destination set changes, most entries keep their
//! destination, so most clients keep theirs.

use std::collections::HashMap;
use std::hash::Hasher;
use std::net::SocketAddr;
use std::time::Instant;

use siphasher::sip::SipHasher13;

use super::hash::{fold, Slot};
use super::{DestLoad, Flow, Schedule};
use crate::table::SchedFlags;

/// The table sizes IPVS can be built with (`CONFIG_IP_VS_MH_TAB_INDEX` 8 to 17 picks one).
pub const MH_PRIMES: [usize; 10] = [
    251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071,
];

/// The kernel's default `CONFIG_IP_VS_MH_TAB_INDEX`: a table of 4093 entries.
pub const MH_DEFAULT_TABLE_INDEX: u8 = 12;

/// The two hash keys `generate_hash_secret` uses: fixed, so that every director computes
/// the same table.
const KEY1: (u64, u64) = (2_654_435_761, 2_654_435_761);
const KEY2: (u64, u64) = (2_654_446_892, 2_654_446_892);

/// IPVS's `mh`.
///
/// With `mh-fallback` (flag-1), a client whose entry's destination is unavailable (weight 0
/// or overloaded) is rehashed with growing offsets until an available destination is found.
/// A destination set to weight 0 keeps its entries (the table is built from its last
/// non-zero weight, as the kernel's `last_weight`), so only its own clients move.
#[derive(Debug, Clone)]
pub struct Maglev {
    size: usize,
    /// `IP_VS_MH_TAB_BITS`: how many bits of `weight / gcd` the table honours before
    /// weights are shifted down.
    bits: u32,
    table: Vec<Option<Slot>>,
    /// Each destination's last non-zero weight (0 for one added with weight 0).
    last_weight: HashMap<SocketAddr, u32>,
    fallback: bool,
    port: bool,
}

/// `ip_vs_mh_hashkey`: hsiphash (SipHash-1-3) of `offset + port + address`.
fn hashkey(addr: u32, port: u16, key: (u64, u64), offset: u32) -> u32 {
    let v = offset.wrapping_add(u32::from(port)).wrapping_add(addr);
    let mut h = SipHasher13::new_with_keys(key.0, key.1);
    h.write(&v.to_le_bytes());
    h.finish() as u32
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `fls`: the position of the highest set bit, 1-based; 0 for 0.
fn fls(x: u32) -> u32 {
    32 - x.leading_zeros()
}

impl Maglev {
    /// With the kernel's default table (4093 entries).
    pub fn new(flags: SchedFlags) -> Maglev {
        Maglev::with_table_index(flags, MH_DEFAULT_TABLE_INDEX)
            .expect("the default table index is in range")
    }

    /// With the table `CONFIG_IP_VS_MH_TAB_INDEX = index` gives (8: 251 entries, … 17:
    /// 131071); `None` outside 8..=17.
    pub fn with_table_index(flags: SchedFlags, index: u8) -> Option<Maglev> {
        let size = *MH_PRIMES.get(usize::from(index.checked_sub(8)?))?;
        Some(Maglev {
            size,
            bits: u32::from(index / 2),
            table: vec![None; size],
            last_weight: HashMap::new(),
            fallback: flags.flag_1,
            port: flags.flag_2,
        })
    }

    /// The lookup table's size (a prime).
    pub fn table_size(&self) -> usize {
        self.size
    }

    /// How many table entries each destination holds, by address (for tests and status).
    pub fn shares(&self) -> HashMap<SocketAddr, usize> {
        let mut shares = HashMap::new();
        for slot in self.table.iter().flatten() {
            *shares.entry(slot.addr).or_insert(0) += 1;
        }
        shares
    }

    /// `ip_vs_mh_permutate` + `ip_vs_mh_populate`.
    fn populate(&mut self, dests: &[DestLoad], weights: &[u32]) {
        let divisor = weights.iter().copied().filter(|&w| w > 0).fold(0, gcd);
        if divisor == 0 {
            self.table.iter_mut().for_each(|e| *e = None);
            return;
        }
        let highest = weights.iter().copied().max().unwrap_or(0) / divisor;
        let shift = fls(highest).saturating_sub(self.bits);
        let size = self.size as u32;
        struct Walk {
            perm: u32,
            skip: u32,
            turns: u32,
        }
        let mut walks: Vec<Walk> = dests
            .iter()
            .zip(weights)
            .map(|(d, &w)| {
                let addr = fold(d.addr.ip());
                let port = d.addr.port();
                let offset = hashkey(addr, port, KEY1, 0) % size;
                let skip = hashkey(addr, port, KEY2, 0) % (size - 1) + 1;
                let turns = match (w / divisor) >> shift {
                    0 => u32::from(w != 0),
                    t => t,
                };
                Walk {
                    perm: offset,
                    skip,
                    turns,
                }
            })
            .collect();
        let mut taken = vec![false; self.size];
        let mut filled = 0;
        let mut count = 0;
        'rounds: loop {
            let mut at = 0;
            while at < walks.len() {
                let walk = &mut walks[at];
                if walk.turns < 1 {
                    at += 1;
                    continue;
                }
                while taken[walk.perm as usize] {
                    walk.perm += walk.skip;
                    if walk.perm >= size {
                        walk.perm -= size;
                    }
                }
                let c = walk.perm as usize;
                taken[c] = true;
                self.table[c] = Some(Slot::of(dests, at));
                filled += 1;
                if filled == self.size {
                    break 'rounds;
                }
                count += 1;
                if count >= walk.turns {
                    count = 0;
                    at += 1;
                }
            }
        }
    }

    fn lookup(&self, addr: u32, port: u16, offset: u32) -> Option<Slot> {
        let entry = hashkey(addr, port, KEY1, offset) as usize % self.size;
        self.table[entry]
    }
}

impl Schedule for Maglev {
    fn update(&mut self, dests: &[DestLoad]) {
        if dests.len() > self.size {
            // IPVS refuses the change (EINVAL) and keeps its table.
            return;
        }
        let mut last_weight = HashMap::with_capacity(dests.len());
        let weights: Vec<u32> = dests
            .iter()
            .map(|d| {
                let w = match self.last_weight.get(&d.addr) {
                    Some(&last) if d.weight == 0 => last,
                    _ => d.weight,
                };
                last_weight.insert(d.addr, w);
                w
            })
            .collect();
        self.last_weight = last_weight;
        self.populate(dests, &weights);
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
        let home = self.lookup(addr, port, 0)?;
        if let Some(i) = home.available(dests) {
            return Some(i);
        }
        if !self.fallback {
            return None;
        }
        // `ip_vs_mh_get_fallback`: rehash with offsets from the client's own entry on.
        let start = hashkey(addr, port, KEY1, 0) % self.size as u32;
        for offset in 0..self.size as u32 {
            let roffset = (offset + start) % self.size as u32;
            let slot = self.lookup(addr, port, roffset)?;
            if let Some(i) = slot.available(dests) {
                return Some(i);
            }
        }
        None
    }
}
