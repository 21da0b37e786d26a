//! An HTTP/1.x response read incrementally: status line, headers, and a body framed by
//! `Transfer-Encoding: chunked`, `Content-Length` or the end of the connection. The body is
//! hashed (MD5) as it arrives and kept up to a limit for the regex.
//!
//! A body cut short by the server closing the connection is still judged on what arrived, as
//! keepalived does (it only logs the length mismatch).

use md5::{Digest, Md5};

/// The longest header section accepted.
const MAX_HEADERS: usize = 64 * 1024;
/// The longest chunk-size line accepted.
const MAX_CHUNK_LINE: usize = 1024;

/// What was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// `None`: the status line is not `HTTP/x.y NNN …`.
    pub status: Option<u16>,
    /// The body (decoded from chunks), up to the limit given to the reader.
    pub body: Vec<u8>,
    /// The body's full length.
    pub body_len: u64,
    pub md5: Option<[u8; 16]>,
    /// The connection closed before the body announced by its framing was complete.
    pub cut_short: bool,
}

#[derive(Debug)]
enum State {
    Headers,
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    /// The CRLF after a chunk's data: bytes still to skip.
    ChunkEnd(u8),
    UntilClose,
    Done,
}

#[derive(Debug)]
pub struct ResponseReader {
    state: State,
    /// Bytes not yet consumed (headers, a partial chunk-size line).
    pending: Vec<u8>,
    status: Option<u16>,
    body: Vec<u8>,
    keep: usize,
    body_len: u64,
    md5: Option<Md5>,
}

impl ResponseReader {
    /// `keep`: how much of the body to keep; `digest`: whether to hash it.
    pub fn new(keep: usize, digest: bool) -> ResponseReader {
        ResponseReader {
            state: State::Headers,
            pending: Vec::new(),
            status: None,
            body: Vec::new(),
            keep,
            body_len: 0,
            md5: digest.then(Md5::new),
        }
    }

    /// Whether the response is complete.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Whether any of the response has been received.
    pub fn has_headers(&self) -> bool {
        !matches!(self.state, State::Headers)
    }

    /// Takes received bytes; returns whether the response is complete.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<bool, String> {
        while !data.is_empty() {
            match self.state {
                State::Headers => {
                    self.pending.extend_from_slice(data);
                    data = &[];
                    if let Some(end) = find(&self.pending, b"\r\n\r\n") {
                        let rest = self.pending.split_off(end + 4);
                        let head = std::mem::take(&mut self.pending);
                        self.parse_head(&head)?;
                        // What came after the headers is body.
                        self.feed(&rest)?;
                    } else if self.pending.len() > MAX_HEADERS {
                        return Err(format!("headers longer than {MAX_HEADERS} bytes"));
                    }
                }
                State::Length(remaining) => {
                    let n = data
                        .len()
                        .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    self.body_bytes(&data[..n]);
                    data = &data[n..];
                    let left = remaining - n as u64;
                    self.state = if left == 0 {
                        State::Done
                    } else {
                        State::Length(left)
                    };
                }
                State::ChunkSize => {
                    let Some(nl) = data.iter().position(|&b| b == b'\n') else {
                        self.pending.extend_from_slice(data);
                        if self.pending.len() > MAX_CHUNK_LINE {
                            return Err("chunk-size line too long".into());
                        }
                        return Ok(false);
                    };
                    self.pending.extend_from_slice(&data[..nl]);
                    data = &data[nl + 1..];
                    let line = std::mem::take(&mut self.pending);
                    let size = chunk_size(&line)?;
                    self.state = if size == 0 {
                        // Trailers, if any, are not read: the body is complete.
                        State::Done
                    } else {
                        State::ChunkData(size)
                    };
                }
                State::ChunkData(remaining) => {
                    let n = data
                        .len()
                        .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    self.body_bytes(&data[..n]);
                    data = &data[n..];
                    let left = remaining - n as u64;
                    self.state = if left == 0 {
                        State::ChunkEnd(2)
                    } else {
                        State::ChunkData(left)
                    };
                }
                State::ChunkEnd(left) => {
                    let n = data.len().min(usize::from(left));
                    data = &data[n..];
                    self.state = if n == usize::from(left) {
                        State::ChunkSize
                    } else {
                        State::ChunkEnd(left - n as u8)
                    };
                }
                State::UntilClose => {
                    self.body_bytes(data);
                    data = &[];
                }
                State::Done => break,
            }
        }
        Ok(self.is_done())
    }

    /// The connection closed (or the response is complete): what was read.
    pub fn finish(self) -> Response {
        let cut_short = !matches!(self.state, State::Done | State::UntilClose);
        Response {
            status: self.status,
            body: self.body,
            body_len: self.body_len,
            md5: self.md5.map(|m| m.finalize().into()),
            cut_short,
        }
    }

    fn body_bytes(&mut self, data: &[u8]) {
        self.body_len += data.len() as u64;
        if let Some(md5) = &mut self.md5 {
            md5.update(data);
        }
        let room = self.keep.saturating_sub(self.body.len());
        self.body.extend_from_slice(&data[..data.len().min(room)]);
    }

    fn parse_head(&mut self, head: &[u8]) -> Result<(), String> {
        let text = String::from_utf8_lossy(head);
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        self.status = status_code(status_line);
        let mut length = None;
        let mut chunked = false;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let name = name.trim();
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| format!("bad Content-Length {value:?}"))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
            }
        }
        let bodyless = matches!(self.status, Some(100..=199) | Some(204) | Some(304));
        self.state = if bodyless {
            State::Done
        } else if chunked {
            State::ChunkSize
        } else if let Some(0) = length {
            State::Done
        } else if let Some(n) = length {
            State::Length(n)
        } else {
            State::UntilClose
        };
        Ok(())
    }
}

/// The status code of `HTTP/x.y NNN reason`; keepalived wants a space after the code, a
/// missing reason phrase is accepted too.
pub fn status_code(line: &str) -> Option<u16> {
    let (version, rest) = line.split_once(' ')?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    let code = rest.get(..3)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match rest.as_bytes().get(3) {
        None | Some(b' ') => code.parse().ok(),
        Some(_) => None,
    }
}

fn chunk_size(line: &[u8]) -> Result<u64, String> {
    let text = String::from_utf8_lossy(line);
    let hex = text.trim_end_matches('\r');
    let hex = hex.split(';').next().unwrap_or_default().trim();
    u64::from_str_radix(hex, 16).map_err(|_| format!("bad chunk size {hex:?}"))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(parts: &[&[u8]]) -> Response {
        let mut r = ResponseReader::new(1 << 20, true);
        for p in parts {
            if r.feed(p).unwrap() {
                break;
            }
        }
        r.finish()
    }

    fn md5(data: &[u8]) -> [u8; 16] {
        Md5::digest(data).into()
    }

    #[test]
    fn content_length() {
        let r = read_all(&[
            b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhel",
            b"loEXTRA",
        ]);
        assert_eq!(r.status, Some(200));
        assert_eq!(r.body, b"hello");
        assert_eq!(r.md5, Some(md5(b"hello")));
        assert!(!r.cut_short);
    }

    #[test]
    fn chunked_split_anywhere() {
        let raw: &[u8] =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        for split in 0..raw.len() {
            let r = read_all(&[&raw[..split], &raw[split..]]);
            assert_eq!(r.body, b"hello world", "split at {split}");
            assert!(!r.cut_short);
        }
        // One byte at a time.
        let parts: Vec<&[u8]> = raw.chunks(1).collect();
        assert_eq!(read_all(&parts).body, b"hello world");
    }

    #[test]
    fn until_close_and_cut_short() {
        let r = read_all(&[b"HTTP/1.0 503 Busy\r\n\r\nsorry"]);
        assert_eq!(r.status, Some(503));
        assert_eq!(r.body, b"sorry");
        assert!(!r.cut_short);
        let r = read_all(&[b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nshort"]);
        assert!(r.cut_short);
        assert_eq!(r.body_len, 5);
        let r = read_all(&[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"]);
        assert!(r.cut_short);
        assert_eq!(r.body, b"hel");
    }

    #[test]
    fn keep_limit() {
        let mut r = ResponseReader::new(3, false);
        r.feed(b"HTTP/1.0 200 OK\r\n\r\nabcdef").unwrap();
        let r = r.finish();
        assert_eq!(r.body, b"abc");
        assert_eq!(r.body_len, 6);
        assert_eq!(r.md5, None);
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_code("HTTP/1.1 200 OK"), Some(200));
        assert_eq!(status_code("HTTP/1.1 404"), Some(404));
        assert_eq!(status_code("HTTP/1.1 2000 OK"), None);
        assert_eq!(status_code("HTTP/1.1 20"), None);
        assert_eq!(status_code("SSH-2.0-OpenSSH"), None);
    }

    #[test]
    fn bodyless_statuses() {
        let mut r = ResponseReader::new(10, false);
        assert!(r.feed(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap());
    }
}
