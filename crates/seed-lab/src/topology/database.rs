//! The four MariaDB instances: starting them, dual-master replication between each pair, and
//! reading their state.

use super::process::process_alive;
use super::{
    server_id, server_label, wait_for, Side, Topology, COUNTER, COUNTER_DDL, DATABASE, MONITOR,
    PORTS, READER, REPLICATION, TABLE, TABLE_DDL, WRITER,
};
use crate::mariadb::{MariaDb, MariaDbOptions};
use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// One MariaDB instance of a pair.
#[derive(Debug)]
pub struct Database {
    pub side: Side,
    pub port: u16,
    pub server: MariaDb,
}

/// What `SHOW SLAVE STATUS` says about one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub io_running: String,
    pub sql_running: String,
    pub last_io_error: String,
    pub last_sql_error: String,
    pub seconds_behind_master: Option<u64>,
    pub gtid_io_pos: String,
}

impl ReplicaStatus {
    pub fn running(&self) -> bool {
        self.io_running == "Yes" && self.sql_running == "Yes"
    }
}

impl Database {
    /// `253:3306`.
    pub fn label(&self) -> String {
        server_label(self.side, self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.side.ip()), self.port)
    }

    /// Whether mariadbd runs (a killed one that is not reaped yet does not).
    pub fn is_running(&self) -> bool {
        self.server.pid().is_some_and(process_alive)
    }

    /// SIGKILL, as `kill -9` in the seed's section 6.3.
    pub fn kill(&mut self) -> Result<()> {
        let pid = self
            .server
            .pid()
            .with_context(|| format!("MariaDB {} is not running", self.label()))?;
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL)
            .with_context(|| format!("kill -9 {pid} (MariaDB {})", self.label()))?;
        let until = Instant::now() + Duration::from_secs(10);
        while process_alive(pid) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// `SHOW SLAVE STATUS`, through the server's socket.
    pub fn replica_status(&self) -> Result<ReplicaStatus> {
        let out = self
            .server
            .client()
            .args([
                "--column-names",
                "--vertical",
                "--execute",
                "SHOW SLAVE STATUS",
            ])
            .output()
            .context("cannot run the mariadb client")?;
        if !out.status.success() {
            bail!(
                "SHOW SLAVE STATUS on {} failed: {}",
                self.label(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(parse_replica_status(&text))
    }

    /// Every row of the lab table as (id, account), in id order.
    pub fn table_rows(&self) -> Result<Vec<(u64, String)>> {
        let rows = self.server.rows(&format!(
            "SELECT id, account FROM {DATABASE}.{TABLE} ORDER BY id"
        ))?;
        rows.into_iter()
            .map(|r| {
                let id = r
                    .first()
                    .and_then(|v| v.parse().ok())
                    .with_context(|| format!("a row of {} without an id: {r:?}", self.label()))?;
                Ok((id, r.get(1).cloned().unwrap_or_default()))
            })
            .collect()
    }
}

impl Database {
    /// The counter's value (`counter` row 1).
    pub fn counter(&self) -> Result<u64> {
        let v = self
            .server
            .value(&format!("SELECT n FROM {DATABASE}.{COUNTER} WHERE id = 1"))?;
        v.parse()
            .with_context(|| format!("the counter on {} is {v:?}", self.label()))
    }

    /// Sets the counter back to 0 here (replicated to the peer), so that a scenario's
    /// increments are the counter's whole value afterwards.
    pub fn reset_counter(&self) -> Result<()> {
        self.server.sql(&format!(
            "UPDATE {DATABASE}.{COUNTER} SET n = 0 WHERE id = 1"
        ))?;
        Ok(())
    }

    /// Waits (up to `timeout_s`) until this instance has applied everything `peer` wrote so
    /// far (`MASTER_GTID_WAIT` on the peer's `@@gtid_binlog_pos`); whether it has.
    pub fn applied_all_of(&self, peer: &Database, timeout_s: u32) -> Result<bool> {
        // Only the peer's own domain: what this instance wrote itself is never in its
        // replica position.
        let domain = format!("{}-", server_id(peer.side, peer.port));
        let pos = peer.server.value("SELECT @@gtid_binlog_pos")?;
        let own: Vec<&str> = pos
            .split(',')
            .map(str::trim)
            .filter(|p| p.starts_with(&domain))
            .collect();
        if own.is_empty() {
            return Ok(true);
        }
        let waited = self.server.value(&format!(
            "SELECT MASTER_GTID_WAIT('{}', {timeout_s})",
            own.join(",")
        ))?;
        Ok(waited == "0")
    }
}

/// The `Name: value` lines of `SHOW SLAVE STATUS` in the client's vertical layout.
fn parse_replica_status(text: &str) -> ReplicaStatus {
    let mut s = ReplicaStatus::default();
    for line in text.lines() {
        let Some((name, value)) = line.trim_start().split_once(": ") else {
            continue;
        };
        let value = value.trim().to_string();
        match name {
            "Slave_IO_Running" => s.io_running = value,
            "Slave_SQL_Running" => s.sql_running = value,
            "Last_IO_Error" => s.last_io_error = value,
            "Last_SQL_Error" => s.last_sql_error = value,
            "Seconds_Behind_Master" => s.seconds_behind_master = value.parse().ok(),
            "Gtid_IO_Pos" => s.gtid_io_pos = value,
            _ => {}
        }
    }
    if s.io_running.is_empty() {
        s.io_running = "not configured".into();
        s.sql_running = "not configured".into();
    }
    s
}

impl Topology {
    /// The four instances, started in parallel (each takes seconds on a small machine).
    pub(super) fn start_databases(&mut self) -> Result<()> {
        let mut starts = Vec::new();
        for side in [Side::A, Side::B] {
            let ns = self.host(side.host_role())?.ns.name.clone();
            for port in PORTS {
                let id = server_id(side, port);
                let options = MariaDbOptions::new()
                    .netns(ns.clone())
                    .bind_address(IpAddr::V4(side.ip()))
                    .port(port)
                    .server_id(id)
                    .log_bin("mysql-bin")
                    // The host's address for the directors and the peer, 127.0.0.1 for a user
                    // inside the host's namespace.
                    .option("bind-address", format!("{},127.0.0.1", side.ip()))
                    .option("gtid-domain-id", id)
                    .option("relay-log", "relay-bin")
                    .option("auto-increment-increment", 2)
                    .option("auto-increment-offset", side.offset())
                    .ready_timeout(Duration::from_secs(180));
                let progress = self.progress;
                starts.push(std::thread::spawn(move || {
                    // Several mariadb-install-db at once can fail ("Error on delete of
                    // '/tmp/#sql-temptable-…'"): each bootstrap server clears the temporary
                    // tables it finds in the shared /tmp, the others' included. A new try
                    // starts over with a fresh directory.
                    let mut tries = 0;
                    loop {
                        tries += 1;
                        match MariaDb::start(options.clone()) {
                            Ok(server) => return Ok(Database { side, port, server }),
                            Err(e) if tries < 3 => {
                                if progress {
                                    eprintln!(
                                        "lab: MariaDB {} failed to start, trying again: {}",
                                        server_label(side, port),
                                        telling_line(&format!("{e:#}"))
                                    );
                                }
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }));
            }
        }
        let mut first_error = None;
        for start in starts {
            match start.join() {
                Ok(Ok(db)) => self.databases.push(db),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(anyhow!("a MariaDB start panicked"));
                }
            }
        }
        match first_error {
            Some(e) => Err(e.context("starting the four MariaDB instances")),
            None => Ok(()),
        }
    }

    pub(super) fn set_up_replication(&mut self) -> Result<()> {
        // Local accounts, kept out of the binary log so the peer does not replay them.
        for db in &self.databases {
            db.server.sql(&format!(
                "SET sql_log_bin=0;\
                 CREATE USER '{r}'@'%' IDENTIFIED BY '{rp}';\
                 GRANT REPLICATION SLAVE ON *.* TO '{r}'@'%';\
                 CREATE USER '{m}'@'%' IDENTIFIED BY '{mp}';\
                 GRANT ALL PRIVILEGES ON *.* TO '{m}'@'%';\
                 SET sql_log_bin=1;",
                r = REPLICATION.user,
                rp = REPLICATION.password,
                m = MONITOR.user,
                mp = MONITOR.password,
            ))?;
        }
        // MASTER_CONNECT_RETRY=1 is the seed's own fix (section 7.1): the default 60 s kept a
        // restarted master's peer from reconnecting for a minute.
        for db in &self.databases {
            db.server.sql(&format!(
                "CHANGE MASTER TO MASTER_HOST='{host}', MASTER_PORT={port}, \
                 MASTER_USER='{u}', MASTER_PASSWORD='{p}', MASTER_CONNECT_RETRY=1, \
                 MASTER_USE_GTID=slave_pos; START SLAVE;",
                host = db.side.peer().ip(),
                port = db.port,
                u = REPLICATION.user,
                p = REPLICATION.password,
            ))?;
        }
        // The schema and the application's accounts on A; replication brings them to B.
        for port in PORTS {
            self.db(Side::A, port)?.server.sql(&format!(
                "CREATE DATABASE {DATABASE}; USE {DATABASE}; {TABLE_DDL}; {COUNTER_DDL};\
                 CREATE USER '{w}'@'%' IDENTIFIED BY '{wp}';\
                 GRANT SELECT, INSERT, UPDATE ON {DATABASE}.* TO '{w}'@'%';\
                 CREATE USER '{r}'@'%' IDENTIFIED BY '{rp}';\
                 GRANT SELECT ON {DATABASE}.* TO '{r}'@'%';",
                w = WRITER.user,
                wp = WRITER.password,
                r = READER.user,
                rp = READER.password,
            ))?;
        }
        for port in PORTS {
            let b = self.db(Side::B, port)?;
            wait_for(
                &format!("the table replicated to {}", b.label()),
                Duration::from_secs(60),
                self.cancel,
                || {
                    Ok(b.server.value(&format!(
                        "SELECT COUNT(*) FROM information_schema.TABLES \
                         WHERE TABLE_SCHEMA='{DATABASE}' AND TABLE_NAME='{TABLE}'"
                    ))? == "1"
                        && b.server.value(&format!(
                            "SELECT COUNT(*) FROM mysql.user WHERE User='{}'",
                            READER.user
                        ))? == "1")
                },
            )?;
        }
        self.wait_replication_running(Duration::from_secs(60))?;
        Ok(())
    }
}

/// The line of an error that says the most (MariaDB's first `ERROR`), for a one-line message.
fn telling_line(text: &str) -> &str {
    text.lines()
        .find(|l| l.contains("ERROR"))
        .or_else(|| text.lines().last())
        .unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_show_slave_status() {
        let text = "*************************** 1. row ***************************\n\
                    Slave_IO_State: Waiting for master to send event\n\
                    Master_Host: 192.168.66.254\n\
                    Slave_IO_Running: Yes\n\
                    Slave_SQL_Running: No\n\
                    Last_IO_Error: \n\
                    Last_SQL_Error: Duplicate entry '4' for key 'PRIMARY'\n\
                    Seconds_Behind_Master: NULL\n\
                    Gtid_IO_Pos: 2-2-17\n";
        let s = parse_replica_status(text);
        assert_eq!(s.io_running, "Yes");
        assert_eq!(s.sql_running, "No");
        assert!(!s.running());
        assert_eq!(s.last_sql_error, "Duplicate entry '4' for key 'PRIMARY'");
        assert_eq!(s.seconds_behind_master, None);
        assert_eq!(s.gtid_io_pos, "2-2-17");
        assert_eq!(parse_replica_status("").io_running, "not configured");
    }
}
