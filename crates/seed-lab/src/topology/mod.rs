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
//!
//! By concern: `seed.rs` (addresses, schema, accounts), `network.rs` (namespaces, bridge, veth),
//! `database.rs` (MariaDB and replication), `director.rs` (`halb run`), `state.rs` (`up` and
//! `down`), `wait.rs` (waits and Ctrl-C), `process.rs` (processes seen from outside).

mod checksum;
mod database;
mod director;
mod faults;
mod network;
mod process;
mod seed;
mod state;
mod wait;

pub use checksum::{parse_checksum_report, Checksum, TableChecksum};
pub use database::{Database, ReplicaStatus};
pub use director::Director;
pub use network::{Host, Netns};
pub use process::process_alive;
pub use seed::{
    add_safety_keywords, instance_of_server_id, server_id, server_label, Account, DirectorConfig,
    Side, CLIENT_IP, COUNTER, COUNTER_DDL, DATABASE, MONITOR, PORTS, READER, REPLICATION, TABLE,
    TABLE_DDL, VIP, WRITER,
};
pub use state::{DatabaseInfo, DirectorInfo, HostInfo, LabProcess, LabState, TeardownReport};
pub use wait::{wait_for, Cancel};

use anyhow::{bail, Context, Result};
use process::program_exists;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What to build.
#[derive(Debug, Clone)]
pub struct TopologyOptions {
    /// Namespace names are `PREFIX-br`, `PREFIX-client`, `PREFIX-d1`, …
    pub prefix: String,
    /// The `halb` executable the directors run.
    pub halb: PathBuf,
    /// The directors' configurations, used as they are (the seed's by default).
    pub master_config: DirectorConfig,
    pub backup_config: DirectorConfig,
    /// Where logs and control sockets go; a temporary directory (removed on drop) when unset.
    pub dir: Option<PathBuf>,
    /// The data plane `halb run` uses (`proxy`: the development and CI kernels have no IPVS).
    pub dataplane: String,
    /// Print each step to stderr.
    pub progress: bool,
    pub cancel: Cancel,
}

impl TopologyOptions {
    /// Unique namespace names (`halb-lab-PID`), the seed's configurations.
    pub fn new(halb: impl Into<PathBuf>) -> Self {
        TopologyOptions {
            prefix: format!("halb-lab-{}", std::process::id()),
            halb: halb.into(),
            master_config: DirectorConfig::SEED_MASTER,
            backup_config: DirectorConfig::SEED_BACKUP,
            dir: None,
            dataplane: "proxy".into(),
            progress: false,
            cancel: Cancel::default(),
        }
    }
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
        // What an unkind scenario stopped half-way may have left: its faults and its extra host.
        for role in ["d1", "d2"] {
            self.clear_faults(role)?;
        }
        self.hosts.retain(|h| h.role != "client2");
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

    fn say(&self, message: &str) {
        if self.progress {
            eprintln!("lab: {message}");
        }
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
                 (apt-get install; scripts/deps.sh in halb's repository does)"
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
        if let DirectorConfig::File(path) = config {
            if !path.is_file() {
                bail!("the configuration {} does not exist", path.display());
            }
        }
    }
    Ok(())
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
