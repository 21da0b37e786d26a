//! Per-connection events (a refused connect, a client turned away) happen once per client:
//! logged each time, a burst of clients against a dead server floods the journal. Each kind
//! is logged at most once a second, and the next line says how many were left out; state
//! changes (a destination up or down) are the checkers' and are not limited.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The gate of one kind of event.
#[derive(Debug, Default)]
pub(crate) struct LogLimit {
    /// When a line was last let through (the proxy's milliseconds + 1; 0: never).
    last_ms: AtomicU64,
    /// Events left out since.
    suppressed: AtomicU64,
}

/// The shortest time between two lines of one kind.
const PERIOD_MS: u64 = 1000;

impl LogLimit {
    /// Whether an event at `now_ms` may be logged; when it may, the note to append for the
    /// events left out since the last line (empty when none were).
    pub(crate) fn admit(&self, now_ms: u64) -> Option<String> {
        let last = self.last_ms.load(Relaxed);
        let due = last == 0 || now_ms + 1 >= last + PERIOD_MS;
        if due
            && self
                .last_ms
                .compare_exchange(last, now_ms + 1, Relaxed, Relaxed)
                .is_ok()
        {
            return Some(match self.suppressed.swap(0, Relaxed) {
                0 => String::new(),
                n => format!(" ({n} similar messages suppressed)"),
            });
        }
        self.suppressed.fetch_add(1, Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::LogLimit;

    #[test]
    fn one_line_a_second_then_the_count_of_the_rest() {
        let limit = LogLimit::default();
        assert_eq!(limit.admit(0).as_deref(), Some(""));
        for ms in 1..999 {
            assert_eq!(limit.admit(ms), None);
        }
        assert_eq!(
            limit.admit(1000).as_deref(),
            Some(" (998 similar messages suppressed)")
        );
        assert_eq!(limit.admit(1500), None);
        assert_eq!(
            limit.admit(2000).as_deref(),
            Some(" (1 similar messages suppressed)")
        );
        assert_eq!(limit.admit(3000).as_deref(), Some(""));
    }
}
