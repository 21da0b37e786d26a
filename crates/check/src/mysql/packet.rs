//! MySQL packet framing and the small payload codecs every phase shares: length-encoded
//! integers and strings, OK, ERR and EOF packets.
//!
//! A packet is a 3-byte little-endian payload length, a sequence id and the payload. A payload
//! of 16 MiB - 1 bytes or more is split: every full 0xffffff-byte packet is followed by another
//! one (possibly empty) with the next sequence id. [`PacketReader`] joins them back into one
//! logical packet and checks that the sequence ids follow each other.

use std::fmt;

/// The largest payload one physical packet carries; a packet of exactly this length continues in
/// the next.
pub const MAX_CHUNK: usize = 0xff_ffff;

/// The most a logical packet may hold before the reader gives up on the server: a health check's
/// rows are small, and a garbage length must not make the checker allocate without bound.
pub const MAX_LOGICAL: usize = 64 << 20;

/// A logical packet: its payload and the sequence ids of its first and last physical packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub first_seq: u8,
    pub last_seq: u8,
    pub payload: Vec<u8>,
}

/// What is wrong with the byte stream itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A continuation packet whose sequence id does not follow the previous one.
    SequenceGap { expected: u8, got: u8 },
    /// A logical packet larger than the reader's limit ([`MAX_LOGICAL`]).
    TooLarge { limit: usize },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::SequenceGap { expected, got } => write!(
                f,
                "packet continuation has sequence id {got}, expected {expected}"
            ),
            FrameError::TooLarge { limit } => write!(f, "packet larger than {limit} bytes"),
        }
    }
}

/// Collects bytes from the socket and hands out whole logical packets.
#[derive(Debug)]
pub struct PacketReader {
    buf: Vec<u8>,
    limit: usize,
}

impl Default for PacketReader {
    fn default() -> Self {
        PacketReader::with_limit(MAX_LOGICAL)
    }
}

impl PacketReader {
    pub fn new() -> Self {
        PacketReader::default()
    }

    /// A reader that refuses logical packets larger than `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        PacketReader {
            buf: Vec::new(),
            limit,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received and not yet handed out as a packet.
    #[cfg(test)]
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete logical packet, `Ok(None)` while more bytes are needed.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, FrameError> {
        // First find where the logical packet ends without copying, so that a partial one costs
        // nothing but a rescan of its headers.
        let mut at = 0;
        let mut total = 0usize;
        let mut first_seq = None;
        let mut last_seq = 0u8;
        loop {
            let Some(header) = self.buf.get(at..at + 4) else {
                return Ok(None);
            };
            let len =
                usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
            let seq = header[3];
            match first_seq {
                None => first_seq = Some(seq),
                Some(_) => {
                    let expected = last_seq.wrapping_add(1);
                    if seq != expected {
                        return Err(FrameError::SequenceGap { expected, got: seq });
                    }
                }
            }
            last_seq = seq;
            total += len;
            if total > self.limit {
                return Err(FrameError::TooLarge { limit: self.limit });
            }
            if self.buf.len() < at + 4 + len {
                return Ok(None);
            }
            at += 4 + len;
            if len < MAX_CHUNK {
                break;
            }
        }
        let mut payload = Vec::with_capacity(total);
        let mut pos = 0;
        while pos < at {
            let len = usize::from(self.buf[pos])
                | usize::from(self.buf[pos + 1]) << 8
                | usize::from(self.buf[pos + 2]) << 16;
            payload.extend_from_slice(&self.buf[pos + 4..pos + 4 + len]);
            pos += 4 + len;
        }
        self.buf.drain(..at);
        Ok(Some(Packet {
            first_seq: first_seq.unwrap_or(0),
            last_seq,
            payload,
        }))
    }
}

/// Frames `payload` as packets starting at sequence id `seq`; returns the bytes and the sequence
/// id the peer's reply will carry.
pub fn frame(seq: u8, payload: &[u8]) -> (Vec<u8>, u8) {
    let mut out = Vec::with_capacity(payload.len() + 4);
    let mut seq = seq;
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_CHUNK);
        out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        out.push(seq);
        out.extend_from_slice(&rest[..n]);
        seq = seq.wrapping_add(1);
        rest = &rest[n..];
        // A chunk of exactly MAX_CHUNK bytes needs a follower, even an empty one.
        if n < MAX_CHUNK {
            break;
        }
    }
    (out, seq)
}

/// A payload that ends too early or holds a value that cannot be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Reads a payload front to back; every read checks the length that is left.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Cursor { data }
    }

    pub fn remaining(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn peek(&self) -> Option<u8> {
        self.data.first().copied()
    }

    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Malformed> {
        if self.data.len() < n {
            return Err(Malformed(what));
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(head)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, Malformed> {
        Ok(self.bytes(1, what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, Malformed> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, Malformed> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }

    /// A NUL-terminated string; `lenient` also accepts one that runs to the end of the payload
    /// (some servers leave out the NUL after the last field).
    pub fn nul_str(&mut self, what: &'static str, lenient: bool) -> Result<&'a [u8], Malformed> {
        match self.data.iter().position(|&b| b == 0) {
            Some(i) => {
                let s = &self.data[..i];
                self.data = &self.data[i + 1..];
                Ok(s)
            }
            None if lenient => Ok(self.rest()),
            None => Err(Malformed(what)),
        }
    }

    /// A length-encoded integer; `None` for the NULL marker 0xfb.
    pub fn lenenc_int(&mut self, what: &'static str) -> Result<Option<u64>, Malformed> {
        let first = self.u8(what)?;
        let value = match first {
            0..=0xfa => u64::from(first),
            0xfb => return Ok(None),
            0xfc => u64::from(self.u16(what)?),
            0xfd => {
                let b = self.bytes(3, what)?;
                u64::from(b[0]) | u64::from(b[1]) << 8 | u64::from(b[2]) << 16
            }
            0xfe => {
                let b = self.bytes(8, what)?;
                u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
            }
            // 0xff starts an ERR packet, never an integer.
            0xff => return Err(Malformed(what)),
        };
        Ok(Some(value))
    }

    /// A length-encoded string; `None` for SQL NULL.
    pub fn lenenc_bytes(&mut self, what: &'static str) -> Result<Option<&'a [u8]>, Malformed> {
        match self.lenenc_int(what)? {
            None => Ok(None),
            Some(n) => {
                let n = usize::try_from(n).map_err(|_| Malformed(what))?;
                self.bytes(n, what).map(Some)
            }
        }
    }
}

/// The first byte of an OK packet.
pub const OK: u8 = 0x00;
/// The first byte of an EOF packet, and of an auth switch request during login.
pub const EOF: u8 = 0xfe;
/// The first byte of an ERR packet.
pub const ERR: u8 = 0xff;

/// Server status flag: another result set follows this one.
pub const SERVER_MORE_RESULTS_EXISTS: u16 = 0x0008;

/// An ERR packet: the server's error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub code: u16,
    /// The five-character SQLSTATE, when the server sent one.
    pub sql_state: Option<String>,
    pub message: String,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.message)
    }
}

impl ServerError {
    /// Parses an ERR payload (starting with 0xff). The SQLSTATE marker `#` is optional: a server
    /// refusing a connection before the handshake (too many connections, host blocked) writes
    /// none.
    pub fn parse(payload: &[u8]) -> Result<ServerError, Malformed> {
        let mut c = Cursor::new(payload);
        if c.u8("empty ERR packet")? != ERR {
            return Err(Malformed("not an ERR packet"));
        }
        let code = c.u16("ERR packet without an error code")?;
        let mut sql_state = None;
        if c.peek() == Some(b'#') && c.remaining() >= 6 {
            let state = c.bytes(6, "short SQLSTATE")?;
            sql_state = Some(String::from_utf8_lossy(&state[1..]).into_owned());
        }
        let message = String::from_utf8_lossy(c.rest()).trim_end().to_string();
        Ok(ServerError {
            code,
            sql_state,
            message,
        })
    }
}

/// The parts of an OK packet a client uses: the checker reads the status, the seed lab's
/// application the rows it wrote and the id it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OkPacket {
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status: u16,
}

impl OkPacket {
    /// Parses an OK payload (0x00, or 0xfe where an OK packet replaces an EOF).
    pub fn parse(payload: &[u8]) -> Result<OkPacket, Malformed> {
        let mut c = Cursor::new(payload);
        c.u8("empty OK packet")?;
        let affected_rows = c.lenenc_int("OK packet: affected rows")?.unwrap_or(0);
        let last_insert_id = c.lenenc_int("OK packet: last insert id")?.unwrap_or(0);
        // 4.1 servers always send the status; be lenient with a bare OK.
        let status = if c.remaining() >= 2 {
            c.u16("OK packet: status")?
        } else {
            0
        };
        Ok(OkPacket {
            affected_rows,
            last_insert_id,
            status,
        })
    }
}

/// Whether `payload` is an EOF packet (0xfe and shorter than 9 bytes: a row may also start with
/// 0xfe, as the prefix of an 8-byte length).
pub fn is_eof(payload: &[u8]) -> bool {
    payload.first() == Some(&EOF) && payload.len() < 9
}

/// The status flags of an EOF packet (0 for a bare 0xfe).
pub fn eof_status(payload: &[u8]) -> u16 {
    match payload {
        [_, _, _, lo, hi, ..] => u16::from_le_bytes([*lo, *hi]),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_reads_back_a_small_packet() {
        let (bytes, next) = frame(3, b"\x01");
        assert_eq!(bytes, vec![1, 0, 0, 3, 1]);
        assert_eq!(next, 4);
        let mut r = PacketReader::new();
        r.push(&bytes[..2]);
        assert_eq!(r.next_packet(), Ok(None));
        r.push(&bytes[2..]);
        assert_eq!(
            r.next_packet(),
            Ok(Some(Packet {
                first_seq: 3,
                last_seq: 3,
                payload: vec![1]
            }))
        );
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn splits_and_joins_large_payloads() {
        for len in [MAX_CHUNK - 1, MAX_CHUNK, MAX_CHUNK + 10, 2 * MAX_CHUNK] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let (bytes, next) = frame(255, &payload);
            let chunks = len / MAX_CHUNK + 1;
            assert_eq!(next, 255u8.wrapping_add(chunks as u8));
            let mut r = PacketReader::new();
            r.push(&bytes);
            r.push(&[0, 0, 0, 9]);
            let p = r.next_packet().unwrap().unwrap();
            assert_eq!(p.first_seq, 255);
            assert_eq!(p.last_seq, 255u8.wrapping_add(chunks as u8 - 1));
            assert!(
                p.payload == payload,
                "payload of {len} bytes came back changed"
            );
            // The empty packet behind it is still there.
            let empty = r.next_packet().unwrap().unwrap();
            assert_eq!((empty.first_seq, empty.payload.len()), (9, 0));
        }
    }

    #[test]
    fn rejects_a_continuation_out_of_sequence() {
        let mut bytes = vec![0xff, 0xff, 0xff, 1];
        bytes.extend(std::iter::repeat_n(0u8, MAX_CHUNK));
        bytes.extend([0, 0, 0, 5]);
        let mut r = PacketReader::new();
        r.push(&bytes);
        assert_eq!(
            r.next_packet(),
            Err(FrameError::SequenceGap {
                expected: 2,
                got: 5
            })
        );
    }

    #[test]
    fn refuses_endless_continuations() {
        let limit = 2 * MAX_CHUNK + 100;
        let mut bytes = Vec::new();
        for seq in 0..2u8 {
            bytes.extend([0xff, 0xff, 0xff, seq]);
            bytes.extend(std::iter::repeat_n(0u8, MAX_CHUNK));
        }
        let mut r = PacketReader::with_limit(limit);
        r.push(&bytes);
        assert_eq!(r.next_packet(), Ok(None));
        // The third header alone is enough to refuse: no waiting for its payload.
        r.push(&[0xff, 0xff, 0xff, 2]);
        assert_eq!(r.next_packet(), Err(FrameError::TooLarge { limit }));
    }

    #[test]
    fn parses_err_with_and_without_sqlstate() {
        let e = ServerError::parse(b"\xff\x15\x04#28000Access denied for user 'x'@'y'").unwrap();
        assert_eq!(e.code, 1045);
        assert_eq!(e.sql_state.as_deref(), Some("28000"));
        assert_eq!(e.message, "Access denied for user 'x'@'y'");
        // What a server sends before the handshake (recorded from MariaDB 10.11).
        let e = ServerError::parse(b"\xffi\x04Host '127.0.0.2' is blocked because of many connection errors; unblock with 'mariadb-admin flush-hosts'").unwrap();
        assert_eq!(e.code, 1129);
        assert_eq!(e.sql_state, None);
        assert!(e.message.starts_with("Host '127.0.0.2' is blocked"));
        assert!(ServerError::parse(b"\xff\x01").is_err());
        assert!(ServerError::parse(b"").is_err());
    }

    #[test]
    fn lenenc_values() {
        let mut c = Cursor::new(b"\x05\xfb\xfc\x01\x02\xfd\x01\x02\x03\xfe\x01\0\0\0\0\0\0\0");
        assert_eq!(c.lenenc_int("a"), Ok(Some(5)));
        assert_eq!(c.lenenc_int("b"), Ok(None));
        assert_eq!(c.lenenc_int("c"), Ok(Some(0x0201)));
        assert_eq!(c.lenenc_int("d"), Ok(Some(0x030201)));
        assert_eq!(c.lenenc_int("e"), Ok(Some(1)));
        assert!(c.is_empty());
        assert_eq!(
            Cursor::new(b"\xfe\x01").lenenc_int("f"),
            Err(Malformed("f"))
        );
        assert_eq!(
            Cursor::new(b"\x03ab").lenenc_bytes("g"),
            Err(Malformed("g"))
        );
        assert_eq!(
            Cursor::new(b"\x02ab").lenenc_bytes("h"),
            Ok(Some(&b"ab"[..]))
        );
    }

    #[test]
    fn eof_and_ok() {
        assert!(is_eof(b"\xfe\0\0\x02\0"));
        assert!(!is_eof(b"\xfe\x01\0\0\0\0\0\0\0x"));
        assert_eq!(eof_status(b"\xfe\0\0\x0a\0"), 0x0a);
        assert_eq!(eof_status(b"\xfe"), 0);
        assert_eq!(
            OkPacket::parse(b"\0\0\0\x02\0\0\0"),
            Ok(OkPacket {
                affected_rows: 0,
                last_insert_id: 0,
                status: 2
            })
        );
        // An INSERT's answer: one row, id 300.
        assert_eq!(
            OkPacket::parse(b"\0\x01\xfc\x2c\x01\x02\0\0\0"),
            Ok(OkPacket {
                affected_rows: 1,
                last_insert_id: 300,
                status: 2
            })
        );
        assert!(OkPacket::parse(b"\0\xfc").is_err());
    }
}
