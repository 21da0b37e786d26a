//! What `halb lab up` leaves running, written to a state file so that `halb lab down` (another
//! process, later) stops exactly that.

use super::process::process_alive;
use super::{LabDir, Topology};
use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

/// What [`LabState::teardown`] did, and what it could not do.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TeardownReport {
    /// Recorded processes stopped.
    pub stopped: usize,
    /// Processes found in the lab's namespaces that `up` did not start (a director or a
    /// database restarted by hand), stopped too: `what (pid N) in namespace NS`.
    pub strays: Vec<String>,
    pub namespaces_removed: usize,
    pub problems: Vec<String>,
}

/// A process to stop, and how the report names it.
struct Target {
    pid: u32,
    what: String,
    /// It leads its own process group (a director's halb and the scripts it runs).
    group: bool,
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

    /// Stops the recorded processes, then every other process still inside the lab's
    /// namespaces (SIGTERM, up to 30 s, then SIGKILL), and removes exactly the recorded
    /// namespaces and directories.
    ///
    /// The namespaces are the lab's own, so whatever runs in them is the lab's to end: a
    /// director's halb or a mariadbd restarted by hand would otherwise run on in a namespace
    /// that no longer has a name, holding its ports and files.
    pub fn teardown(&self) -> TeardownReport {
        let mut report = TeardownReport::default();
        let mut recorded = Vec::new();
        for p in &self.processes {
            if !process_alive(p.pid) {
                continue;
            }
            let comm = program_of(p.pid);
            if comm != p.program {
                report.problems.push(format!(
                    "pid {} is now {comm:?}, not {} ({}): left alone",
                    p.pid, p.program, p.what
                ));
                continue;
            }
            recorded.push(Target {
                pid: p.pid,
                what: format!("{} (pid {})", p.what, p.pid),
                group: p.program == "halb",
            });
        }
        report.stopped = recorded.len();
        stop_all(&recorded, &mut report.problems);

        let mut strays = Vec::new();
        for ns in &self.namespaces {
            match halb_sys::netns::pids(ns) {
                Ok(pids) => strays.extend(pids.into_iter().map(|pid| Target {
                    pid,
                    what: format!("{} (pid {pid}) in namespace {ns}", program_of(pid)),
                    group: false,
                })),
                Err(e) => report.problems.push(e.to_string()),
            }
        }
        stop_all(&strays, &mut report.problems);
        report.strays = strays.into_iter().map(|t| t.what).collect();

        for ns in &self.namespaces {
            if !halb_sys::netns::named(ns).exists() {
                continue;
            }
            let _ = halb_sys::netns::delete(ns);
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

/// The executable's name (`/proc/PID/comm`), empty when the process is gone.
fn program_of(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().to_string())
        .unwrap_or_default()
}

/// SIGTERM to each, up to 30 s for all to exit (a database flushes), then SIGKILL to what is
/// left, which is a problem worth reporting.
fn stop_all(targets: &[Target], problems: &mut Vec<String>) {
    for t in targets {
        let _ = kill(Pid::from_raw(t.pid as i32), Signal::SIGTERM);
    }
    let until = Instant::now() + Duration::from_secs(30);
    while targets.iter().any(|t| process_alive(t.pid)) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    for t in targets {
        if process_alive(t.pid) {
            let _ = kill(Pid::from_raw(t.pid as i32), Signal::SIGKILL);
            problems.push(format!("{} needed SIGKILL", t.what));
        }
        if t.group {
            // Anything it started (scripts) goes with it.
            let _ = nix::sys::signal::killpg(Pid::from_raw(t.pid as i32), Signal::SIGKILL);
        }
    }
}

impl Topology {
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
}
