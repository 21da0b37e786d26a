//! A child process that a test starts and that must not outlive it.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// A child in a process group of its own, killed with the whole group (SIGKILL, by its pid) and
/// reaped when dropped, also when the test panics: daemons such as keepalived fork helpers that
/// would otherwise live on.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    /// Starts `command` as the leader of a new process group.
    pub fn spawn(command: &mut Command) -> io::Result<ChildGuard> {
        let child = command.process_group(0).spawn()?;
        Ok(ChildGuard { child: Some(child) })
    }

    /// The child's pid (also its process group's id), until it is killed or reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` to the child's whole process group.
    pub fn signal_group(&self, signal: Signal) {
        if let Some(pid) = self.nix_pid() {
            let _ = killpg(pid, signal);
        }
    }

    /// Sends `signal` to the child alone, as an init system stops a service.
    pub fn signal(&self, signal: Signal) {
        if let Some(pid) = self.nix_pid() {
            let _ = kill(pid, signal);
        }
    }

    /// Whether the child has exited on its own; the rest of its group is still ended on drop.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Waits for the child to exit on its own, then ends what is left of its group.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        let status = match self.child.as_mut() {
            Some(child) => child.wait()?,
            None => return Err(io::Error::other("the child was already reaped")),
        };
        self.kill_group_and_reap();
        Ok(status)
    }

    /// SIGTERM to the child and up to `timeout` for it to exit; then SIGKILL to the group.
    /// The exit status when it exited in time.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.signal(Signal::SIGTERM);
        let start = Instant::now();
        let mut status = None;
        while status.is_none() && start.elapsed() < timeout {
            status = self.child.as_mut()?.try_wait().ok().flatten();
            if status.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill_group_and_reap();
        status
    }

    /// SIGKILL to the whole group, and reaps the child.
    pub fn kill(&mut self) {
        self.kill_group_and_reap();
    }

    fn nix_pid(&self) -> Option<Pid> {
        let pid = i32::try_from(self.pid()?).ok()?;
        Some(Pid::from_raw(pid))
    }

    fn kill_group_and_reap(&mut self) {
        // The group outlives a leader that exited (keepalived's children follow their parent a
        // moment later): kill it before forgetting its id.
        self.signal_group(Signal::SIGKILL);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill_group_and_reap();
    }
}
