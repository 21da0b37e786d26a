//! The client side of the control socket (`halb status`); the protocol and the daemon's side
//! are in `halb_daemon::control`.

pub mod client;

pub use halb_daemon::control::{protocol, DEFAULT_SOCKET};
