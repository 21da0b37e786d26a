//! The figures of the unkind scenarios, which ask whether a dual-master pair stayed one
//! database: computed from the records and the state afterwards (pure, tested without a lab).
//!
//! - acknowledged rows missing afterwards on either master, and of those the ones asynchronous
//!   replication itself lost (acknowledged by an instance shortly before a `kill -9` of it);
//! - rows written to both masters within the same second: the acknowledged inserts and
//!   counter updates of every wall-clock second in which both masters acknowledged one;
//! - lost counter updates: acknowledged increments the final counter does not hold (the lower
//!   of the two masters' values counts, as either may serve next; the counter starts each
//!   scenario at 0);
//! - tables differing, as pt-table-checksum sees them;
//! - the longest time without an acknowledged insert;
//! - per return of the real server, how long until halb handed traffic back to it.

use super::report::{longest_gap, FinalRows, Mark};
use crate::topology::Checksum;
use crate::writer::{Attempt, Op, Records};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The real server came back at `returned_at`; traffic went back to it at `handback_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Return {
    pub returned_at: f64,
    pub handback_at: Option<f64>,
}

impl Return {
    pub fn after_s(&self) -> Option<f64> {
        self.handback_at.map(|h| h - self.returned_at)
    }
}

/// The pair's state after the scenario, read by the lab.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PairAfter {
    /// The counter on A and on B.
    pub counter_a: Option<u64>,
    pub counter_b: Option<u64>,
    pub checksum: Option<Checksum>,
    pub checksum_error: Option<String>,
    /// The instances with `read_only=OFF` at the end.
    pub writable: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SafetyFigures {
    pub port: u16,
    pub acknowledged_rows: usize,
    /// Acknowledged ids missing afterwards on at least one master.
    pub missing: Vec<u64>,
    /// Of `missing`, those an instance acknowledged shortly before it was killed.
    pub missing_async: Vec<u64>,
    pub two_writer_seconds: usize,
    pub rows_in_two_writer_seconds: usize,
    pub acknowledged_updates: usize,
    pub lost_updates: u64,
    pub tables_differing: Vec<String>,
    pub longest_without_write_s: f64,
    pub returns: Vec<Return>,
    pub after: PairAfter,
}

impl SafetyFigures {
    /// The safe mode's goal: nothing missing beyond asynchronous replication's own loss, no
    /// second in which both masters took writes, no lost update, no differing table.
    pub fn clean(&self) -> bool {
        self.missing.len() == self.missing_async.len()
            && self.two_writer_seconds == 0
            && self.lost_updates == 0
            && self.tables_differing.is_empty()
            && self.after.checksum.is_some()
    }
}

fn acked_at(a: &Attempt) -> f64 {
    a.at + a.took_ms / 1e3
}

/// How long before a `kill -9` an acknowledged row may still be only on the killed instance.
const ASYNC_WINDOW_S: f64 = 5.0;

/// The figures of `port` from a scenario's records.
pub fn figures(
    port: u16,
    records: &Records,
    marks: &[Mark],
    end: f64,
    rows: &FinalRows,
    returns: &[Return],
    after: PairAfter,
) -> SafetyFigures {
    let acked = |op: Op| -> Vec<&Attempt> {
        records
            .attempts
            .iter()
            .filter(|a| a.op == op && a.port == port && a.ok)
            .collect()
    };
    let inserts = acked(Op::Write);
    let updates = acked(Op::Update);

    let present = |a: &Attempt, set: &BTreeSet<(u64, String)>| match (a.id, &a.tag) {
        (Some(id), Some(tag)) => set.contains(&(id, tag.clone())),
        _ => true,
    };
    let missing_rows: Vec<&Attempt> = inserts
        .iter()
        .copied()
        .filter(|a| !(present(a, &rows.a) && present(a, &rows.b)))
        .collect();
    let kills: Vec<(f64, &str)> = marks
        .iter()
        .filter(|m| m.label.contains("kill -9"))
        .map(|m| (m.at, m.label.as_str()))
        .collect();
    let missing_async = missing_rows
        .iter()
        .filter(|a| {
            let server = a.server.as_deref().unwrap_or("?");
            kills.iter().any(|(at, label)| {
                label.contains(server) && *at >= acked_at(a) && *at - acked_at(a) < ASYNC_WINDOW_S
            })
        })
        .filter_map(|a| a.id)
        .collect();

    let mut by_second: BTreeMap<i64, (BTreeSet<String>, usize)> = BTreeMap::new();
    for a in inserts.iter().chain(updates.iter()) {
        let entry = by_second.entry(acked_at(a).floor() as i64).or_default();
        entry.0.insert(a.server.clone().unwrap_or_default());
        entry.1 += 1;
    }
    let two: Vec<usize> = by_second
        .values()
        .filter(|(servers, _)| servers.len() > 1)
        .map(|(_, n)| *n)
        .collect();

    let lowest = match (after.counter_a, after.counter_b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (x, y) => x.or(y),
    };
    let lost_updates = lowest
        .map(|n| (updates.len() as u64).saturating_sub(n))
        .unwrap_or(0);

    let mut times: Vec<f64> = inserts.iter().map(|a| acked_at(a)).collect();
    times.sort_by(f64::total_cmp);
    let start = marks.first().map(|m| m.at).unwrap_or(0.0);

    SafetyFigures {
        port,
        acknowledged_rows: inserts.len(),
        missing: missing_rows.iter().filter_map(|a| a.id).collect(),
        missing_async,
        two_writer_seconds: two.len(),
        rows_in_two_writer_seconds: two.iter().sum(),
        acknowledged_updates: updates.len(),
        lost_updates,
        tables_differing: after
            .checksum
            .as_ref()
            .map(Checksum::differing)
            .unwrap_or_default(),
        longest_without_write_s: longest_gap(&times, start, end),
        returns: returns.to_vec(),
        after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::TableChecksum;

    fn attempt(op: Op, at: f64, server: &str, id: u64, tag: &str) -> Attempt {
        Attempt {
            op,
            port: 3306,
            seq: id,
            at,
            took_ms: 10.0,
            ok: true,
            id: Some(id),
            server: Some(server.into()),
            connection: None,
            new_connection: false,
            tag: (op == Op::Write).then(|| tag.to_string()),
            error: None,
        }
    }

    #[test]
    fn two_masters_in_one_second_and_lost_updates_show() {
        let records = Records {
            attempts: vec![
                attempt(Op::Write, 1.1, "253:3306", 2, "t-1"),
                attempt(Op::Write, 2.1, "253:3306", 4, "t-2"),
                attempt(Op::Write, 2.5, "254:3306", 1, "u-1"),
                attempt(Op::Update, 2.6, "254:3306", 7, ""),
                attempt(Op::Update, 3.2, "253:3306", 7, ""),
                attempt(Op::Write, 9.0, "253:3306", 6, "t-3"),
            ],
            ..Default::default()
        };
        let rows = FinalRows {
            a: [(2, "t-1"), (4, "t-2"), (1, "u-1")]
                .map(|(i, t)| (i, t.to_string()))
                .into(),
            b: [(2, "t-1"), (1, "u-1"), (6, "t-3")]
                .map(|(i, t)| (i, t.to_string()))
                .into(),
        };
        let marks = vec![
            Mark {
                at: 0.5,
                label: "application starts".into(),
            },
            Mark {
                at: 3.0,
                label: "kill -9 MariaDB 253:3306".into(),
            },
        ];
        let after = PairAfter {
            counter_a: Some(1),
            counter_b: Some(2),
            checksum: Some(Checksum {
                tables: vec![TableChecksum {
                    table: "lab.counter".into(),
                    errors: 0,
                    diffs: 1,
                    rows: 1,
                }],
                exit_status: 16,
            }),
            ..Default::default()
        };
        let returns = [Return {
            returned_at: 5.0,
            handback_at: Some(7.5),
        }];
        let f = figures(3306, &records, &marks, 10.0, &rows, &returns, after);
        assert_eq!(f.acknowledged_rows, 4);
        // id 4 is only on A, id 6 only on B; id 4 was acknowledged by 253 0.9 s before its kill.
        assert_eq!(f.missing, vec![4, 6]);
        assert_eq!(f.missing_async, vec![4]);
        // Second 2 had writes from both masters: two inserts and an update.
        assert_eq!(f.two_writer_seconds, 1);
        assert_eq!(f.rows_in_two_writer_seconds, 3);
        // Two increments acknowledged, the lower final value is 1.
        assert_eq!(f.lost_updates, 1);
        assert_eq!(f.tables_differing, vec!["lab.counter".to_string()]);
        assert!((f.longest_without_write_s - (9.01 - 2.51)).abs() < 1e-9);
        assert_eq!(f.returns[0].after_s(), Some(2.5));
        assert!(!f.clean());
    }

    #[test]
    fn one_writer_at_a_time_is_clean() {
        let records = Records {
            attempts: vec![
                attempt(Op::Write, 1.1, "253:3306", 2, "t-1"),
                attempt(Op::Update, 1.2, "253:3306", 1, ""),
                attempt(Op::Write, 2.3, "254:3306", 1, "t-2"),
                attempt(Op::Update, 2.4, "254:3306", 2, ""),
            ],
            ..Default::default()
        };
        let rows = FinalRows {
            a: [(2, "t-1"), (1, "t-2")]
                .map(|(i, t)| (i, t.to_string()))
                .into(),
            b: [(2, "t-1"), (1, "t-2")]
                .map(|(i, t)| (i, t.to_string()))
                .into(),
        };
        let after = PairAfter {
            counter_a: Some(2),
            counter_b: Some(2),
            checksum: Some(Checksum::default()),
            ..Default::default()
        };
        let f = figures(3306, &records, &[], 3.0, &rows, &[], after);
        assert!(f.clean(), "{f:?}");
    }
}
