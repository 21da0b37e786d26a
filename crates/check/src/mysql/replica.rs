//! A server's replica state: `SHOW REPLICA STATUS` (MariaDB 10.5.1+, MySQL 8.0.22+), else
//! `SHOW SLAVE STATUS` (older servers, which do not know the first). Blocking, through the
//! [`super::client`]; what the catch-up and `halb mysql doctor` read before they trust a server
//! to have applied its peer's writes.

use serde::{Deserialize, Serialize};

use super::client::{Connection, QueryResult, SqlError};

/// "You have an error in your SQL syntax": a server without `SHOW REPLICA STATUS`.
const ER_PARSE_ERROR: u16 = 1064;

/// One replication channel as the server reports it (the first, the default connection).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaState {
    /// Whom it replicates from (`Master_Host:Master_Port`).
    pub source: String,
    /// The IO thread is connected to its source (`Yes`; not `Connecting` nor `No`).
    pub io_running: bool,
    /// The SQL thread applies what the IO thread fetched.
    pub sql_running: bool,
    /// `Seconds_Behind_Master`; `None` when the server does not know (a thread stopped).
    pub seconds_behind: Option<u64>,
    /// The IO or SQL thread's last error, empty when none.
    pub last_error: String,
    /// MariaDB's `Using_Gtid` (`Slave_Pos`, `Current_Pos`, `No`); MySQL's `Auto_Position`
    /// (`1`, `0`).
    pub using_gtid: String,
}

impl ReplicaState {
    /// Why the server cannot be trusted to catch up with its source, if it cannot.
    pub fn not_applying(&self) -> Option<String> {
        match (self.io_running, self.sql_running) {
            (true, true) => None,
            (io, sql) => {
                let mut why = Vec::new();
                if !sql {
                    why.push("its SQL thread is stopped");
                }
                if !io {
                    why.push("its IO thread is not connected");
                }
                let mut text = format!("{} (replicating from {})", why.join(" and "), self.source);
                if !self.last_error.is_empty() {
                    text.push_str(&format!(": {}", self.last_error));
                }
                Some(text)
            }
        }
    }

    /// For `halb status`: `IO yes, SQL yes, 0 s behind`.
    pub fn summary(&self) -> String {
        let yes = |b: bool| if b { "yes" } else { "no" };
        let mut text = format!(
            "replica of {}: IO {}, SQL {}, {}",
            self.source,
            yes(self.io_running),
            yes(self.sql_running),
            self.seconds_behind
                .map_or("lag unknown".to_string(), |s| format!("{s} s behind"))
        );
        if !self.last_error.is_empty() {
            text.push_str(&format!(", last error: {}", self.last_error));
        }
        text
    }

    /// From the first row of a `SHOW REPLICA|SLAVE STATUS` answer; `None` when the server
    /// replicates from nobody (no row).
    pub fn from_status(r: &QueryResult) -> Option<ReplicaState> {
        if r.rows.is_empty() {
            return None;
        }
        // MariaDB and MySQL 8.0.22+ name the columns after "Source"/"Replica" in SHOW REPLICA
        // STATUS where older ones say "Master"/"Slave"; MariaDB keeps the old names.
        let get = |names: &[&str]| -> String {
            names
                .iter()
                .find_map(|n| r.get(0, n))
                .unwrap_or("")
                .to_string()
        };
        let host = get(&["Master_Host", "Source_Host"]);
        let port = get(&["Master_Port", "Source_Port"]);
        let io_error = get(&["Last_IO_Error"]);
        let sql_error = get(&["Last_SQL_Error"]);
        let last_error = [io_error, sql_error]
            .into_iter()
            .filter(|e| !e.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        Some(ReplicaState {
            source: format!("{host}:{port}"),
            io_running: get(&["Slave_IO_Running", "Replica_IO_Running"]) == "Yes",
            sql_running: get(&["Slave_SQL_Running", "Replica_SQL_Running"]) == "Yes",
            seconds_behind: get(&["Seconds_Behind_Master", "Seconds_Behind_Source"])
                .parse()
                .ok(),
            last_error,
            using_gtid: get(&["Using_Gtid", "Auto_Position"]),
        })
    }
}

/// The replica state of the server `conn` is logged in to; `None` when it replicates from
/// nobody.
pub fn replica_state(conn: &mut Connection) -> Result<Option<ReplicaState>, SqlError> {
    let answer = match conn.query("SHOW REPLICA STATUS") {
        Ok(r) => r,
        Err(SqlError::Server { code, .. }) if code == ER_PARSE_ERROR => {
            conn.query("SHOW SLAVE STATUS")?
        }
        Err(e) => return Err(e),
    };
    Ok(ReplicaState::from_status(&answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(pairs: &[(&str, &str)]) -> QueryResult {
        QueryResult {
            columns: pairs.iter().map(|(k, _)| k.to_string()).collect(),
            rows: vec![pairs.iter().map(|(_, v)| Some(v.to_string())).collect()],
            ..QueryResult::default()
        }
    }

    #[test]
    fn a_stopped_sql_thread_is_named_with_its_error() {
        let s = ReplicaState::from_status(&status(&[
            ("Master_Host", "192.168.66.254"),
            ("Master_Port", "3306"),
            ("Slave_IO_Running", "Yes"),
            ("Slave_SQL_Running", "No"),
            ("Seconds_Behind_Master", "NULL"),
            ("Last_SQL_Error", "Duplicate entry '3' for key 'PRIMARY'"),
            ("Using_Gtid", "Slave_Pos"),
        ]))
        .expect("a replica");
        assert_eq!(s.seconds_behind, None);
        assert_eq!(
            s.not_applying().as_deref(),
            Some(
                "its SQL thread is stopped (replicating from 192.168.66.254:3306): \
                 Duplicate entry '3' for key 'PRIMARY'"
            )
        );
        assert!(s.summary().contains("IO yes, SQL no, lag unknown"));
    }

    #[test]
    fn mysql_names_and_a_connecting_io_thread() {
        let s = ReplicaState::from_status(&status(&[
            ("Source_Host", "10.0.0.2"),
            ("Source_Port", "3306"),
            ("Replica_IO_Running", "Connecting"),
            ("Replica_SQL_Running", "Yes"),
            ("Seconds_Behind_Source", "0"),
        ]))
        .expect("a replica");
        assert!(!s.io_running && s.sql_running);
        assert_eq!(s.seconds_behind, Some(0));
        assert!(s
            .not_applying()
            .is_some_and(|w| w.starts_with("its IO thread is not connected")));
        assert_eq!(ReplicaState::from_status(&QueryResult::default()), None);
    }
}
