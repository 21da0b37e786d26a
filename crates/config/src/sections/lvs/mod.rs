//! Readers and writers of the LVS sections: `virtual_server_group` and `virtual_server` with
//! their real servers, sorry server and health checkers.
//!
//! The work is split by part: `group`, `virtual_server`, `real_server`, `validate`
//! (keepalived's after-reading rules), `write`, and the checkers in
//! [`crate::sections::checker`]; the types are in [`model`].

pub mod model;

pub(crate) mod addr;
mod forwarding;
mod group;
mod real_server;
mod validate;
mod virtual_server;
mod write;

use self::addr::format_addr;
use self::model::{LvsConfig, VirtualServer, VirtualServerKey};
use self::validate::{describe, link_late};
use self::write::write_virtual_server;
use crate::read::Ctx;
use crate::source::Span;
use crate::summary::{CheckerSummary, RealServerSummary, VirtualServerSummary};
use crate::tree::Node;
use crate::write::ConfWriter;

/// Top-level keywords this module reads.
pub const TOP_LEVEL: &[&str] = &["virtual_server_group", "virtual_server"];

pub fn read_top(node: &Node, ctx: &mut Ctx, lvs: &mut LvsConfig) {
    match node.name() {
        "virtual_server_group" => {
            let Some(g) = group::read(node, ctx) else {
                return;
            };
            if lvs.group(&g.name).is_some() {
                ctx.diags.note(
                    node.span(),
                    format!(
                        "virtual_server_group '{}' is defined twice; the first one is used",
                        g.name
                    ),
                );
            } else {
                // Services above that use this group could not be linked when they were read.
                lvs.virtual_servers.retain_mut(|vs| {
                    vs.key != VirtualServerKey::Group(g.name.clone())
                        || link_late(vs, &g, node.span(), ctx)
                });
            }
            lvs.groups.push(g);
        }
        "virtual_server" => {
            if let Some(vs) = virtual_server::read(node, ctx, &lvs.groups) {
                lvs.virtual_servers.push(vs);
            }
        }
        _ => ctx.unknown(node),
    }
}

/// Writes the groups, then the virtual servers (so that every group is defined before use).
pub fn write(lvs: &LvsConfig, w: &mut ConfWriter) {
    for g in &lvs.groups {
        group::write(g, w);
    }
    for vs in &lvs.virtual_servers {
        write_virtual_server(vs, w);
    }
}

/// Where keepalived reports what it finds at the end of a block: the closing brace (the keyword
/// when the file ended first).
pub fn block_end(node: &Node) -> Span {
    node.block
        .as_ref()
        .and_then(|b| b.close)
        .unwrap_or(node.span())
}

pub fn summarize(lvs: &LvsConfig) -> Vec<VirtualServerSummary> {
    lvs.virtual_servers.iter().map(summarize_one).collect()
}

fn summarize_one(vs: &VirtualServer) -> VirtualServerSummary {
    VirtualServerSummary {
        key: describe(&vs.key),
        protocol: vs.protocol.map_or("none", |p| p.as_str()).to_string(),
        sched: vs.sched.as_str().to_string(),
        persistence_timeout: vs.persistence_timeout,
        delay_loop_us: vs.delay_loop_us,
        quorum: vs.quorum,
        sorry_server: vs.sorry_server.as_ref().map(|s| format_addr(&s.ip, s.port)),
        real_servers: vs
            .real_servers
            .iter()
            .map(|rs| RealServerSummary {
                addr: format_addr(&rs.ip, rs.port),
                weight: i32::try_from(rs.weight).unwrap_or(i32::MAX),
                forwarding: rs.forwarding(vs).name().to_string(),
                checkers: rs
                    .checkers
                    .iter()
                    .map(|c| {
                        let t = rs.effective_checker_timing(vs, c);
                        CheckerSummary {
                            kind: c.kind_name().to_string(),
                            connect_timeout_us: t.and_then(|t| t.connect_timeout_us),
                            retry: t.map_or(0, |t| t.retry),
                            delay_before_retry_us: t.map_or(0, |t| t.delay_before_retry_us),
                            delay_loop_us: t.map_or(0, |t| t.delay_loop_us),
                        }
                    })
                    .collect(),
            })
            .collect(),
    }
}
