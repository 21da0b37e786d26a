//! When a virtual server standing on its sorry server may hand back to a returning real
//! server by itself: never with `failback manual` (the operator runs `halb failback VS`), and
//! not while `failback_limit N T` counts N switches within the last T seconds (a flapping
//! server keeps the sorry server; orchestrator's RecoveryPeriodBlockSeconds, MHA's "never
//! twice in 8 hours"). Pure: the time is an input. The catch-up of a MySQL writer
//! ([`crate::writer_fence`]) comes after this gate, also for a manual failback.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use halb_config::model::{Failback, FailbackLimit, LvsConfig};

/// Why a handback waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// `failback manual`.
    Manual,
    /// `failback_limit`: `switches` switches within the window; automatic failback again
    /// after `for_secs` more seconds (unless the server switches again).
    Limit {
        switches: usize,
        limit: FailbackLimit,
        for_secs: u64,
    },
}

impl Hold {
    /// The sentence for the log and `halb status` (without the virtual server's name).
    pub fn describe(&self, vs: &str) -> String {
        match self {
            Hold::Manual => {
                format!("failback manual: the sorry server stays until `halb failback {vs}`")
            }
            Hold::Limit {
                switches,
                limit,
                for_secs,
            } => format!(
                "{switches} switches within {} s (failback_limit {} {}): no automatic failback \
                 for {for_secs} s; `halb failback {vs}` hands back now",
                limit.within_secs, limit.switches, limit.within_secs
            ),
        }
    }
}

#[derive(Debug, Clone)]
struct VsFailback {
    mode: Failback,
    limit: Option<FailbackLimit>,
    /// When the virtual server switched between its real servers and its sorry server, within
    /// the limit's window (older ones are forgotten).
    switches: VecDeque<Instant>,
}

/// The failback settings of every virtual server that has any, and their switch history.
#[derive(Debug, Clone, Default)]
pub struct FailbackGate {
    by_vs: BTreeMap<usize, VsFailback>,
}

impl FailbackGate {
    pub fn new(lvs: &LvsConfig) -> FailbackGate {
        let by_vs = lvs
            .virtual_servers
            .iter()
            .enumerate()
            .filter(|(_, vs)| vs.failback == Failback::Manual || vs.failback_limit.is_some())
            .map(|(i, vs)| {
                (
                    i,
                    VsFailback {
                        mode: vs.failback,
                        limit: vs.failback_limit,
                        switches: VecDeque::new(),
                    },
                )
            })
            .collect();
        FailbackGate { by_vs }
    }

    /// Whether virtual server `vs` may ever hold a handback.
    pub fn governs(&self, vs: usize) -> bool {
        self.by_vs.contains_key(&vs)
    }

    /// Virtual server `vs` switched to or from its sorry server at `now`.
    pub fn switched(&mut self, vs: usize, now: Instant) {
        let Some(v) = self.by_vs.get_mut(&vs) else {
            return;
        };
        let Some(limit) = v.limit else { return };
        v.switches.push_back(now);
        forget_before(&mut v.switches, now, limit);
    }

    /// Whether an automatic handback of `vs` must wait at `now`, and why.
    pub fn hold(&self, vs: usize, now: Instant) -> Option<Hold> {
        let v = self.by_vs.get(&vs)?;
        if v.mode == Failback::Manual {
            return Some(Hold::Manual);
        }
        let limit = v.limit?;
        let window = Duration::from_secs(limit.within_secs);
        let recent: Vec<Instant> = v
            .switches
            .iter()
            .copied()
            .filter(|t| now.saturating_duration_since(*t) < window)
            .collect();
        if recent.len() < limit.switches as usize {
            return None;
        }
        // The hold ends when the oldest of the last N switches leaves the window.
        let oldest_counted = recent[recent.len() - limit.switches as usize];
        let ends = oldest_counted + window;
        Some(Hold::Limit {
            switches: recent.len(),
            limit,
            for_secs: ends.saturating_duration_since(now).as_secs_f64().ceil() as u64,
        })
    }
}

fn forget_before(switches: &mut VecDeque<Instant>, now: Instant, limit: FailbackLimit) {
    let window = Duration::from_secs(limit.within_secs);
    while switches
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= window)
    {
        switches.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(extra: &str) -> FailbackGate {
        let text = halb_test_support::seed_text("keepalived-master.conf").replacen(
            "lb_kind DR",
            &format!("lb_kind DR\n    {extra}"),
            1,
        );
        let loaded = halb_config::load_str(
            "keepalived.conf",
            &text,
            &halb_config::LoadOptions {
                interfaces: Some(vec!["lo".into(), "eth0".into()]),
                ..halb_config::LoadOptions::default()
            },
        );
        assert!(
            !loaded.diagnostics.has_errors(),
            "{:#?}",
            loaded.diagnostics
        );
        FailbackGate::new(&loaded.config.lvs)
    }

    #[test]
    fn automatic_failback_without_a_limit_never_holds() {
        let g = gate("");
        assert!(!g.governs(0));
        assert_eq!(g.hold(0, Instant::now()), None);
    }

    #[test]
    fn manual_failback_always_holds() {
        let mut g = gate("failback manual");
        let now = Instant::now();
        g.switched(0, now);
        assert_eq!(g.hold(0, now), Some(Hold::Manual));
        assert_eq!(
            g.hold(0, now + Duration::from_secs(86_400)),
            Some(Hold::Manual)
        );
    }

    #[test]
    fn the_limit_holds_after_n_switches_within_the_window_and_lets_go_after_it() {
        let mut g = gate("failback_limit 3 60");
        let t0 = Instant::now();
        // out, back, out: the third switch within 60 s.
        g.switched(0, t0);
        assert_eq!(g.hold(0, t0), None);
        g.switched(0, t0 + Duration::from_secs(10));
        assert_eq!(g.hold(0, t0 + Duration::from_secs(10)), None);
        g.switched(0, t0 + Duration::from_secs(20));
        let held = g.hold(0, t0 + Duration::from_secs(25));
        assert_eq!(
            held,
            Some(Hold::Limit {
                switches: 3,
                limit: FailbackLimit {
                    switches: 3,
                    within_secs: 60
                },
                for_secs: 35
            })
        );
        let text = held
            .map(|h| h.describe("[10.0.0.1]:tcp:3306"))
            .unwrap_or_default();
        assert!(text.contains("halb failback [10.0.0.1]:tcp:3306"), "{text}");
        // The first switch leaves the window at t0 + 60 s: two left, the limit lets go.
        assert_eq!(g.hold(0, t0 + Duration::from_secs(60)), None);
    }
}
