//! Route announcement: a VIP announced by BGP through BIRD while this director can serve it.
//!
//! [`announcer`] is the pure core: it takes virtual-server quorum, VRRP state, drain requests and
//! the stop as inputs, with time as an input too, and gives announce/withdraw decisions with
//! their reason as events. The I/O shell (BIRD as a child, its control socket) lives in the
//! daemon and only carries those decisions out.

pub mod announcer;
pub mod bird_conf;
pub mod bird_process;
pub mod bird_reply;
pub mod bird_socket;

pub use announcer::{AnnounceEvent, Announcer, DrainEnd, RouteStatus, WithdrawReason, DRAIN_QUIET};
