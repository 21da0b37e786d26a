//! The counters and rate estimates nested in services and destinations
//! (`IPVS_SVC_ATTR_STATS64`, `IPVS_DEST_ATTR_STATS64`, or the older 32-bit `*_STATS`).

use super::attrs::*;
use super::genl::{Attr, AttrMap, CodecError};
use crate::{Counters, Rates};

/// What the kernel counts for a service or a destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelStats {
    pub counters: Counters,
    pub rates: Rates,
}

/// A counter of either width: the 64-bit nest has u64 everywhere, the 32-bit one u32 except
/// for the byte counters.
fn counter(attr: Option<Attr<'_>>) -> Result<u64, CodecError> {
    match attr {
        None => Ok(0),
        Some(a) if a.payload.len() == 4 => a.u32().map(u64::from),
        Some(a) => a.u64(),
    }
}

/// Reads the statistics of a service's or destination's attributes: the 64-bit nest when the
/// kernel sends it (4.1 and later), else the 32-bit one, else zeros.
pub fn decode(parent: &AttrMap<'_>, wide: u16, narrow: u16) -> Result<KernelStats, CodecError> {
    let nest = match parent.nested(wide)? {
        Some(n) => n,
        None => match parent.nested(narrow)? {
            Some(n) => n,
            None => return Ok(KernelStats::default()),
        },
    };
    Ok(KernelStats {
        counters: Counters {
            conns: counter(nest.get(STATS_ATTR_CONNS))?,
            inpkts: counter(nest.get(STATS_ATTR_INPKTS))?,
            outpkts: counter(nest.get(STATS_ATTR_OUTPKTS))?,
            inbytes: counter(nest.get(STATS_ATTR_INBYTES))?,
            outbytes: counter(nest.get(STATS_ATTR_OUTBYTES))?,
        },
        rates: Rates {
            cps: counter(nest.get(STATS_ATTR_CPS))?,
            inpps: counter(nest.get(STATS_ATTR_INPPS))?,
            outpps: counter(nest.get(STATS_ATTR_OUTPPS))?,
            inbps: counter(nest.get(STATS_ATTR_INBPS))?,
            outbps: counter(nest.get(STATS_ATTR_OUTBPS))?,
        },
    })
}
