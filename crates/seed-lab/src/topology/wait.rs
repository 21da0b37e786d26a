//! Waiting on the lab's live state, and stopping a wait when the user interrupts.

use anyhow::{anyhow, bail, Result};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Lets a signal handler stop long waits: every wait of the lab checks it.
#[derive(Clone, Copy, Default)]
pub struct Cancel(Option<&'static AtomicBool>);

impl Cancel {
    pub fn new(flag: &'static AtomicBool) -> Self {
        Cancel(Some(flag))
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.is_some_and(|f| f.load(Ordering::Relaxed))
    }

    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            bail!("interrupted");
        }
        Ok(())
    }
}

impl fmt::Debug for Cancel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cancel({})", self.is_cancelled())
    }
}

/// Polls `condition` every 100 ms until it holds; an error from it counts as "not yet" (the
/// last one is in the timeout's message). Returns how long it took.
pub fn wait_for(
    what: &str,
    timeout: Duration,
    cancel: Cancel,
    mut condition: impl FnMut() -> Result<bool>,
) -> Result<Duration> {
    let start = Instant::now();
    let mut last_error = None;
    loop {
        cancel.check()?;
        match condition() {
            Ok(true) => return Ok(start.elapsed()),
            Ok(false) => {}
            Err(e) => last_error = Some(e),
        }
        if start.elapsed() >= timeout {
            return Err(match last_error {
                Some(e) => e.context(format!("{what}: not after {timeout:?}")),
                None => anyhow!("{what}: not after {timeout:?}"),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
