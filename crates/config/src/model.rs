//! The typed, validated configuration: what halb runs.
//!
//! Defaults are keepalived's. Spans are not part of the model (two reads of the same meaning
//! compare equal wherever the text was); diagnostics are produced while reading.

use crate::setting::Setting;
use serde::{Deserialize, Serialize};

pub use crate::sections::global_defs::GlobalDefs;
pub use crate::sections::lvs_model::*;
pub use crate::sections::vrrp_model::*;

/// A whole keepalived.conf.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Config {
    pub global: GlobalDefs,
    pub vrrp: VrrpConfig,
    pub lvs: LvsConfig,
    /// Top-level keywords known but not modelled (for example `bfd_instance`,
    /// `linkbeat_use_polling`), kept for the round trip.
    pub other: Vec<Setting>,
}
