//! The control socket: `halb run` answers on a unix socket (mode 0600, so only root reads the
//! tables), `halb status` asks. One JSON request line, one JSON answer line.

pub mod daemon_state;
pub mod protocol;
pub mod server;

/// Where the daemon listens unless `--control-socket` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/halb/halb.sock";
