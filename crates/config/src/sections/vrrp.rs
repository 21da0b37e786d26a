//! Readers and writers of the VRRP sections.

use super::vrrp_model::VrrpConfig;
use crate::read::Ctx;
use crate::sections::global_defs::GlobalDefs;
use crate::tree::Node;
use crate::write::ConfWriter;

/// Top-level keywords this module reads.
pub const TOP_LEVEL: &[&str] = &[
    "vrrp_sync_group",
    "vrrp_instance",
    "vrrp_script",
    "track_file",
    "vrrp_track_file",
];

pub fn read_top(node: &Node, ctx: &mut Ctx, _vrrp: &mut VrrpConfig) {
    ctx.unknown(node);
}

/// Moves settings keepalived folds into `global_defs` after reading.
pub fn fold_into_global(_vrrp: &mut VrrpConfig, _global: &mut GlobalDefs) {}

pub fn write(_vrrp: &VrrpConfig, _w: &mut ConfWriter) {}

pub fn summarize(_vrrp: &VrrpConfig) -> Vec<crate::summary::InstanceSummary> {
    Vec::new()
}
