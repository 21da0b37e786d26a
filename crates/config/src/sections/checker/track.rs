//! The checkers that follow something else instead of probing: `FILE_CHECK` (a `track_file`)
//! and `BFD_CHECK` (a `bfd_instance`).
//!
//! Whether the named `track_file` / `bfd_instance` exists is a cross-section check that this
//! module cannot make (keepalived reports "track_file X not found" / "BFD X not configured").

use super::model::{BfdCheck, Checker, FileCheck};
use crate::read::Ctx;
use crate::sections::lvs::block_end;
use crate::tree::Node;
use crate::write::{quote, ConfWriter};

/// keepalived's longest BFD instance name (BFD_INAME_MAX - 1).
const MAX_BFD_NAME: usize = 31;

pub fn read_file(node: &Node, ctx: &mut Ctx) -> Option<Checker> {
    let mut track_file = None;
    let mut weight = None;
    let mut reverse = false;
    for n in ctx.block(node) {
        ctx.no_block(n);
        match n.name() {
            "track_file" => {
                if let Some(v) = ctx.string(n, 0) {
                    track_file = Some(v);
                }
            }
            "weight" => {
                let limit = i64::from(i32::MAX);
                let Some(v) = ctx.int(n, 0, -limit, limit) else {
                    continue;
                };
                let rev = match n.arg(1).map(|w| (w, w.text.as_str())) {
                    None | Some((_, "noreverse")) => false,
                    Some((_, "reverse")) => true,
                    Some((w, other)) => {
                        ctx.diags.warn(
                            w.span,
                            format!("unknown track file weight option {other} - ignoring"),
                        );
                        continue;
                    }
                };
                weight = Some(v as i32);
                reverse = rev;
            }
            _ => ctx.unknown(n),
        }
    }
    let Some(track_file) = track_file else {
        ctx.diags.warn(
            block_end(node),
            "FILE_CHECK has no track_file specified - ignoring",
        );
        return None;
    };
    Some(Checker::File(FileCheck {
        track_file,
        weight,
        reverse,
    }))
}

pub fn write_file(f: &FileCheck, w: &mut ConfWriter) {
    w.line(&format!("track_file {}", quote(&f.track_file)));
    if let Some(v) = f.weight {
        w.line(&format!(
            "weight {v}{}",
            if f.reverse { " reverse" } else { "" }
        ));
    }
}

pub fn read_bfd(node: &Node, ctx: &mut Ctx) -> Option<Checker> {
    let mut name: Option<String> = None;
    let mut alpha = None;
    for n in ctx.block(node) {
        ctx.no_block(n);
        match n.name() {
            "name" => {
                let problem = match (n.args(), &name) {
                    ([w], None) if w.text.len() > MAX_BFD_NAME => {
                        Some(format!("BFD_CHECK - BFD name {} too long", w.text))
                    }
                    ([w], None) => {
                        name = Some(w.text.clone());
                        None
                    }
                    ([w], Some(old)) => Some(format!(
                        "BFD_CHECK - BFD {} already specified as {old}",
                        w.text
                    )),
                    _ => Some("BFD_CHECK - No or too many names specified".to_string()),
                };
                if let Some(p) = problem {
                    // keepalived drops the whole checker on any problem with its name.
                    ctx.diags
                        .warn(n.line_span(), format!("{p} - skipping checker"));
                    return None;
                }
            }
            "alpha" => {
                if let Some(v) = ctx.flag(n, 0) {
                    alpha = Some(v);
                }
            }
            _ => ctx.unknown(n),
        }
    }
    let Some(name) = name else {
        ctx.diags.warn(
            block_end(node),
            "No name has been specified for BFD_CHECKER - skipping",
        );
        return None;
    };
    Some(Checker::Bfd(BfdCheck { name, alpha }))
}

pub fn write_bfd(b: &BfdCheck, w: &mut ConfWriter) {
    w.line(&format!("name {}", quote(&b.name)));
    if let Some(v) = b.alpha {
        w.line(if v { "alpha" } else { "alpha false" });
    }
}
