//! BIRD as halb's child: written configuration, started, restarted with backoff when it dies
//! alone, and never outliving halb.
//!
//! The child is started from a thread of its own that lives as long as the supervisor, with
//! `PR_SET_PDEATHSIG` = SIGKILL: the kernel kills BIRD when that thread (and so halb) dies,
//! even by SIGKILL. BIRD's TCP sessions are then closed by the kernel, so the router sees
//! them end at once and drops this director's paths (BFD covers a director that vanishes
//! without closing anything: a power loss, a cut link). The death signal is tied to the thread
//! that forked, not the process: a short-lived thread would take BIRD with it, hence the
//! dedicated one. BIRD also gets its own process group, so a signal to halb's group (a Ctrl-C
//! in a terminal) does not stop it before halb has withdrawn its routes.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{info, warn};

/// The first wait before a restart; doubled after each quick death, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A BIRD that ran this long before dying starts the backoff afresh.
const STABLE_RUN: Duration = Duration::from_secs(30);

/// Where the supervised BIRD's files are.
#[derive(Debug, Clone)]
pub struct BirdPaths {
    pub binary: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
}

/// A running supervisor; [`BirdSupervisor::stop`] ends BIRD (also on drop).
pub struct BirdSupervisor {
    stopping: Arc<AtomicBool>,
    pid: Arc<AtomicI32>,
    thread: Option<JoinHandle<()>>,
}

impl BirdSupervisor {
    /// Starts BIRD with the configuration `render` gives at each (re)start.
    pub fn start(
        paths: BirdPaths,
        render: Box<dyn Fn() -> String + Send>,
    ) -> std::io::Result<BirdSupervisor> {
        let stopping = Arc::new(AtomicBool::new(false));
        let pid = Arc::new(AtomicI32::new(0));
        let thread = {
            let (stopping, pid) = (stopping.clone(), pid.clone());
            std::thread::Builder::new()
                .name("bird-supervisor".into())
                .spawn(move || supervise(&paths, &*render, &stopping, &pid))?
        };
        Ok(BirdSupervisor {
            stopping,
            pid,
            thread: Some(thread),
        })
    }

    /// The running BIRD's process id, if one runs.
    pub fn pid(&self) -> Option<i32> {
        Some(self.pid.load(Ordering::SeqCst)).filter(|p| *p > 0)
    }

    /// Stops BIRD (SIGTERM: it closes its sessions with a Cease notification) and waits for it.
    pub fn stop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) with a pid this supervisor started and has not reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for BirdSupervisor {
    fn drop(&mut self) {
        self.stop();
    }
}

fn supervise(
    paths: &BirdPaths,
    render: &dyn Fn() -> String,
    stopping: &AtomicBool,
    pid: &AtomicI32,
) {
    let mut backoff = FIRST_BACKOFF;
    while !stopping.load(Ordering::SeqCst) {
        let started = Instant::now();
        match run_once(paths, render, stopping, pid) {
            Ok(status) if stopping.load(Ordering::SeqCst) => {
                info!("BIRD stopped ({status})");
                return;
            }
            Ok(status) => warn!("BIRD exited ({status}); restarting it in {backoff:?}"),
            Err(e) => warn!(
                "starting BIRD {}: {e}; trying again in {backoff:?}",
                paths.binary.display()
            ),
        }
        if started.elapsed() >= STABLE_RUN {
            backoff = FIRST_BACKOFF;
        }
        let until = Instant::now() + backoff;
        while Instant::now() < until && !stopping.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn run_once(
    paths: &BirdPaths,
    render: &dyn Fn() -> String,
    stopping: &AtomicBool,
    pid: &AtomicI32,
) -> std::io::Result<std::process::ExitStatus> {
    write_config(&paths.config, &render())?;
    // A socket left by a killed BIRD would make the new one fail to bind.
    let _ = std::fs::remove_file(&paths.socket);
    let mut cmd = Command::new(&paths.binary);
    cmd.arg("-f")
        .arg("-c")
        .arg(&paths.config)
        .arg("-s")
        .arg(&paths.socket)
        .stdin(Stdio::null());
    // SAFETY: getpid(2) has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: only async-signal-safe calls (setpgid, prctl, getppid, _exit) between fork and
    // exec, and no allocation.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // halb died between fork and prctl: the signal will never come.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    pid.store(child.id() as i32, Ordering::SeqCst);
    info!(
        "Started BIRD (pid {}): {} -f -c {} -s {}",
        child.id(),
        paths.binary.display(),
        paths.config.display(),
        paths.socket.display()
    );
    // A stop asked for while it started: the SIGTERM may have gone to no one.
    if stopping.load(Ordering::SeqCst) {
        // SAFETY: kill(2) on the child just spawned and not yet reaped.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
    }
    let status = child.wait();
    pid.store(0, Ordering::SeqCst);
    status
}

fn write_config(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
