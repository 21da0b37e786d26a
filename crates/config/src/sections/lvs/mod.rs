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
mod pending;

pub use self::pending::Pending;
mod real_server;
mod validate;
mod virtual_server;
mod write;

use self::addr::format_addr;
use self::model::{LvsConfig, VirtualServer, VirtualServerGroup};
use self::validate::{describe, link_late};
use self::write::write_virtual_server;
use crate::read::Ctx;
use crate::source::Span;
use crate::summary::{CheckerSummary, RealServerSummary, VirtualServerSummary};
use crate::tree::Node;
use crate::write::ConfWriter;

/// Top-level keywords this module reads.
pub const TOP_LEVEL: &[&str] = &["virtual_server_group", "virtual_server"];

pub fn read_top(node: &Node, ctx: &mut Ctx, lvs: &mut LvsConfig, pending: &mut Pending) {
    match node.name() {
        "virtual_server_group" => {
            let Some(g) = group::read(node, ctx) else {
                return;
            };
            if !pending.add_group(&g.name, lvs.groups.len()) {
                ctx.diags.note(
                    node.span(),
                    format!(
                        "virtual_server_group '{}' is defined twice; the first one is used",
                        g.name
                    ),
                );
            } else {
                link_waiting(lvs, pending, &g, node.span(), ctx);
            }
            lvs.groups.push(g);
        }
        "virtual_server" => {
            if let Some(vs) = virtual_server::read(node, ctx, &lvs.groups, pending) {
                pending.add_service(&vs, lvs.virtual_servers.len());
                lvs.virtual_servers.push(vs);
            }
        }
        _ => ctx.unknown(node),
    }
}

/// Links the services above that use `g`, which could not be linked when they were read;
/// keepalived drops those whose address family does not match.
fn link_waiting(
    lvs: &mut LvsConfig,
    pending: &mut Pending,
    g: &VirtualServerGroup,
    at: Span,
    ctx: &mut Ctx,
) {
    let mut dropped = Vec::new();
    for i in pending.take_waiting(&g.name) {
        if !link_late(&mut lvs.virtual_servers[i], g, at, ctx) {
            dropped.push(i);
        }
    }
    if dropped.is_empty() {
        return;
    }
    // Rare (each is a warning): the positions after a dropped service move down.
    let mut i = 0;
    lvs.virtual_servers.retain(|_| {
        let keep = dropped.binary_search(&i).is_err();
        i += 1;
        keep
    });
    pending.index_waiting(&lvs.virtual_servers);
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
