//! `pt-table-checksum` (Debian's percona-toolkit) over a dual-master pair: run against A from
//! A's namespace, it checksums the lab's tables chunk by chunk with statement-based replication,
//! so B computes its own checksums of the same chunks, and reports per table the chunks that
//! differ. B is found in A's process list (its replication thread).

use super::{Side, Topology, DATABASE, MONITOR};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// One table's line of pt-table-checksum's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableChecksum {
    /// `lab.counter`.
    pub table: String,
    pub errors: u64,
    /// Chunks whose checksum differs on the replica.
    pub diffs: u64,
    pub rows: u64,
}

/// What pt-table-checksum said about a pair.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksum {
    pub tables: Vec<TableChecksum>,
    /// Its exit status (a bit field: 16 means differences were found).
    pub exit_status: i32,
}

impl Checksum {
    /// The tables with a differing chunk.
    pub fn differing(&self) -> Vec<String> {
        self.tables
            .iter()
            .filter(|t| t.diffs > 0)
            .map(|t| t.table.clone())
            .collect()
    }
}

/// The table lines of pt-table-checksum's report (`TS ERRORS DIFFS ROWS DIFF_ROWS CHUNKS
/// SKIPPED TIME TABLE`).
pub fn parse_checksum_report(text: &str) -> Vec<TableChecksum> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() != 9 || f[0] == "TS" {
                return None;
            }
            Some(TableChecksum {
                table: f[8].to_string(),
                errors: f[1].parse().ok()?,
                diffs: f[2].parse().ok()?,
                rows: f[3].parse().ok()?,
            })
        })
        .collect()
}

impl Topology {
    /// Runs pt-table-checksum over the lab database of the pair on `port` (bounded to two
    /// minutes).
    pub fn checksum(&self, port: u16) -> Result<Checksum> {
        let a = Side::A.ip();
        let ns = &self.host(Side::A.host_role())?.ns.name;
        let dsn = format!("h={a},P={port},u={},p={}", MONITOR.user, MONITOR.password);
        let out = halb_sys::netns::command(ns, "timeout")
            .args(["120", "pt-table-checksum", &dsn])
            .args([
                "--databases",
                DATABASE,
                "--replicate",
                "percona.checksums",
                "--recursion-method",
                "processlist",
                "--recurse",
                "1",
                "--no-check-binlog-format",
                "--no-version-check",
                "--check-interval",
                "1",
            ])
            .output()
            .context("cannot run pt-table-checksum (install percona-toolkit)")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let tables = parse_checksum_report(&stdout);
        let exit_status = out.status.code().unwrap_or(-1);
        if tables.is_empty() {
            bail!(
                "pt-table-checksum against {a}:{port} reported no table (exit {exit_status}): {}{}",
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(Checksum {
            tables,
            exit_status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_report() {
        let text = "            TS ERRORS  DIFFS     ROWS  DIFF_ROWS  CHUNKS SKIPPED    TIME TABLE\n\
                    12-07T17:40:01      0      1        1          0       1       0   0.011 lab.counter\n\
                    12-07T17:40:01      0      0      412          0       1       0   0.013 lab.vip_wealth_log\n";
        let c = Checksum {
            tables: parse_checksum_report(text),
            exit_status: 16,
        };
        assert_eq!(c.tables.len(), 2);
        assert_eq!(c.tables[1].rows, 412);
        assert_eq!(c.differing(), vec!["lab.counter".to_string()]);
        assert!(
            parse_checksum_report("Diffs cannot be detected because no slaves were found")
                .is_empty()
        );
    }
}
