//! The rtnetlink connection that [`crate::addresses`] and [`crate::link`] talk through.
//!
//! The connection belongs to the network namespace of the thread that opens it, and its
//! driver runs as a task on the current tokio runtime: open it from inside that runtime.

use std::io;

use rtnetlink::Handle;

use crate::error::{Error, IoContext, Result};

/// A route netlink connection in the caller's network namespace.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens a connection and spawns its driver on the current tokio runtime (so this panics
    /// outside one, like `tokio::spawn`).
    pub fn connect() -> Result<Netlink> {
        let (connection, handle, _unsolicited) =
            rtnetlink::new_connection().context(|| "opening a route netlink socket".into())?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    /// For connections opened elsewhere (the link watcher's multicast one).
    pub(crate) fn from_handle(handle: Handle) -> Netlink {
        Netlink { handle }
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }
}

/// The kernel's answer as an `io::Error`, so that callers can match on the errno (`EEXIST`
/// when an address is already there, …) whatever layer it came through.
pub(crate) fn to_io(error: rtnetlink::Error) -> io::Error {
    match error {
        rtnetlink::Error::NetlinkError(message) if message.code.is_some() => message.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

pub(crate) fn netlink_error(context: impl Into<String>, error: rtnetlink::Error) -> Error {
    Error::io(context, to_io(error))
}
