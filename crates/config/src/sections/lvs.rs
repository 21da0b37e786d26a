//! Readers and writers of the LVS sections.

use super::lvs_model::LvsConfig;
use crate::read::Ctx;
use crate::tree::Node;
use crate::write::ConfWriter;

/// Top-level keywords this module reads.
pub const TOP_LEVEL: &[&str] = &["virtual_server_group", "virtual_server"];

pub fn read_top(node: &Node, ctx: &mut Ctx, _lvs: &mut LvsConfig) {
    ctx.unknown(node);
}

pub fn write(_lvs: &LvsConfig, _w: &mut ConfWriter) {}

pub fn summarize(_lvs: &LvsConfig) -> Vec<crate::summary::VirtualServerSummary> {
    Vec::new()
}
