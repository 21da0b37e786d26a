//! Health checkers with keepalived's timing: a pure retry policy ([`policy`]) around one async
//! probe per checker kind ([`probe`]), and a runner ([`runner`]) that drives each configured
//! checker on its own timer and reports verdicts over a channel.
//!
//! MYSQL_CHECK's probe lives in [`mysql`]; FILE_CHECK and BFD_CHECK are not probes and are not
//! run here.

pub mod mysql;
pub mod policy;
pub mod probe;
pub mod runner;

use std::net::SocketAddr;
use std::time::Duration;

pub use halb_config::names::CheckerId;
pub use policy::{Failure, FailureKind};

/// A checker's verdict changed, or (for `misc_dynamic`) its weight did: what the virtual
/// servers act on, and what metrics and the event stream count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub id: CheckerId,
    /// The real server the checker belongs to.
    pub real_server: SocketAddr,
    /// Which checker it is (`TCP_CHECK`, `MYSQL_CHECK`, …), for the metrics' labels.
    pub kind: halb_config::model::CheckerKind,
    pub up: bool,
    /// MISC_CHECK with `misc_dynamic`: the weight the script's exit status asks for.
    pub weight: Option<u32>,
    /// What happened, for `halb status` (keepalived's wording where it has one).
    pub detail: String,
    /// Why the checker went down; `None` for an up verdict.
    pub failure: Option<Failure>,
    /// How long the probe that gave the verdict took.
    pub probe_duration: Duration,
}

/// One probe, whatever its verdict did: what the metrics time and count (a [`Report`] comes
/// only when a verdict changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSample {
    pub id: CheckerId,
    pub kind: halb_config::model::CheckerKind,
    pub duration: Duration,
    /// Why it failed; `None` when it passed.
    pub failure: Option<FailureKind>,
    /// MYSQL_CHECK: the server's `@@global.read_only` when the probe passed.
    pub read_only: Option<bool>,
}
