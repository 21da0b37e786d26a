//! The check's conversation as a state machine without I/O: it takes the server's packets one
//! at a time and says what to send back. The socket, the clock and the closing are the shell's
//! ([`super::check`]).
//!
//! greeting → HandshakeResponse41 → (auth switch | AuthMoreData)* → OK → COM_QUERY(query) →
//! response → COM_QUERY(`SELECT @@global.read_only`) → response → COM_QUIT.

use super::auth::{
    Plugin, FAST_AUTH_SUCCESS, PERFORM_FULL_AUTHENTICATION, REQUEST_PUBLIC_KEY_CACHING_SHA2,
};
use super::error::{ErrorKind, Step};
use super::handshake::{self, AuthSwitch, Greeting};
use super::packet::{frame, Malformed, Packet, ServerError, EOF, ERR, OK};
use super::response::{truthy, Progress, QueryResponse};
use super::MysqlStatus;

/// The query that fills [`MysqlStatus::read_only`].
pub const READ_ONLY_QUERY: &str = "SELECT @@global.read_only";

/// More auth switches than this is a server going round in circles.
const MAX_AUTH_SWITCHES: u8 = 4;

pub(super) const COM_QUIT: u8 = 0x01;
pub(super) const COM_QUERY: u8 = 0x03;
/// AuthMoreData's first byte.
const AUTH_MORE_DATA: u8 = 0x01;

/// What the check logs in with and runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub user: String,
    pub password: String,
    pub database: Option<String>,
    pub query: String,
}

/// What to do after a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing to send: wait for the next packet.
    Wait,
    /// Send these bytes, then wait for the answer.
    Send(Vec<u8>),
    /// The check passed: send COM_QUIT ([`Session::quit`]) and close.
    Done(MysqlStatus),
    /// The session was abandoned ([`Session::abandon`]) and is now logged in and idle: send
    /// COM_QUIT and close.
    Quit,
}

#[derive(Debug)]
enum Phase {
    Greeting,
    Login(Login),
    Query(QueryResponse),
    ReadOnly(QueryResponse),
    /// Logged in, nothing outstanding (a command failed, or the session is complete).
    Idle,
    /// Nothing more can be said on this connection (login refused, protocol error).
    Broken,
}

#[derive(Debug)]
struct Login {
    /// The plugin being answered; `None` while the checker has declined an unsupported one.
    plugin: Option<Plugin>,
    /// The last plugin the server asked for that the checker cannot answer.
    unsupported: Option<String>,
    nonce: Vec<u8>,
    switches: u8,
    /// The checker asked for the server's RSA key and waits for it.
    awaiting_key: bool,
    /// The RSA-encrypted password went out; only OK or ERR may follow.
    password_sent: bool,
}

/// One check's conversation.
#[derive(Debug)]
pub struct Session {
    settings: Settings,
    phase: Phase,
    /// The sequence id the server's next packet must carry.
    next_seq: u8,
    server_version: String,
    connection_id: u32,
    auth_plugin: String,
    abandoned: bool,
}

impl Session {
    pub fn new(settings: Settings) -> Self {
        Session {
            settings,
            phase: Phase::Greeting,
            next_seq: 0,
            server_version: String::new(),
            connection_id: 0,
            auth_plugin: String::new(),
            abandoned: false,
        }
    }

    /// The step the conversation is in.
    pub fn step(&self) -> Step {
        match self.phase {
            Phase::Greeting => Step::Greeting,
            Phase::Login(_) => Step::Login,
            Phase::Query(_) => Step::Query,
            Phase::ReadOnly(_) => Step::ReadOnly,
            Phase::Idle | Phase::Broken => Step::Quit,
        }
    }

    /// Logged in with no command outstanding: COM_QUIT ends the session cleanly.
    pub fn can_quit(&self) -> bool {
        matches!(self.phase, Phase::Idle)
    }

    /// Logged in: COM_QUIT ends the session cleanly once the outstanding answer (if any) is read.
    #[cfg(test)]
    pub fn logged_in(&self) -> bool {
        matches!(
            self.phase,
            Phase::Query(_) | Phase::ReadOnly(_) | Phase::Idle
        )
    }

    /// The verdict is no longer wanted (the check timed out): finish the login or the command
    /// under way, then ask for nothing more, so the server can still see a clean COM_QUIT.
    pub fn abandon(&mut self) {
        self.abandoned = true;
    }

    /// COM_QUIT, framed.
    pub fn quit(&mut self) -> Vec<u8> {
        self.phase = Phase::Broken;
        frame(0, &[COM_QUIT]).0
    }

    /// Takes the server's next packet.
    pub fn handle(&mut self, packet: Packet) -> Result<Action, ErrorKind> {
        let result = self.dispatch(packet);
        if result.is_err() && !matches!(self.phase, Phase::Idle) {
            self.phase = Phase::Broken;
        }
        result
    }

    fn dispatch(&mut self, packet: Packet) -> Result<Action, ErrorKind> {
        let step = self.step();
        if packet.first_seq != self.next_seq {
            return Err(ErrorKind::Protocol {
                step,
                detail: format!(
                    "packet with sequence id {}, expected {}",
                    packet.first_seq, self.next_seq
                ),
            });
        }
        self.next_seq = packet.last_seq.wrapping_add(1);
        let payload = packet.payload;
        let malformed = |m: Malformed| ErrorKind::Protocol {
            step,
            detail: m.0.to_string(),
        };
        match self.phase {
            Phase::Greeting => self.greeting(&payload).map_err(|e| match e {
                Failure::Malformed(m) => malformed(m),
                Failure::Other(k) => k,
            }),
            Phase::Login(_) => self.login(&payload),
            Phase::Query(_) | Phase::ReadOnly(_) => {
                self.command_answer(&payload).map_err(|e| match e {
                    Failure::Malformed(m) => malformed(m),
                    Failure::Other(k) => k,
                })
            }
            Phase::Idle | Phase::Broken => Err(ErrorKind::Protocol {
                step,
                detail: "unexpected packet after the last answer".to_string(),
            }),
        }
    }

    /// A packet of the answer to COM_QUERY (the configured query, then the read_only one).
    fn command_answer(&mut self, payload: &[u8]) -> Result<Action, Failure> {
        let (progress, value) = match &mut self.phase {
            Phase::Query(response) => (response.handle(payload)?, None),
            Phase::ReadOnly(response) => {
                let progress = response.handle(payload)?;
                let value = response.first_value().map(|v| truthy(v));
                (progress, Some(value))
            }
            _ => return Err(Failure::Malformed(Malformed("no command outstanding"))),
        };
        let reading_read_only = value.is_some();
        match progress {
            Progress::More => Ok(Action::Wait),
            Progress::Failed(error) => {
                self.phase = Phase::Idle;
                Err(Failure::Other(if reading_read_only {
                    ErrorKind::ReadOnly(error)
                } else {
                    ErrorKind::Query {
                        query: self.settings.query.clone(),
                        error,
                    }
                }))
            }
            Progress::Done => {
                self.phase = Phase::Idle;
                if self.abandoned {
                    return Ok(Action::Quit);
                }
                match value {
                    None => {
                        self.phase = Phase::ReadOnly(QueryResponse::new());
                        Ok(self.command(COM_QUERY, READ_ONLY_QUERY.as_bytes()))
                    }
                    Some(None) => Err(Failure::Other(ErrorKind::Protocol {
                        step: Step::ReadOnly,
                        detail: format!("{READ_ONLY_QUERY} returned no row"),
                    })),
                    Some(Some(read_only)) => Ok(Action::Done(MysqlStatus {
                        read_only,
                        server_version: self.server_version.clone(),
                        connection_id: self.connection_id,
                        auth_plugin: self.auth_plugin.clone(),
                    })),
                }
            }
        }
    }

    fn greeting(&mut self, payload: &[u8]) -> Result<Action, Failure> {
        if payload.first() == Some(&ERR) {
            let e = ServerError::parse(payload).map_err(Failure::Malformed)?;
            return Err(Failure::Other(ErrorKind::Refused(e)));
        }
        let greeting = Greeting::parse(payload).map_err(Failure::Malformed)?;
        let capabilities =
            handshake::client_capabilities(greeting.capabilities, self.settings.database.is_some())
                .map_err(|why| Failure::Other(ErrorKind::Incompatible(why)))?;
        self.server_version = greeting.server_version;
        self.connection_id = greeting.connection_id;
        // A server without PLUGIN_AUTH speaks mysql_native_password. One whose default plugin the
        // checker cannot answer gets mysql_native_password too: if the user's account needs
        // something else, the server says so with an auth switch.
        let plugin = greeting
            .auth_plugin
            .as_deref()
            .and_then(Plugin::from_name)
            .unwrap_or(Plugin::Native);
        let response = plugin.first_response(self.settings.password.as_bytes(), &greeting.nonce);
        let payload = handshake::handshake_response(
            capabilities,
            &self.settings.user,
            &response,
            self.settings.database.as_deref(),
            plugin.name(),
        );
        self.auth_plugin = plugin.name().to_string();
        self.phase = Phase::Login(Login {
            plugin: Some(plugin),
            unsupported: None,
            nonce: greeting.nonce,
            switches: 0,
            awaiting_key: false,
            password_sent: false,
        });
        Ok(self.reply(&payload))
    }

    fn login(&mut self, payload: &[u8]) -> Result<Action, ErrorKind> {
        let step = Step::Login;
        let protocol = |detail: &str| ErrorKind::Protocol {
            step,
            detail: detail.to_string(),
        };
        let Phase::Login(login) = &mut self.phase else {
            return Err(protocol("not logging in"));
        };
        let first = *payload.first().ok_or_else(|| protocol("empty packet"))?;
        match first {
            OK => {
                if let (None, Some(name)) = (login.plugin, &login.unsupported) {
                    // Declined and let in anyway: the account needs no credentials.
                    self.auth_plugin = name.clone();
                }
                if self.abandoned {
                    self.phase = Phase::Idle;
                    return Ok(Action::Quit);
                }
                self.phase = Phase::Query(QueryResponse::new());
                let query = self.settings.query.clone();
                Ok(self.command(COM_QUERY, query.as_bytes()))
            }
            ERR => {
                let error = ServerError::parse(payload).map_err(|m| protocol(m.0))?;
                let user = self.settings.user.clone();
                Err(match login.unsupported.take() {
                    Some(plugin) => ErrorKind::UnsupportedPlugin {
                        user,
                        plugin,
                        error: Some(error),
                    },
                    None => ErrorKind::LoginRefused { user, error },
                })
            }
            EOF => {
                login.switches += 1;
                if login.switches > MAX_AUTH_SWITCHES {
                    return Err(protocol("too many auth switch requests"));
                }
                let switch = AuthSwitch::parse(payload).map_err(|m| protocol(m.0))?;
                login.awaiting_key = false;
                login.password_sent = false;
                login.nonce = switch.nonce;
                let response = match Plugin::from_name(&switch.plugin) {
                    Some(plugin) => {
                        login.plugin = Some(plugin);
                        self.auth_plugin = plugin.name().to_string();
                        plugin.first_response(self.settings.password.as_bytes(), &login.nonce)
                    }
                    None => {
                        // Decline with an empty answer rather than hang up: the server then
                        // ends the login itself (an ERR, or the next plugin of an account
                        // with several), and does not count a broken handshake against the
                        // balancer's address.
                        login.plugin = None;
                        login.unsupported = Some(switch.plugin);
                        Vec::new()
                    }
                };
                Ok(self.reply(&response))
            }
            AUTH_MORE_DATA => {
                let data = &payload[1..];
                match login.plugin {
                    Some(Plugin::CachingSha2) if !login.awaiting_key => match data {
                        [FAST_AUTH_SUCCESS] if !login.password_sent => Ok(Action::Wait),
                        [PERFORM_FULL_AUTHENTICATION] if !login.password_sent => {
                            login.awaiting_key = true;
                            Ok(self.reply(&[REQUEST_PUBLIC_KEY_CACHING_SHA2]))
                        }
                        _ => Err(protocol("unexpected caching_sha2_password message")),
                    },
                    Some(Plugin::CachingSha2 | Plugin::Sha256) if !login.password_sent => {
                        // The server's RSA public key, PEM.
                        let encrypted = super::auth::rsa_encrypt_password(
                            self.settings.password.as_bytes(),
                            &login.nonce,
                            data,
                        )
                        .map_err(|e| protocol(&e))?;
                        login.awaiting_key = false;
                        login.password_sent = true;
                        Ok(self.reply(&encrypted))
                    }
                    _ => Err(protocol("unexpected AuthMoreData packet")),
                }
            }
            _ => Err(protocol("unexpected packet")),
        }
    }

    /// Answers within the current exchange (the sequence goes on).
    fn reply(&mut self, payload: &[u8]) -> Action {
        let (bytes, next) = frame(self.next_seq, payload);
        self.next_seq = next;
        Action::Send(bytes)
    }

    /// Starts a command (the sequence starts again at 0).
    fn command(&mut self, command: u8, argument: &[u8]) -> Action {
        let mut payload = Vec::with_capacity(1 + argument.len());
        payload.push(command);
        payload.extend_from_slice(argument);
        let (bytes, next) = frame(0, &payload);
        self.next_seq = next;
        Action::Send(bytes)
    }
}

/// A parse failure (the caller adds the step) or a finished error.
enum Failure {
    Malformed(Malformed),
    Other(ErrorKind),
}

impl From<Malformed> for Failure {
    fn from(m: Malformed) -> Self {
        Failure::Malformed(m)
    }
}
