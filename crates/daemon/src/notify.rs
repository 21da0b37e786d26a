//! Notify scripts and notify FIFOs (keepalived's vrrp_notify.c): on every state change of an
//! instance or sync group, `notify_master` / `notify_backup` / `notify_fault` / `notify_stop`,
//! the generic `notify` with `INSTANCE|GROUP NAME STATE PRIORITY` appended, and a line on
//! `notify_fifo` / `vrrp_notify_fifo`.
//!
//! What to run and what to write is pure ([`scripts_for`], [`fifo_line`]); [`Notifier`] runs
//! it without blocking the VRRP task.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use halb_config::model::{Config, GlobalDefs, NotifyScripts, Script};
use halb_vrrp::State;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::process::{self, RunAs};

/// `notify_stop` gets one second, as in keepalived (`system_call_script(..., TIMER_HZ, ...)`),
/// so that a stopping daemon can wait for it.
const STOP_TIMEOUT: Duration = Duration::from_secs(1);
/// keepalived never kills the other notify scripts; halb does after this long, so that a hung
/// script cannot pile up processes on every flap.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(60);

/// Whose state changed: the first word of the generic `notify` arguments and of a FIFO line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Instance,
    Group,
}

impl Subject {
    fn word(self) -> &'static str {
        match self {
            Subject::Instance => "INSTANCE",
            Subject::Group => "GROUP",
        }
    }
}

/// keepalived's state words; Initialize is not notified.
pub fn state_word(state: State) -> Option<&'static str> {
    match state {
        State::Master => Some("MASTER"),
        State::Backup => Some("BACKUP"),
        State::Fault => Some("FAULT"),
        State::Stopped => Some("STOP"),
        State::Initialize => None,
    }
}

/// The argv lists to run for a change to `state`, in keepalived's order: the state's own
/// script, then the generic one with its four arguments. A group's priority is always 0.
pub fn scripts_for(
    scripts: &NotifyScripts,
    subject: Subject,
    name: &str,
    state: State,
    priority: u8,
) -> Vec<(&'static str, Script)> {
    let Some(word) = state_word(state) else {
        return Vec::new();
    };
    let own = match state {
        State::Master => ("notify_master", &scripts.master),
        State::Backup => ("notify_backup", &scripts.backup),
        State::Fault => ("notify_fault", &scripts.fault),
        _ => ("notify_stop", &scripts.stop),
    };
    let mut out = Vec::new();
    if let Some(s) = own.1 {
        out.push((own.0, s.clone()));
    }
    if let Some(s) = &scripts.notify {
        let mut s = s.clone();
        s.argv.extend([
            subject.word().to_string(),
            name.to_string(),
            word.to_string(),
            priority.to_string(),
        ]);
        out.push(("notify", s));
    }
    out
}

/// A FIFO line: `INSTANCE "INT" MASTER 100\n`.
pub fn fifo_line(subject: Subject, name: &str, state: State, priority: u8) -> Option<String> {
    let word = state_word(state)?;
    Some(format!("{} \"{name}\" {word} {priority}\n", subject.word()))
}

/// Runs the notifications of one daemon.
pub struct Notifier {
    instances: Vec<NotifyScripts>,
    groups: Vec<NotifyScripts>,
    global: GlobalDefs,
    fifos: Vec<File>,
    running: JoinSet<()>,
}

impl Notifier {
    /// The scripts of every instance and sync group, in the configuration's order, and the
    /// FIFOs opened (created when missing, as keepalived's `fifo_open`).
    pub fn new(config: &Config) -> Notifier {
        let mut notifier = Notifier::new_without_fifos(config);
        notifier.fifos = [
            &notifier.global.notify_fifo,
            &notifier.global.vrrp_notify_fifo,
        ]
        .into_iter()
        .flatten()
        .filter_map(|path| open_fifo(path))
        .collect();
        notifier
    }

    fn new_without_fifos(config: &Config) -> Notifier {
        let global = config.global.clone();
        Notifier {
            instances: config
                .vrrp
                .instances
                .iter()
                .map(|i| i.notify.clone())
                .collect(),
            groups: config
                .vrrp
                .sync_groups
                .iter()
                .map(|g| g.notify.clone())
                .collect(),
            global,
            fifos: Vec::new(),
            running: JoinSet::new(),
        }
    }

    /// A reload: the scripts of the new configuration's instances and groups (the FIFOs and
    /// the scripts still running stay).
    pub fn reconfigure(&mut self, config: &Config) {
        let fresh = Notifier::new_without_fifos(config);
        self.instances = fresh.instances;
        self.groups = fresh.groups;
        self.global = fresh.global;
    }

    /// Instance `n` (in the configuration's order) is now in `state`.
    pub fn instance(&mut self, n: usize, name: &str, state: State, priority: u8) {
        let scripts = self.instances.get(n).cloned().unwrap_or_default();
        self.notify(&scripts, Subject::Instance, name, state, priority);
    }

    /// Sync group `n` is now in `state`.
    pub fn group(&mut self, n: usize, name: &str, state: State) {
        let scripts = self.groups.get(n).cloned().unwrap_or_default();
        self.notify(&scripts, Subject::Group, name, state, 0);
    }

    fn notify(
        &mut self,
        scripts: &NotifyScripts,
        subject: Subject,
        name: &str,
        state: State,
        priority: u8,
    ) {
        for (keyword, script) in scripts_for(scripts, subject, name, state, priority) {
            let run_as = match process::resolve_user(&script, &self.global) {
                Ok(r) => r,
                Err(e) => {
                    warn!("({name}) {keyword} {} not run: {e:#}", script.argv[0]);
                    continue;
                }
            };
            let timeout = if state == State::Stopped {
                STOP_TIMEOUT
            } else {
                NOTIFY_TIMEOUT
            };
            self.spawn(script.argv, run_as, timeout);
        }
        if let Some(line) = fifo_line(subject, name, state, priority) {
            for fifo in &mut self.fifos {
                // Non-blocking: with no reader, or a full pipe, the line is lost, as in
                // keepalived.
                let _ = fifo.write_all(line.as_bytes());
            }
        }
    }

    fn spawn(&mut self, argv: Vec<String>, run_as: Option<RunAs>, timeout: Duration) {
        // Reap what has finished, so the set does not grow.
        while self.running.try_join_next().is_some() {}
        self.running.spawn(async move {
            let outcome = process::run(&argv, run_as, timeout, true).await;
            if outcome == process::Outcome::TimedOut {
                info!("notify script {} timed out and was killed", argv[0]);
            }
        });
    }

    /// Waits (at most `within`) for the scripts still running, before the daemon exits.
    pub async fn finish(&mut self, within: Duration) {
        let all = async { while self.running.join_next().await.is_some() {} };
        if tokio::time::timeout(within, all).await.is_err() {
            warn!("notify scripts still running at exit; they are killed");
        }
        self.running.shutdown().await;
    }
}

/// keepalived's `fifo_open`: create it (0644) if missing, open it read-write and
/// non-blocking so that writing never waits for a reader.
fn open_fifo(path: &str) -> Option<File> {
    use nix::sys::stat::Mode;
    match nix::unistd::mkfifo(
        path,
        Mode::S_IRUSR | Mode::S_IWUSR | Mode::S_IRGRP | Mode::S_IROTH,
    ) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => {
            info!("Unable to create notify fifo {path}: {e}");
            return None;
        }
    }
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => Some(f),
        Err(e) => {
            info!("Unable to open notify fifo {path} - {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(argv: &[&str]) -> Option<Script> {
        Some(Script {
            argv: argv.iter().map(|w| w.to_string()).collect(),
            user: None,
            group: None,
        })
    }

    #[test]
    fn the_state_script_then_the_generic_one_with_its_arguments() {
        let scripts = NotifyScripts {
            notify: script(&["/n", "x"]),
            master: script(&["/m"]),
            backup: None,
            fault: None,
            stop: script(&["/s"]),
        };
        let run = scripts_for(&scripts, Subject::Instance, "INT", State::Master, 100);
        assert_eq!(run[0].0, "notify_master");
        assert_eq!(run[0].1.argv, ["/m"]);
        assert_eq!(
            run[1].1.argv,
            ["/n", "x", "INSTANCE", "INT", "MASTER", "100"]
        );
        let run = scripts_for(&scripts, Subject::Group, "VG1", State::Backup, 0);
        assert_eq!(run.len(), 1);
        assert_eq!(run[0].1.argv, ["/n", "x", "GROUP", "VG1", "BACKUP", "0"]);
        let run = scripts_for(&scripts, Subject::Instance, "INT", State::Stopped, 100);
        assert_eq!(run[0].1.argv, ["/s"]);
        assert!(scripts_for(&scripts, Subject::Instance, "INT", State::Initialize, 100).is_empty());
    }

    #[test]
    fn fifo_lines() {
        assert_eq!(
            fifo_line(Subject::Instance, "INT", State::Master, 100).as_deref(),
            Some("INSTANCE \"INT\" MASTER 100\n")
        );
        assert_eq!(
            fifo_line(Subject::Group, "VG1", State::Fault, 0).as_deref(),
            Some("GROUP \"VG1\" FAULT 0\n")
        );
    }
}
