//! What can go wrong in a MYSQL_CHECK, with the step it went wrong in and the server it talked
//! to.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

pub use super::packet::ServerError;

/// The steps of a check, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Connect,
    Greeting,
    Login,
    Query,
    ReadOnly,
    Quit,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Connect => "connecting",
            Step::Greeting => "waiting for the server's greeting",
            Step::Login => "logging in",
            Step::Query => "running the query",
            Step::ReadOnly => "reading @@global.read_only",
            Step::Quit => "closing the session",
        })
    }
}

/// Why a check failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The checker's own address (`bindto`, `bind_port`) could not be bound.
    Bind {
        addr: SocketAddr,
        source: io::Error,
    },
    Connect(io::Error),
    Io {
        step: Step,
        source: io::Error,
    },
    /// The server closed the connection where it should have answered.
    Closed {
        step: Step,
    },
    Timeout {
        step: Step,
        after: Duration,
    },
    /// The server sent an ERR instead of its greeting: too many connections, host blocked, host
    /// not allowed.
    Refused(ServerError),
    LoginRefused {
        user: String,
        error: ServerError,
    },
    /// The server asked for an auth plugin the checker cannot answer; `error` is what the server
    /// said after the checker declined.
    UnsupportedPlugin {
        user: String,
        plugin: String,
        error: Option<ServerError>,
    },
    /// The configured query failed.
    Query {
        query: String,
        error: ServerError,
    },
    /// `SELECT @@global.read_only` failed.
    ReadOnly(ServerError),
    /// The server is too old or lacks something the check needs.
    Incompatible(&'static str),
    /// The server broke the protocol.
    Protocol {
        step: Step,
        detail: String,
    },
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Bind { addr, source } => write!(f, "cannot bind to {addr}: {source}"),
            ErrorKind::Connect(e) => write!(f, "connect failed: {e}"),
            ErrorKind::Io { step, source } => write!(f, "I/O error while {step}: {source}"),
            ErrorKind::Closed { step } => {
                write!(f, "the server closed the connection while {step}")
            }
            ErrorKind::Timeout { step, after } => {
                write!(f, "timed out after {after:?} while {step}")
            }
            ErrorKind::Refused(e) => write!(f, "the server refused the connection: {e}"),
            ErrorKind::LoginRefused { user, error } => {
                write!(f, "login as {user} refused: {error}")
            }
            ErrorKind::UnsupportedPlugin {
                user,
                plugin,
                error,
            } => {
                write!(
                    f,
                    "login as {user} needs the auth plugin {plugin}, which halb does not speak \
                     (give the monitor user mysql_native_password or caching_sha2_password)"
                )?;
                match error {
                    Some(e) => write!(f, "; the server said: {e}"),
                    None => Ok(()),
                }
            }
            ErrorKind::Query { query, error } => write!(f, "query {query:?} failed: {error}"),
            ErrorKind::ReadOnly(e) => write!(f, "reading @@global.read_only failed: {e}"),
            ErrorKind::Incompatible(why) => f.write_str(why),
            ErrorKind::Protocol { step, detail } => {
                write!(f, "protocol error while {step}: {detail}")
            }
        }
    }
}

/// A failed check: what went wrong, and with which server.
#[derive(Debug)]
pub struct MysqlError {
    pub peer: SocketAddr,
    // Boxed: a check's result stays small on the success path.
    kind: Box<ErrorKind>,
}

impl MysqlError {
    pub fn new(peer: SocketAddr, kind: ErrorKind) -> Self {
        MysqlError {
            peer,
            kind: Box::new(kind),
        }
    }

    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The step the check failed in.
    pub fn step(&self) -> Step {
        match &*self.kind {
            ErrorKind::Bind { .. } | ErrorKind::Connect(_) => Step::Connect,
            ErrorKind::Refused(_) | ErrorKind::Incompatible(_) => Step::Greeting,
            ErrorKind::LoginRefused { .. } | ErrorKind::UnsupportedPlugin { .. } => Step::Login,
            ErrorKind::Query { .. } => Step::Query,
            ErrorKind::ReadOnly(_) => Step::ReadOnly,
            ErrorKind::Io { step, .. }
            | ErrorKind::Closed { step }
            | ErrorKind::Timeout { step, .. }
            | ErrorKind::Protocol { step, .. } => *step,
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(*self.kind, ErrorKind::Timeout { .. })
    }

    /// The server's own error, when it sent one.
    pub fn server_error(&self) -> Option<&ServerError> {
        match &*self.kind {
            ErrorKind::Refused(e)
            | ErrorKind::LoginRefused { error: e, .. }
            | ErrorKind::Query { error: e, .. }
            | ErrorKind::ReadOnly(e) => Some(e),
            ErrorKind::UnsupportedPlugin { error, .. } => error.as_ref(),
            _ => None,
        }
    }
}

impl fmt::Display for MysqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // keepalived writes real servers as [ADDR]:PORT, IPv4 included.
        write!(
            f,
            "[{}]:{}: {}",
            self.peer.ip(),
            self.peer.port(),
            self.kind
        )
    }
}

impl std::error::Error for MysqlError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.kind {
            ErrorKind::Bind { source, .. } | ErrorKind::Io { source, .. } => Some(source),
            ErrorKind::Connect(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_the_peer_and_the_step() {
        let e = MysqlError::new(
            "192.168.66.253:3306".parse().unwrap(),
            ErrorKind::LoginRefused {
                user: "halb_monitor".into(),
                error: ServerError {
                    code: 1045,
                    sql_state: Some("28000".into()),
                    message:
                        "Access denied for user 'halb_monitor'@'192.168.66.1' (using password: YES)"
                            .into(),
                },
            },
        );
        assert_eq!(
            e.to_string(),
            "[192.168.66.253]:3306: login as halb_monitor refused: 1045 Access denied for user \
             'halb_monitor'@'192.168.66.1' (using password: YES)"
        );
        assert_eq!(e.step(), Step::Login);
        assert_eq!(e.server_error().map(|e| e.code), Some(1045));
        let e = MysqlError::new(
            "[fd00::5]:3306".parse().unwrap(),
            ErrorKind::Timeout {
                step: Step::Query,
                after: Duration::from_secs(3),
            },
        );
        assert_eq!(
            e.to_string(),
            "[fd00::5]:3306: timed out after 3s while running the query"
        );
        assert!(e.is_timeout());
    }
}
