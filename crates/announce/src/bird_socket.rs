//! A client of BIRD's control socket: one command, one reply, with a deadline.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::bird_reply::{parse_reply, Reply};

/// How long BIRD may take to answer one command.
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to BIRD's control socket.
pub struct BirdSocket {
    stream: UnixStream,
    path: PathBuf,
    buf: Vec<u8>,
}

impl BirdSocket {
    /// Connects and reads BIRD's greeting (`0001 BIRD 2.0.12 ready.`).
    pub fn connect(path: &Path) -> Result<BirdSocket> {
        let stream = UnixStream::connect(path)
            .with_context(|| format!("connecting to BIRD's control socket {}", path.display()))?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
        let mut s = BirdSocket {
            stream,
            path: path.to_path_buf(),
            buf: Vec::new(),
        };
        let hello = s.reply()?;
        if hello.code != 1 {
            bail!("{}: not BIRD's greeting: {}", path.display(), hello.text());
        }
        Ok(s)
    }

    /// Sends one command and reads its reply; a reply with an error code is an error.
    pub fn command(&mut self, command: &str) -> Result<Reply> {
        self.stream
            .write_all(format!("{command}\n").as_bytes())
            .with_context(|| format!("{}: sending '{command}'", self.path.display()))?;
        let reply = self
            .reply()
            .with_context(|| format!("{}: '{command}'", self.path.display()))?;
        if reply.is_error() {
            bail!(
                "{}: BIRD refused '{command}': {}",
                self.path.display(),
                reply.text()
            );
        }
        Ok(reply)
    }

    fn reply(&mut self) -> Result<Reply> {
        loop {
            match parse_reply(&self.buf) {
                Ok(Some((reply, used))) => {
                    self.buf.drain(..used);
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(e) => bail!("{}: {e}", self.path.display()),
            }
            let mut chunk = [0u8; 4096];
            let n = self
                .stream
                .read(&mut chunk)
                .with_context(|| format!("reading from {}", self.path.display()))?;
            if n == 0 {
                bail!("{}: BIRD closed the control socket", self.path.display());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}
