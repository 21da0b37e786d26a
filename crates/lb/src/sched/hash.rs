//! What the hashing schedulers (dh, sh, mh) share: the kernel's folding of an address into
//! 32 bits, its multiplicative hash, and table slots that remember their destination.

use std::net::{IpAddr, SocketAddr};

use super::{index_of, DestLoad};

/// Knuth's multiplicative constant (2^32 / golden ratio), as `ip_vs_*_hashkey` use it.
pub(crate) const GOLDEN: u32 = 2_654_435_761;

/// The address as a host-order u32; an IPv6 address is its four words XORed together.
pub(crate) fn fold(ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => a
            .octets()
            .chunks_exact(4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
            .fold(0, |acc, w| acc ^ w),
    }
}

/// One bucket of a lookup table: the destination's index in the list the table was built
/// from, and its address in case the list given to `pick` is not that one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) index: usize,
    pub(crate) addr: SocketAddr,
}

impl Slot {
    pub(crate) fn of(dests: &[DestLoad], index: usize) -> Slot {
        Slot {
            index,
            addr: dests[index].addr,
        }
    }

    /// Where this slot's destination is in `dests`; `None` if it is no longer there (IPVS:
    /// not `IP_VS_DEST_F_AVAILABLE`).
    pub(crate) fn resolve(&self, dests: &[DestLoad]) -> Option<usize> {
        match dests.get(self.index) {
            Some(d) if d.addr == self.addr => Some(self.index),
            _ => index_of(dests, self.addr),
        }
    }

    /// The slot's destination if it may take the connection.
    pub(crate) fn available(&self, dests: &[DestLoad]) -> Option<usize> {
        self.resolve(dests).filter(|&i| dests[i].available())
    }
}
