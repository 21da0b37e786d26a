//! Server fencing for a MySQL / MariaDB write service: the statements that make a server refuse
//! writes and end its clients' sessions, and that make the new writer writable again. Blocking
//! (the [`super::client`]); the daemon runs them off its async workers and decides when.
//!
//! - [`fence`]: `SET GLOBAL read_only = ON`, then `super_read_only = ON` where the server has
//!   it (MySQL; MariaDB answers "unknown system variable", which is fine), then `KILL
//!   CONNECTION` of every client session: not replication's threads, not the server's own, not
//!   the fencing user's (other directors' checks). A transaction under way when `read_only`
//!   came can no longer commit a write, and a pooled connection left on the server cannot start
//!   one.
//! - [`unfence`]: `super_read_only = OFF` where present, then `read_only = OFF`.

use std::net::SocketAddr;
use std::time::Duration;

use super::client::{ConnectOptions, Connection, SqlError};

/// MySQL's and MariaDB's "Unknown system variable".
const ER_UNKNOWN_SYSTEM_VARIABLE: u16 = 1193;
/// "Unknown thread id": the session ended between the listing and the kill.
const ER_NO_SUCH_THREAD: u16 = 1094;

/// The account fencing logs in with (a MYSQL_CHECK's), and how long each step may take.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    /// For the connect and for each statement.
    pub timeout: Duration,
}

/// What [`fence`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fenced {
    /// The server was read-only before (someone else's fence, or an operator's).
    pub was_read_only: bool,
    /// The server has `super_read_only` and it is on now.
    pub super_read_only: bool,
    /// The sessions killed (their ids).
    pub killed: Vec<u64>,
}

/// The client sessions to kill: everyone's but replication's, the server's own threads', the
/// fencing user's and this connection's.
const CLIENT_SESSIONS: &str = "SELECT ID FROM information_schema.PROCESSLIST \
     WHERE ID <> CONNECTION_ID() \
     AND USER NOT IN ('system user', 'event_scheduler', 'unauthenticated user') \
     AND COMMAND NOT IN ('Binlog Dump', 'Binlog Dump GTID', 'Daemon', 'Slave_IO', 'Slave_SQL', \
     'Slave_worker')";

fn connect(addr: SocketAddr, creds: &Credentials) -> Result<Connection, SqlError> {
    let mut options = ConnectOptions::new(addr, &creds.user, &creds.password);
    options.connect_timeout = creds.timeout;
    options.io_timeout = creds.timeout;
    Connection::connect(&options)
}

/// `SET GLOBAL name = value`; false when the server has no such variable.
fn set_if_present(conn: &mut Connection, name: &str, value: &str) -> Result<bool, SqlError> {
    match conn.query(&format!("SET GLOBAL {name} = {value}")) {
        Ok(_) => Ok(true),
        Err(SqlError::Server { code, .. }) if code == ER_UNKNOWN_SYSTEM_VARIABLE => Ok(false),
        Err(e) => Err(e),
    }
}

/// Makes the server at `addr` refuse writes and ends its client sessions. An error leaves the
/// server in whatever state the statements before it reached; the caller retries the whole.
pub fn fence(addr: SocketAddr, creds: &Credentials) -> Result<Fenced, SqlError> {
    let mut conn = connect(addr, creds)?;
    let was_read_only = conn
        .query("SELECT @@global.read_only")?
        .first()
        .is_some_and(|v| v != "0");
    conn.query("SET GLOBAL read_only = ON")?;
    let super_read_only = set_if_present(&mut conn, "super_read_only", "ON")?;
    let sessions = conn.query(&format!(
        "{CLIENT_SESSIONS} AND USER <> '{}'",
        creds.user.replace('\\', "\\\\").replace('\'', "''")
    ))?;
    let mut killed = Vec::new();
    for id in sessions
        .rows
        .iter()
        .filter_map(|row| row.first()?.as_deref()?.parse::<u64>().ok())
    {
        match conn.query(&format!("KILL CONNECTION {id}")) {
            Ok(_) => killed.push(id),
            Err(SqlError::Server { code, .. }) if code == ER_NO_SUCH_THREAD => {}
            Err(e) => return Err(e),
        }
    }
    conn.close();
    Ok(Fenced {
        was_read_only,
        super_read_only,
        killed,
    })
}

/// Makes the server at `addr` writable.
pub fn unfence(addr: SocketAddr, creds: &Credentials) -> Result<(), SqlError> {
    let mut conn = connect(addr, creds)?;
    set_if_present(&mut conn, "super_read_only", "OFF")?;
    conn.query("SET GLOBAL read_only = OFF")?;
    conn.close();
    Ok(())
}

/// Whether the server at `addr` refuses writes (`@@global.read_only`).
pub fn is_read_only(addr: SocketAddr, creds: &Credentials) -> Result<bool, SqlError> {
    let mut conn = connect(addr, creds)?;
    let answer = conn.query("SELECT @@global.read_only")?;
    conn.close();
    Ok(answer.first().is_some_and(|v| v != "0"))
}

/// A server's binary-log position in global transaction ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GtidPosition {
    /// MariaDB's `@@gtid_binlog_pos`: `domain-server-sequence`, one per domain.
    MariaDb(String),
    /// MySQL's `@@gtid_executed`: a GTID set.
    MySql(String),
}

impl std::fmt::Display for GtidPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GtidPosition::MariaDb(p) | GtidPosition::MySql(p) => {
                f.write_str(if p.is_empty() { "(empty)" } else { p })
            }
        }
    }
}

/// What the server at `addr` has written to its binary log.
pub fn gtid_position(addr: SocketAddr, creds: &Credentials) -> Result<GtidPosition, SqlError> {
    let mut conn = connect(addr, creds)?;
    let position = match conn.query("SELECT @@global.gtid_binlog_pos") {
        Ok(r) => GtidPosition::MariaDb(r.first().unwrap_or("").to_string()),
        Err(SqlError::Server { code, .. }) if code == ER_UNKNOWN_SYSTEM_VARIABLE => {
            let r = conn.query("SELECT @@global.gtid_executed")?;
            GtidPosition::MySql(r.first().unwrap_or("").replace('\n', ""))
        }
        Err(e) => return Err(e),
    };
    conn.close();
    Ok(position)
}

/// Waits up to `limit` until the server at `addr` has applied `position` (MariaDB's
/// `MASTER_GTID_WAIT`, MySQL's `WAIT_FOR_EXECUTED_GTID_SET`); true when it has. On MariaDB the
/// waiting server's own transactions are left out of the position: it applies only its peer's
/// through replication, and its own are in its binary log already.
pub fn wait_for_position(
    addr: SocketAddr,
    creds: &Credentials,
    position: &GtidPosition,
    limit: Duration,
) -> Result<bool, SqlError> {
    let mut options = ConnectOptions::new(addr, &creds.user, &creds.password);
    options.connect_timeout = creds.timeout;
    options.io_timeout = limit + creds.timeout;
    let mut conn = Connection::connect(&options)?;
    let secs = limit.as_secs_f64();
    let done = match position {
        GtidPosition::MariaDb(pos) => {
            let own = conn.query("SELECT @@global.server_id")?;
            let own = own.first().unwrap_or("").to_string();
            let theirs: Vec<&str> = pos
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty() && g.split('-').nth(1) != Some(own.as_str()))
                .collect();
            if theirs.is_empty() {
                true
            } else {
                let r = conn.query(&format!(
                    "SELECT MASTER_GTID_WAIT('{}', {secs})",
                    theirs.join(",")
                ))?;
                r.first() == Some("0")
            }
        }
        GtidPosition::MySql(set) if set.is_empty() => true,
        GtidPosition::MySql(set) => {
            let r = conn.query(&format!(
                "SELECT WAIT_FOR_EXECUTED_GTID_SET('{set}', {secs})"
            ))?;
            r.first() == Some("0")
        }
    };
    conn.close();
    Ok(done)
}
