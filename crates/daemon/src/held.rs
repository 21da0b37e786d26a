//! The data plane as the virtual-server shell drives it: its applies and reads run on tokio's
//! blocking pool (IPVS waits for the kernel's netlink answers and reads /proc, which must not
//! hold a worker that VRRP or the checkers need), and after a change fails the next repair
//! comes within seconds, backing off while the failures go on.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use halb_config::model::Forwarding;
use halb_dataplane::{ApplyError, Dataplane, DataplaneError, Failed};
use halb_lb::table::Change;
use tokio::time::Instant;

/// How often the data plane is repaired while nothing fails: IPVS's table is read and what
/// drifted from halb's (someone ran ipvsadm) is put back.
pub(crate) const REPAIR_EVERY: Duration = Duration::from_secs(60);

/// The first retry after a failed change; each further failure in a row doubles it, up to
/// [`REPAIR_EVERY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// The data plane, shared with the blocking thread that runs an apply.
#[derive(Clone)]
pub(crate) struct SharedDataplane {
    inner: Arc<Mutex<Box<dyn Dataplane>>>,
    name: &'static str,
    /// What it calls NAT, DR and TUN in `halb status`, asked once, so that a status query never
    /// waits for the lock an apply holds.
    forward_names: [&'static str; 3],
}

impl SharedDataplane {
    pub(crate) fn new(dataplane: Box<dyn Dataplane>) -> Self {
        SharedDataplane {
            name: dataplane.name(),
            forward_names: [
                dataplane.forward_name(&Forwarding::Nat),
                dataplane.forward_name(&Forwarding::Dr),
                dataplane.forward_name(&Forwarding::Tun(Default::default())),
            ],
            inner: Arc::new(Mutex::new(dataplane)),
        }
    }

    /// [`Dataplane::forward_name`], without taking the lock.
    pub(crate) fn forward_name(&self, forwarding: &Forwarding) -> &'static str {
        match forwarding {
            Forwarding::Nat => self.forward_names[0],
            Forwarding::Dr => self.forward_names[1],
            Forwarding::Tun(_) => self.forward_names[2],
        }
    }

    /// `proxy` or `ipvs`.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// The data plane itself, for calls that wait on nothing (the proxy's). A panic in an
    /// earlier call left it as it was, which is still the best knowledge of it.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Box<dyn Dataplane>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `call` on the data plane on the blocking pool. `None` only while the runtime
    /// shuts down; a panic in `call` goes on in the caller.
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        call: impl FnOnce(&mut dyn Dataplane) -> R + Send + 'static,
    ) -> Option<R> {
        let this = self.clone();
        let blocking = tokio::task::spawn_blocking(move || call(this.lock().as_mut()));
        match blocking.await {
            Ok(answer) => Some(answer),
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(_) => None,
            },
        }
    }

    /// [`Dataplane::apply`] on the blocking pool.
    pub(crate) async fn apply(&self, changes: Vec<Change>) -> Result<(), ApplyError> {
        let tried = changes.clone();
        match self.run(move |d| d.apply(&changes)).await {
            Some(result) => result,
            // Nothing is known to have landed.
            None => Err(ApplyError {
                landed: Vec::new(),
                failed: tried
                    .into_iter()
                    .map(|change| Failed {
                        change,
                        error: DataplaneError::Io {
                            what: "applying the change".into(),
                            source: std::io::Error::other("the runtime is shutting down"),
                        },
                    })
                    .collect(),
            }),
        }
    }
}

/// When the data plane is next repaired: [`REPAIR_EVERY`] while all is well, soon after a
/// change fails.
#[derive(Debug)]
pub(crate) struct RepairClock {
    next: Instant,
    /// Failed applies or repairs since the last repair that left nothing to retry.
    failures: u32,
}

impl RepairClock {
    pub(crate) fn new() -> Self {
        RepairClock {
            next: Instant::now() + REPAIR_EVERY,
            failures: 0,
        }
    }

    pub(crate) fn due(&self) -> Instant {
        self.next
    }

    /// Whether a failed change waits for its retry.
    pub(crate) fn retrying(&self) -> bool {
        self.failures > 0
    }

    /// A repair left nothing worth retrying.
    pub(crate) fn settled(&mut self) {
        self.failures = 0;
        self.next = Instant::now() + REPAIR_EVERY;
    }

    /// A change failed in a way that may pass: repair after the back-off, or sooner if a repair
    /// was due sooner anyway.
    pub(crate) fn failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
        let now = Instant::now();
        let soon = now + backoff(self.failures);
        if self.next <= now || soon < self.next {
            self.next = soon;
        }
    }
}

/// The wait before the retry that follows `failures` failures in a row: 1 s, 2 s, 4 s, …
/// up to [`REPAIR_EVERY`].
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_RETRY.saturating_mul(1 << doublings).min(REPAIR_EVERY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_a_second_to_the_repair_period() {
        let waits: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(u32::MAX), REPAIR_EVERY);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_brings_the_repair_close_and_a_clean_repair_puts_it_back() {
        let mut clock = RepairClock::new();
        let start = Instant::now();
        assert_eq!(clock.due() - start, REPAIR_EVERY);
        assert!(!clock.retrying());

        clock.failed();
        assert_eq!(clock.due() - start, Duration::from_secs(1));
        // A second failure before the retry does not push it back.
        clock.failed();
        assert_eq!(clock.due() - start, Duration::from_secs(1));

        // The retry runs at its time and fails again: the next one waits longer.
        tokio::time::advance(Duration::from_secs(1)).await;
        clock.failed();
        assert_eq!(clock.due() - Instant::now(), Duration::from_secs(4));
        assert!(clock.retrying());

        clock.settled();
        assert!(!clock.retrying());
        assert_eq!(clock.due() - Instant::now(), REPAIR_EVERY);
    }
}
