//! What the virtual servers ask of the I/O shell: log lines, scripts, connection drops and
//! checker suspension.

use std::net::SocketAddr;

use halb_config::model::Script;
use serde::{Deserialize, Serialize};

use crate::table::ServiceKey;

/// Which checker of which real server of which virtual server: indices into
/// `LvsConfig::virtual_servers`, its `real_servers` and their `checkers` (the same indices the
/// health checkers use to name themselves).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct CheckerKey {
    pub vs: usize,
    pub rs: usize,
    pub checker: usize,
}

impl CheckerKey {
    pub fn new(vs: usize, rs: usize, checker: usize) -> Self {
        CheckerKey { vs, rs, checker }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Level {
    /// keepalived logs all of these events at LOG_INFO.
    Info,
    /// Something the configuration or the caller got wrong (a report for a checker that does
    /// not exist).
    Warn,
}

/// Why a script runs (the script itself is in [`Output::RunScript`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScriptReason {
    /// `notify_up` of real server `rs` of virtual server `vs`.
    RealServerUp { vs: usize, rs: usize },
    /// `notify_down`.
    RealServerDown { vs: usize, rs: usize },
    /// `quorum_up` of virtual server `vs`.
    QuorumUp { vs: usize },
    /// `quorum_down`.
    QuorumDown { vs: usize },
}

/// One thing for the shell to do, in the order given. The desired table is read separately
/// ([`super::VirtualServers::table`]); the shell applies it before acting on
/// [`Output::DropConnections`], so that no new connection reaches the destination whose
/// connections are being dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Output {
    /// A line for the log, in keepalived's words.
    Log { level: Level, message: String },
    /// Run a notify script. `at_shutdown`: keepalived runs these synchronously while stopping
    /// (and kills them after a second); the shell should wait for them before exiting.
    RunScript {
        script: Script,
        reason: ScriptReason,
        at_shutdown: bool,
    },
    /// Close the connections still open to `dest` through `service`. keepalived leaves them
    /// to expire, which is what kept the seed's clients on the sorry server for minutes after
    /// the real server came back.
    DropConnections {
        service: ServiceKey,
        dest: SocketAddr,
    },
    /// Stop probing the real servers of virtual server `vs` (`ha_suspend`: its address is no
    /// longer on this host). A result already under way still counts.
    SuspendCheckers { vs: usize },
    /// Probe them again.
    ResumeCheckers { vs: usize },
}

impl Output {
    pub(crate) fn info(message: String) -> Output {
        Output::Log {
            level: Level::Info,
            message,
        }
    }

    pub(crate) fn warn(message: String) -> Output {
        Output::Log {
            level: Level::Warn,
            message,
        }
    }
}
