//! A small, blocking MySQL/MariaDB client for statements: the text protocol over TCP,
//! `mysql_native_password` logins (MariaDB's default), `COM_QUERY` with OK, ERR and text result
//! sets, `COM_QUIT`. Server fencing ([`super::fence`]) and the seed lab's writer, reader and
//! watchers use it.
//!
//! They need what an application's driver does (connect, run a statement, lose the
//! connection) with every timeout in their hands, and nothing more: no TLS, no prepared
//! statements, no compression. Connections are plain [`TcpStream`]s, created on the calling
//! thread, so a thread that entered a network namespace connects from there. The wire format is
//! MYSQL_CHECK's ([`super::codec`]); this file is the blocking I/O around it.

use super::codec::{
    self, client_capabilities, column_count, column_name, frame, handshake_response, is_eof,
    native_password, text_row, AuthSwitch, Greeting, OkPacket, PacketReader, ServerError,
    COM_QUERY, COM_QUIT, NATIVE_PASSWORD,
};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

/// Where and how to log in.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub addr: SocketAddr,
    pub user: String,
    pub password: String,
    pub database: Option<String>,
    /// For the TCP connect.
    pub connect_timeout: Duration,
    /// For every read and write after it (the login included).
    pub io_timeout: Duration,
}

impl ConnectOptions {
    pub fn new(addr: SocketAddr, user: &str, password: &str) -> Self {
        ConnectOptions {
            addr,
            user: user.to_string(),
            password: password.to_string(),
            database: None,
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(5),
        }
    }

    pub fn database(mut self, name: &str) -> Self {
        self.database = Some(name.to_string());
        self
    }
}

/// What went wrong, in the words an application's log would use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlError {
    /// The TCP connect failed (refused, timed out, unreachable).
    Connect { addr: SocketAddr, message: String },
    /// The connection broke or timed out after it was made.
    Io { addr: SocketAddr, message: String },
    /// The server answered with an error packet.
    Server {
        addr: SocketAddr,
        code: u16,
        state: String,
        message: String,
    },
    /// The server sent something this client does not read.
    Protocol { addr: SocketAddr, message: String },
}

impl SqlError {
    /// Whether the server itself refused (as opposed to the connection failing).
    pub fn is_server_error(&self) -> bool {
        matches!(self, SqlError::Server { .. })
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlError::Connect { addr, message } => write!(f, "connect to {addr}: {message}"),
            SqlError::Io { addr, message } => write!(f, "connection to {addr}: {message}"),
            SqlError::Server {
                addr,
                code,
                state,
                message,
            } => write!(f, "{addr}: ERROR {code} ({state}): {message}"),
            SqlError::Protocol { addr, message } => {
                write!(f, "{addr}: unexpected answer: {message}")
            }
        }
    }
}

impl std::error::Error for SqlError {}

/// What a statement returned: a result set (`columns` non-empty) or an OK packet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
    pub affected_rows: u64,
    pub last_insert_id: u64,
}

impl QueryResult {
    /// The first column of the first row, if any and not NULL.
    pub fn first(&self) -> Option<&str> {
        self.rows.first()?.first()?.as_deref()
    }

    /// The value of `column` in `row` (by name), if present and not NULL.
    pub fn get(&self, row: usize, column: &str) -> Option<&str> {
        let index = self.columns.iter().position(|c| c == column)?;
        self.rows.get(row)?.get(index)?.as_deref()
    }
}

/// An open, logged-in connection.
pub struct Connection {
    stream: TcpStream,
    addr: SocketAddr,
    reader: PacketReader,
    /// The sequence id of the next packet this client sends.
    seq: u8,
    /// The server's thread id (`CONNECTION_ID()`, the `Id` of `SHOW PROCESSLIST`).
    pub connection_id: u32,
    /// As the greeting gives it, without MariaDB's `5.5.5-` prefix.
    pub server_version: String,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .field("connection_id", &self.connection_id)
            .finish()
    }
}

impl Connection {
    /// Connects and logs in.
    pub fn connect(options: &ConnectOptions) -> Result<Connection, SqlError> {
        let addr = options.addr;
        let stream = TcpStream::connect_timeout(&addr, options.connect_timeout).map_err(|e| {
            SqlError::Connect {
                addr,
                message: e.to_string(),
            }
        })?;
        let io = |e: io::Error| SqlError::Io {
            addr,
            message: e.to_string(),
        };
        stream
            .set_read_timeout(Some(options.io_timeout))
            .map_err(io)?;
        stream
            .set_write_timeout(Some(options.io_timeout))
            .map_err(io)?;
        let _ = stream.set_nodelay(true);
        let mut conn = Connection {
            stream,
            addr,
            reader: PacketReader::new(),
            seq: 0,
            connection_id: 0,
            server_version: String::new(),
        };
        conn.login(options)?;
        Ok(conn)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs one statement.
    pub fn query(&mut self, sql: &str) -> Result<QueryResult, SqlError> {
        let mut packet = Vec::with_capacity(sql.len() + 1);
        packet.push(COM_QUERY);
        packet.extend_from_slice(sql.as_bytes());
        // A command starts a new exchange: sequence ids start again at 0.
        self.seq = 0;
        self.write_packet(&packet)?;
        let first = self.read_packet()?;
        match first.first() {
            Some(&codec::OK) => {
                let ok = OkPacket::parse(&first).map_err(|m| self.protocol(m.0))?;
                Ok(QueryResult {
                    affected_rows: ok.affected_rows,
                    last_insert_id: ok.last_insert_id,
                    ..QueryResult::default()
                })
            }
            Some(&codec::ERR) => Err(self.server_error(&first)),
            Some(0xfb) => Err(self.protocol("LOCAL INFILE requests are not supported")),
            Some(_) => self.result_set(&first),
            None => Err(self.protocol("empty answer to a query")),
        }
    }

    /// Says goodbye (`COM_QUIT`) and closes, as a well-behaved client does.
    pub fn close(mut self) {
        self.seq = 0;
        let _ = self.write_packet(&[COM_QUIT]);
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    fn login(&mut self, options: &ConnectOptions) -> Result<(), SqlError> {
        let greeting = self.read_packet()?;
        if greeting.first() == Some(&codec::ERR) {
            // Refused before the handshake: "Too many connections", a blocked host.
            return Err(self.server_error(&greeting));
        }
        let g = Greeting::parse(&greeting).map_err(|m| self.protocol(m.0))?;
        self.connection_id = g.connection_id;
        self.server_version = g.server_version;
        let caps = client_capabilities(g.capabilities, options.database.is_some())
            .map_err(|why| self.protocol(why))?;
        // MariaDB's accounts use mysql_native_password unless told otherwise; a server that
        // wants another plugin says so with an auth switch, refused below.
        let scramble = native_password(options.password.as_bytes(), &g.nonce);
        let response = handshake_response(
            caps,
            &options.user,
            &scramble,
            options.database.as_deref(),
            NATIVE_PASSWORD,
        );
        self.write_packet(&response)?;
        loop {
            let answer = self.read_packet()?;
            match answer.first() {
                Some(&codec::OK) => return Ok(()),
                Some(&codec::ERR) => return Err(self.server_error(&answer)),
                Some(&codec::EOF) => {
                    let switch = AuthSwitch::parse(&answer).map_err(|m| self.protocol(m.0))?;
                    if switch.plugin != NATIVE_PASSWORD {
                        return Err(self.protocol(&format!(
                            "the server asks for the {} login, this client only does {NATIVE_PASSWORD}",
                            switch.plugin
                        )));
                    }
                    let scramble = native_password(options.password.as_bytes(), &switch.nonce);
                    self.write_packet(&scramble)?;
                }
                _ => return Err(self.protocol("unexpected packet during the login")),
            }
        }
    }

    fn result_set(&mut self, first: &[u8]) -> Result<QueryResult, SqlError> {
        let count = column_count(first).map_err(|m| self.protocol(m.0))?;
        // At most 4096 (column_count's bound): fits any usize.
        let count = count as usize;
        let mut columns = Vec::with_capacity(count);
        for _ in 0..count {
            let def = self.read_packet()?;
            let name = column_name(&def).map_err(|m| self.protocol(m.0))?;
            columns.push(String::from_utf8_lossy(name).into_owned());
        }
        let eof = self.read_packet()?;
        if !is_eof(&eof) {
            return Err(self.protocol("no EOF after the column definitions"));
        }
        let mut rows = Vec::new();
        loop {
            let packet = self.read_packet()?;
            if is_eof(&packet) {
                break;
            }
            if packet.first() == Some(&codec::ERR) {
                return Err(self.server_error(&packet));
            }
            let row = text_row(&packet, count).map_err(|m| self.protocol(m.0))?;
            rows.push(
                row.into_iter()
                    .map(|v| v.map(|v| String::from_utf8_lossy(v).into_owned()))
                    .collect(),
            );
        }
        Ok(QueryResult {
            columns,
            rows,
            ..QueryResult::default()
        })
    }

    /// The next logical packet's payload; the sequence id of this client's answer follows it.
    fn read_packet(&mut self) -> Result<Vec<u8>, SqlError> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.reader.next_packet() {
                Ok(Some(packet)) => {
                    self.seq = packet.last_seq.wrapping_add(1);
                    return Ok(packet.payload);
                }
                Ok(None) => {}
                Err(e) => return Err(self.protocol(&e.to_string())),
            }
            let n = self.stream.read(&mut buf).map_err(|e| self.io_error(e))?;
            if n == 0 {
                return Err(self.io_error(io::ErrorKind::UnexpectedEof.into()));
            }
            self.reader.push(&buf[..n]);
        }
    }

    fn write_packet(&mut self, payload: &[u8]) -> Result<(), SqlError> {
        let (bytes, next) = frame(self.seq, payload);
        self.seq = next;
        self.stream.write_all(&bytes).map_err(|e| self.io_error(e))
    }

    fn io_error(&self, e: io::Error) -> SqlError {
        let message = if e.kind() == io::ErrorKind::UnexpectedEof {
            "closed by the other side".to_string()
        } else {
            e.to_string()
        };
        SqlError::Io {
            addr: self.addr,
            message,
        }
    }

    fn protocol(&self, message: &str) -> SqlError {
        SqlError::Protocol {
            addr: self.addr,
            message: message.to_string(),
        }
    }

    fn server_error(&self, packet: &[u8]) -> SqlError {
        match ServerError::parse(packet) {
            Ok(e) => SqlError::Server {
                addr: self.addr,
                code: e.code,
                state: e.sql_state.unwrap_or_default(),
                message: e.message,
            },
            Err(m) => self.protocol(m.0),
        }
    }
}
