//! `halb run` on each director, and what the lab reads from it (its control socket, its log).

use super::{Topology, TopologyOptions};
use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    pub(super) child: Option<Child>,
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
        let child = halb_sys::netns::command(&self.ns, &self.halb)
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

impl Topology {
    pub(super) fn start_directors(&mut self, options: &TopologyOptions) -> Result<()> {
        for (name, config) in [
            ("d1", &options.master_config),
            ("d2", &options.backup_config),
        ] {
            let host = self.host(name)?;
            let config = config.write_into(self.dir.path())?;
            let mut director = Director {
                name,
                ip: host.ip,
                ns: host.ns.name.clone(),
                config,
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
