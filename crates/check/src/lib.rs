//! Health checkers with keepalived's timing: a pure retry policy ([`policy`]) around one async
//! probe per checker kind ([`probe`]), and a runner ([`runner`]) that drives each configured
//! checker on its own timer and reports verdicts over a channel.
//!
//! MYSQL_CHECK's probe lives in [`mysql`]; FILE_CHECK and BFD_CHECK are not probes and are not
//! run here.

pub mod mysql;
pub mod names;
pub mod policy;
pub mod probe;
pub mod runner;

use std::net::SocketAddr;

/// Which checker of which real server of which virtual server: indices into
/// `config.lvs.virtual_servers`, its `real_servers` and their `checkers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckerId {
    pub vs: usize,
    pub rs: usize,
    pub checker: usize,
}

/// A checker's verdict changed, or (for `misc_dynamic`) its weight did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub id: CheckerId,
    /// The real server the checker belongs to.
    pub real_server: SocketAddr,
    pub up: bool,
    /// MISC_CHECK with `misc_dynamic`: the weight the script's exit status asks for.
    pub weight: Option<u32>,
    /// What happened, for the log (keepalived's wording where it has one).
    pub detail: String,
}
