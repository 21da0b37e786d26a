//! `vrrp_script` checks: each script an instance tracks runs every `interval`, is killed after
//! `timeout`, and its results go through `rise` / `fall` (vrrp_scheduler.c
//! `vrrp_script_child_thread`) before the instances hear of a change.
//!
//! [`RiseFall`] is the pure counter; [`spawn`] is the task that runs one script.

use std::time::Duration;

use halb_config::model::VrrpScript;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tracing::info;

use crate::process::{self, Outcome, RunAs};

/// keepalived's `result` counter: 0..rise are failed, rise..rise+fall are up. A script starts
/// one success short of up (or at 0 with `init_fail`), and its first result is always
/// reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiseFall {
    result: u32,
    rise: u32,
    fall: u32,
    first: bool,
}

impl RiseFall {
    pub fn new(rise: u32, fall: u32, init_fail: bool) -> RiseFall {
        let rise = rise.max(1);
        let fall = fall.max(1);
        RiseFall {
            result: if init_fail { 0 } else { rise - 1 },
            rise,
            fall,
            first: !init_fail,
        }
    }

    /// One run's result; `Some(up)` when the script's reported state changes.
    pub fn record(&mut self, success: bool) -> Option<bool> {
        let first = std::mem::replace(&mut self.first, false);
        let top = self.rise + self.fall - 1;
        if success {
            if self.result < self.rise - 1 {
                self.result += 1;
                None
            } else if self.result != top {
                let changed = self.result < self.rise;
                self.result = top;
                changed.then_some(true)
            } else {
                None
            }
        } else if self.result > self.rise {
            self.result -= 1;
            None
        } else {
            let changed = self.result == self.rise || first;
            self.result = 0;
            changed.then_some(false)
        }
    }
}

/// A script's new state, for the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptResult {
    pub name: String,
    pub up: bool,
}

/// Runs `script` until the daemon goes away, sending each change of its state.
pub fn spawn(
    script: VrrpScript,
    run_as: Option<RunAs>,
    results: mpsc::Sender<ScriptResult>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let interval = Duration::from_micros(script.interval_us.max(1));
        let timeout = Duration::from_micros(script.timeout_us.unwrap_or(script.interval_us).max(1));
        let mut counter = RiseFall::new(script.rise, script.fall, script.init_fail);
        let mut last_status: Option<i32> = None;
        let mut ticks = tokio::time::interval(interval);
        // A run that outlasts the interval delays the next one instead of stacking runs.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let outcome = process::run(&script.script.argv, run_as, timeout, false).await;
            if let Outcome::Exited(status) = outcome {
                if last_status != Some(status) {
                    info!("Script `{}` now returning {status}", script.name);
                    last_status = Some(status);
                }
            }
            let Some(up) = counter.record(outcome.success()) else {
                continue;
            };
            match outcome {
                Outcome::Exited(0) => info!("VRRP_Script({}) succeeded", script.name),
                Outcome::Exited(code) => info!(
                    "VRRP_Script({}) failed (exited with status {code})",
                    script.name
                ),
                Outcome::Signalled(signal) => info!(
                    "VRRP_Script({}) failed (due to signal {signal})",
                    script.name
                ),
                Outcome::TimedOut => info!("VRRP_Script({}) timed_out", script.name),
                Outcome::NotStarted => info!("VRRP_Script({}) failed", script.name),
            }
            let change = ScriptResult {
                name: script.name.clone(),
                up,
            };
            if results.send(change).await.is_err() {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_result_is_reported_either_way() {
        assert_eq!(RiseFall::new(3, 2, false).record(true), Some(true));
        assert_eq!(RiseFall::new(3, 2, false).record(false), Some(false));
    }

    #[test]
    fn fall_failures_to_go_down_and_rise_successes_to_come_back() {
        let mut c = RiseFall::new(2, 3, false);
        assert_eq!(c.record(true), Some(true));
        assert_eq!(c.record(false), None);
        assert_eq!(c.record(false), None);
        assert_eq!(c.record(false), Some(false), "the third failure");
        assert_eq!(c.record(false), None);
        assert_eq!(c.record(true), None);
        assert_eq!(c.record(true), Some(true), "the second success");
        // A success in between resets the fall count.
        assert_eq!(c.record(false), None);
        assert_eq!(c.record(true), None);
        assert_eq!(c.record(false), None);
        assert_eq!(c.record(false), None);
        assert_eq!(c.record(false), Some(false));
    }

    #[test]
    fn init_fail_starts_down_and_needs_rise_successes() {
        let mut c = RiseFall::new(2, 1, true);
        assert_eq!(c.record(false), None, "already down");
        assert_eq!(c.record(true), None);
        assert_eq!(c.record(true), Some(true));
    }
}
