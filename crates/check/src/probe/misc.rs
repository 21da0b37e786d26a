//! MISC_CHECK: a program whose exit status is the verdict (keepalived's `check_misc.c`).
//!
//! - The program runs without a shell (argv as configured), with stdin/stdout/stderr on
//!   /dev/null, as the script user, in its own process group.
//! - Exit 0: up. With `misc_dynamic`, exit 2..=255 is up with weight `status - 2` (and exit 0
//!   restores the real server's configured weight); any other status is a failure.
//! - Timeout (`misc_timeout`, else the virtual server's `delay_loop`): SIGTERM to the process
//!   group, SIGKILL to the group 2 s later if the program is still there, and SIGKILL to the group
//!   once the program died of the SIGTERM, so that its children go too. A timeout is a failure.

use super::{ProbeFailure, ProbeOk, ProbeResult};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::{Gid, Group, Pid, Uid, User};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};

/// How long keepalived waits after SIGTERM before SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiscProbe {
    /// Program and arguments; never empty.
    pub argv: Vec<String>,
    /// Whom to run as; `None`: as the daemon itself.
    pub credentials: Option<(Uid, Gid)>,
    pub timeout: Duration,
    pub dynamic: bool,
    /// The real server's configured weight (what exit 0 means with `misc_dynamic`).
    pub base_weight: u32,
    /// Wait between SIGTERM and SIGKILL.
    pub term_grace: Duration,
}

/// Resolves `user [group]` the way keepalived does: the group defaults to the user's primary
/// group.
pub fn resolve_credentials(user: &str, group: Option<&str>) -> Result<(Uid, Gid), String> {
    let u = User::from_name(user)
        .map_err(|e| format!("looking up user {user}: {e}"))?
        .ok_or_else(|| format!("unknown user {user}"))?;
    let gid = match group {
        Some(g) => {
            Group::from_name(g)
                .map_err(|e| format!("looking up group {g}: {e}"))?
                .ok_or_else(|| format!("unknown group {g}"))?
                .gid
        }
        None => u.gid,
    };
    Ok((u.uid, gid))
}

impl MiscProbe {
    pub async fn check(&self) -> ProbeResult {
        let program = self.argv.first().cloned().unwrap_or_default();
        let mut cmd = Command::new(&program);
        cmd.args(self.argv.iter().skip(1))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        if let Some((uid, gid)) = self.credentials {
            // Only change what differs, so that an unprivileged daemon can still run scripts
            // as itself.
            if gid != Gid::effective() {
                cmd.gid(gid.as_raw());
            }
            if uid != Uid::effective() {
                cmd.uid(uid.as_raw());
            }
        }
        let child = cmd
            .spawn()
            .map_err(|e| ProbeFailure::new(format!("cannot run {program}: {e}")))?;
        let mut child = GroupGuard::new(child);
        let status = match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(status) => {
                status.map_err(|e| ProbeFailure::new(format!("waiting for {program}: {e}")))?
            }
            Err(_) => {
                child.terminate(self.term_grace).await;
                return Err(ProbeFailure::timeout(format!(
                    "{program} timed out after {:?}",
                    self.timeout
                )));
            }
        };
        child.reaped();
        self.judge(&program, status)
    }

    fn judge(&self, program: &str, status: ExitStatus) -> ProbeResult {
        match status.code() {
            Some(0) => {
                let mut ok = ProbeOk::new(format!("{program} exited with status 0"));
                if self.dynamic {
                    ok.weight = Some(self.base_weight);
                }
                Ok(ok)
            }
            Some(code) if self.dynamic && (2..=255).contains(&code) => {
                let weight = (code - 2) as u32;
                let mut ok = ProbeOk::new(format!(
                    "{program} exited with status {code}: weight {weight}"
                ));
                ok.weight = Some(weight);
                Ok(ok)
            }
            Some(code) => Err(ProbeFailure::new(format!("exited with status {code}"))),
            None => Err(ProbeFailure::new(format!(
                "due to signal {}",
                status.signal().unwrap_or(0)
            ))),
        }
    }
}

/// The running program; kills its whole process group if dropped before it was reaped (the
/// runner stopped while it ran).
struct GroupGuard {
    child: Child,
    pgid: Option<Pid>,
}

impl GroupGuard {
    fn new(child: Child) -> GroupGuard {
        // process_group(0): the group id is the child's pid.
        let pgid = child.id().map(|id| Pid::from_raw(id as i32));
        GroupGuard { child, pgid }
    }

    async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// The program exited by itself: its group is left alone (keepalived does the same).
    fn reaped(&mut self) {
        self.pgid = None;
    }

    async fn terminate(&mut self, grace: Duration) {
        let Some(pgid) = self.pgid else { return };
        let _ = killpg(pgid, Signal::SIGTERM);
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = killpg(pgid, Signal::SIGKILL);
            let _ = self.child.wait().await;
        }
        // Children that ignored SIGTERM, or were not yet gone.
        let _ = killpg(pgid, Signal::SIGKILL);
        self.pgid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}
