//! `halb upgrade`: the running daemon starts its successor, the halb binary now on disk, with
//! its own arguments and `--takeover`; the successor takes the listening sockets and the VRRP
//! role over the hand-over socket ([`crate::handover`]) and the old process drains and exits.
//!
//! The daemon starts it, not the `halb upgrade` command, so that the new process is what the
//! old one is: a process of the same systemd service (its cgroup, its `NOTIFY_SOCKET` and
//! watchdog, its journal stream, its capabilities and sandbox), where a command run from a
//! package's postinst would start it inside dpkg's session. The old process then tells systemd
//! that the new one is the service's main process (`MAINPID=`), and the new one says
//! `READY=1`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::control::protocol::UpgradeAnswer;

/// How the daemon starts its successor: the program (the path it was started from, where a
/// package upgrade puts the new binary) and the arguments, `--takeover` included.
#[derive(Debug, Clone)]
pub struct SuccessorCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

/// An upgrade asked for on the control socket, with where to send how it began: the
/// successor's pid, or why none was started.
pub type UpgradeQuery = oneshot::Sender<Result<UpgradeAnswer, String>>;

/// Answers upgrade requests one at a time; refuses them all when `command` is `None` (the
/// daemon was not started by `halb run`).
pub(crate) async fn serve(
    command: Option<SuccessorCommand>,
    mut requests: mpsc::Receiver<UpgradeQuery>,
) {
    // The successor still starting, if any: a second upgrade waits for its outcome.
    let starting: Arc<Mutex<Option<u32>>> = Arc::default();
    while let Some(reply) = requests.recv().await {
        let answer = match &command {
            Some(command) => start(command, &starting),
            None => Err("this daemon cannot start a successor".to_string()),
        };
        let _ = reply.send(answer);
    }
}

fn start(
    command: &SuccessorCommand,
    starting: &Arc<Mutex<Option<u32>>>,
) -> Result<UpgradeAnswer, String> {
    let mut slot = starting.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(pid) = *slot {
        return Err(format!(
            "an upgrade is under way: the new halb (pid {pid}) is taking over"
        ));
    }
    let mut child = Command::new(&command.program)
        .args(&command.args)
        // systemd's WATCHDOG_PID names this process; the successor pings (WATCHDOG_USEC)
        // once it is the main process.
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", command.program.display()))?;
    let pid = child.id();
    let shown: Vec<String> = std::iter::once(command.program.as_os_str())
        .chain(command.args.iter().map(OsString::as_os_str))
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    info!(
        "Upgrade: started the new halb (pid {pid}): {}",
        shown.join(" ")
    );
    *slot = Some(pid);
    drop(slot);
    let starting = Arc::clone(starting);
    // Reaps the successor should it end while this process still runs (it failed to take
    // over, or it was stopped during this one's drain).
    let reaper = std::thread::Builder::new()
        .name("successor".into())
        .spawn(move || {
            let status = child.wait();
            *starting.lock().unwrap_or_else(|e| e.into_inner()) = None;
            match status {
                Ok(status) => warn!("The new halb (pid {pid}) ended: {status}"),
                Err(e) => warn!("The new halb (pid {pid}): {e}"),
            }
        });
    if let Err(e) = reaper {
        warn!("cannot watch the new halb (pid {pid}): {e}");
    }
    Ok(UpgradeAnswer {
        successor_pid: pid,
        command: shown,
    })
}
