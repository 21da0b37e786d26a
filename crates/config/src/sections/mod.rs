//! Section readers: one module per part of keepalived.conf, each with its model types, its
//! reader (tree → model, with diagnostics) and its writer (model → keepalived.conf).

pub mod checker_common;
pub mod checker_http;
pub mod checker_misc;
pub mod checker_model;
pub mod checker_mysql;
pub mod checker_net;
pub mod checker_track;
pub mod global_defs;
pub mod lvs;
pub mod lvs_addr;
pub mod lvs_forwarding;
pub mod lvs_group;
pub mod lvs_model;
pub mod lvs_real_server;
pub mod lvs_script;
pub mod lvs_validate;
pub mod lvs_virtual_server;
pub mod lvs_write;
pub mod routes;
pub mod script_security;
pub mod vrrp;
pub mod vrrp_address;
pub mod vrrp_complete;
pub mod vrrp_group;
pub mod vrrp_instance;
pub mod vrrp_model;
pub mod vrrp_pending;
pub mod vrrp_script;
pub mod vrrp_track;

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
    "bfd_instance",
    "garp_group",
    "vrrp_track_process",
    "track_process",
    "static_ipaddress",
    "SSL",
];

/// Reads the top level of a configuration.
pub fn read_config(nodes: &[Node], ctx: &mut Ctx) -> Config {
    let mut config = Config::default();
    for node in nodes {
        match node.name() {
            "global_defs" => global_defs::read(node, ctx, &mut config.global),
            name if vrrp::TOP_LEVEL.contains(&name) => vrrp::read_top(node, ctx, &mut config.vrrp),
            name if lvs::TOP_LEVEL.contains(&name) => lvs::read_top(node, ctx, &mut config.lvs),
            "static_routes" | "static_rules" => config.other.push(routes::read_static(node, ctx)),
            name if KEPT_TOP_LEVEL.contains(&name) => config.other.push(Setting::from_node(node)),
            _ => ctx.unknown(node),
        }
    }
    // Settings that keepalived folds into global ones after reading (for example the 1.x
    // per-instance `lvs_sync_daemon_interface`).
    vrrp::finish(&mut config.vrrp, &config.global, ctx);
    vrrp::fold_into_global(&mut config.vrrp, &mut config.global);
    config
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
    w.finish()
}
