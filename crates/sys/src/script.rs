//! Running an external program the way keepalived runs its scripts (lib/notify.c
//! `system_call_script`, used by notify scripts, `vrrp_script` and MISC_CHECK alike): argv
//! exec'ed without a shell, stdin, stdout and stderr on /dev/null, in a process group of its
//! own, as the script user, its whole group killed when it outlasts its time, and always
//! reaped.
//!
//! What an exit status means (a VRRP script's weight, MISC_CHECK's `misc_dynamic`) and what is
//! logged belong to the caller; spawn and wait errors are the system call's, for the caller to
//! put in its own words.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::{Gid, Group, Pid, Uid, User};
use tokio::process::{Child, Command};

/// keepalived's script user when neither the script nor `script_user` names one, if the host
/// has it.
pub const DEFAULT_SCRIPT_USER: &str = "keepalived_script";

/// Whom a script runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// A script user or group that cannot be found.
#[derive(Debug, thiserror::Error)]
pub enum UserLookupError {
    // The errno is part of the message rather than a source, so that it is said once
    // whichever way the error is printed.
    #[error("looking up user {user}: {errno}")]
    LookupUser { user: String, errno: nix::Error },
    #[error("user {user} does not exist")]
    NoSuchUser { user: String },
    #[error("looking up group {group}: {errno}")]
    LookupGroup { group: String, errno: nix::Error },
    #[error("group {group} does not exist")]
    NoSuchGroup { group: String },
}

impl RunAs {
    /// `user [group]` as the configuration names them; the group defaults to the user's
    /// primary group.
    pub fn lookup(user: &str, group: Option<&str>) -> Result<RunAs, UserLookupError> {
        let found = User::from_name(user)
            .map_err(|errno| UserLookupError::LookupUser {
                user: user.to_string(),
                errno,
            })?
            .ok_or_else(|| UserLookupError::NoSuchUser {
                user: user.to_string(),
            })?;
        let gid = match group {
            Some(group) => {
                Group::from_name(group)
                    .map_err(|errno| UserLookupError::LookupGroup {
                        group: group.to_string(),
                        errno,
                    })?
                    .ok_or_else(|| UserLookupError::NoSuchGroup {
                        group: group.to_string(),
                    })?
                    .gid
            }
            None => found.gid,
        };
        Ok(RunAs {
            uid: found.uid.as_raw(),
            gid: gid.as_raw(),
        })
    }

    /// Whom a script runs as, by keepalived's rules: its own `user [group]`, else the global
    /// `script_user USER [GROUP]`, else [`DEFAULT_SCRIPT_USER`] when the host has it, else
    /// root. `None`: root, that is, as the daemon itself.
    pub fn for_script(
        user: Option<&str>,
        group: Option<&str>,
        script_user: Option<&(String, Option<String>)>,
    ) -> Result<Option<RunAs>, UserLookupError> {
        let run_as = match (user, script_user) {
            (Some(user), _) => RunAs::lookup(user, group)?,
            (None, Some((user, group))) => RunAs::lookup(user, group.as_deref())?,
            (None, None) => match RunAs::lookup(DEFAULT_SCRIPT_USER, None) {
                Ok(run_as) => run_as,
                Err(_) => return Ok(None),
            },
        };
        Ok((run_as.uid != 0 || run_as.gid != 0).then_some(run_as))
    }
}

/// What is done to a script that outlasts its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTimeout {
    /// SIGKILL to its process group at once (keepalived's notify and `vrrp_script` scripts).
    Kill,
    /// SIGTERM to its process group; SIGKILL to the group `grace` later if the program is still
    /// there, and SIGKILL to the group once the program died, so that children that ignored
    /// the SIGTERM go too (keepalived's MISC_CHECK).
    TermThenKill { grace: Duration },
}

/// What happens to a script still running when its [`ScriptProcess`] is dropped (the task
/// that waited for it was cancelled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDrop {
    /// SIGKILL to its process group.
    KillGroup,
    /// It runs on; it is reaped when it ends.
    Leave,
}

/// How a script ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptEnd {
    /// It exited with this status.
    Exited(i32),
    /// A signal ended it.
    Signalled(i32),
    /// It outlasted its time and was killed as [`OnTimeout`] says.
    TimedOut,
}

impl ScriptEnd {
    fn of(status: ExitStatus) -> ScriptEnd {
        match status.code() {
            Some(code) => ScriptEnd::Exited(code),
            // A status that is neither an exit nor a signal is a stop, which waiting without
            // WUNTRACED never reports.
            None => ScriptEnd::Signalled(status.signal().unwrap_or(0)),
        }
    }
}

/// A running script, in a process group of its own that it leads.
pub struct ScriptProcess {
    child: Child,
    /// The group to kill on drop; `None` once the program is reaped (what it left behind in
    /// its group is then left alone, as keepalived does) or when dropping leaves it running.
    group: Option<Pid>,
}

impl ScriptProcess {
    /// Starts `argv` (never run through a shell) as `run_as`, changing only the ids that
    /// differ from the daemon's own, so that an unprivileged daemon can still run scripts as
    /// itself. Must be called inside a tokio runtime.
    pub fn spawn(argv: &[String], run_as: Option<RunAs>, on_drop: OnDrop) -> io::Result<Self> {
        let Some(program) = argv.first() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an empty script command",
            ));
        };
        let mut command = Command::new(program);
        command
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group, so a timeout can kill what it started too, and a signal to the
            // daemon's group does not reach it.
            .process_group(0)
            .kill_on_drop(on_drop == OnDrop::KillGroup);
        if let Some(RunAs { uid, gid }) = run_as {
            if gid != Gid::effective().as_raw() {
                command.gid(gid);
            }
            if uid != Uid::effective().as_raw() {
                command.uid(uid);
            }
        }
        let child = command.spawn()?;
        // process_group(0): the group id is the child's pid.
        let group = match on_drop {
            OnDrop::KillGroup => child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .map(Pid::from_raw),
            OnDrop::Leave => None,
        };
        Ok(ScriptProcess { child, group })
    }

    /// The program's process id (and its group's), until it is reaped.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits for the program to end, at most `timeout`; past it, kills it and its group as
    /// `on_timeout` says and reaps it.
    pub async fn wait(
        &mut self,
        timeout: Duration,
        on_timeout: OnTimeout,
    ) -> io::Result<ScriptEnd> {
        // Taken before waiting: once reaped, the child no longer says its pid.
        let group = self
            .child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                self.group = None;
                Ok(ScriptEnd::of(status))
            }
            Err(_) => {
                self.kill(group, on_timeout).await;
                self.group = None;
                Ok(ScriptEnd::TimedOut)
            }
        }
    }

    async fn kill(&mut self, group: Option<Pid>, on_timeout: OnTimeout) {
        let signal_group = |signal| {
            if let Some(group) = group {
                let _ = killpg(group, signal);
            }
        };
        match on_timeout {
            OnTimeout::Kill => {
                signal_group(Signal::SIGKILL);
                // Reap it: no zombie, whatever it did.
                let _ = self.child.wait().await;
            }
            OnTimeout::TermThenKill { grace } => {
                signal_group(Signal::SIGTERM);
                if tokio::time::timeout(grace, self.child.wait())
                    .await
                    .is_err()
                {
                    signal_group(Signal::SIGKILL);
                    let _ = self.child.wait().await;
                }
                // Children that ignored SIGTERM, or were not yet gone.
                signal_group(Signal::SIGKILL);
            }
        }
    }
}

impl Drop for ScriptProcess {
    fn drop(&mut self) {
        if let Some(group) = self.group {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    async fn run(words: &[&str], timeout: Duration, on_timeout: OnTimeout) -> ScriptEnd {
        let mut script = ScriptProcess::spawn(&argv(words), None, OnDrop::KillGroup).unwrap();
        script.wait(timeout, on_timeout).await.unwrap()
    }

    #[tokio::test]
    async fn exit_status_signal_and_timeout() {
        let t = Duration::from_secs(5);
        assert_eq!(
            run(&["/bin/true"], t, OnTimeout::Kill).await,
            ScriptEnd::Exited(0)
        );
        assert_eq!(
            run(&["/bin/sh", "-c", "exit 3"], t, OnTimeout::Kill).await,
            ScriptEnd::Exited(3)
        );
        assert_eq!(
            run(&["/bin/sh", "-c", "kill -9 $$"], t, OnTimeout::Kill).await,
            ScriptEnd::Signalled(9)
        );
        let started = std::time::Instant::now();
        let short = Duration::from_millis(200);
        let sleeper = ["/bin/sh", "-c", "sleep 30; true"];
        assert_eq!(
            run(&sleeper, short, OnTimeout::Kill).await,
            ScriptEnd::TimedOut
        );
        let grace = OnTimeout::TermThenKill { grace: short };
        assert_eq!(run(&sleeper, short, grace).await, ScriptEnd::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_missing_or_empty_command_does_not_start() {
        let missing = ScriptProcess::spawn(&argv(&["/nonexistent/halb-test"]), None, OnDrop::Leave);
        assert_eq!(
            missing.err().map(|e| e.kind()),
            Some(io::ErrorKind::NotFound)
        );
        let empty = ScriptProcess::spawn(&[], None, OnDrop::Leave);
        assert_eq!(
            empty.err().map(|e| e.kind()),
            Some(io::ErrorKind::InvalidInput)
        );
    }

    #[test]
    fn root_and_unknown_users() {
        assert_eq!(RunAs::for_script(Some("root"), None, None).unwrap(), None);
        assert!(matches!(
            RunAs::lookup("halb-no-such-user", None),
            Err(UserLookupError::NoSuchUser { .. })
        ));
        assert!(matches!(
            RunAs::lookup("root", Some("halb-no-such-group")),
            Err(UserLookupError::NoSuchGroup { .. })
        ));
        // The script's own user comes before script_user.
        assert!(RunAs::for_script(
            Some("root"),
            None,
            Some(&("halb-no-such-user".into(), None))
        )
        .is_ok());
    }
}
