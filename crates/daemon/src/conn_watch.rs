//! Passive detection on kernel IPVS: a thread that reads the connection table over and over
//! and hands the destinations whose new connections stall
//! ([`halb_dataplane::ipvs::stall`]) to the virtual-server loop, which expedites their
//! checkers. The checkers' verdict takes a server out, never this.
//!
//! The read is the one cost that grows with the traffic: the kernel prints every entry as text
//! (about 100 bytes each). So the pause between two reads follows the cost of the last one
//! (the CPU time the reading thread spent, kernel side included; not the wall-clock time, which
//! on a busy machine counts other processes' turns and would slow detection exactly when the
//! machine is loaded):
//! [`COST_SHARE`] keeps the reader under about 10% of one core whatever the table's size,
//! within [`FASTEST`] and [`SLOWEST`]; a table of a few thousand entries is read every 100 ms.
//! Detection waits up to two pauses (a connection is stalled when two reads find it in
//! `SYN_RECV`), so a slower pace would cost the goal of noticing within a second.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use halb_dataplane::ipvs::conn_scan::{self, ConnTableReader};
use halb_dataplane::ipvs::stall::{Stall, StallConfig, StallDetector};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

/// The shortest pause between two reads of the table.
pub const FASTEST: Duration = Duration::from_millis(100);
/// The longest (a huge table on a slow machine).
pub const SLOWEST: Duration = Duration::from_secs(1);
/// The pause is this many times the last read's cost: at most 1/10 of a core goes to reading.
pub const COST_SHARE: u32 = 10;

/// The pause after a read that took `cost`.
pub fn pause_after(cost: Duration) -> Duration {
    cost.saturating_mul(COST_SHARE).clamp(FASTEST, SLOWEST)
}

/// The running reader; dropping it stops the thread after its current pause.
pub struct ConnWatch {
    watched: watch::Sender<BTreeSet<SocketAddr>>,
}

impl ConnWatch {
    /// Starts the thread; stalls go to `stalls`. It reads the table of the network namespace
    /// the daemon runs in (the thread inherits it).
    pub fn start(stalls: mpsc::UnboundedSender<Stall>) -> std::io::Result<ConnWatch> {
        let (watched, rx) = watch::channel(BTreeSet::new());
        std::thread::Builder::new()
            .name("ipvs-conn-watch".into())
            .spawn(move || run(rx, stalls))?;
        Ok(ConnWatch { watched })
    }

    /// The real servers to watch (those with checkers).
    pub fn set_watched(&self, dests: BTreeSet<SocketAddr>) {
        self.watched.send_replace(dests);
    }
}

fn run(mut watched: watch::Receiver<BTreeSet<SocketAddr>>, stalls: mpsc::UnboundedSender<Stall>) {
    let mut reader = ConnTableReader::default();
    let mut detector = StallDetector::new(StallConfig::default());
    let mut warned = false;
    let mut pause = FASTEST;
    loop {
        std::thread::sleep(pause);
        match watched.has_changed() {
            // The virtual servers are gone: the daemon stops.
            Err(_) => return,
            Ok(true) => {
                let dests = watched.borrow_and_update().clone();
                debug!("passive detection watches {} real server(s)", dests.len());
                detector.set_watched(dests);
            }
            Ok(false) => {}
        }
        if stalls.is_closed() {
            return;
        }
        if detector.is_idle() {
            pause = FASTEST;
            continue;
        }
        let started = Instant::now();
        let cpu_before = thread_cpu_time();
        let text = match reader.read() {
            Ok(text) => text,
            Err(e) => {
                if !warned {
                    warn!(
                        "passive detection cannot read {}: {e}; only the checkers will notice a \
                         real server that stops answering",
                        halb_dataplane::ipvs::conn::PROC_PATH
                    );
                    warned = true;
                }
                pause = SLOWEST;
                continue;
            }
        };
        detector.begin(started);
        let lines = conn_scan::scan(text, |c| detector.observe(&c));
        for stall in detector.finish() {
            if stalls.send(stall).is_err() {
                return;
            }
        }
        let cost = thread_cpu_time().saturating_sub(cpu_before);
        pause = pause_after(cost);
        tracing::trace!(
            "read {lines} line(s) of the IPVS connection table in {cost:?}; next in {pause:?}"
        );
    }
}

/// The CPU time this thread has used (user and system).
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which lives on this stack frame.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_cpu_time_grows_with_work() {
        let before = thread_cpu_time();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(thread_cpu_time() > before);
    }

    #[test]
    fn the_pause_follows_the_cost() {
        assert_eq!(pause_after(Duration::from_micros(300)), FASTEST);
        assert_eq!(
            pause_after(Duration::from_millis(20)),
            Duration::from_millis(200)
        );
        assert_eq!(pause_after(Duration::from_millis(500)), SLOWEST);
    }
}
