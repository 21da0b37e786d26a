//! The seed's topology in network namespaces: one bridge, a client (.100), two directors (.6
//! with the seed's MASTER configuration, .12 with its BACKUP one) running `halb run` on the
//! userspace proxy, and two database hosts (.253 = A, the real server; .254 = B, the sorry
//! server), each with two MariaDB instances (3306 and 3308). The 3306 instances replicate from
//! each other, and so do the 3308 instances (dual master, GTID, `auto_increment_increment=2`,
//! A with offset 2 and B with offset 1: A hands out even ids and B odd ones, as in the seed).
//! The VIP is 192.168.66.251. Nothing is routed out of the bridge.
//!
//! [`Topology`] owns everything it starts: dropping it stops the directors and the databases
//! and removes every namespace, also when [`Topology::build`] fails half-way (each step's
//! resources are in the value before the next step runs). [`Topology::detach`] instead leaves
//! everything running for `halb lab up` and returns a [`LabState`] that names exactly what to
//! stop and remove later ([`LabState::teardown`]).

use crate::mariadb::{MariaDb, MariaDbOptions};
use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 66, 251);
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 66, 100);
/// The seed's two MySQL ports, each a virtual server and a dual-master pair.
pub const PORTS: [u16; 2] = [3306, 3308];
pub const DATABASE: &str = "lab";
pub const TABLE: &str = "vip_wealth_log";

/// The seed's table (section 6.1), without its comments.
pub const TABLE_DDL: &str = "CREATE TABLE `vip_wealth_log` (\
 `id` bigint(20) NOT NULL AUTO_INCREMENT,\
 `account` varchar(40) NOT NULL,\
 `cert_no` varchar(40) DEFAULT NULL,\
 `name` varchar(40) DEFAULT NULL,\
 PRIMARY KEY (`id`),\
 KEY `vip_user_wealth_index` (`cert_no`,`name`)\
) ENGINE=InnoDB DEFAULT CHARSET=utf8";

/// A MariaDB account the lab creates.
#[derive(Debug, Clone, Copy)]
pub struct Account {
    pub user: &'static str,
    pub password: &'static str,
}

/// The application's writer: INSERT and SELECT on the lab database.
pub const WRITER: Account = Account {
    user: "writer",
    password: "writer",
};
/// The application's reader: SELECT on the lab database.
pub const READER: Account = Account {
    user: "reader",
    password: "reader",
};
/// The lab's own eyes (process list, replication state); local to each server, never
/// replicated.
pub const MONITOR: Account = Account {
    user: "monitor",
    password: "monitor",
};
/// Replication between the two masters of a pair; local to each server.
pub const REPLICATION: Account = Account {
    user: "repl",
    password: "repl",
};

/// A database host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Side {
    /// .253, the real server of both virtual servers; even ids.
    A,
    /// .254, the sorry server; odd ids.
    B,
}

impl Side {
    pub fn ip(self) -> Ipv4Addr {
        match self {
            Side::A => Ipv4Addr::new(192, 168, 66, 253),
            Side::B => Ipv4Addr::new(192, 168, 66, 254),
        }
    }

    pub fn peer(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    /// `auto_increment_offset`: the seed's A wrote ids 2, 4, 6…
    pub fn offset(self) -> u32 {
        match self {
            Side::A => 2,
            Side::B => 1,
        }
    }

    fn host_role(self) -> &'static str {
        match self {
            Side::A => "db253",
            Side::B => "db254",
        }
    }
}

/// `253:3306`: how the report names a MariaDB instance.
pub fn server_label(side: Side, port: u16) -> String {
    format!("{}:{port}", side.ip().octets()[3])
}

/// The instance's `server_id` (also its GTID domain).
pub fn server_id(side: Side, port: u16) -> u32 {
    let base = if port == 3306 { 1 } else { 3 };
    base + u32::from(side == Side::B)
}

/// The instance a `server_id` belongs to.
pub fn instance_of_server_id(id: u32) -> Option<(Side, u16)> {
    PORTS
        .iter()
        .flat_map(|&p| [(Side::A, p), (Side::B, p)])
        .find(|&(s, p)| server_id(s, p) == id)
}

/// Lets a signal handler stop long waits: every wait of the lab checks it.
#[derive(Clone, Copy, Default)]
pub struct Cancel(Option<&'static AtomicBool>);

impl Cancel {
    pub fn new(flag: &'static AtomicBool) -> Self {
        Cancel(Some(flag))
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.is_some_and(|f| f.load(Ordering::Relaxed))
    }

    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            bail!("interrupted");
        }
        Ok(())
    }
}

impl fmt::Debug for Cancel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cancel({})", self.is_cancelled())
    }
}

/// Polls `condition` every 100 ms until it holds; an error from it counts as "not yet" (the
/// last one is in the timeout's message). Returns how long it took.
pub fn wait_for(
    what: &str,
    timeout: Duration,
    cancel: Cancel,
    mut condition: impl FnMut() -> Result<bool>,
) -> Result<Duration> {
    let start = Instant::now();
    let mut last_error = None;
    loop {
        cancel.check()?;
        match condition() {
            Ok(true) => return Ok(start.elapsed()),
            Ok(false) => {}
            Err(e) => last_error = Some(e),
        }
        if start.elapsed() >= timeout {
            return Err(match last_error {
                Some(e) => e.context(format!("{what}: not after {timeout:?}")),
                None => anyhow!("{what}: not after {timeout:?}"),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A network namespace; removed on drop unless disowned (for `halb lab up`).
#[derive(Debug)]
pub struct Netns {
    pub name: String,
    owned: bool,
}

impl Netns {
    pub fn create(name: &str) -> Result<Netns> {
        let out = Command::new("ip")
            .args(["netns", "add", name])
            .output()
            .context("cannot run `ip netns add` (is iproute2 installed?)")?;
        if !out.status.success() {
            bail!(
                "ip netns add {name} failed (the lab needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let ns = Netns {
            name: name.to_string(),
            owned: true,
        };
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `/run/netns/NAME`, for `halb_sys::netns::enter`.
    pub fn path(&self) -> PathBuf {
        halb_sys::netns::named(&self.name)
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs a command inside the namespace; its stdout, or an error with its stderr.
    pub fn run(&self, argv: &[&str]) -> Result<String> {
        let out = self
            .command(argv[0])
            .args(&argv[1..])
            .output()
            .with_context(|| format!("cannot run {argv:?} in namespace {}", self.name))?;
        if !out.status.success() {
            bail!(
                "{} in namespace {} failed: {}",
                argv.join(" "),
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn disown(mut self) -> String {
        self.owned = false;
        std::mem::take(&mut self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.owned {
            delete_netns(&self.name);
        }
    }
}

fn delete_netns(name: &str) {
    let _ = Command::new("ip").args(["netns", "del", name]).output();
}

/// A host on the bridge.
#[derive(Debug)]
pub struct Host {
    /// `client`, `d1`, `d2`, `db253`, `db254`.
    pub role: &'static str,
    pub ip: Ipv4Addr,
    pub ns: Netns,
}

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

/// `halb run` on one director.
#[derive(Debug)]
pub struct Director {
    /// `d1` (the seed's MASTER, .6) or `d2` (its BACKUP, .12).
    pub name: &'static str,
    pub ip: Ipv4Addr,
    pub ns: String,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    halb: PathBuf,
    dataplane: String,
    child: Option<Child>,
}

impl Director {
    /// Starts `halb run -f CONFIG --control-socket SOCKET --dataplane proxy` in the director's
    /// namespace, in its own process group (a terminal's Ctrl-C is for the lab, which stops
    /// the daemon itself), its output appended to the log.
    pub fn start(&mut self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        let err = log.try_clone()?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(&self.halb)
            .arg("run")
            .arg("-f")
            .arg(&self.config)
            .arg("--control-socket")
            .arg(&self.socket)
            .args(["--dataplane", &self.dataplane])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .spawn()
            .with_context(|| {
                format!("cannot start {} run on {}", self.halb.display(), self.name)
            })?;
        self.child = Some(child);
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGTERM (as `service keepalived stop`), up to `timeout` for a clean exit, then SIGKILL
    /// to its process group.
    pub fn stop(&mut self, timeout: Duration) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let until = Instant::now() + timeout;
        loop {
            if child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() >= until {
                let _ = nix::sys::signal::killpg(pid, Signal::SIGKILL);
                child.wait()?;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Anything the daemon started (scripts) goes with it.
        let _ = nix::sys::signal::killpg(pid, Signal::SIGKILL);
        Ok(())
    }

    /// The daemon's snapshot, the same JSON as `halb status --json` prints.
    pub fn status(&self) -> Result<serde_json::Value> {
        let mut stream = UnixStream::connect(&self.socket)
            .with_context(|| format!("cannot reach halb on {}", self.socket.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"{\"connections\":false}\n")?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line)?;
        let value: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("halb's answer on {}", self.socket.display()))?;
        if let Some(e) = value.get("error") {
            bail!("halb on {} refused: {e}", self.socket.display());
        }
        Ok(value)
    }

    /// The state of the (first) VRRP instance: `MASTER`, `BACKUP`, …
    pub fn vrrp_state(&self) -> Result<String> {
        let s = self.status()?;
        s["vrrp"][0]["state"]
            .as_str()
            .map(str::to_string)
            .context("halb's status has no VRRP instance")
    }

    /// Whether the virtual server on `port` is on its sorry server.
    pub fn sorry_server_active(&self, port: u16) -> Result<bool> {
        let s = self.status()?;
        let suffix = format!(":{port}");
        s["virtual_servers"]
            .as_array()
            .and_then(|vs| {
                vs.iter()
                    .find(|v| v["name"].as_str().is_some_and(|n| n.ends_with(&suffix)))
            })
            .and_then(|v| v["sorry_server_active"].as_bool())
            .with_context(|| format!("halb's status has no virtual server on port {port}"))
    }

    /// `halb status` as a user sees it (ipvsadm's layout, VRRP and checkers).
    pub fn status_text(&self) -> Result<String> {
        let out = Command::new(&self.halb)
            .arg("status")
            .arg("--control-socket")
            .arg(&self.socket)
            .output()
            .with_context(|| format!("cannot run {} status", self.halb.display()))?;
        if !out.status.success() {
            bail!(
                "halb status on {} failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Director {
    fn drop(&mut self) {
        if let Err(e) = self.stop(Duration::from_secs(5)) {
            eprintln!("stopping halb on {}: {e:#}", self.name);
        }
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct TopologyOptions {
    /// Namespace names are `PREFIX-br`, `PREFIX-client`, `PREFIX-d1`, …
    pub prefix: String,
    /// The `halb` executable the directors run.
    pub halb: PathBuf,
    /// The seed's configurations, used as they are.
    pub master_config: PathBuf,
    pub backup_config: PathBuf,
    /// Where logs and control sockets go; a temporary directory (removed on drop) when unset.
    pub dir: Option<PathBuf>,
    /// The data plane `halb run` uses (`proxy`: the development and CI kernels have no IPVS).
    pub dataplane: String,
    /// Print each step to stderr.
    pub progress: bool,
    pub cancel: Cancel,
}

impl TopologyOptions {
    /// Unique namespace names (`halb-lab-PID`), the seed's configurations from `../shared/seed`
    /// beside the repository.
    pub fn new(halb: impl Into<PathBuf>) -> Self {
        TopologyOptions {
            prefix: format!("halb-lab-{}", std::process::id()),
            halb: halb.into(),
            master_config: seed_config("keepalived-master.conf"),
            backup_config: seed_config("keepalived-backup.conf"),
            dir: None,
            dataplane: "proxy".into(),
            progress: false,
            cancel: Cancel::default(),
        }
    }
}

/// A configuration of the seed, in `../shared/seed` beside the repository (the check before
/// the build says so if it is not there).
fn seed_config(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/seed")
        .join(name)
}

#[derive(Debug)]
enum LabDir {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl LabDir {
    fn path(&self) -> &Path {
        match self {
            LabDir::Temp(t) => t.path(),
            LabDir::Kept(p) => p,
        }
    }
}

/// The running topology. Fields drop in order: directors, databases, hosts, bridge.
#[derive(Debug)]
pub struct Topology {
    pub directors: Vec<Director>,
    pub databases: Vec<Database>,
    pub hosts: Vec<Host>,
    bridge: Option<Netns>,
    dir: LabDir,
    pub prefix: String,
    progress: bool,
    pub cancel: Cancel,
}

impl Topology {
    /// Builds everything and waits until d1 is MASTER and d2 BACKUP, replication runs both ways
    /// on both pairs and the table exists everywhere. On an error, everything started so far is
    /// stopped and removed before it returns.
    pub fn build(options: &TopologyOptions) -> Result<Topology> {
        check_prerequisites(options)?;
        let dir = match &options.dir {
            Some(d) => {
                fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
                LabDir::Kept(d.clone())
            }
            None => LabDir::Temp(
                tempfile::Builder::new()
                    .prefix("halb-lab-")
                    .tempdir()
                    .context("cannot create the lab's directory")?,
            ),
        };
        let mut topology = Topology {
            directors: Vec::new(),
            databases: Vec::new(),
            hosts: Vec::new(),
            bridge: None,
            dir,
            prefix: options.prefix.clone(),
            progress: options.progress,
            cancel: options.cancel,
        };
        let started = Instant::now();
        topology.build_network()?;
        topology.say(&format!(
            "network: bridge and 5 hosts in namespaces {}-* ({:.1} s)",
            options.prefix,
            started.elapsed().as_secs_f64()
        ));
        topology.cancel.check()?;
        topology.start_databases()?;
        topology.say(&format!(
            "MariaDB: 4 instances up ({:.1} s)",
            started.elapsed().as_secs_f64()
        ));
        topology.cancel.check()?;
        topology.set_up_replication()?;
        topology.say(&format!(
            "MariaDB: dual-master replication on 3306 and 3308, table {DATABASE}.{TABLE} ({:.1} s)",
            started.elapsed().as_secs_f64()
        ));
        topology.start_directors(options)?;
        topology.wait_directors_settled(Duration::from_secs(60))?;
        topology.say(&format!(
            "halb: d1 MASTER, d2 BACKUP ({:.1} s)",
            started.elapsed().as_secs_f64()
        ));
        Ok(topology)
    }

    /// Where logs and control sockets are.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn host(&self, role: &str) -> Result<&Host> {
        self.hosts
            .iter()
            .find(|h| h.role == role)
            .with_context(|| format!("no host {role} in the lab"))
    }

    /// The client's namespace, where the writer and reader run.
    pub fn client_netns(&self) -> Result<PathBuf> {
        Ok(self.host("client")?.ns.path())
    }

    pub fn db(&self, side: Side, port: u16) -> Result<&Database> {
        self.databases
            .iter()
            .find(|d| d.side == side && d.port == port)
            .with_context(|| format!("no MariaDB {} in the lab", server_label(side, port)))
    }

    pub fn db_mut(&mut self, side: Side, port: u16) -> Result<&mut Database> {
        self.databases
            .iter_mut()
            .find(|d| d.side == side && d.port == port)
            .with_context(|| format!("no MariaDB {} in the lab", server_label(side, port)))
    }

    pub fn director(&self, name: &str) -> Result<&Director> {
        self.directors
            .iter()
            .find(|d| d.name == name)
            .with_context(|| format!("no director {name} in the lab"))
    }

    pub fn director_mut(&mut self, name: &str) -> Result<&mut Director> {
        self.directors
            .iter_mut()
            .find(|d| d.name == name)
            .with_context(|| format!("no director {name} in the lab"))
    }

    /// The director whose VRRP instance is MASTER now, if any.
    pub fn master_director(&self) -> Option<&Director> {
        self.directors
            .iter()
            .find(|d| d.vrrp_state().is_ok_and(|s| s == "MASTER"))
    }

    /// Namespace names, the bridge's last.
    pub fn namespaces(&self) -> Vec<String> {
        self.hosts
            .iter()
            .map(|h| h.ns.name.clone())
            .chain(self.bridge.iter().map(|b| b.name.clone()))
            .collect()
    }

    /// The pids of every process the lab runs now.
    pub fn pids(&self) -> Vec<u32> {
        self.directors
            .iter()
            .filter_map(Director::pid)
            .chain(self.databases.iter().filter_map(|d| d.server.pid()))
            .collect()
    }

    /// Brings the topology back to its start: every MariaDB running, both directors running
    /// with d1 MASTER, replication running on every instance. Used after a scenario that
    /// failed half-way.
    pub fn heal(&mut self, timeout: Duration) -> Result<()> {
        for db in &mut self.databases {
            if !db.is_running() {
                let label = db.label();
                db.server
                    .restart()
                    .with_context(|| format!("restarting MariaDB {label}"))?;
            }
        }
        for d in &mut self.directors {
            if !d.is_running() {
                d.start()?;
            }
        }
        self.wait_directors_settled(timeout)?;
        self.wait_replication_running(timeout)?;
        Ok(())
    }

    /// Waits until every instance's replication threads run.
    pub fn wait_replication_running(&self, timeout: Duration) -> Result<Duration> {
        wait_for(
            "replication running on all four instances",
            timeout,
            self.cancel,
            || {
                for db in &self.databases {
                    let s = db.replica_status()?;
                    if !s.running() {
                        bail!(
                            "{}: IO {} SQL {} {}{}",
                            db.label(),
                            s.io_running,
                            s.sql_running,
                            s.last_io_error,
                            s.last_sql_error
                        );
                    }
                }
                Ok(true)
            },
        )
    }

    /// Waits until d1 is MASTER and d2 BACKUP; fails at once if either daemon exits.
    pub fn wait_directors_settled(&self, timeout: Duration) -> Result<Duration> {
        let d1 = self.director("d1")?;
        let d2 = self.director("d2")?;
        let logs = || {
            format!(
                "halb on d1 logged:\n{}\nhalb on d2 logged:\n{}",
                tail(&d1.log_text(), 15),
                tail(&d2.log_text(), 15)
            )
        };
        let start = Instant::now();
        loop {
            self.cancel.check()?;
            for d in [d1, d2] {
                if !d.pid().is_some_and(process_alive) {
                    bail!("halb on {} exited\n{}", d.name, logs());
                }
            }
            let state = match (d1.vrrp_state(), d2.vrrp_state()) {
                (Ok(s1), Ok(s2)) if s1 == "MASTER" && s2 == "BACKUP" => return Ok(start.elapsed()),
                (Ok(s1), Ok(s2)) => format!("d1 {s1}, d2 {s2}"),
                (Err(e), _) | (_, Err(e)) => format!("{e:#}"),
            };
            if start.elapsed() >= timeout {
                bail!(
                    "d1 MASTER and d2 BACKUP: not after {timeout:?} ({state})\n{}",
                    logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Leaves everything running (for `halb lab up`): nothing is stopped or removed when the
    /// returned state is dropped; [`LabState::teardown`] does that later.
    pub fn detach(self) -> LabState {
        let Topology {
            directors,
            databases,
            hosts,
            bridge,
            dir,
            prefix,
            ..
        } = self;
        let mut state = LabState {
            prefix,
            dir: dir.path().to_path_buf(),
            ..LabState::default()
        };
        for mut d in directors {
            if let Some(child) = d.child.take() {
                state.processes.push(LabProcess {
                    pid: child.id(),
                    program: "halb".into(),
                    what: format!("halb run on {} ({})", d.name, d.ip),
                });
                // Not waited for: the process outlives this one.
                std::mem::forget(child);
            }
            state.directors.push(DirectorInfo {
                name: d.name.to_string(),
                ns: d.ns.clone(),
                ip: d.ip,
                config: d.config.clone(),
                socket: d.socket.clone(),
                log: d.log.clone(),
            });
        }
        for db in databases {
            if let Some(pid) = db.server.pid() {
                state.processes.push(LabProcess {
                    pid,
                    program: "mariadbd".into(),
                    what: format!("MariaDB {}", db.label()),
                });
            }
            let dir = db
                .server
                .socket()
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            state.databases.push(DatabaseInfo {
                label: db.label(),
                addr: db.addr(),
                socket: db.server.socket(),
                error_log: db.server.error_log_path(),
            });
            state.dirs.push(dir);
            // Keeps the server and its directory: the state names both for `down`.
            std::mem::forget(db);
        }
        for h in hosts {
            state.hosts.push(HostInfo {
                role: h.role.to_string(),
                ns: h.ns.name.clone(),
                ip: h.ip,
            });
            state.namespaces.push(h.ns.disown());
        }
        if let Some(b) = bridge {
            state.namespaces.push(b.disown());
        }
        match dir {
            LabDir::Temp(t) => {
                state.dirs.push(t.keep());
            }
            LabDir::Kept(p) => state.dirs.push(p),
        }
        state
    }

    fn say(&self, message: &str) {
        if self.progress {
            eprintln!("lab: {message}");
        }
    }

    fn build_network(&mut self) -> Result<()> {
        let bridge = Netns::create(&format!("{}-br", self.prefix))?;
        bridge.run(&["ip", "link", "add", "br0", "type", "bridge"])?;
        // VRRP adverts are multicast; no snooping, so they flood without IGMP reports.
        bridge.run(&[
            "ip",
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        bridge.run(&["ip", "link", "set", "br0", "up"])?;
        self.bridge = Some(bridge);
        let hosts: [(&'static str, Ipv4Addr); 5] = [
            ("client", CLIENT_IP),
            ("d1", Ipv4Addr::new(192, 168, 66, 6)),
            ("d2", Ipv4Addr::new(192, 168, 66, 12)),
            (Side::A.host_role(), Side::A.ip()),
            (Side::B.host_role(), Side::B.ip()),
        ];
        for (role, ip) in hosts {
            let ns = Netns::create(&format!("{}-{role}", self.prefix))?;
            let host = Host { role, ip, ns };
            // In the list before it is wired, so a failure below still removes it.
            self.hosts.push(host);
            let host = self.hosts.last().context("a host was just added")?;
            let bridge = self.bridge.as_ref().context("the bridge was just made")?;
            let port = format!("{role}0");
            bridge.run(&[
                "ip",
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &host.ns.name,
            ])?;
            bridge.run(&["ip", "link", "set", &port, "master", "br0", "up"])?;
            host.ns
                .run(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
            host.ns.run(&["ip", "link", "set", "eth0", "up"])?;
        }
        Ok(())
    }

    /// The four instances, started in parallel (each takes seconds on a small machine).
    fn start_databases(&mut self) -> Result<()> {
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

    fn set_up_replication(&mut self) -> Result<()> {
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
                "CREATE DATABASE {DATABASE}; USE {DATABASE}; {TABLE_DDL};\
                 CREATE USER '{w}'@'%' IDENTIFIED BY '{wp}';\
                 GRANT SELECT, INSERT ON {DATABASE}.* TO '{w}'@'%';\
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

    fn start_directors(&mut self, options: &TopologyOptions) -> Result<()> {
        for (name, config) in [
            ("d1", &options.master_config),
            ("d2", &options.backup_config),
        ] {
            let host = self.host(name)?;
            let mut director = Director {
                name,
                ip: host.ip,
                ns: host.ns.name.clone(),
                config: config.clone(),
                socket: self.dir.path().join(format!("{name}.sock")),
                log: self.dir.path().join(format!("{name}.log")),
                halb: options.halb.clone(),
                dataplane: options.dataplane.clone(),
                child: None,
            };
            director.start()?;
            self.directors.push(director);
        }
        Ok(())
    }
}

fn check_prerequisites(options: &TopologyOptions) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the lab needs root (network namespaces, MariaDB servers as root)");
    }
    for program in ["ip", "mariadbd", "mariadb-install-db", "mariadb"] {
        if !program_exists(program) {
            bail!(
                "{program} not found: install iproute2, mariadb-server and mariadb-client \
                 (scripts/deps.sh does)"
            );
        }
    }
    if !options.halb.is_file() {
        bail!(
            "the halb executable {} does not exist",
            options.halb.display()
        );
    }
    for config in [&options.master_config, &options.backup_config] {
        if !config.is_file() {
            bail!(
                "the configuration {} does not exist (the seed's are in ../shared/seed beside \
                 the repository; or give them as options)",
                config.display()
            );
        }
    }
    Ok(())
}

fn program_exists(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|dir| dir.join(name).is_file())
}

/// Whether `pid` is a live process (a zombie is not).
pub fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses: "PID (COMM) S …".
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The line of an error that says the most (MariaDB's first `ERROR`), for a one-line message.
fn telling_line(text: &str) -> &str {
    text.lines()
        .find(|l| l.contains("ERROR"))
        .or_else(|| text.lines().last())
        .unwrap_or(text)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What `halb lab up` left running, for `halb lab down`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LabState {
    pub prefix: String,
    /// Logs, control sockets, this state.
    pub dir: PathBuf,
    pub hosts: Vec<HostInfo>,
    pub directors: Vec<DirectorInfo>,
    pub databases: Vec<DatabaseInfo>,
    /// Stopped by `down`, in this order.
    pub processes: Vec<LabProcess>,
    /// Removed by `down`, in this order (the bridge's last).
    pub namespaces: Vec<String>,
    /// Removed by `down`.
    pub dirs: Vec<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostInfo {
    pub role: String,
    pub ns: String,
    pub ip: Ipv4Addr,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirectorInfo {
    pub name: String,
    pub ns: String,
    pub ip: Ipv4Addr,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseInfo {
    pub label: String,
    pub addr: SocketAddr,
    pub socket: PathBuf,
    pub error_log: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabProcess {
    pub pid: u32,
    /// The executable's name, checked before signalling (the pid may have been reused).
    pub program: String,
    pub what: String,
}

/// What [`LabState::teardown`] could not do.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TeardownReport {
    pub stopped: usize,
    pub namespaces_removed: usize,
    pub problems: Vec<String>,
}

impl LabState {
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn load(path: &Path) -> Result<LabState> {
        let text =
            fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a lab state", path.display()))
    }

    /// Stops exactly the recorded processes (SIGTERM, up to 30 s, then SIGKILL), removes
    /// exactly the recorded namespaces and directories.
    pub fn teardown(&self) -> TeardownReport {
        let mut report = TeardownReport::default();
        let mut signalled = Vec::new();
        for p in &self.processes {
            if !process_alive(p.pid) {
                continue;
            }
            let comm = fs::read_to_string(format!("/proc/{}/comm", p.pid)).unwrap_or_default();
            if comm.trim() != p.program {
                report.problems.push(format!(
                    "pid {} is now {:?}, not {} ({}): left alone",
                    p.pid,
                    comm.trim(),
                    p.program,
                    p.what
                ));
                continue;
            }
            let _ = kill(Pid::from_raw(p.pid as i32), Signal::SIGTERM);
            signalled.push(p);
        }
        let until = Instant::now() + Duration::from_secs(30);
        while signalled.iter().any(|p| process_alive(p.pid)) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        for p in &signalled {
            if process_alive(p.pid) {
                let _ = kill(Pid::from_raw(p.pid as i32), Signal::SIGKILL);
                report
                    .problems
                    .push(format!("{} (pid {}) needed SIGKILL", p.what, p.pid));
            }
            if p.program == "halb" {
                // It ran in its own process group.
                let _ = nix::sys::signal::killpg(Pid::from_raw(p.pid as i32), Signal::SIGKILL);
            }
            report.stopped += 1;
        }
        for ns in &self.namespaces {
            if !halb_sys::netns::named(ns).exists() {
                continue;
            }
            delete_netns(ns);
            if halb_sys::netns::named(ns).exists() {
                report
                    .problems
                    .push(format!("namespace {ns} could not be removed"));
            } else {
                report.namespaces_removed += 1;
            }
        }
        for dir in &self.dirs {
            if dir.as_os_str().is_empty() || !dir.exists() {
                continue;
            }
            if let Err(e) = fs::remove_dir_all(dir) {
                report
                    .problems
                    .push(format!("cannot remove {}: {e}", dir.display()));
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ids_are_distinct_and_map_back() {
        let mut seen = Vec::new();
        for port in PORTS {
            for side in [Side::A, Side::B] {
                let id = server_id(side, port);
                assert!(!seen.contains(&id));
                seen.push(id);
                assert_eq!(instance_of_server_id(id), Some((side, port)));
            }
        }
        assert_eq!(server_label(Side::B, 3308), "254:3308");
        assert_eq!(instance_of_server_id(9), None);
    }

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

    #[test]
    fn the_own_process_is_alive_and_a_free_pid_is_not() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(u32::MAX - 1));
    }
}
