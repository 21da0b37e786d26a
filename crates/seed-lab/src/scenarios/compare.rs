//! The unkind scenarios run twice in one command: on the seed's files as they are, and on the
//! same files with halb's safety keywords ([`DirectorConfig::with_safety_keywords`]), each on a
//! topology of its own; [`Comparison::render`] puts the figures side by side.

use super::safety::SafetyFigures;
use super::{run_plan, PlanOptions, Scenario};
use crate::scenarios::report::Report;
use crate::topology::TopologyOptions;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Which files the directors run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The seed's files as they are.
    Seed,
    /// The same files with `mysql_writer`, `connection_fencing close` and MYSQL_CHECK.
    Safe,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Seed => "seed",
            Mode::Safe => "safe",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub runs: Vec<(Mode, Report)>,
}

impl Comparison {
    /// Both runs ended with writes succeeding, replication running, nothing left behind.
    pub fn ok(&self) -> bool {
        self.runs.iter().all(|(_, r)| r.ok())
    }

    /// The side-by-side table, then each run's full report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "halb lab: scenarios that break the seed's setup, on the seed's files (seed) and on \
             the same files with halb's safety keywords (safe: mysql_writer, connection_fencing \
             close, MYSQL_CHECK with the seed's timings)\n\n",
        );
        out.push_str(&self.table());
        for (mode, report) in &self.runs {
            let _ = writeln!(out, "\n\n######## {} mode", mode.name());
            out.push_str(&report.render());
        }
        out
    }

    /// One line per scenario and mode.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<19} {:<5} {:>13} {:>13} {:>10} {:>16} {:>9} {:>17}  writable after",
            "scenario",
            "mode",
            "missing(async)",
            "2-writer rows",
            "lost/upd",
            "tables differing",
            "no write",
            "return→handback",
        );
        let names: Vec<String> = self
            .runs
            .first()
            .map(|(_, r)| r.scenarios.iter().map(|s| s.name.clone()).collect())
            .unwrap_or_default();
        for name in names {
            for (mode, report) in &self.runs {
                let Some(s) = report.scenarios.iter().find(|s| s.name == name) else {
                    continue;
                };
                match &s.safety {
                    Some(f) => {
                        let _ = writeln!(out, "{}", row(&name, *mode, f, s.ok));
                    }
                    None => {
                        let _ = writeln!(
                            out,
                            "{name:<19} {:<5} not run: {}",
                            mode.name(),
                            s.error.as_deref().unwrap_or("no figures")
                        );
                    }
                }
            }
        }
        out
    }
}

fn row(name: &str, mode: Mode, f: &SafetyFigures, ok: bool) -> String {
    let differing = match (&f.after.checksum, &f.after.checksum_error) {
        (Some(_), _) if f.tables_differing.is_empty() => "0".to_string(),
        (Some(_), _) => format!(
            "{} {}",
            f.tables_differing.len(),
            f.tables_differing.join(",")
        ),
        (None, Some(_)) => "? (no checksum)".to_string(),
        (None, None) => "?".to_string(),
    };
    let handbacks: Vec<String> = f
        .returns
        .iter()
        .map(|r| match r.after_s() {
            Some(s) => format!("{s:.1}"),
            None => "-".into(),
        })
        .collect();
    let handback = if handbacks.is_empty() {
        "n/a".to_string()
    } else {
        format!("{} s", handbacks.join("/"))
    };
    format!(
        "{name:<19} {:<5} {:>13} {:>13} {:>10} {:>16} {:>8.1}s {:>17}  {}{}",
        mode.name(),
        format!("{} ({})", f.missing.len(), f.missing_async.len()),
        format!(
            "{} in {} s",
            f.rows_in_two_writer_seconds, f.two_writer_seconds
        ),
        format!("{}/{}", f.lost_updates, f.acknowledged_updates),
        differing,
        f.longest_without_write_s,
        handback,
        f.after.writable.join(","),
        if ok { "" } else { "  (scenario FAILED)" }
    )
}

/// Runs `scenarios` (unkind ones) on the seed's files and on the same files with halb's
/// safety keywords, each on its own topology (namespaces `PREFIX-seed-*`, `PREFIX-safe-*`).
pub fn run_compare(
    topology: &TopologyOptions,
    plan: &PlanOptions,
    scenarios: &[Scenario],
) -> Result<Comparison> {
    if let Some(s) = scenarios.iter().find(|s| !s.is_unkind()) {
        bail!(
            "{} is one of the seed's own scenarios: run those without the unkind ones",
            s.name()
        );
    }
    let mut runs = Vec::new();
    for mode in [Mode::Seed, Mode::Safe] {
        let mut options = topology.clone();
        options.prefix = format!("{}-{}", topology.prefix, mode.name());
        if mode == Mode::Safe {
            options.master_config = topology.master_config.with_safety_keywords()?;
            options.backup_config = topology.backup_config.with_safety_keywords()?;
        }
        if plan.live {
            eprintln!(
                "\n######## {} mode: d1 runs {}, d2 runs {}",
                mode.name(),
                options.master_config,
                options.backup_config
            );
        }
        let report = run_plan(&options, plan, scenarios)?;
        runs.push((mode, report));
        if topology.cancel.is_cancelled() {
            break;
        }
    }
    Ok(Comparison { runs })
}
