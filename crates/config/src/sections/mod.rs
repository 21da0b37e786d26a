//! Section readers: one module per part of keepalived.conf (`global_defs`, [`vrrp`], [`lvs`]
//! with its [`checker`]s, routes), each with its reader (tree → model, with diagnostics), its
//! writer (model → keepalived.conf) and, for the larger parts, a public `model` module of the
//! types [`crate::model`] gathers.

pub mod bfd;
pub mod bgp;
pub mod checker;
pub mod global_defs;
pub mod lvs;
pub mod routes;
pub mod script;
pub mod script_security;
pub mod vrrp;

use crate::model::Config;
use crate::read::Ctx;
use crate::setting::Setting;
use crate::tree::Node;
use crate::write::ConfWriter;

/// Top-level keywords that keepalived accepts and halb keeps without acting on them.
const KEPT_TOP_LEVEL: &[&str] = &[
    "linkbeat_use_polling",
    "net_namespace",
    "net_namespace_ipvs",
    "namespace_with_ipsets",
    "use_pid_dir",
    "instance",
    "child_wait_time",
    "garp_group",
    "vrrp_track_process",
    "track_process",
    "SSL",
];

/// Reads the top level of a configuration.
pub fn read_config(nodes: &[Node], ctx: &mut Ctx) -> Config {
    let mut reader = ConfigReader::default();
    for node in nodes {
        reader.read(node, ctx);
    }
    reader.finish(ctx)
}

/// Reads a configuration one top-level node at a time, as [`crate::tree::Builder`] completes
/// them: the model grows while each section's tree is dropped once read.
#[derive(Default)]
pub struct ConfigReader {
    config: Config,
    /// Places in `bgp_announce`, for the checks that need the whole file.
    bgp_spans: bgp::Spans,
    /// The BFD instances read so far, for the duplicate checks.
    bfd_seen: bfd::Seen,
    /// The LVS groups and the services waiting for them, by name.
    lvs_pending: lvs::Pending,
}

impl ConfigReader {
    /// Reads one top-level node into the model.
    pub fn read(&mut self, node: &Node, ctx: &mut Ctx) {
        let config = &mut self.config;
        match node.name() {
            "global_defs" => global_defs::read(node, ctx, &mut config.global),
            name if vrrp::TOP_LEVEL.contains(&name) => vrrp::read_top(node, ctx, &mut config.vrrp),
            name if lvs::TOP_LEVEL.contains(&name) => {
                lvs::read_top(node, ctx, &mut config.lvs, &mut self.lvs_pending)
            }
            bgp::KEYWORD => {
                if let Some(a) = bgp::read(node, ctx, &mut self.bgp_spans) {
                    config.bgp = Some(a);
                }
            }
            "static_routes" | "static_rules" => config.other.push(routes::read_static(node, ctx)),
            "static_ipaddress" => config.other.push(routes::read_static_addresses(node, ctx)),
            // Kept as written for the round trip, and read into the model halb runs.
            "bfd_instance" => {
                config.other.push(Setting::from_node(node));
                if let Some(b) = bfd::read(node, &mut self.bfd_seen, ctx) {
                    config.bfd.push(b);
                }
            }
            name if KEPT_TOP_LEVEL.contains(&name) => config.other.push(Setting::from_node(node)),
            _ => ctx.unknown(node),
        }
    }

    /// The model, once every node is read.
    pub fn finish(self, ctx: &mut Ctx) -> Config {
        let mut config = self.config;
        // Settings that keepalived folds into global ones after reading (for example the 1.x
        // per-instance `lvs_sync_daemon_interface`).
        vrrp::finish(&mut config.vrrp, &config.global, ctx);
        vrrp::fold_into_global(&mut config.vrrp, &mut config.global);
        if let Some(a) = &mut config.bgp {
            bgp::validate(a, &self.bgp_spans, &config.lvs, &config.vrrp, ctx);
        }
        config
    }
}

/// Writes a configuration back out.
pub fn write_config(config: &Config) -> String {
    let mut w = ConfWriter::new();
    global_defs::write(&config.global, &mut w);
    for s in &config.other {
        s.write(&mut w);
    }
    vrrp::write(&config.vrrp, &mut w);
    lvs::write(&config.lvs, &mut w);
    if let Some(a) = &config.bgp {
        bgp::write(a, &mut w);
    }
    w.finish()
}
