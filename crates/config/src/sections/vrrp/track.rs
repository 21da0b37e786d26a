//! `track_interface`, `track_script` and `track_file` blocks of instances and sync groups.
//!
//! keepalived resolves tracked scripts and files when it reads the block, so they must be
//! defined above; a name it cannot find is reported and ignored.

use super::model::{TrackFileRef, TrackInterface, TrackScript};
use super::pending::FirstByName;
use crate::read::Ctx;
use crate::tree::Node;
use crate::write::{quote, ConfWriter};
use std::collections::HashSet;

/// The lines of a value block (`track_interface { ... }`, `virtual_ipaddress { ... }`, ...),
/// reporting words after the keyword, which keepalived ignores.
pub fn value_lines<'n>(node: &'n Node, ctx: &mut Ctx) -> &'n [Node] {
    if let Some(w) = node.arg(0) {
        ctx.diags.warn(
            w.span,
            format!("Block {} has extra parameters {} ...", node.name(), w.text),
        );
    }
    let lines = ctx.block(node);
    for l in lines {
        ctx.no_block(l);
    }
    lines
}

/// A tracking weight; keepalived turns the old limits ±254 into ±253.
fn weight(line: &Node, ctx: &mut Ctx, owner: &str) -> Option<i32> {
    let v = ctx.int(line, 1, -254, 254)? as i32;
    if v.abs() == 254 {
        if let Some(w) = line.arg(1) {
            ctx.diags.warn(
                w.span,
                format!(
                    "({owner}) weight for {} cannot be +/-254. Setting to +/-253",
                    line.name()
                ),
            );
        }
        return Some(v.signum() * 253);
    }
    Some(v)
}

/// Checks `NAME weight W ...`: false when the line is to be ignored.
fn weight_syntax(line: &Node, ctx: &mut Ctx, owner: &str, what: &str) -> bool {
    let Some(option) = line.arg(0) else {
        return true;
    };
    if option.text != "weight" {
        ctx.diags.warn(
            option.span,
            format!(
                "({owner}) unknown {what} {} option {} - ignoring",
                line.name(),
                option.text
            ),
        );
        return false;
    }
    if line.arg(1).is_none() {
        ctx.diags.warn(
            option.span,
            format!(
                "({owner}) weight without value specified for {what} {} - ignoring",
                line.name()
            ),
        );
        return false;
    }
    true
}

/// `reverse` / `noreverse` after a weight.
fn reverse(line: &Node, ctx: &mut Ctx, owner: &str, allow_noreverse: bool) -> Option<bool> {
    let w = line.arg(2)?;
    match w.text.as_str() {
        "reverse" => Some(true),
        "noreverse" if allow_noreverse => Some(false),
        other => {
            ctx.diags.warn(
                w.span,
                format!(
                    "({owner}) unknown {} weight option {other} - ignoring",
                    line.name()
                ),
            );
            None
        }
    }
}

pub fn read_track_interfaces(
    node: &Node,
    ctx: &mut Ctx,
    owner: &str,
    list: &mut Vec<TrackInterface>,
) {
    for line in value_lines(node, ctx) {
        let name = line.name();
        if !ctx.interface_exists(name) {
            ctx.diags.warn(
                line.span(),
                format!("({owner}) tracked interface {name} doesn't exist"),
            );
            continue;
        }
        if list.iter().any(|t| t.name == name) {
            ctx.diags.warn(
                line.span(),
                format!("({owner}) duplicate track_interface {name} - ignoring"),
            );
            continue;
        }
        if !weight_syntax(line, ctx, owner, "track_interface") {
            continue;
        }
        let has_weight = line.arg(1).is_some();
        list.push(TrackInterface {
            name: name.to_string(),
            weight: if has_weight {
                weight(line, ctx, owner).unwrap_or(0)
            } else {
                0
            },
            reverse: reverse(line, ctx, owner, false).unwrap_or(false),
        });
    }
}

pub fn read_track_scripts(
    node: &Node,
    ctx: &mut Ctx,
    owner: &str,
    scripts: &FirstByName,
    list: &mut Vec<TrackScript>,
) {
    let mut listed: HashSet<String> = list.iter().map(|t| t.name.clone()).collect();
    for line in value_lines(node, ctx) {
        let name = line.name();
        if scripts.get(name).is_none() {
            ctx.diags
                .warn(
                    line.span(),
                    format!("({owner}) track script {name} not found, ignoring..."),
                )
                .set_help("a vrrp_script must be defined before the block that tracks it");
            continue;
        }
        if listed.contains(name) {
            ctx.diags.warn(
                line.span(),
                format!("({owner}) duplicate track_script {name} - ignoring"),
            );
            continue;
        }
        if !weight_syntax(line, ctx, owner, "track script") {
            continue;
        }
        let has_weight = line.arg(1).is_some();
        listed.insert(name.to_string());
        list.push(TrackScript {
            name: name.to_string(),
            weight: if has_weight {
                weight(line, ctx, owner)
            } else {
                None
            },
            reverse: reverse(line, ctx, owner, true),
        });
    }
}

pub fn read_track_files(
    node: &Node,
    ctx: &mut Ctx,
    owner: &str,
    files: &FirstByName,
    list: &mut Vec<TrackFileRef>,
) {
    let mut listed: HashSet<String> = list.iter().map(|t| t.name.clone()).collect();
    for line in value_lines(node, ctx) {
        let name = line.name();
        if files.get(name).is_none() {
            ctx.diags
                .warn(
                    line.span(),
                    format!("({owner}) track file {name} not found, ignoring..."),
                )
                .set_help("a track_file must be defined before the block that tracks it");
            continue;
        }
        if listed.contains(name) {
            ctx.diags.warn(
                line.span(),
                format!("({owner}) duplicate track_file {name} - ignoring"),
            );
            continue;
        }
        if !weight_syntax(line, ctx, owner, "track file") {
            continue;
        }
        let has_weight = line.arg(1).is_some();
        listed.insert(name.to_string());
        list.push(TrackFileRef {
            name: name.to_string(),
            weight: if has_weight {
                ctx.int(line, 1, -254, 254).map(|v| v as i32)
            } else {
                None
            },
            reverse: reverse(line, ctx, owner, true),
        });
    }
}

/// Writes the three tracking blocks (empty ones are left out).
pub fn write_tracking(
    interfaces: &[TrackInterface],
    scripts: &[TrackScript],
    files: &[TrackFileRef],
    w: &mut ConfWriter,
) {
    if !interfaces.is_empty() {
        w.open("track_interface");
        for t in interfaces {
            let mut words = vec![quote(&t.name)];
            if t.weight != 0 || t.reverse {
                words.push(format!("weight {}", t.weight));
            }
            if t.reverse {
                words.push("reverse".into());
            }
            w.line(&words.join(" "));
        }
        w.close();
    }
    let named = [
        (
            "track_script",
            scripts
                .iter()
                .map(|t| (&t.name, t.weight, t.reverse))
                .collect::<Vec<_>>(),
        ),
        (
            "track_file",
            files
                .iter()
                .map(|t| (&t.name, t.weight, t.reverse))
                .collect(),
        ),
    ];
    for (keyword, entries) in named {
        if entries.is_empty() {
            continue;
        }
        w.open(keyword);
        for (name, weight, reverse) in entries {
            let mut words = vec![quote(name)];
            if let Some(v) = weight {
                words.push(format!("weight {v}"));
                match reverse {
                    Some(true) => words.push("reverse".into()),
                    Some(false) => words.push("noreverse".into()),
                    None => {}
                }
            }
            w.line(&words.join(" "));
        }
        w.close();
    }
}
