//! What the virtual servers ask of the I/O shell: events to publish, scripts, connection drops
//! and checker suspension.

use std::net::SocketAddr;

use halb_config::model::Script;
use serde::{Deserialize, Serialize};

use super::vs_event::VsEvent;
use crate::table::ServiceKey;

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
    /// A state change, for the log (its `Display` is keepalived's line), metrics and the
    /// event stream.
    Event(VsEvent),
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
