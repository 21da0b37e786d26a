//! Running code inside a network namespace.
//!
//! A network namespace belongs to a thread, not to a process: after `setns(2)` the calling
//! thread's new sockets, netlink requests and `/proc/sys/net` reads act on that namespace,
//! while the other threads stay where they were. So a test (or `halb lab`) can drive several
//! namespaces from one process by giving each its own thread.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use nix::sched::{setns, CloneFlags};

use crate::error::{IoContext, Result};

/// Where `ip netns add NAME` puts the namespace.
pub fn named(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// Moves the calling thread into the network namespace at `path` (for good: a thread that
/// must come back should be a new thread, see [`spawn_in`]).
pub fn enter(path: &Path) -> Result<()> {
    let namespace =
        File::open(path).context(|| format!("opening network namespace {}", path.display()))?;
    setns(&namespace, CloneFlags::CLONE_NEWNET)
        .context(|| format!("entering network namespace {}", path.display()))
}

/// Runs `f` on a new thread inside the namespace at `path`.
pub fn spawn_in<T, F>(path: &Path, f: F) -> JoinHandle<Result<T>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        enter(&path)?;
        Ok(f())
    })
}

/// Runs `f` on a new thread inside the namespace at `path` and waits for it; a panic in `f`
/// goes on in the caller.
pub fn run_in<T, F>(path: &Path, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    match spawn_in(path, f).join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
