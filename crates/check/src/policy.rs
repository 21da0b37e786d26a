//! keepalived's timing for one checker, with time as an input.
//!
//! This is the logic of keepalived's `tcp_epilog()` (and its siblings for the other checkers):
//!
//! - the first probe runs after a random warmup in `[0, warmup]`;
//! - after a success the next probe runs `delay_loop` later; a success while the checker is
//!   down (or the very first result) declares it up at once;
//! - after a failure while the checker is up (or has not yet given a verdict), the probe is
//!   retried `delay_before_retry` later, `retry` times; the failure after the last retry declares
//!   it down. With `retry 3` and `delay_before_retry 3`, a server that dies is declared down
//!   about 9 s after the first failed probe, after 4 failed probes;
//! - while down, probes run every `delay_loop`, without retries;
//! - `alpha`: the checker starts down, so the first success brings it up.
//!
//! Only changes are reported, plus the first verdict (keepalived logs it and sets the server's
//! state from it) and, for MISC_CHECK with `misc_dynamic`, weight changes.
//!
//! Where keepalived's checkers differ among themselves, this follows the majority: a checker
//! that is down is not retried (SMTP_CHECK alone retries then). One addition: an alpha checker
//! whose server is dead from the start reports "down" once, after its retries, so that every
//! checker gives a first verdict (keepalived stays silent there: the server is already out).

use halb_config::model::CheckerTiming;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// A checker's timings, resolved (see `RealServer::effective_checker_timing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Failed probes tolerated (retried) before the checker is declared down.
    pub retry: u32,
    pub delay_before_retry: Duration,
    pub delay_loop: Duration,
    /// Upper bound of the random delay before the first probe.
    pub warmup: Duration,
}

impl From<&CheckerTiming> for Timing {
    fn from(t: &CheckerTiming) -> Self {
        Timing {
            retry: t.retry,
            delay_before_retry: Duration::from_micros(t.delay_before_retry_us),
            delay_loop: Duration::from_micros(t.delay_loop_us),
            warmup: Duration::from_micros(t.warmup_us),
        }
    }
}

/// How keepalived words the log lines of each checker kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wording {
    Tcp,
    Http,
    Ssl,
    Smtp,
    Dns,
    Udp,
    /// PING_CHECK names the virtual server too (`FMT_VS`).
    Ping {
        vs: String,
    },
    /// MISC_CHECK names the virtual server and the script (`argv[0]`).
    Misc {
        vs: String,
        script: String,
    },
    /// halb's MYSQL_CHECK, worded like keepalived's connection checkers.
    Mysql,
    /// halb's DR_PATH_CHECK: its cause (which step, which MAC) is the point, so lines carry it.
    DrPath,
}

/// What the policy needs to know about its checker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    pub timing: Timing,
    /// Start down: the first success brings the checker up.
    pub alpha: bool,
    /// Log every failed probe while the checker is up, not only the verdict
    /// (`log_all_failures`, or the global `checker_log_all_failures`).
    pub log_all_failures: bool,
    /// The real server as keepalived names it in log lines: `[192.168.66.253]:tcp:3306`.
    pub service: String,
    pub wording: Wording,
}

/// What kind of failure a probe met, for the counters and the event stream (the log line
/// keeps keepalived's words, which tell only timeouts apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The probe ran out of time (`connect_timeout`, a script's timeout).
    Timeout,
    /// The server refused the connection (RST to the SYN, ICMP port unreachable).
    Refused,
    /// The connection was reset or closed before the answer was complete.
    Reset,
    /// No route to the server (ICMP host or network unreachable).
    Unreachable,
    /// The server answered, but not as the checker requires (an HTTP status, a digest, a
    /// banner, a DNS rcode).
    Protocol,
    /// The probe could not start on this host (its socket could not be made or bound).
    Local,
    /// Anything else: a script's exit status, a client's error.
    Other,
}

impl FailureKind {
    /// The kind of a failed socket call.
    pub fn of_io(error: &std::io::Error) -> FailureKind {
        use std::io::ErrorKind;
        match error.kind() {
            ErrorKind::ConnectionRefused => FailureKind::Refused,
            ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof => FailureKind::Reset,
            ErrorKind::TimedOut => FailureKind::Timeout,
            _ => match error.raw_os_error() {
                Some(libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EHOSTDOWN) => {
                    FailureKind::Unreachable
                }
                _ => FailureKind::Other,
            },
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::Refused => "refused",
            FailureKind::Reset => "reset",
            FailureKind::Unreachable => "unreachable",
            FailureKind::Protocol => "protocol",
            FailureKind::Local => "local",
            FailureKind::Other => "other",
        }
    }
}

/// A failed probe: its kind, and what failed where (peer address, step).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    pub cause: String,
}

impl Failure {
    pub fn timed_out(&self) -> bool {
        self.kind == FailureKind::Timeout
    }
}

/// The result of one probe, as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `weight`: MISC_CHECK with `misc_dynamic`, the weight the exit status asks for.
    Success { weight: Option<u32> },
    /// The probe failed (keepalived words a timeout differently in some lines).
    Failure(Failure),
    /// The probe could not start on this host (its socket could not be bound): as keepalived,
    /// no verdict, the next try after `delay_loop`.
    Skipped { cause: String },
}

impl Outcome {
    pub fn success() -> Outcome {
        Outcome::Success { weight: None }
    }

    pub fn failure(cause: impl Into<String>) -> Outcome {
        Outcome::Failure(Failure {
            kind: FailureKind::Other,
            cause: cause.into(),
        })
    }

    pub fn timeout(cause: impl Into<String>) -> Outcome {
        Outcome::Failure(Failure {
            kind: FailureKind::Timeout,
            cause: cause.into(),
        })
    }
}

/// What changed for a checker after a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckerChange {
    /// Verdict: the checker came up, or its first verdict is up. `weight`: what a
    /// `misc_dynamic` MISC_CHECK asks for.
    Up { weight: Option<u32> },
    /// Verdict: a `misc_dynamic` checker that stays up asks for another weight.
    WeightChanged { weight: u32 },
    /// A failed probe that will be retried; `attempt` counts the failures in this run of
    /// retries. Only reported with `log_all_failures`, as keepalived logs it only then.
    Retrying { failure: Failure, attempt: u32 },
    /// Verdict: down, after the retries ran out.
    Down { failure: Failure },
    /// The probe could not start on this host: no verdict, the next try after `delay_loop`.
    Skipped { cause: String },
}

/// Something a checker's policy decided, with what keepalived's line about it needs:
/// [`CheckerEvent::log_line`] renders that line, [`CheckerEvent::verdict`] says whether it is
/// a verdict for the virtual servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckerEvent {
    /// The real server as keepalived names it: `[192.168.66.253]:tcp:3306`.
    pub service: String,
    pub wording: Wording,
    /// The checker's `retry`, which the down line quotes.
    pub retry: u32,
    pub change: CheckerChange,
}

/// A verdict for the virtual servers: up (with `misc_dynamic`'s weight) or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub up: bool,
    pub weight: Option<u32>,
}

impl CheckerEvent {
    /// The verdict this event gives, if it gives one.
    pub fn verdict(&self) -> Option<Verdict> {
        match &self.change {
            CheckerChange::Up { weight } => Some(Verdict {
                up: true,
                weight: *weight,
            }),
            CheckerChange::WeightChanged { weight } => Some(Verdict {
                up: true,
                weight: Some(*weight),
            }),
            CheckerChange::Down { .. } => Some(Verdict {
                up: false,
                weight: None,
            }),
            CheckerChange::Retrying { .. } | CheckerChange::Skipped { .. } => None,
        }
    }

    /// The failure behind the event, if a failure is.
    pub fn failure(&self) -> Option<&Failure> {
        match &self.change {
            CheckerChange::Retrying { failure, .. } | CheckerChange::Down { failure } => {
                Some(failure)
            }
            _ => None,
        }
    }

    /// keepalived's log line for the event; a weight change is not logged.
    pub fn log_line(&self) -> Option<String> {
        match &self.change {
            CheckerChange::Up { .. } => Some(self.up_line()),
            CheckerChange::WeightChanged { .. } => None,
            CheckerChange::Retrying { failure, attempt } => {
                Some(self.attempt_line(&failure.cause, failure.timed_out(), *attempt))
            }
            CheckerChange::Down { failure } => {
                Some(self.down_line(&failure.cause, failure.timed_out()).0)
            }
            CheckerChange::Skipped { cause } => Some(format!("{cause}. Rescheduling.")),
        }
    }

    /// What a verdict says for `halb status`: the log line, with the cause of a failure when
    /// the line does not already carry it.
    pub fn detail(&self) -> String {
        match &self.change {
            CheckerChange::WeightChanged { weight } => {
                format!("{} asks for weight {weight}", self.who())
            }
            CheckerChange::Down { failure } => {
                let (line, has_cause) = self.down_line(&failure.cause, failure.timed_out());
                if has_cause {
                    line
                } else {
                    format!("{line} ({})", failure.cause)
                }
            }
            _ => self.log_line().unwrap_or_default(),
        }
    }

    /// How MISC_CHECK names itself, and the others their service.
    fn who(&self) -> String {
        match &self.wording {
            Wording::Misc { vs, script } => {
                format!("Misc check for [{} VS {vs}] by [{script}]", self.service)
            }
            _ => self.service.clone(),
        }
    }

    fn up_line(&self) -> String {
        let s = &self.service;
        match &self.wording {
            Wording::Tcp => format!("TCP connection to {s} success."),
            Wording::Udp => format!("UDP connection to {s} success."),
            Wording::Ping { .. } => format!("ICMP connection to {s} success."),
            Wording::Http | Wording::Ssl => format!("Remote Web server {s} succeed on service."),
            Wording::Smtp => format!("Remote SMTP server {s} succeed on service."),
            Wording::Dns => format!("DNS_CHECK ({s}) succeed on service."),
            Wording::Misc { .. } => format!("{} succeeded.", self.who()),
            Wording::Mysql => format!("MYSQL_CHECK on service {s} succeed."),
            Wording::DrPath => format!("DR_PATH_CHECK on service {s} succeed."),
        }
    }

    /// The line logged for a failed probe that will be retried (only with `log_all_failures`).
    fn attempt_line(&self, cause: &str, timed_out: bool, attempt: u32) -> String {
        let s = &self.service;
        match &self.wording {
            Wording::Tcp if timed_out => format!("TCP connection to {s} timeout."),
            Wording::Tcp => format!("TCP connection to {s} failed."),
            Wording::Udp => format!("UDP connection to {s} failed."),
            Wording::Ping { .. } if timed_out => {
                format!("ICMP connection to address {s} timeout.")
            }
            Wording::Ping { vs } => format!("ICMP connection to {s} of {vs} failed."),
            Wording::Http => format!("HTTP_CHECK to server {s}: {cause}."),
            Wording::Ssl => format!("SSL_CHECK to server {s}: {cause}."),
            Wording::Smtp => format!("SMTP_CHECK {cause}"),
            Wording::Dns => format!("DNS_CHECK ({s}) {cause}"),
            Wording::Misc { .. } => {
                let retry = self.retry;
                // keepalived: the scheduled probe failed ("will do N retries"), or retry i of N.
                let progress = if attempt <= 1 {
                    format!(", will do {retry} {}", retries(retry))
                } else {
                    format!(" on retry {}/{retry}", attempt - 1)
                };
                self.misc_line(cause, timed_out, &progress)
            }
            Wording::Mysql => format!("MYSQL_CHECK to server {s}: {cause}."),
            Wording::DrPath => format!("DR_PATH_CHECK to server {s}: {cause}."),
        }
    }

    /// The line logged when the checker is declared down, and whether it already says why.
    fn down_line(&self, cause: &str, timed_out: bool) -> (String, bool) {
        let s = &self.service;
        let retry = self.retry;
        let after = |kind: &str| {
            if retry > 0 {
                format!("{kind} on service {s} failed after {retry} retries.")
            } else {
                format!("{kind} on service {s} failed.")
            }
        };
        match &self.wording {
            Wording::Tcp => (after("TCP_CHECK"), false),
            Wording::Udp => (after("UDP_CHECK"), false),
            Wording::Http => (after("HTTP_CHECK"), false),
            Wording::Ssl => (after("SSL_CHECK"), false),
            Wording::Mysql => (after("MYSQL_CHECK"), false),
            Wording::DrPath => {
                let line = after("DR_PATH_CHECK");
                let line = line.strip_suffix('.').unwrap_or(&line);
                (format!("{line}: {cause}."), true)
            }
            Wording::Ping { vs } => {
                if retry > 0 {
                    (
                        format!("ICMP CHECK on service {s} of {vs} failed after {retry} retries."),
                        false,
                    )
                } else {
                    (format!("ICMP CHECK on service {s} failed."), false)
                }
            }
            Wording::Smtp => (format!("SMTP_CHECK {cause}"), true),
            Wording::Dns => {
                if retry > 0 {
                    (
                        format!("DNS_CHECK ({s}) {cause} after {retry} retries"),
                        true,
                    )
                } else {
                    (format!("DNS_CHECK ({s}) {cause}"), true)
                }
            }
            Wording::Misc { .. } => {
                let progress = if retry > 0 {
                    format!(" after {retry} {}", retries(retry))
                } else {
                    " with retry disabled".to_string()
                };
                (self.misc_line(cause, timed_out, &progress), !timed_out)
            }
        }
    }

    /// keepalived's MISC_CHECK failure line: "Misc check for [RS VS VS] by [script] failed
    /// after 2 retries (exited with status 1)." or "... timed out ...".
    fn misc_line(&self, cause: &str, timed_out: bool, progress: &str) -> String {
        if timed_out {
            format!("{} timed out{progress}.", self.who())
        } else {
            format!("{} failed{progress} ({cause}).", self.who())
        }
    }
}

/// What a reload carries from a checker whose definition did not change to its successor:
/// its verdict and where it is in its retries (keepalived keeps the checker itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyState {
    pub up: bool,
    pub has_run: bool,
    pub retry_it: u32,
    pub weight: Option<u32>,
}

/// The retry / delay state machine of one checker.
#[derive(Debug, Clone)]
pub struct Policy {
    cfg: PolicyConfig,
    up: bool,
    /// A verdict has been given (keepalived's `has_run`, which keepalived sets after the first
    /// probe; here it waits for the first verdict, so that an alpha checker whose server is dead
    /// from the start still reports "down" once, after its retries).
    has_run: bool,
    /// Failed probes so far in the current run of retries (keepalived's `retry_it`).
    retry_it: u32,
    next_probe: Instant,
    in_flight: bool,
    suspended: bool,
    /// The last `misc_dynamic` weight reported.
    weight: Option<u32>,
    /// Until when passive evidence against the server stands (see [`Policy::expedite`]).
    expedited_until: Option<Instant>,
    /// When the last probe succeeded.
    last_success: Option<Instant>,
}

/// After a probe succeeded, passive evidence does not bring the next one forward for this long:
/// a client that leaves its connections half-open (or a SYN flood) in front of a healthy server
/// costs at most one probe a second, not one per read of the connection table.
pub const EXPEDITE_QUIET: Duration = Duration::from_secs(1);

impl Policy {
    /// A checker whose first probe runs `warmup_offset` after `now`; the caller draws the offset
    /// at random in `[0, timing.warmup]` (it is clamped to `warmup`).
    pub fn new(now: Instant, cfg: PolicyConfig, warmup_offset: Duration) -> Policy {
        let first = now + warmup_offset.min(cfg.timing.warmup);
        Policy {
            up: !cfg.alpha,
            cfg,
            has_run: false,
            retry_it: 0,
            next_probe: first,
            in_flight: false,
            suspended: false,
            weight: None,
            expedited_until: None,
            last_success: None,
        }
    }

    /// A checker that takes over `state` from its predecessor of a reload: same verdict, same
    /// place in the retries; its next probe runs `first_offset` after `now`.
    pub fn resume_from(
        now: Instant,
        cfg: PolicyConfig,
        state: PolicyState,
        first_offset: Duration,
    ) -> Policy {
        Policy {
            cfg,
            up: state.up,
            has_run: state.has_run,
            retry_it: state.retry_it,
            next_probe: now + first_offset,
            in_flight: false,
            suspended: false,
            weight: state.weight,
            expedited_until: None,
            last_success: None,
        }
    }

    /// What a reload carries over (see [`PolicyState`]).
    pub fn state(&self) -> PolicyState {
        PolicyState {
            up: self.up,
            has_run: self.has_run,
            retry_it: self.retry_it,
            weight: self.weight,
        }
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.cfg
    }

    /// The checker's current verdict (before the first result: up unless `alpha`).
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Whether a first verdict has been given.
    pub fn has_run(&self) -> bool {
        self.has_run
    }

    /// Failed probes in the current run of retries.
    pub fn failures_in_a_row(&self) -> u32 {
        self.retry_it
    }

    pub fn is_suspended(&self) -> bool {
        self.suspended
    }

    /// When the next probe is due; `None` while a probe runs or the checker is suspended.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.in_flight && !self.suspended).then_some(self.next_probe)
    }

    /// Whether a probe must start now; if so, the policy waits for its result.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        if self.in_flight || self.suspended || now < self.next_probe {
            return false;
        }
        self.in_flight = true;
        true
    }

    /// Asks for a probe at once (a passive failure seen by the data plane). Its result counts
    /// like any other: a failure starts the retries. Does nothing while a probe runs (its result
    /// is fresh enough) or while suspended. Returns whether a probe was brought forward.
    pub fn probe_now(&mut self, now: Instant) -> bool {
        if self.in_flight || self.suspended {
            return false;
        }
        if self.next_probe > now {
            self.next_probe = now;
        }
        true
    }

    /// Passive evidence that stands until `until` (the data plane sees the server's new
    /// connections stall): a probe now, as [`Policy::probe_now`], and while the evidence stands
    /// the retries of a failure follow each other without `delay_before_retry`, and the shell
    /// bounds each probe's wait for an answer short (see [`Policy::is_expedited`]). Only the
    /// probes' own failures take the server out, after the usual number of retries: the
    /// evidence shortens the waits, it never counts as a failure. Within [`EXPEDITE_QUIET`] of a
    /// success the probe is not brought forward. Returns whether a probe was brought forward.
    pub fn expedite(&mut self, now: Instant, until: Instant) -> bool {
        if self.suspended {
            return false;
        }
        self.expedited_until = Some(self.expedited_until.map_or(until, |u| u.max(until)));
        if self
            .last_success
            .is_some_and(|at| now.saturating_duration_since(at) < EXPEDITE_QUIET)
        {
            return false;
        }
        self.probe_now(now)
    }

    /// Whether passive evidence stands at `now` (see [`Policy::expedite`]).
    pub fn is_expedited(&self, now: Instant) -> bool {
        self.expedited_until.is_some_and(|until| now < until)
    }

    /// Stops probing (`ha_suspend` while the virtual server's address is absent). A result
    /// still pending is taken when it comes.
    pub fn suspend(&mut self) {
        self.suspended = true;
    }

    /// Probes again: the next probe runs when it was due, or at once if that time has passed.
    pub fn resume(&mut self) {
        self.suspended = false;
    }

    /// Takes the result of a probe and says what changed: verdicts to report, lines to log.
    #[must_use = "verdicts must reach the virtual servers"]
    pub fn handle_result(&mut self, now: Instant, outcome: Outcome) -> Vec<CheckerEvent> {
        self.in_flight = false;
        let mut out = Vec::new();
        let first = !self.has_run;
        let delay = match outcome {
            Outcome::Success { weight } => {
                self.retry_it = 0;
                self.last_success = Some(now);
                // The server answers: what the data plane saw is answered too.
                self.expedited_until = None;
                if !self.up || first {
                    self.up = true;
                    self.has_run = true;
                    self.weight = weight;
                    out.push(self.event(CheckerChange::Up { weight }));
                } else if let Some(w) = weight.filter(|_| weight != self.weight) {
                    self.weight = weight;
                    out.push(self.event(CheckerChange::WeightChanged { weight: w }));
                }
                self.cfg.timing.delay_loop
            }
            Outcome::Failure(failure) => {
                if self.up || first {
                    if self.retry_it < self.cfg.timing.retry {
                        self.retry_it += 1;
                        if self.cfg.log_all_failures {
                            out.push(self.event(CheckerChange::Retrying {
                                failure,
                                attempt: self.retry_it,
                            }));
                        }
                        if self.is_expedited(now) {
                            Duration::ZERO
                        } else {
                            self.cfg.timing.delay_before_retry
                        }
                    } else {
                        self.retry_it = 0;
                        self.up = false;
                        self.has_run = true;
                        self.weight = None;
                        out.push(self.event(CheckerChange::Down { failure }));
                        self.cfg.timing.delay_loop
                    }
                } else {
                    // Already down: no retries, keep probing every delay_loop.
                    self.cfg.timing.delay_loop
                }
            }
            Outcome::Skipped { cause } => {
                out.push(self.event(CheckerChange::Skipped { cause }));
                self.cfg.timing.delay_loop
            }
        };
        self.next_probe = now + delay;
        out
    }

    fn event(&self, change: CheckerChange) -> CheckerEvent {
        CheckerEvent {
            service: self.cfg.service.clone(),
            wording: self.cfg.wording.clone(),
            retry: self.cfg.timing.retry,
            change,
        }
    }
}

fn retries(n: u32) -> &'static str {
    if n == 1 {
        "retry"
    } else {
        "retries"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "[192.168.66.253]:tcp:3306";

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn cfg(retry: u32, dbr: u64, delay_loop: u64, alpha: bool) -> PolicyConfig {
        PolicyConfig {
            timing: Timing {
                retry,
                delay_before_retry: secs(dbr),
                delay_loop: secs(delay_loop),
                warmup: secs(delay_loop),
            },
            alpha,
            log_all_failures: false,
            service: S.to_string(),
            wording: Wording::Tcp,
        }
    }

    fn fail() -> Outcome {
        Outcome::failure("connect to 192.168.66.253:3306: Connection refused")
    }

    /// Runs the probe that is due and feeds it `outcome`; returns the probe's time.
    fn step(p: &mut Policy, outcome: Outcome) -> (Instant, Vec<CheckerEvent>) {
        let at = p.poll_timeout().expect("a probe is scheduled");
        assert!(p.handle_timeout(at));
        assert_eq!(p.poll_timeout(), None, "no timer while a probe runs");
        let out = p.handle_result(at, outcome);
        (at, out)
    }

    fn verdicts(out: &[CheckerEvent]) -> Vec<bool> {
        out.iter().filter_map(|e| Some(e.verdict()?.up)).collect()
    }

    fn lines(out: &[CheckerEvent]) -> Vec<String> {
        out.iter().filter_map(CheckerEvent::log_line).collect()
    }

    /// (up, weight, detail) of each verdict.
    fn reports(out: &[CheckerEvent]) -> Vec<(bool, Option<u32>, String)> {
        out.iter()
            .filter_map(|e| {
                let v = e.verdict()?;
                Some((v.up, v.weight, e.detail()))
            })
            .collect()
    }

    #[test]
    fn first_probe_after_warmup_clamped() {
        let t0 = Instant::now();
        let p = Policy::new(t0, cfg(1, 1, 10, false), secs(3));
        assert_eq!(p.poll_timeout(), Some(t0 + secs(3)));
        let p = Policy::new(t0, cfg(1, 1, 10, false), secs(99));
        assert_eq!(p.poll_timeout(), Some(t0 + secs(10)));
    }

    #[test]
    fn not_due_yet() {
        let t0 = Instant::now();
        let mut p = Policy::new(t0, cfg(1, 1, 10, false), secs(5));
        assert!(!p.handle_timeout(t0 + secs(4)));
        assert!(p.handle_timeout(t0 + secs(5)));
        assert!(!p.handle_timeout(t0 + secs(6)), "already in flight");
    }

    #[test]
    fn first_success_is_reported_then_only_changes() {
        let t0 = Instant::now();
        let mut p = Policy::new(t0, cfg(1, 1, 10, false), Duration::ZERO);
        let (at, out) = step(&mut p, Outcome::success());
        assert_eq!(verdicts(&out), vec![true]);
        assert_eq!(lines(&out), vec![format!("TCP connection to {S} success.")]);
        assert_eq!(p.poll_timeout(), Some(at + secs(10)));
        let (_, out) = step(&mut p, Outcome::success());
        assert!(out.is_empty());
    }

    #[test]
    fn retry_three_then_down_after_nine_seconds() {
        let t0 = Instant::now();
        let mut p = Policy::new(t0, cfg(3, 3, 60, false), Duration::ZERO);
        step(&mut p, Outcome::success());
        let (first_fail, out) = step(&mut p, fail());
        assert!(out.is_empty());
        assert_eq!(p.poll_timeout(), Some(first_fail + secs(3)));
        let (_, out) = step(&mut p, fail());
        assert!(out.is_empty());
        let (_, out) = step(&mut p, fail());
        assert!(out.is_empty());
        assert!(p.is_up());
        let (declared, out) = step(&mut p, fail());
        assert_eq!(declared - first_fail, secs(9), "3 retries, 3 s apart");
        assert_eq!(verdicts(&out), vec![false]);
        assert_eq!(
            lines(&out),
            vec![format!("TCP_CHECK on service {S} failed after 3 retries.")]
        );
        assert!(!p.is_up());
        // Down: probes every delay_loop, no retries, nothing reported.
        assert_eq!(p.poll_timeout(), Some(declared + secs(60)));
        let (at, out) = step(&mut p, fail());
        assert!(out.is_empty());
        assert_eq!(p.poll_timeout(), Some(at + secs(60)));
        // One success brings it back at once.
        let (_, out) = step(&mut p, Outcome::success());
        assert_eq!(verdicts(&out), vec![true]);
    }

    #[test]
    fn a_success_between_retries_resets_the_count() {
        let t0 = Instant::now();
        let mut p = Policy::new(t0, cfg(2, 1, 10, false), Duration::ZERO);
        step(&mut p, Outcome::success());
        step(&mut p, fail());
        step(&mut p, fail());
        assert_eq!(p.failures_in_a_row(), 2);
        let (at, out) = step(&mut p, Outcome::success());
        assert!(out.is_empty());
        assert_eq!(p.failures_in_a_row(), 0);
        assert_eq!(p.poll_timeout(), Some(at + secs(10)));
        // Three more failures are needed again.
        step(&mut p, fail());
        step(&mut p, fail());
        let (_, out) = step(&mut p, fail());
        assert_eq!(verdicts(&out), vec![false]);
    }

    #[test]
    fn a_probe_that_cannot_start_here_gives_no_verdict() {
        let t0 = Instant::now();
        let mut p = Policy::new(t0, cfg(0, 1, 10, false), Duration::ZERO);
        let skipped = || {
            Outcome::Skipped {
            cause: "socket for [2001:db8::2]:443: binding to [2001:db8::9]:0: Cannot assign requested address".into(),
        }
        };
        let (at, out) = step(&mut p, skipped());
        assert!(verdicts(&out).is_empty(), "the server stays as it was");
        assert!(lines(&out)[0].ends_with("Rescheduling."), "{out:?}");
        assert_eq!(
            p.poll_timeout(),
            Some(at + secs(10)),
            "next try after delay_loop"
        );
        let (_, out) = step(&mut p, fail());
        assert_eq!(verdicts(&out), vec![false], "a real failure still counts");
    }

    #[test]
    fn retry_zero_fails_at_once() {
        let t0 = Instant::now();
        let mut p = Policy::new(t0, cfg(0, 1, 10, false), Duration::ZERO);
        let (_, out) = step(&mut p, fail());
        assert_eq!(verdicts(&out), vec![false]);
        assert_eq!(
            lines(&out),
            vec![format!("TCP_CHECK on service {S} failed.")]
        );
    }

    #[test]
    fn first_failure_is_retried_before_the_first_verdict() {
        let t0 = Instant::now();
        let mut p = Policy::new(t0, cfg(1, 2, 10, false), Duration::ZERO);
        let (at, out) = step(&mut p, fail());
        assert!(out.is_empty());
        assert_eq!(p.poll_timeout(), Some(at + secs(2)));
        let (_, out) = step(&mut p, fail());
        assert_eq!(verdicts(&out), vec![false]);
        assert_eq!(
            lines(&out),
            vec![format!("TCP_CHECK on service {S} failed after 1 retries.")]
        );
    }

    #[test]
    fn alpha_starts_down_and_the_first_success_brings_it_up() {
        let t0 = Instant::now();
        let mut p = Policy::new(t0, cfg(1, 1, 10, true), Duration::ZERO);
        assert!(!p.is_up());
        let (_, out) = step(&mut p, Outcome::success());
        assert_eq!(verdicts(&out), vec![true]);
        assert!(p.is_up());
    }

    #[test]
    fn alpha_first_failures_give_a_down_verdict_once() {
        let t0 = Instant::now();
        let mut p = Policy::new(t0, cfg(1, 1, 10, true), Duration::ZERO);
        let (_, out) = step(&mut p, fail());
        assert!(out.is_empty());
        let (_, out) = step(&mut p, fail());
        assert_eq!(verdicts(&out), vec![false]);
        let (_, out) = step(&mut p, fail());
        assert!(out.is_empty());
    }

    #[test]
    fn log_all_failures_logs_each_attempt_while_up() {
        let t0 = Instant::now();
        let mut c = cfg(2, 1, 10, false);
        c.log_all_failures = true;
        let mut p = Policy::new(t0, c, Duration::ZERO);
        step(&mut p, Outcome::success());
        let (_, out) = step(&mut p, fail());
        assert_eq!(lines(&out), vec![format!("TCP connection to {S} failed.")]);
        let (_, out) = step(&mut p, Outcome::timeout("timeout"));
        assert_eq!(lines(&out), vec![format!("TCP connection to {S} timeout.")]);
        let (_, out) = step(&mut p, fail());
        assert_eq!(verdicts(&out), vec![false]);
        // Down: failures are no longer logged.
        let (_, out) = step(&mut p, fail());
        assert!(out.is_empty());
    }

    #[test]
    fn probe_now_brings_the_probe_forward_and_keeps_retries() {
        let t0 = Instant::now();
        let mut p = Policy::new(t0, cfg(1, 2, 60, false), Duration::ZERO);
        let (at, _) = step(&mut p, Outcome::success());
        let passive = at + secs(5);
        assert!(p.probe_now(passive));
        assert_eq!(p.poll_timeout(), Some(passive));
        assert!(p.handle_timeout(passive));
        assert!(!p.probe_now(passive), "a probe already runs");
        let out = p.handle_result(passive, fail());
        assert!(out.is_empty(), "the expedited failure is retried first");
        assert_eq!(p.poll_timeout(), Some(passive + secs(2)));
        let (_, out) = step(&mut p, fail());
        assert_eq!(verdicts(&out), vec![false]);
        // A time already due is not pushed back.
        let due = p.poll_timeout().unwrap();
        assert!(p.probe_now(due + secs(1)));
        assert_eq!(p.poll_timeout(), Some(due));
    }

    #[test]
    fn expedite_runs_the_retries_back_to_back_while_the_evidence_stands() {
        let t0 = Instant::now();
        // The seed's timing: 3 retries 3 s apart, delay_loop 20 s.
        let mut p = Policy::new(t0, cfg(3, 3, 20, false), Duration::ZERO);
        let (at, _) = step(&mut p, Outcome::success());
        let seen = at + secs(5);
        assert!(p.expedite(seen, seen + secs(1)));
        assert!(p.is_expedited(seen));
        assert_eq!(p.poll_timeout(), Some(seen));
        for _ in 0..3 {
            let (when, out) = step(&mut p, Outcome::timeout("no answer"));
            assert!(
                verdicts(&out).is_empty(),
                "the evidence alone takes nothing out"
            );
            assert_eq!(p.poll_timeout(), Some(when), "the retry follows at once");
        }
        let (_, out) = step(&mut p, fail());
        assert_eq!(
            verdicts(&out),
            vec![false],
            "down after the usual 1 + 3 failures"
        );
        // Down: probes every delay_loop again.
        let next = p.poll_timeout().unwrap();
        assert_eq!(next, seen + secs(20));
    }

    #[test]
    fn expedite_ends_with_the_evidence_or_a_success() {
        let t0 = Instant::now();
        let mut p = Policy::new(t0, cfg(3, 3, 20, false), Duration::ZERO);
        let (at, _) = step(&mut p, Outcome::success());
        let seen = at + secs(5);
        assert!(p.expedite(seen, seen + Duration::from_millis(500)));
        let (_, _) = step(&mut p, fail());
        assert_eq!(p.poll_timeout(), Some(seen), "retry at once");
        // The evidence is gone by the time the retry fails: the usual delay_before_retry.
        assert!(p.handle_timeout(seen + secs(1)));
        assert!(p.handle_result(seen + secs(1), fail()).is_empty());
        assert!(!p.is_expedited(seen + secs(1)));
        assert_eq!(p.poll_timeout(), Some(seen + secs(4)));
        // A success clears the evidence, and evidence soon after it waits for the loop.
        assert!(p.expedite(seen + secs(2), seen + secs(3)));
        let (ok_at, _) = step(&mut p, Outcome::success());
        assert!(!p.is_expedited(ok_at));
        let soon = ok_at + Duration::from_millis(300);
        assert!(!p.expedite(soon, soon + secs(1)), "within the quiet second");
        assert_eq!(p.poll_timeout(), Some(ok_at + secs(20)));
        assert!(
            p.is_expedited(soon),
            "but a failure then is retried at once"
        );
        let later = ok_at + secs(2);
        assert!(p.expedite(later, later + secs(1)));
        assert_eq!(p.poll_timeout(), Some(later));
    }

    #[test]
    fn expedite_does_nothing_while_suspended() {
        let t0 = Instant::now();
        let mut p = Policy::new(t0, cfg(3, 3, 20, false), Duration::ZERO);
        p.suspend();
        assert!(!p.expedite(t0, t0 + secs(1)));
        assert!(!p.is_expedited(t0));
    }

    #[test]
    fn suspend_and_resume() {
        let t0 = Instant::now();
        let mut p = Policy::new(t0, cfg(1, 1, 10, false), Duration::ZERO);
        let (at, _) = step(&mut p, Outcome::success());
        p.suspend();
        assert_eq!(p.poll_timeout(), None);
        assert!(!p.handle_timeout(at + secs(30)));
        assert!(!p.probe_now(at + secs(30)));
        p.resume();
        // The probe that was due at +10 s runs at once.
        assert_eq!(p.poll_timeout(), Some(at + secs(10)));
        assert!(p.handle_timeout(at + secs(30)));
    }

    #[test]
    fn misc_dynamic_weights_and_wording() {
        let t0 = Instant::now();
        let mut c = cfg(1, 1, 10, false);
        c.wording = Wording::Misc {
            vs: "[192.168.66.251]:tcp:3306".into(),
            script: "/usr/local/bin/check".into(),
        };
        let who =
            format!("Misc check for [{S} VS [192.168.66.251]:tcp:3306] by [/usr/local/bin/check]");
        let mut p = Policy::new(t0, c, Duration::ZERO);
        let (_, out) = step(&mut p, Outcome::Success { weight: Some(5) });
        assert_eq!(lines(&out), vec![format!("{who} succeeded.")]);
        assert_eq!(
            reports(&out),
            vec![(true, Some(5), format!("{who} succeeded."))]
        );
        let (_, out) = step(&mut p, Outcome::Success { weight: Some(5) });
        assert!(out.is_empty(), "same weight: nothing to say");
        let (_, out) = step(&mut p, Outcome::Success { weight: Some(8) });
        assert!(lines(&out).is_empty(), "a weight change is not logged");
        assert_eq!(
            reports(&out),
            vec![(true, Some(8), format!("{who} asks for weight 8"))]
        );
        step(&mut p, Outcome::failure("exited with status 1"));
        let (_, out) = step(&mut p, Outcome::failure("exited with status 1"));
        assert_eq!(
            lines(&out),
            vec![format!(
                "{who} failed after 1 retry (exited with status 1)."
            )]
        );
        let (_, out) = step(&mut p, Outcome::Success { weight: Some(8) });
        assert_eq!(verdicts(&out), vec![true], "weight is reported again");
    }

    #[test]
    fn misc_timeout_wording() {
        let t0 = Instant::now();
        let mut c = cfg(0, 1, 10, false);
        c.wording = Wording::Misc {
            vs: "FWM 1".into(),
            script: "/bin/check".into(),
        };
        let mut p = Policy::new(t0, c, Duration::ZERO);
        let (_, out) = step(&mut p, Outcome::timeout("timed out after 5s"));
        assert_eq!(
            lines(&out),
            vec![format!(
                "Misc check for [{S} VS FWM 1] by [/bin/check] timed out with retry disabled."
            )]
        );
    }

    #[test]
    fn down_detail_carries_the_cause() {
        let t0 = Instant::now();
        let mut p = Policy::new(t0, cfg(0, 1, 10, false), Duration::ZERO);
        let (_, out) = step(&mut p, fail());
        let detail = reports(&out).remove(0).2;
        assert_eq!(
            detail,
            format!(
                "TCP_CHECK on service {S} failed. (connect to 192.168.66.253:3306: Connection refused)"
            )
        );
    }

    #[test]
    fn other_kinds_words() {
        let t0 = Instant::now();
        for (wording, up, down) in [
            (
                Wording::Http,
                format!("Remote Web server {S} succeed on service."),
                format!("HTTP_CHECK on service {S} failed after 1 retries."),
            ),
            (
                Wording::Ssl,
                format!("Remote Web server {S} succeed on service."),
                format!("SSL_CHECK on service {S} failed after 1 retries."),
            ),
            (
                Wording::Udp,
                format!("UDP connection to {S} success."),
                format!("UDP_CHECK on service {S} failed after 1 retries."),
            ),
            (
                Wording::Ping { vs: "FWM 2".into() },
                format!("ICMP connection to {S} success."),
                format!("ICMP CHECK on service {S} of FWM 2 failed after 1 retries."),
            ),
            (
                Wording::Smtp,
                format!("Remote SMTP server {S} succeed on service."),
                "SMTP_CHECK oops".to_string(),
            ),
            (
                Wording::Dns,
                format!("DNS_CHECK ({S}) succeed on service."),
                format!("DNS_CHECK ({S}) oops after 1 retries"),
            ),
        ] {
            let mut c = cfg(1, 1, 10, false);
            c.wording = wording;
            let mut p = Policy::new(t0, c, Duration::ZERO);
            let (_, out) = step(&mut p, Outcome::success());
            assert_eq!(lines(&out), vec![up]);
            step(&mut p, Outcome::failure("oops"));
            let (_, out) = step(&mut p, Outcome::failure("oops"));
            assert_eq!(lines(&out), vec![down]);
        }
    }
}
