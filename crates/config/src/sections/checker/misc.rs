//! `MISC_CHECK`: a script decides.

use super::common::{read_keyword, write_keywords};
use super::model::{Checker, CheckerCommon, CheckerKind, MiscCheck};
use crate::read::{format_us, Ctx, US_PER_SEC};
use crate::sections::lvs::block_end;
use crate::sections::script::{command_word, read_command, Script};
use crate::tree::Node;
use crate::write::{quote, ConfWriter};

/// Reads a MISC_CHECK; `None` when keepalived drops it (no `misc_path`).
pub fn read(node: &Node, ctx: &mut Ctx) -> Option<Checker> {
    let kind = CheckerKind::Misc;
    let mut common = CheckerCommon::default();
    let mut argv: Option<Vec<String>> = None;
    let mut user: Option<(String, Option<String>)> = None;
    let mut misc_timeout_us = None;
    let mut misc_dynamic = false;
    for n in ctx.block(node) {
        if read_keyword(n, ctx, &mut common, kind) {
            continue;
        }
        ctx.no_block(n);
        match n.name() {
            "misc_path" => {
                if let Some(a) = read_command(n, ctx) {
                    argv = Some(a);
                }
            }
            "misc_timeout" => {
                if let Some(v) = ctx.unsigned(n, 0, 0, u64::from(u32::MAX) / US_PER_SEC) {
                    misc_timeout_us = Some(v * US_PER_SEC);
                }
            }
            "misc_dynamic" => misc_dynamic = true,
            "user" => match n.arg(0) {
                Some(u) => user = Some((u.text.clone(), n.arg(1).map(|g| g.text.clone()))),
                None => {
                    ctx.diags
                        .warn(n.span(), "No user specified for misc checker script");
                }
            },
            _ => ctx.unknown(n),
        }
    }
    let Some(argv) = argv else {
        ctx.diags.warn(
            block_end(node),
            "No script path has been specified for MISC_CHECKER - skipping",
        );
        return None;
    };
    let (user, group) = match user {
        Some((u, g)) => (Some(u), g),
        None => (None, None),
    };
    Some(Checker::Misc(MiscCheck {
        common,
        misc_path: Script { argv, user, group },
        misc_timeout_us,
        misc_dynamic,
    }))
}

pub fn write(m: &MiscCheck, w: &mut ConfWriter) {
    write_keywords(&m.common, CheckerKind::Misc, w);
    w.line(&format!("misc_path {}", command_word(&m.misc_path.argv)));
    if let Some(v) = m.misc_timeout_us {
        w.kv("misc_timeout", format_us(v));
    }
    w.flag("misc_dynamic", m.misc_dynamic);
    if let Some(u) = &m.misc_path.user {
        match &m.misc_path.group {
            Some(g) => w.line(&format!("user {} {}", quote(u), quote(g))),
            None => w.line(&format!("user {}", quote(u))),
        }
    }
}
