//! `vrrp_script NAME { }` and `track_file NAME { }`. Script lines are read and written with
//! keepalived's script quoting by [`crate::sections::script`], shared with the LVS part.

use super::model::{TrackFile, TrackFileInit, VrrpConfig, VrrpScript};
use crate::read::{secs, Ctx, US_PER_SEC};
use crate::sections::script::{command_word, read_command};
use crate::tree::Node;
use crate::write::{quote, ConfWriter};

/// keepalived keeps script times in an unsigned count of microseconds.
const MAX_SCRIPT_SECS: u64 = u32::MAX as u64 / US_PER_SEC;

/// `vrrp_script NAME { ... }`.
pub fn read_vrrp_script(node: &Node, ctx: &mut Ctx, vrrp: &mut VrrpConfig) {
    let Some(name) = ctx.string(node, 0) else {
        return;
    };
    let mut s = VrrpScript::new(&name);
    for n in ctx.block(node) {
        ctx.no_block(n);
        match n.name() {
            "script" => {
                if let Some(argv) = read_command(n, ctx) {
                    s.script.argv = argv;
                }
            }
            "interval" => {
                if let Some(v) = script_secs(n, ctx, &name, "interval") {
                    s.interval_us = v;
                }
            }
            "timeout" => {
                if let Some(v) = script_secs(n, ctx, &name, "timeout") {
                    s.timeout_us = Some(v);
                }
            }
            "weight" => read_script_weight(n, ctx, &mut s),
            "rise" => s.rise = rise_fall(n, ctx),
            "fall" => s.fall = rise_fall(n, ctx),
            "user" => {
                if let Some(user) = ctx.string(n, 0) {
                    s.script.user = Some(user);
                    s.script.group = n.arg(1).map(|w| w.text.clone());
                }
            }
            "init_fail" => s.init_fail = true,
            _ => ctx.unknown(n),
        }
    }
    if s.script.argv.is_empty() {
        let at = node
            .block
            .as_ref()
            .and_then(|b| b.close)
            .unwrap_or(node.line_span());
        ctx.diags
            .warn(
                at,
                format!("No script set for vrrp_script {name} - removing"),
            )
            .set_help("add `script \"COMMAND\"` to the block");
        return;
    }
    vrrp.pending.add_script(&name, node.line_span());
    vrrp.pending.script_at.add(&name, vrrp.scripts.len());
    vrrp.scripts.push(s);
}

/// `interval` / `timeout`: whole seconds; 0 is raised to 1 as keepalived does.
fn script_secs(n: &Node, ctx: &mut Ctx, name: &str, what: &str) -> Option<u64> {
    let v = ctx.unsigned(n, 0, 0, MAX_SCRIPT_SECS)?;
    if v == 0 {
        if let Some(w) = n.arg(0) {
            ctx.diags.warn(
                w.span,
                format!("({name}): vrrp script {what} must be greater than 0, setting to 1"),
            );
        }
        return Some(secs(1));
    }
    Some(secs(v))
}

fn read_script_weight(n: &Node, ctx: &mut Ctx, s: &mut VrrpScript) {
    let what = format!("vrrp_script {}", s.name);
    read_weight(n, ctx, 253, &what, &mut s.weight, &mut s.weight_reverse);
}

/// `weight N [reverse]` with |N| ≤ `max`, for `what` (named in the warning).
fn read_weight(
    n: &Node,
    ctx: &mut Ctx,
    max: i64,
    what: &str,
    weight: &mut i32,
    reverse: &mut bool,
) {
    if let Some(v) = ctx.int(n, 0, -max, max) {
        *weight = v as i32;
    }
    if let Some(w) = n.arg(1) {
        if w.text == "reverse" {
            *reverse = true;
        } else {
            ctx.diags
                .warn(w.span, format!("{what} unknown weight option {}", w.text));
        }
    }
}

/// `rise` / `fall`: at least 1; an invalid value becomes 1, as in keepalived.
fn rise_fall(n: &Node, ctx: &mut Ctx) -> u32 {
    ctx.unsigned(n, 0, 1, i32::MAX as u64)
        .map(|v| v as u32)
        .unwrap_or(1)
}

/// `track_file NAME { ... }` (and the deprecated `vrrp_track_file`).
pub fn read_track_file(node: &Node, ctx: &mut Ctx, vrrp: &mut VrrpConfig) {
    if node.name() == "vrrp_track_file" {
        ctx.diags.note(
            node.span(),
            "\"vrrp_track_file\" is deprecated, please use \"track_file\"",
        );
    }
    let Some(name) = ctx.string(node, 0) else {
        return;
    };
    let mut f = TrackFile {
        name: name.clone(),
        file: String::new(),
        weight: 1,
        weight_reverse: false,
        init_file: None,
    };
    for n in ctx.block(node) {
        ctx.no_block(n);
        match n.name() {
            "file" => {
                let Some(path) = n.arg(0) else {
                    ctx.diags
                        .warn(n.line_span(), "track file file name missing");
                    continue;
                };
                if f.file.is_empty() {
                    f.file = path.text.clone();
                } else {
                    ctx.diags.warn(
                        path.span,
                        format!(
                            "File already set for track file {name} - ignoring {}",
                            path.text
                        ),
                    );
                }
            }
            "weight" => read_track_file_weight(n, ctx, &mut f),
            "init_file" => f.init_file = Some(read_init_file(n, ctx, &name)),
            _ => ctx.unknown(n),
        }
    }
    if f.file.is_empty() {
        let at = node
            .block
            .as_ref()
            .and_then(|b| b.close)
            .unwrap_or(node.line_span());
        ctx.diags
            .warn(at, format!("No file set for track_file {name} - ignoring"));
        return;
    }
    vrrp.pending
        .track_file_at
        .add(&f.name, vrrp.track_files.len());
    vrrp.track_files.push(f);
}

fn read_track_file_weight(n: &Node, ctx: &mut Ctx, f: &mut TrackFile) {
    let Some(value) = ctx.arg(n, 0) else {
        return;
    };
    if f.weight != 1 {
        ctx.diags.warn(
            value.span,
            format!(
                "Weight already set for track file {} - ignoring {}",
                f.name, value.text
            ),
        );
        return;
    }
    let what = format!("track_file {}", f.name);
    read_weight(n, ctx, 254, &what, &mut f.weight, &mut f.weight_reverse);
}

/// `init_file [VALUE] [overwrite]`.
fn read_init_file(n: &Node, ctx: &mut Ctx, name: &str) -> TrackFileInit {
    let mut init = TrackFileInit::default();
    for (i, w) in n.args().iter().enumerate() {
        let starts_number = w
            .text
            .trim_start()
            .starts_with(|c: char| c.is_ascii_digit() || c == '-');
        if starts_number {
            match w.text.trim_start().parse::<i32>() {
                Ok(v) => {
                    if !(-254..=254).contains(&v) {
                        ctx.diags.warn(
                            w.span,
                            format!(
                                "Track file {name} init value {v} is outside sensible range [-254, 254]"
                            ),
                        );
                    }
                    init.value = v;
                }
                Err(_) => {
                    ctx.int(n, i, i32::MIN as i64, i32::MAX as i64);
                    init.value = 0;
                }
            }
        } else if w.text == "overwrite" {
            init.overwrite = true;
        } else {
            ctx.diags
                .warn(w.span, format!("Unknown track file init option {}", w.text));
        }
    }
    init
}

pub fn write_vrrp_script(s: &VrrpScript, w: &mut ConfWriter) {
    w.open(&format!("vrrp_script {}", quote(&s.name)));
    w.line(&format!("script {}", command_word(&s.script.argv)));
    if s.interval_us != super::model::DEFAULT_SCRIPT_INTERVAL_US {
        w.kv("interval", s.interval_us / US_PER_SEC);
    }
    if let Some(t) = s.timeout_us {
        w.kv("timeout", t / US_PER_SEC);
    }
    if s.weight != 0 || s.weight_reverse {
        let reverse = if s.weight_reverse { " reverse" } else { "" };
        w.line(&format!("weight {}{reverse}", s.weight));
    }
    if s.rise != 1 {
        w.kv("rise", s.rise);
    }
    if s.fall != 1 {
        w.kv("fall", s.fall);
    }
    if let Some(u) = &s.script.user {
        let group = s
            .script
            .group
            .as_deref()
            .map(|g| format!(" {}", quote(g)))
            .unwrap_or_default();
        w.line(&format!("user {}{group}", quote(u)));
    }
    w.flag("init_fail", s.init_fail);
    w.close();
}

pub fn write_track_file(f: &TrackFile, w: &mut ConfWriter) {
    w.open(&format!("track_file {}", quote(&f.name)));
    w.kv("file", &f.file);
    if f.weight != 1 || f.weight_reverse {
        let reverse = if f.weight_reverse { " reverse" } else { "" };
        w.line(&format!("weight {}{reverse}", f.weight));
    }
    if let Some(init) = f.init_file {
        let overwrite = if init.overwrite { " overwrite" } else { "" };
        w.line(&format!("init_file {}{overwrite}", init.value));
    }
    w.close();
}
