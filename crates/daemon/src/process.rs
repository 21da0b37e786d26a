//! The daemon's side of running a script (notify scripts, `vrrp_script` checks), on
//! [`halb_sys::script`]: whom it runs as from the configuration, keepalived's "Running script"
//! line, a timeout that SIGKILLs its whole process group, and a plain outcome for the callers.

use std::time::Duration;

use anyhow::Result;
use halb_config::model::{GlobalDefs, Script};
use halb_sys::script::{OnDrop, OnTimeout, ScriptEnd, ScriptProcess};
use tracing::{debug, info, warn};

pub use halb_sys::script::RunAs;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    Signalled(i32),
    TimedOut,
    /// Could not be started (the reason is logged).
    NotStarted,
}

impl Outcome {
    pub fn success(self) -> bool {
        self == Outcome::Exited(0)
    }
}

/// The user a script runs as: its own `user`, else `script_user`, else keepalived's
/// `keepalived_script` user when the host has one, else root (`None`: stay as we are).
pub fn resolve_user(script: &Script, global: &GlobalDefs) -> Result<Option<RunAs>> {
    Ok(RunAs::for_script(
        script.user.as_deref(),
        script.group.as_deref(),
        global.script_user.as_ref(),
    )?)
}

/// Runs `argv` to its end or until `timeout`, then kills its whole process group (a shell's
/// children too, as keepalived's `kill(-pid, SIGKILL)`), and reaps it. `announce` logs the
/// start at info level (notify scripts); checks that run every second log it at debug.
pub async fn run(
    argv: &[String],
    run_as: Option<RunAs>,
    timeout: Duration,
    announce: bool,
) -> Outcome {
    // A script whose task is dropped is the daemon stopping after its grace for scripts: as
    // keepalived does at shutdown, what still runs then is killed with its process group.
    let mut script = match ScriptProcess::spawn(argv, run_as, OnDrop::KillGroup) {
        Ok(script) => script,
        Err(e) => {
            warn!("cannot run {}: {e}", argv.join(" "));
            return Outcome::NotStarted;
        }
    };
    if let Some(pid) = script.id() {
        // keepalived's wording (it logs this with script debugging on).
        let line = format!(
            "Running script {} with pid {pid}, timer {}.{:06}",
            argv.join(" "),
            timeout.as_secs(),
            timeout.subsec_micros()
        );
        if announce {
            info!("{line}");
        } else {
            debug!("{line}");
        }
    }
    match script.wait(timeout, OnTimeout::Kill).await {
        Ok(ScriptEnd::Exited(code)) => Outcome::Exited(code),
        Ok(ScriptEnd::Signalled(signal)) => Outcome::Signalled(signal),
        Ok(ScriptEnd::TimedOut) => Outcome::TimedOut,
        Err(e) => {
            warn!("waiting for {}: {e}", argv[0]);
            Outcome::NotStarted
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[tokio::test]
    async fn exit_status_timeout_and_missing_program() {
        let t = Duration::from_secs(5);
        assert_eq!(
            run(&argv(&["/bin/true"]), None, t, false).await,
            Outcome::Exited(0)
        );
        assert_eq!(
            run(&argv(&["/bin/sh", "-c", "exit 3"]), None, t, false).await,
            Outcome::Exited(3)
        );
        let started = std::time::Instant::now();
        assert_eq!(
            run(
                &argv(&["/bin/sh", "-c", "sleep 30; true"]),
                None,
                Duration::from_millis(200),
                false,
            )
            .await,
            Outcome::TimedOut
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            run(&argv(&["/nonexistent/halb-test"]), None, t, false).await,
            Outcome::NotStarted
        );
    }
}
