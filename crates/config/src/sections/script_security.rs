//! keepalived's script security check: scripts that exist and would run while
//! `enable_script_security` is off make `keepalived -t` fail ("SECURITY VIOLATION").
//!
//! This depends on the host (which files exist), so it runs only when the caller gives the
//! directories to search for bare script names, as `halb check-config` does.

use crate::diagnostic::Severity;
use crate::model::{Checker, Config, Script};
use crate::read::Ctx;
use std::path::{Path, PathBuf};

/// Every script the configuration would run, with the keyword that names it.
pub fn scripts(config: &Config) -> Vec<(&'static str, &Script)> {
    let mut out = Vec::new();
    for i in &config.vrrp.instances {
        out.extend(i.notify.iter());
    }
    for g in &config.vrrp.sync_groups {
        out.extend(g.notify.iter());
    }
    for s in &config.vrrp.scripts {
        out.push(("vrrp_script", &s.script));
    }
    for vs in &config.lvs.virtual_servers {
        out.extend(vs.quorum_up.iter().map(|s| ("quorum_up", s)));
        out.extend(vs.quorum_down.iter().map(|s| ("quorum_down", s)));
        for rs in &vs.real_servers {
            out.extend(rs.notify_up.iter().map(|s| ("notify_up", s)));
            out.extend(rs.notify_down.iter().map(|s| ("notify_down", s)));
            for c in &rs.checkers {
                if let Checker::Misc(m) = c {
                    out.push(("misc_path", &m.misc_path));
                }
            }
        }
    }
    out
}

/// Where a script's program is found, as keepalived finds it: a path containing `/` as is, a
/// bare name in the search path. `None` when it does not exist (keepalived then disables the
/// script without calling it a security problem).
fn resolve(program: &str, search_path: &[PathBuf]) -> Option<PathBuf> {
    // "</path" scripts only test that a file can be opened; nothing is executed.
    let trimmed = program.trim_start();
    if let Some(rest) = trimmed.strip_prefix('<') {
        if rest.trim_start().starts_with('/') {
            return None;
        }
    }
    if program.contains('/') {
        let p = Path::new(program);
        return p.exists().then(|| p.to_path_buf());
    }
    search_path
        .iter()
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Reports keepalived's security violation when a script exists and script security is off.
pub fn check(config: &Config, search_path: &[PathBuf], ctx: &mut Ctx) {
    if config.global.enable_script_security {
        return;
    }
    let found: Vec<String> = scripts(config)
        .into_iter()
        .filter_map(|(keyword, s)| {
            let program = s.argv.first()?;
            resolve(program, search_path).map(|p| format!("{keyword} {}", p.display()))
        })
        .collect();
    if found.is_empty() {
        return;
    }
    ctx.diags
        .global(
            Severity::Warning,
            "SECURITY VIOLATION - scripts are being executed but script_security not enabled",
        )
        .set_help(format!(
            "add `enable_script_security` to global_defs (and make the scripts writable by root only); scripts: {}",
            found.join(", ")
        ));
}

/// The directories keepalived searches for bare script names: `PATH`, or its default.
pub fn default_search_path() -> Vec<PathBuf> {
    let path = std::env::var("PATH")
        .unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).collect()
}
