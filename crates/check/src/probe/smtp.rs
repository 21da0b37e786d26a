//! SMTP_CHECK: the greeting banner (220), `HELO name` (250), `QUIT` and its answer.

use super::net::{Step, Target};
use super::{ProbeFailure, ProbeOk, ProbeResult};
use crate::policy::FailureKind;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The longest reply line read; keepalived's buffer is 512 bytes.
const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpProbe {
    pub target: Target,
    /// `helo_name`, default `smtpchecker.keepalived.org`.
    pub helo_name: String,
}

impl SmtpProbe {
    pub async fn check(&self) -> ProbeResult {
        let step = Step::new("connecting to");
        self.target
            .within_deadline(&step, self.converse(&step))
            .await
    }

    async fn converse(&self, step: &Step) -> ProbeResult {
        let peer = self.target.peer();
        let stream = self.target.tcp().await?;
        let mut stream = BufReader::new(stream);
        step.set("reading the greeting banner from");
        let banner = read_reply(&mut stream, &peer).await?;
        if banner.code != Some(220) {
            return Err(ProbeFailure::protocol(format!(
                "Bad greeting banner from server {peer}: {:?}",
                banner.last_line
            )));
        }
        step.set("sending HELO to");
        let helo = format!("HELO {}\r\n", self.helo_name);
        write(&mut stream, helo.as_bytes(), &peer).await?;
        step.set("reading the HELO response from");
        let reply = read_reply(&mut stream, &peer).await?;
        if reply.code != Some(250) {
            return Err(ProbeFailure::protocol(format!(
                "Bad HELO response from server {peer}: {:?}",
                reply.last_line
            )));
        }
        step.set("sending QUIT to");
        write(&mut stream, b"QUIT\r\n", &peer).await?;
        // keepalived waits for an answer to QUIT, whatever it says.
        step.set("reading the QUIT response from");
        read_reply(&mut stream, &peer).await?;
        Ok(ProbeOk::new(format!(
            "SMTP server {peer} answered 220, 250"
        )))
    }
}

struct Reply {
    code: Option<u16>,
    last_line: String,
}

/// Reads one reply, following `NNN-` continuation lines to the final `NNN ` line (keepalived
/// reads a single line and would fail a multi-line greeting; accepting it is safe).
async fn read_reply(
    stream: &mut BufReader<tokio::net::TcpStream>,
    peer: &str,
) -> Result<Reply, ProbeFailure> {
    loop {
        let mut line = Vec::new();
        let n = (&mut *stream)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| ProbeFailure::io(&e, format!("Read failure from server {peer}: {e}")))?;
        if n == 0 {
            return Err(ProbeFailure::of_kind(
                FailureKind::Reset,
                format!("Read failure from server {peer}: connection closed"),
            ));
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let bytes = text.as_bytes();
        if bytes.len() >= 4 && bytes[3] == b'-' && bytes[..3].iter().all(u8::is_ascii_digit) {
            continue;
        }
        return Ok(Reply {
            code: status(&text),
            last_line: text,
        });
    }
}

/// keepalived's `smtp_get_status()`: three digits, then the end of the line or a space.
fn status(line: &str) -> Option<u16> {
    let b = line.as_bytes();
    if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    if b.len() > 3 && b[3] != b' ' {
        return None;
    }
    line[..3].parse().ok()
}

async fn write(
    stream: &mut BufReader<tokio::net::TcpStream>,
    data: &[u8],
    peer: &str,
) -> Result<(), ProbeFailure> {
    stream
        .get_mut()
        .write_all(data)
        .await
        .map_err(|e| ProbeFailure::io(&e, format!("Write failure to server {peer}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::status;

    #[test]
    fn status_codes() {
        assert_eq!(status("220 mail.example.org ESMTP"), Some(220));
        assert_eq!(status("250"), Some(250));
        assert_eq!(status("250-PIPELINING"), None);
        assert_eq!(status("25"), None);
        assert_eq!(status("abc def"), None);
    }
}
