//! A real MariaDB server for tests and for the lab: its own datadir (made with
//! `mariadb-install-db`), socket, pid file, port and error log in a temporary directory,
//! optionally inside a named network namespace.
//!
//! ```no_run
//! use halb_seed_lab::mariadb::{MariaDb, MariaDbOptions};
//! let db = MariaDb::start(
//!     MariaDbOptions::new()
//!         .server_id(1)
//!         .log_bin("mysql-bin")
//!         .option("auto_increment_increment", 2)
//!         .option("auto_increment_offset", 1),
//! )?;
//! db.sql("CREATE USER halb_monitor@'%' IDENTIFIED BY 'secret'")?;
//! let aborted: u64 = db.global_status("Aborted_connects")?;
//! # let _ = aborted;
//! # anyhow::Ok(())
//! ```
//!
//! SQL goes through the server's unix socket as root (`mariadb --socket`), which works from the
//! root namespace whatever network namespace the server listens in. Debian's `mariadb-server` and
//! `mariadb-client` packages provide the programs (`scripts/deps.sh` installs them).

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fmt::Display;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How to start a server. Every setter returns the options, to chain.
#[derive(Debug, Clone)]
pub struct MariaDbOptions {
    bind_address: IpAddr,
    port: Option<u16>,
    netns: Option<String>,
    server_id: Option<u32>,
    skip_name_resolve: bool,
    extra: Vec<String>,
    ready_timeout: Duration,
}

impl Default for MariaDbOptions {
    fn default() -> Self {
        MariaDbOptions {
            bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: None,
            netns: None,
            server_id: None,
            skip_name_resolve: true,
            extra: Vec::new(),
            ready_timeout: Duration::from_secs(60),
        }
    }
}

impl MariaDbOptions {
    /// 127.0.0.1 on a free port, name resolution off, small InnoDB buffers.
    pub fn new() -> Self {
        MariaDbOptions::default()
    }

    /// The address the server listens on (`--bind-address`).
    pub fn bind_address(mut self, ip: IpAddr) -> Self {
        self.bind_address = ip;
        self
    }

    /// The TCP port; default: a free one in the root namespace, 3306 inside a namespace.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Runs the server inside the network namespace `ip netns` knows as `name` (the caller
    /// creates and removes it).
    pub fn netns(mut self, name: impl Into<String>) -> Self {
        self.netns = Some(name.into());
        self
    }

    pub fn server_id(mut self, id: u32) -> Self {
        self.server_id = Some(id);
        self
    }

    /// Binary logging to `BASENAME.NNNNNN` in the datadir (`--log-bin=BASENAME`).
    pub fn log_bin(self, basename: &str) -> Self {
        self.option("log-bin", basename)
    }

    /// Whether the server looks up client host names (default: no). With lookups on, the server
    /// keeps its host cache, so `max_connect_errors` can block a client address; lookups of
    /// addresses other than 127.0.0.1 then go to the resolver, so do that inside a namespace.
    pub fn skip_name_resolve(mut self, skip: bool) -> Self {
        self.skip_name_resolve = skip;
        self
    }

    /// `--NAME=VALUE`, after halb's defaults (so it overrides them).
    pub fn option(mut self, name: &str, value: impl Display) -> Self {
        self.extra.push(format!("--{name}={value}"));
        self
    }

    /// `--NAME`, a flag without a value.
    pub fn flag(mut self, name: &str) -> Self {
        self.extra.push(format!("--{name}"));
        self
    }

    /// How long to wait for the server to accept SQL (default 60 s).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }
}

/// A running server; [`Drop`] stops it and removes its directory.
#[derive(Debug)]
pub struct MariaDb {
    options: MariaDbOptions,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// Small buffers: a test server holds a few rows, and several run at once on a small machine.
const INNODB_OPTIONS: &[&str] = &[
    "--innodb-buffer-pool-size=16M",
    "--innodb-log-file-size=4M",
    "--innodb-log-buffer-size=1M",
];

impl MariaDb {
    /// Makes a datadir, starts `mariadbd` and waits until it answers SQL.
    pub fn start(options: MariaDbOptions) -> Result<MariaDb> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("halb-mariadb-{}-", std::process::id()))
            .tempdir()
            .context("cannot create a directory for the MariaDB server")?;
        install_datadir(dir.path())?;
        let pick_port = options.port.is_none() && options.netns.is_none();
        let port = match options.port {
            Some(port) => port,
            None if options.netns.is_some() => 3306,
            None => free_port(options.bind_address)?,
        };
        let mut db = MariaDb {
            options,
            port,
            dir,
            child: None,
        };
        // Another process may take the free port between the look and mariadbd's bind.
        let mut attempts = 0;
        loop {
            match db.launch() {
                Ok(()) => return Ok(db),
                Err(e) if pick_port && attempts < 3 && db.error_log().contains("in use") => {
                    attempts += 1;
                    eprintln!("MariaDB port {} was taken, trying another: {e:#}", db.port);
                    db.port = free_port(db.options.bind_address)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Starts the server again on the same datadir, port and options after [`MariaDb::stop`].
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.launch()
    }

    /// Starts the server again as [`MariaDb::restart`] does, with `flags` (`--NAME[=VALUE]`)
    /// added for this start only.
    pub fn restart_with(&mut self, flags: &[&str]) -> Result<()> {
        self.stop()?;
        let kept = self.options.extra.len();
        self.options
            .extra
            .extend(flags.iter().map(|f| f.to_string()));
        let launched = self.launch();
        self.options.extra.truncate(kept);
        launched
    }

    /// The server's TCP address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.options.bind_address, self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("mysqld.sock")
    }

    pub fn datadir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn error_log_path(&self) -> PathBuf {
        self.dir.path().join("error.log")
    }

    /// The server's error log so far (empty if unreadable).
    pub fn error_log(&self) -> String {
        fs::read_to_string(self.error_log_path()).unwrap_or_default()
    }

    /// The server's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// `mariadb` connected through the socket as root, without reading any option file; add
    /// arguments and run.
    pub fn client(&self) -> Command {
        let mut c = Command::new("mariadb");
        c.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["--user=root", "--batch", "--skip-column-names"]);
        c
    }

    /// Runs SQL (one or more statements) as root; returns what it printed (tab-separated rows).
    pub fn sql(&self, sql: &str) -> Result<String> {
        let out = self
            .client()
            .arg("--execute")
            .arg(sql)
            .output()
            .context("cannot run the mariadb client (is mariadb-client installed?)")?;
        if !out.status.success() {
            bail!(
                "SQL on the MariaDB server at {} failed: {}\n{sql}",
                self.addr(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The rows a query returns, each split into its columns.
    pub fn rows(&self, sql: &str) -> Result<Vec<Vec<String>>> {
        Ok(self
            .sql(sql)?
            .lines()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect())
    }

    /// The first column of the first row.
    pub fn value(&self, sql: &str) -> Result<String> {
        self.rows(sql)?
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next())
            .with_context(|| format!("{sql} returned no row"))
    }

    /// A counter of `SHOW GLOBAL STATUS`, such as `Aborted_connects`.
    pub fn global_status(&self, name: &str) -> Result<u64> {
        // Rows are "NAME\tVALUE".
        let rows = self.rows(&format!("SHOW GLOBAL STATUS LIKE '{name}'"))?;
        let raw = rows
            .first()
            .and_then(|r| r.get(1))
            .with_context(|| format!("no status variable {name}"))?;
        raw.parse()
            .with_context(|| format!("status variable {name} is not a number: {raw}"))
    }

    /// Stops the server: SIGTERM, up to 30 s for a clean shutdown, then SIGKILL. Does nothing if
    /// it is not running.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = Pid::from_raw(child.id() as i32);
        if child.try_wait()?.is_none() {
            let _ = kill(pid, Signal::SIGTERM);
            let until = Instant::now() + Duration::from_secs(30);
            while child.try_wait()?.is_none() {
                if Instant::now() > until {
                    let _ = kill(pid, Signal::SIGKILL);
                    child.wait()?;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // A restart must not find the old socket and take it for the new server's.
        let _ = fs::remove_file(self.socket());
        Ok(())
    }

    fn command(&self) -> Command {
        let mut c = match &self.options.netns {
            Some(ns) => halb_sys::netns::command(ns, "mariadbd"),
            None => Command::new("mariadbd"),
        };
        let dir = self.dir.path();
        // --no-defaults must come first.
        c.arg("--no-defaults");
        if running_as_root() {
            c.arg("--user=root");
        }
        c.arg(format!("--datadir={}", self.datadir().display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", self.error_log_path().display()))
            .arg(format!("--tmpdir={}", dir.display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--bind-address={}", self.options.bind_address))
            .args(INNODB_OPTIONS)
            // Test data is worthless after a crash: do not pay for durability.
            .arg("--innodb-flush-log-at-trx-commit=2");
        if self.options.skip_name_resolve {
            c.arg("--skip-name-resolve");
        }
        if let Some(id) = self.options.server_id {
            c.arg(format!("--server-id={id}"));
        }
        c.args(&self.options.extra);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    fn launch(&mut self) -> Result<()> {
        let child = self
            .command()
            .spawn()
            .context("cannot start mariadbd (is mariadb-server installed?)")?;
        self.child = Some(child);
        let until = Instant::now() + self.options.ready_timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    bail!(
                        "mariadbd exited ({status}) while starting on {}:\n{}",
                        self.addr(),
                        tail(&self.error_log(), 20)
                    );
                }
            }
            if self.socket().exists() && self.ping() {
                return Ok(());
            }
            if Instant::now() > until {
                let log = tail(&self.error_log(), 20);
                let _ = self.stop();
                bail!(
                    "mariadbd on {} not ready after {:?}:\n{log}",
                    self.addr(),
                    self.options.ready_timeout
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A complete login and query (never a half-open probe: that would count in the server's
    /// Aborted_connects).
    fn ping(&self) -> bool {
        self.client()
            .args(["--connect-timeout=2", "--execute=SELECT 1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("stopping the MariaDB server on {}: {e:#}", self.addr());
        }
    }
}

/// A fresh datadir with the system tables, root reachable through the socket.
fn install_datadir(dir: &Path) -> Result<()> {
    let datadir = dir.join("data");
    // Its own temporary directory: the bootstrap server deletes the `#sql*` tables it finds
    // in its tmpdir, which in a shared /tmp are those of bootstraps running beside it.
    let tmpdir = dir.join("tmp");
    std::fs::create_dir_all(&tmpdir).with_context(|| format!("creating {}", tmpdir.display()))?;
    let mut c = Command::new("mariadb-install-db");
    c.arg("--no-defaults");
    c.arg(format!("--tmpdir={}", tmpdir.display()));
    if running_as_root() {
        c.arg("--user=root");
    }
    let out: Output = c
        .arg(format!("--datadir={}", datadir.display()))
        .args(["--auth-root-authentication-method=socket", "--skip-test-db"])
        .args(INNODB_OPTIONS)
        .stdin(Stdio::null())
        .output()
        .context("cannot run mariadb-install-db (is mariadb-server installed?)")?;
    if !out.status.success() {
        bail!(
            "mariadb-install-db --datadir={} failed ({}):\n{}{}",
            datadir.display(),
            out.status,
            tail(&String::from_utf8_lossy(&out.stdout), 10),
            tail(&String::from_utf8_lossy(&out.stderr), 10)
        );
    }
    Ok(())
}

/// A port nothing listens on now (the server binds it a moment later; a clash shows as a
/// failed start with "Address already in use" in the log).
fn free_port(ip: IpAddr) -> Result<u16> {
    let listener = TcpListener::bind(SocketAddr::new(ip, 0))
        .with_context(|| format!("cannot find a free port on {ip}"))?;
    Ok(listener.local_addr()?.port())
}

fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_keep_their_order() {
        let o = MariaDbOptions::new()
            .log_bin("mysql-bin")
            .option("auto_increment_increment", 2)
            .flag("log-slave-updates");
        assert_eq!(
            o.extra,
            vec![
                "--log-bin=mysql-bin",
                "--auto_increment_increment=2",
                "--log-slave-updates"
            ]
        );
    }

    /// Needs root (or a user mariadbd runs as) and Debian's mariadb-server and mariadb-client.
    #[test]
    fn starts_answers_restarts_and_cleans_up() {
        let mut db = MariaDb::start(
            MariaDbOptions::new()
                .server_id(7)
                .log_bin("mysql-bin")
                .option("auto_increment_increment", 2)
                .option("auto_increment_offset", 2),
        )
        .expect("start MariaDB (run scripts/deps.sh as root)");
        let dir = db.dir.path().to_path_buf();
        assert_eq!(db.value("SELECT @@server_id").unwrap(), "7");
        assert_eq!(db.value("SELECT @@log_bin").unwrap(), "1");
        assert_eq!(
            db.rows("SELECT @@auto_increment_increment, @@auto_increment_offset")
                .unwrap(),
            vec![vec!["2".to_string(), "2".to_string()]]
        );
        assert_eq!(db.global_status("Aborted_connects").unwrap(), 0);
        db.sql("CREATE DATABASE lab; CREATE TABLE lab.t (id INT AUTO_INCREMENT PRIMARY KEY); INSERT INTO lab.t VALUES (NULL), (NULL)")
            .unwrap();
        assert_eq!(
            db.sql("SELECT id FROM lab.t ORDER BY id").unwrap(),
            "2\n4\n"
        );
        assert!(db.sql("SELEKT").is_err());
        // The server listens where it says.
        std::net::TcpStream::connect(db.addr()).expect("connect to the server's port");

        let pid = db.pid().unwrap();
        db.restart().unwrap();
        assert_ne!(db.pid(), Some(pid));
        assert_eq!(db.value("SELECT COUNT(*) FROM lab.t").unwrap(), "2");
        db.stop().unwrap();
        assert!(!db.is_running());
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
        drop(db);
        assert!(!dir.exists(), "{} left behind", dir.display());
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
