//! `halb mysql doctor`: what makes a dual-master pair behind one VIP unsafe, read from the
//! servers themselves. [`gather`] logs in and reads the variables and the replica state
//! (blocking); [`assess`] is pure: the facts of a virtual server's servers in, findings out.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::client::{Connection, SqlError};
use super::fence::Credentials;
use super::replica::{replica_state, ReplicaState};

/// How bad a finding is, in the monitoring plugins' terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Critical,
}

/// One thing wrong with a pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// The server it is about, or `None` for the pair.
    pub server: Option<SocketAddr>,
    pub message: String,
}

/// What one server says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerFacts {
    pub version: String,
    /// `SHOW GLOBAL VARIABLES` of the names in [`VARIABLES`] the server has.
    pub variables: BTreeMap<String, String>,
    /// `None`: replicates from nobody.
    pub replica: Option<ReplicaState>,
}

impl ServerFacts {
    fn var(&self, name: &str) -> Option<&str> {
        self.variables.get(name).map(String::as_str)
    }

    fn on(&self, name: &str) -> Option<bool> {
        self.var(name).map(|v| v == "ON" || v == "1")
    }

    fn number(&self, name: &str) -> Option<u64> {
        self.var(name)?.parse().ok()
    }

    fn is_mariadb(&self) -> bool {
        self.version.contains("MariaDB") || self.variables.contains_key("gtid_domain_id")
    }
}

/// The variables the doctor reads (a server lacks some: MySQL has no `gtid_domain_id`, MariaDB
/// no `gtid_mode`).
pub const VARIABLES: &[&str] = &[
    "auto_increment_increment",
    "auto_increment_offset",
    "log_bin",
    "log_slave_updates",
    "log_replica_updates",
    "read_only",
    "server_id",
    "gtid_domain_id",
    "gtid_strict_mode",
    "gtid_mode",
    "enforce_gtid_consistency",
    "rpl_semi_sync_master_enabled",
    "rpl_semi_sync_slave_enabled",
    "rpl_semi_sync_source_enabled",
    "rpl_semi_sync_replica_enabled",
];

/// Logs in to `addr` and reads its facts.
pub fn gather(addr: SocketAddr, creds: &Credentials) -> Result<ServerFacts, SqlError> {
    let mut options = super::client::ConnectOptions::new(addr, &creds.user, &creds.password);
    options.connect_timeout = creds.timeout;
    options.io_timeout = creds.timeout;
    let mut conn = Connection::connect(&options)?;
    let names = VARIABLES
        .iter()
        .map(|v| format!("'{v}'"))
        .collect::<Vec<_>>()
        .join(",");
    let answer = conn.query(&format!(
        "SHOW GLOBAL VARIABLES WHERE Variable_name IN ({names})"
    ))?;
    let variables = answer
        .rows
        .iter()
        .filter_map(|row| {
            let name = row.first()?.as_deref()?;
            let value = row.get(1)?.as_deref().unwrap_or("");
            Some((name.to_string(), value.to_string()))
        })
        .collect();
    let version = conn
        .query("SELECT VERSION()")?
        .first()
        .unwrap_or("")
        .to_string();
    let replica = replica_state(&mut conn)?;
    conn.close();
    Ok(ServerFacts {
        version,
        variables,
        replica,
    })
}

/// The findings for one virtual server's servers: `fencing` when it is a `mysql_writer`.
/// A server whose facts could not be read is a critical finding of its own; the rules that
/// compare servers use those that answered.
pub fn assess(
    servers: &[(SocketAddr, Result<ServerFacts, String>)],
    fencing: bool,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut say = |severity, server: Option<SocketAddr>, message: String| {
        out.push(Finding {
            severity,
            server,
            message,
        })
    };
    let mut known = Vec::new();
    for (addr, facts) in servers {
        match facts {
            Ok(f) => known.push((*addr, f)),
            Err(e) => say(
                Severity::Critical,
                Some(*addr),
                format!("cannot read it: {e}"),
            ),
        }
    }
    for &(addr, f) in &known {
        let at = Some(addr);
        if f.on("log_bin") == Some(false) {
            say(
                Severity::Critical,
                at,
                "log_bin is OFF: its writes never reach the other master".into(),
            );
        }
        let updates = f.on("log_slave_updates").or(f.on("log_replica_updates"));
        if updates == Some(false) {
            say(
                Severity::Warning,
                at,
                "log_slave_updates is OFF: what it applies from its peer is not in its own \
                 binary log, so a replica or a re-pointed peer of it misses those writes"
                    .into(),
            );
        }
        if f.is_mariadb() {
            if f.replica
                .as_ref()
                .is_some_and(|r| r.using_gtid.eq_ignore_ascii_case("no"))
            {
                say(
                    Severity::Warning,
                    at,
                    "replicates without GTIDs (Using_Gtid No): halb's catch-up cannot wait for \
                     a GTID position on it; CHANGE MASTER TO MASTER_USE_GTID=slave_pos"
                        .into(),
                );
            }
        } else if f.var("gtid_mode").is_some_and(|m| m != "ON") {
            say(
                Severity::Warning,
                at,
                format!(
                    "gtid_mode is {}: halb's catch-up cannot wait for a GTID set on it",
                    f.var("gtid_mode").unwrap_or("")
                ),
            );
        }
        let semi_sync = [
            "rpl_semi_sync_master_enabled",
            "rpl_semi_sync_source_enabled",
        ]
        .iter()
        .find_map(|v| f.on(v));
        if semi_sync != Some(true) {
            say(
                Severity::Warning,
                at,
                "semi-synchronous replication is off (rpl_semi_sync_master_enabled): a write \
                 acknowledged to the client may exist on this server only when it fails"
                    .into(),
            );
        }
        match &f.replica {
            None => say(
                Severity::Critical,
                at,
                "replicates from nobody: it never receives its peer's writes".into(),
            ),
            Some(r) => {
                if let Some(why) = r.not_applying() {
                    say(Severity::Critical, at, format!("replication broken: {why}"));
                } else if let Some(lag) = r.seconds_behind.filter(|s| *s > 0) {
                    say(
                        Severity::Warning,
                        at,
                        format!("replication lags {lag} s behind {}", r.source),
                    );
                }
            }
        }
    }
    // What only a comparison of the servers shows.
    let n = known.len() as u64;
    if n >= 2 {
        let ai: Vec<(SocketAddr, u64, u64)> = known
            .iter()
            .filter_map(|(a, f)| {
                Some((
                    *a,
                    f.number("auto_increment_increment")?,
                    f.number("auto_increment_offset")?,
                ))
            })
            .collect();
        for (i, &(a, inc_a, off_a)) in ai.iter().enumerate() {
            for &(b, inc_b, off_b) in &ai[i + 1..] {
                if auto_increments_overlap(inc_a, off_a, inc_b, off_b) {
                    say(
                        Severity::Critical,
                        None,
                        format!(
                            "auto_increment overlaps: {a} (increment {inc_a}, offset {off_a}) and \
                             {b} (increment {inc_b}, offset {off_b}) hand out the same ids; give \
                             both increment {n} and offsets 1..{n}"
                        ),
                    );
                }
            }
        }
        if known.iter().all(|(_, f)| f.is_mariadb()) {
            let domains: Vec<&str> = known
                .iter()
                .filter_map(|(_, f)| f.var("gtid_domain_id"))
                .collect();
            if domains.len() == known.len() && domains.windows(2).all(|w| w[0] == w[1]) {
                say(
                    Severity::Warning,
                    None,
                    format!(
                        "every server uses gtid_domain_id {}: writes taken by two masters in \
                         the same domain conflict in the GTID stream; give each master its own \
                         domain",
                        domains[0]
                    ),
                );
            }
        }
        let writable: Vec<String> = known
            .iter()
            .filter(|(_, f)| f.on("read_only") == Some(false))
            .map(|(a, _)| a.to_string())
            .collect();
        if writable.len() >= 2 {
            if fencing {
                say(
                    Severity::Warning,
                    None,
                    format!(
                        "{} are all writable now: the MASTER director's halb makes all but \
                         one read-only (is it running?)",
                        writable.join(" and ")
                    ),
                );
            } else {
                say(
                    Severity::Critical,
                    None,
                    format!(
                        "{} are all writable and the virtual server has no mysql_writer: a \
                         write can land on either, and both masters diverge",
                        writable.join(" and ")
                    ),
                );
            }
        }
    }
    out
}

/// Whether two servers' `auto_increment_increment`/`offset` can generate the same id: ids
/// `off_a + k·inc_a` and `off_b + j·inc_b` meet when `off_a ≡ off_b (mod gcd(inc_a, inc_b))`.
fn auto_increments_overlap(inc_a: u64, off_a: u64, inc_b: u64, off_b: u64) -> bool {
    let (inc_a, inc_b) = (inc_a.max(1), inc_b.max(1));
    let g = gcd(inc_a, inc_b);
    off_a % g == off_b % g
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(vars: &[(&str, &str)], replica: Option<ReplicaState>) -> ServerFacts {
        ServerFacts {
            version: "10.11.6-MariaDB-0+deb12u1-log".into(),
            variables: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            replica,
        }
    }

    fn healthy_replica(source: &str) -> Option<ReplicaState> {
        Some(ReplicaState {
            source: source.into(),
            io_running: true,
            sql_running: true,
            seconds_behind: Some(0),
            last_error: String::new(),
            using_gtid: "Slave_Pos".into(),
        })
    }

    fn good(offset: &str, domain: &str, read_only: &str) -> ServerFacts {
        facts(
            &[
                ("auto_increment_increment", "2"),
                ("auto_increment_offset", offset),
                ("log_bin", "ON"),
                ("log_slave_updates", "ON"),
                ("gtid_domain_id", domain),
                ("read_only", read_only),
                ("rpl_semi_sync_master_enabled", "ON"),
                ("rpl_semi_sync_slave_enabled", "ON"),
            ],
            healthy_replica("peer:3306"),
        )
    }

    fn a() -> SocketAddr {
        "10.0.0.1:3306".parse().unwrap()
    }
    fn b() -> SocketAddr {
        "10.0.0.2:3306".parse().unwrap()
    }

    #[test]
    fn a_pair_set_up_right_has_no_findings() {
        let findings = assess(
            &[
                (a(), Ok(good("1", "1", "OFF"))),
                (b(), Ok(good("2", "2", "ON"))),
            ],
            true,
        );
        assert_eq!(findings, vec![]);
    }

    #[test]
    fn a_pair_set_up_wrong_has_each_finding() {
        let mut x = good("1", "0", "OFF");
        x.variables.insert("log_slave_updates".into(), "OFF".into());
        x.variables
            .insert("rpl_semi_sync_master_enabled".into(), "OFF".into());
        let mut y = good("1", "0", "OFF");
        y.replica = y.replica.map(|r| ReplicaState {
            sql_running: false,
            ..r
        });
        let findings = assess(&[(a(), Ok(x)), (b(), Ok(y))], false);
        let text: Vec<String> = findings.iter().map(|f| f.message.clone()).collect();
        let has = |s: &str| text.iter().any(|t| t.contains(s));
        assert!(has("log_slave_updates is OFF"), "{text:#?}");
        assert!(has("semi-synchronous replication is off"), "{text:#?}");
        assert!(
            has("replication broken: its SQL thread is stopped"),
            "{text:#?}"
        );
        assert!(has("auto_increment overlaps"), "{text:#?}");
        assert!(has("every server uses gtid_domain_id 0"), "{text:#?}");
        assert!(
            has("all writable and the virtual server has no mysql_writer"),
            "{text:#?}"
        );
        assert!(findings
            .iter()
            .any(|f| f.severity == Severity::Critical && f.message.contains("overlaps")));
    }

    #[test]
    fn overlapping_auto_increments() {
        assert!(auto_increments_overlap(1, 1, 1, 1));
        assert!(auto_increments_overlap(2, 1, 2, 1));
        assert!(!auto_increments_overlap(2, 1, 2, 2));
        // 3k+1 and 6k+4 meet at 4, 10, …
        assert!(auto_increments_overlap(3, 1, 6, 4));
        assert!(!auto_increments_overlap(3, 1, 3, 2));
    }

    #[test]
    fn an_unreachable_server_is_critical_and_the_other_still_assessed() {
        let findings = assess(
            &[
                (a(), Err("connect to 10.0.0.1:3306: refused".into())),
                (b(), Ok(facts(&[("log_bin", "OFF")], None))),
            ],
            true,
        );
        assert!(findings.iter().any(|f| f.server == Some(a())
            && f.severity == Severity::Critical
            && f.message.contains("refused")));
        assert!(findings
            .iter()
            .any(|f| f.server == Some(b()) && f.message.contains("log_bin is OFF")));
        assert!(findings
            .iter()
            .any(|f| f.server == Some(b()) && f.message.contains("replicates from nobody")));
    }
}
