//! halb's `MYSQL_CHECK`: log in to a MySQL / MariaDB server as a monitor user, run a query, read
//! `@@global.read_only`, and leave with COM_QUIT.
//!
//! A bare TCP connect and close (what TCP_CHECK does) is a broken handshake to the server: it
//! counts in `Aborted_connects` and, past `max_connect_errors`, gets the balancer's address
//! blocked ("Host … is blocked because of many connection errors"), which takes every real
//! server behind it out at once. This check finishes every conversation it starts: a login it
//! cannot complete is declined inside the protocol, and a check that times out still finishes the
//! login or the command under way in the background and quits (see [`check`]).
//!
//! The protocol is implemented here: [`packet`] (framing, OK/ERR/EOF), [`handshake`] (greeting,
//! HandshakeResponse41, auth switch), [`auth`] (mysql_native_password, caching_sha2_password
//! with its RSA step over plain TCP, sha256_password), [`response`] (query answers) and
//! [`session`] (the conversation as a state machine without I/O). This file is the tokio shell.

mod auth;
pub mod client;
pub mod doctor;
mod error;
pub mod fence;
mod handshake;
mod packet;
pub mod replica;
mod response;
mod session;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod session_tests;

pub use error::{ErrorKind, MysqlError, ServerError, Step};
pub use session::READ_ONLY_QUERY;

/// The protocol's pieces for another client of it (the seed lab's blocking client, which runs
/// an application's statements rather than a check): framing, the login's packets,
/// mysql_native_password, OK/ERR/EOF and text result sets. One codec, so a fix to the wire
/// format reaches both.
pub mod codec {
    pub use super::auth::native_password;
    pub use super::handshake::{
        client_capabilities, handshake_response, AuthSwitch, Greeting, NATIVE_PASSWORD,
    };
    pub use super::packet::{
        frame, is_eof, FrameError, Malformed, OkPacket, Packet, PacketReader, EOF, ERR, OK,
    };
    pub use super::response::{column_count, column_name, text_row};
    pub use super::ServerError;

    /// COM_QUIT: the client leaves.
    pub const COM_QUIT: u8 = super::session::COM_QUIT;
    /// COM_QUERY: a statement in the text protocol.
    pub const COM_QUERY: u8 = super::session::COM_QUERY;
}

use halb_config::model::MysqlCheck;
use packet::{Packet, PacketReader};
use session::{Action, Session, Settings};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout_at, Instant};

/// The servers this director's halb holds read-only itself (its fences of `mysql_writer`
/// virtual servers), shared between the fencing and the checkers: a MYSQL_CHECK of a writer
/// service fails on a server found `read_only` unless it is here, since a read-only server
/// where a writer is required refuses every write (someone else made it so: an operator, a
/// failover tool, the server's own `read_only` at start). halb's own fence must not take the
/// server it fenced out for good, or it could never hand back.
#[derive(Debug, Clone, Default)]
pub struct FencedServers(std::sync::Arc<std::sync::RwLock<std::collections::BTreeSet<SocketAddr>>>);

impl FencedServers {
    pub fn insert(&self, server: SocketAddr) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(server);
    }

    pub fn remove(&self, server: SocketAddr) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&server);
    }

    pub fn contains(&self, server: SocketAddr) -> bool {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&server)
    }
}

/// What a passing check learned about the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MysqlStatus {
    /// `@@global.read_only`: the server refuses writes from ordinary users.
    pub read_only: bool,
    /// The version from the server's greeting (without MariaDB's `5.5.5-` prefix).
    pub server_version: String,
    /// The server's id for the check's connection (its `CONNECTION_ID()`).
    pub connection_id: u32,
    /// The auth plugin the login went through.
    pub auth_plugin: String,
}

/// How long a timed-out check's connection may still take to end cleanly, at least: a slow
/// query (the usual reason for a timeout) is worth waiting for, since cutting it short counts in
/// the server's Aborted_clients.
const MIN_FINISH_TIME: Duration = Duration::from_secs(10);

/// Runs one MYSQL_CHECK against `target`, from `bind` if set, within `timeout` (for the whole
/// conversation: connect, login, the query and `read_only`).
///
/// When `timeout` runs out after the connection is up, the check fails at once, but the
/// connection is not dropped: a background task finishes the login or the command under way,
/// sends COM_QUIT and waits for the server to close, for up to the longer of `timeout` and 10 s.
/// Only a server that stays silent that long sees its connection cut.
pub async fn check(
    cfg: &MysqlCheck,
    target: SocketAddr,
    bind: Option<SocketAddr>,
    timeout: Duration,
) -> Result<MysqlStatus, MysqlError> {
    let deadline = Instant::now() + timeout;
    let fail = |kind| Err(MysqlError::new(target, kind));
    let stream = match timeout_at(deadline, connect(target, bind)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(kind)) => return fail(kind),
        Err(_) => {
            return fail(ErrorKind::Timeout {
                step: Step::Connect,
                after: timeout,
            })
        }
    };
    let mut conn = Connection::new(stream, target, Session::new(settings(cfg)));
    match timeout_at(deadline, conn.converse()).await {
        Ok(Ok(Some(status))) => {
            conn.close(close_by(deadline)).await;
            Ok(status)
        }
        Ok(Ok(None)) => {
            // Only an abandoned session stops without a verdict, and this one was not.
            conn.close(close_by(deadline)).await;
            fail(ErrorKind::Protocol {
                step: Step::Quit,
                detail: "the conversation ended without a verdict".to_string(),
            })
        }
        Ok(Err(kind)) => {
            conn.server_closes = server_closes_after(&kind);
            conn.close(close_by(deadline)).await;
            fail(kind)
        }
        Err(_) => {
            let step = conn.session.step();
            conn.session.abandon();
            tokio::spawn(conn.finish(Instant::now() + timeout.max(MIN_FINISH_TIME)));
            fail(ErrorKind::Timeout {
                step,
                after: timeout,
            })
        }
    }
}

/// How long a check with its verdict waits for the server to hang up after COM_QUIT (servers do
/// at once), within its deadline.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

fn close_by(deadline: Instant) -> Instant {
    deadline.min(Instant::now() + CLOSE_WAIT)
}

fn settings(cfg: &MysqlCheck) -> Settings {
    Settings {
        user: cfg.user.clone(),
        password: cfg.password.clone(),
        database: cfg.database.clone(),
        query: cfg.query.clone(),
    }
}

/// Whether the server hangs up by itself after this error: it does after refusing a connection
/// or a login, and the checker then lets it close first.
fn server_closes_after(kind: &ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Refused(_)
            | ErrorKind::LoginRefused { .. }
            | ErrorKind::UnsupportedPlugin { .. }
    )
}

async fn connect(target: SocketAddr, bind: Option<SocketAddr>) -> Result<TcpStream, ErrorKind> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .map_err(ErrorKind::Connect)?;
    socket.set_nonblocking(true).map_err(ErrorKind::Connect)?;
    if let Some(addr) = bind {
        socket
            .bind(&addr.into())
            .map_err(|source| ErrorKind::Bind { addr, source })?;
    }
    let socket = TcpSocket::from_std_stream(socket.into());
    let stream = socket.connect(target).await.map_err(ErrorKind::Connect)?;
    // One small packet per round trip: never wait for Nagle.
    stream.set_nodelay(true).map_err(ErrorKind::Connect)?;
    Ok(stream)
}

/// The socket, the bytes in both directions and the session. Every await point is
/// cancellation-safe (bytes are only taken off `outgoing` once written, and only put into
/// `reader` once read), so a conversation cut short by the deadline can be resumed.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    reader: PacketReader,
    outgoing: Vec<u8>,
    session: Session,
    /// The server ends this connection itself (it refused the connection or the login).
    server_closes: bool,
}

impl Connection {
    fn new(stream: TcpStream, peer: SocketAddr, session: Session) -> Self {
        Connection {
            stream,
            peer,
            reader: PacketReader::new(),
            outgoing: Vec::new(),
            session,
            server_closes: false,
        }
    }

    /// Runs the session until its verdict (`None`: abandoned and ready to quit).
    async fn converse(&mut self) -> Result<Option<MysqlStatus>, ErrorKind> {
        loop {
            self.flush().await?;
            let packet = self.next_packet().await?;
            match self.session.handle(packet)? {
                Action::Wait => {}
                Action::Send(bytes) => self.outgoing.extend_from_slice(&bytes),
                Action::Done(status) => return Ok(Some(status)),
                Action::Quit => return Ok(None),
            }
        }
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        while !self.outgoing.is_empty() {
            let step = self.session.step();
            let n = self
                .stream
                .write(&self.outgoing)
                .await
                .map_err(|source| ErrorKind::Io { step, source })?;
            if n == 0 {
                return Err(ErrorKind::Closed { step });
            }
            self.outgoing.drain(..n);
        }
        Ok(())
    }

    async fn next_packet(&mut self) -> Result<Packet, ErrorKind> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let step = self.session.step();
            match self.reader.next_packet() {
                Ok(Some(packet)) => return Ok(packet),
                Ok(None) => {}
                Err(e) => {
                    return Err(ErrorKind::Protocol {
                        step,
                        detail: e.to_string(),
                    })
                }
            }
            let n = self
                .stream
                .read(&mut buf)
                .await
                .map_err(|source| ErrorKind::Io { step, source })?;
            if n == 0 {
                return Err(ErrorKind::Closed { step });
            }
            self.reader.push(&buf[..n]);
        }
    }

    /// Ends the connection by the book where the session allows: COM_QUIT, then wait for the
    /// server to close first (so the server, not the checker, keeps the TIME_WAIT), all before
    /// `deadline`. A connection in a state nothing clean can come from is simply dropped.
    async fn close(mut self, deadline: Instant) {
        if self.session.can_quit() {
            let quit = self.session.quit();
            self.outgoing.extend_from_slice(&quit);
        } else if !self.server_closes {
            return;
        }
        let _ = timeout_at(deadline, async {
            if self.flush().await.is_ok() {
                let mut buf = [0u8; 4096];
                while let Ok(n) = self.stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            }
        })
        .await;
    }

    /// After a timeout: finish the login or the command under way (the session is abandoned
    /// and asks for nothing more), then quit, all before `deadline`.
    async fn finish(mut self, deadline: Instant) {
        if !self.session.can_quit() {
            match timeout_at(deadline, self.converse()).await {
                Ok(Ok(_)) => {}
                Ok(Err(kind)) => {
                    self.server_closes = server_closes_after(&kind);
                    tracing::debug!(
                        "MYSQL_CHECK: finishing a timed-out session with {}",
                        MysqlError::new(self.peer, kind)
                    );
                }
                Err(_) => return,
            }
        }
        self.close(deadline).await;
    }
}
