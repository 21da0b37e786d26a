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
use halb_sys::script::{OnDrop, OnTimeout, RunAs, ScriptEnd, ScriptProcess};
use std::time::Duration;

/// How long keepalived waits after SIGTERM before SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiscProbe {
    /// Program and arguments; never empty.
    pub argv: Vec<String>,
    /// Whom to run as; `None`: as the daemon itself.
    pub credentials: Option<RunAs>,
    pub timeout: Duration,
    pub dynamic: bool,
    /// The real server's configured weight (what exit 0 means with `misc_dynamic`).
    pub base_weight: u32,
    /// Wait between SIGTERM and SIGKILL.
    pub term_grace: Duration,
}

impl MiscProbe {
    pub async fn check(&self) -> ProbeResult {
        let program = self.argv.first().cloned().unwrap_or_default();
        // Dropped while it runs (the runner stopped): its whole group is killed.
        let mut script = ScriptProcess::spawn(&self.argv, self.credentials, OnDrop::KillGroup)
            .map_err(|e| ProbeFailure::new(format!("cannot run {program}: {e}")))?;
        let on_timeout = OnTimeout::TermThenKill {
            grace: self.term_grace,
        };
        let end = script
            .wait(self.timeout, on_timeout)
            .await
            .map_err(|e| ProbeFailure::new(format!("waiting for {program}: {e}")))?;
        self.judge(&program, end)
    }

    fn judge(&self, program: &str, end: ScriptEnd) -> ProbeResult {
        match end {
            ScriptEnd::Exited(0) => {
                let mut ok = ProbeOk::new(format!("{program} exited with status 0"));
                if self.dynamic {
                    ok.weight = Some(self.base_weight);
                }
                Ok(ok)
            }
            ScriptEnd::Exited(code) if self.dynamic && (2..=255).contains(&code) => {
                let weight = (code - 2) as u32;
                let mut ok = ProbeOk::new(format!(
                    "{program} exited with status {code}: weight {weight}"
                ));
                ok.weight = Some(weight);
                Ok(ok)
            }
            ScriptEnd::Exited(code) => Err(ProbeFailure::new(format!("exited with status {code}"))),
            ScriptEnd::Signalled(signal) => {
                Err(ProbeFailure::new(format!("due to signal {signal}")))
            }
            ScriptEnd::TimedOut => Err(ProbeFailure::timeout(format!(
                "{program} timed out after {:?}",
                self.timeout
            ))),
        }
    }
}
