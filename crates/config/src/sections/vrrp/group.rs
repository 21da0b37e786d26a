//! `vrrp_sync_group NAME { group { INSTANCE ... } ... }`.

use super::instance::read_notify_slot;
use super::model::{SyncGroup, VrrpConfig};
use super::pending::{resolve_groups, Report};
use super::track::{
    read_track_files, read_track_interfaces, read_track_scripts, value_lines, write_tracking,
};
use crate::read::Ctx;
use crate::sections::script::notify_line;
use crate::setting::Setting;
use crate::source::Span;
use crate::tree::Node;
use crate::write::{quote, ConfWriter};

/// Sync group keywords keepalived knows that halb keeps as written.
const KEPT: &[&str] = &["track_process", "track_bfd", "notify_priority_changes"];

pub fn read_sync_group(node: &Node, ctx: &mut Ctx, vrrp: &mut VrrpConfig) {
    if node.args().len() != 1 {
        ctx.diags
            .warn(
                node.line_span(),
                "vrrp_sync_group must have a name - skipping",
            )
            .set_help("the block is skipped");
        return;
    }
    let name = node.args()[0].text.clone();
    if vrrp.pending.has_sync_group(&name) {
        ctx.diags
            .warn(
                node.args()[0].span,
                format!("vrrp sync group {name} already defined"),
            )
            .set_help("the block is skipped");
        return;
    }
    let mut g = SyncGroup::new(&name);
    let mut members: Option<Vec<(String, Span)>> = None;
    for n in ctx.block(node) {
        keyword(n, ctx, vrrp, &mut g, &mut members);
    }
    let members = members.unwrap_or_default();
    if members.is_empty() {
        ctx.diags
            .warn(
                node.line_span(),
                format!("Sync group {name} has no virtual router(s). removing"),
            )
            .set_help("list the group's instances in `group { ... }`");
        return;
    }
    vrrp.pending
        .add_group(&name, vrrp.sync_groups.len(), node.line_span(), members);
    vrrp.sync_groups.push(g);
    resolve_groups(vrrp, &mut Report(Some(&mut *ctx.diags)), false);
}

fn keyword(
    n: &Node,
    ctx: &mut Ctx,
    vrrp: &VrrpConfig,
    g: &mut SyncGroup,
    members: &mut Option<Vec<(String, Span)>>,
) {
    let name = g.name.clone();
    let is_block = matches!(
        n.name(),
        "group" | "track_interface" | "track_script" | "track_file" | "track_process" | "track_bfd"
    );
    if !is_block {
        ctx.no_block(n);
    }
    match n.name() {
        "group" => {
            if members.is_some() {
                ctx.diags.warn(
                    n.span(),
                    format!("Group list already specified for sync group {name}"),
                );
                return;
            }
            let list: Vec<(String, Span)> = value_lines(n, ctx)
                .iter()
                .flat_map(|l| l.words.iter().map(|w| (w.text.clone(), w.span)))
                .collect();
            if list.is_empty() {
                ctx.diags.warn(
                    n.span(),
                    format!("Warning - sync group {name} has empty group block"),
                );
            }
            *members = Some(list);
        }
        "track_interface" => read_track_interfaces(n, ctx, &name, &mut g.track_interface),
        "track_script" => {
            read_track_scripts(n, ctx, &name, &vrrp.pending.script_at, &mut g.track_script)
        }
        "track_file" => read_track_files(
            n,
            ctx,
            &name,
            &vrrp.pending.track_file_at,
            &mut g.track_file,
        ),
        "notify" | "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" => {
            read_notify_slot(n, ctx, &format!("vrrp group {name}:"), &mut g.notify)
        }
        "smtp_alert" => {
            if let Some(v) = ctx.flag(n, 0) {
                g.smtp_alert = Some(v);
            }
        }
        "global_tracking" => {
            ctx.diags.warn(
                n.span(),
                format!(
                    "({name}) global_tracking is deprecated. Use track_interface/script/file on the sync group"
                ),
            );
            g.sync_group_tracking_weight = true;
        }
        "sync_group_tracking_weight" => g.sync_group_tracking_weight = true,
        "notify_priority_changes" => {
            if ctx.flag(n, 0).is_some() {
                g.other.push(Setting::from_node(n));
            }
        }
        kw if KEPT.contains(&kw) => g.other.push(Setting::from_node(n)),
        // keepalived's sample `keepalived.conf.vrrp.lvs_syncd` lists instances without
        // `group { }`; say what it is rather than "unknown keyword".
        _ if n.args().is_empty() && n.block.is_none() => {
            ctx.diags
                .warn(
                    n.span(),
                    format!("'{}' is not a vrrp_sync_group keyword - ignoring", n.name()),
                )
                .set_help("the instances of a sync group are listed in `group { ... }`");
        }
        _ => ctx.unknown(n),
    }
}

pub fn write_sync_group(g: &SyncGroup, w: &mut ConfWriter) {
    w.open(&format!("vrrp_sync_group {}", quote(&g.name)));
    w.open("group");
    for m in &g.group {
        w.line(&quote(m));
    }
    w.close();
    write_tracking(&g.track_interface, &g.track_script, &g.track_file, w);
    for (keyword, script) in g.notify.iter() {
        w.line(&notify_line(keyword, script));
    }
    match g.smtp_alert {
        Some(true) => w.line("smtp_alert"),
        Some(false) => w.line("smtp_alert false"),
        None => {}
    }
    w.flag("sync_group_tracking_weight", g.sync_group_tracking_weight);
    for s in &g.other {
        s.write(w);
    }
    w.close();
}
