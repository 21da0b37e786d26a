//! Running an external program for the daemon (notify scripts, `vrrp_script` checks) the way
//! keepalived does (lib/notify.c `system_call_script`): argv exec'ed without a shell, in a
//! process group of its own, as the script user, killed with its children after a timeout,
//! and always reaped.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use halb_config::model::{GlobalDefs, Script};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::{Group, Pid, User};
use tracing::{debug, info, warn};

/// Whom a script runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

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
    let (user, group) = match (&script.user, &global.script_user) {
        (Some(u), _) => (u.clone(), script.group.clone()),
        (None, Some((u, g))) => (u.clone(), g.clone()),
        (None, None) => match User::from_name("keepalived_script") {
            Ok(Some(_)) => ("keepalived_script".to_string(), None),
            _ => return Ok(None),
        },
    };
    let found = User::from_name(&user)
        .with_context(|| format!("looking up user {user}"))?
        .with_context(|| format!("user {user} does not exist"))?;
    let gid = match group {
        Some(g) => {
            Group::from_name(&g)
                .with_context(|| format!("looking up group {g}"))?
                .with_context(|| format!("group {g} does not exist"))?
                .gid
        }
        None => found.gid,
    };
    if found.uid.is_root() && gid.as_raw() == 0 {
        return Ok(None);
    }
    Ok(Some(RunAs {
        uid: found.uid.as_raw(),
        gid: gid.as_raw(),
    }))
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
    let mut child = match spawn(argv, run_as) {
        Ok(c) => c,
        Err(e) => {
            warn!("{e:#}");
            return Outcome::NotStarted;
        }
    };
    let pid = child.id();
    if let Some(pid) = pid {
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
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => {
            use std::os::unix::process::ExitStatusExt;
            match (status.code(), status.signal()) {
                (Some(code), _) => Outcome::Exited(code),
                (None, Some(signal)) => Outcome::Signalled(signal),
                (None, None) => Outcome::NotStarted,
            }
        }
        Ok(Err(e)) => {
            warn!("waiting for {}: {e}", argv[0]);
            Outcome::NotStarted
        }
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            // Reap it: no zombie, whatever it did.
            let _ = child.wait().await;
            Outcome::TimedOut
        }
    }
}

fn spawn(argv: &[String], run_as: Option<RunAs>) -> Result<tokio::process::Child> {
    let Some(program) = argv.first() else {
        bail!("an empty script command");
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own group, so a timeout can kill what it started too, and a signal to the
        // daemon's group does not reach it.
        .process_group(0);
    if let Some(RunAs { uid, gid }) = run_as {
        command.uid(uid).gid(gid);
    }
    command
        .spawn()
        .with_context(|| format!("cannot run {}", argv.join(" ")))
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
