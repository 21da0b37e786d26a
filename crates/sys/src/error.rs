//! One error type for the crate. Every error says what was being done, on which interface and
//! with which addresses, because "Operation not permitted" alone does not tell an operator
//! which of twenty virtual addresses failed.

use std::io;

/// What went wrong, with the context an operator needs to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No interface of that name exists in this network namespace.
    #[error("interface {interface} does not exist")]
    NoSuchInterface { interface: String },
    /// A system call or a netlink request failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// The request itself cannot be carried out (mixed address families, a label on an IPv6
    /// address, a datagram the kernel should never have delivered, …).
    #[error("{context}: {reason}")]
    Invalid { context: String, reason: String },
    /// A program halb runs (`ip netns …`) exited with an error.
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        /// The command line, and where it ran (`ip -n NAME link add …`).
        command: String,
        status: std::process::ExitStatus,
        /// What the program said, trimmed.
        stderr: String,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn invalid(context: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Invalid {
            context: context.into(),
            reason: reason.into(),
        }
    }

    /// The errno of the failed call, when there was one (`EEXIST`, `EPERM`, …).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            Error::NoSuchInterface { .. } | Error::Invalid { .. } | Error::Command { .. } => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds context to `io::Result`s.
pub(crate) trait IoContext<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), io::Error::from(e)))
    }
}
