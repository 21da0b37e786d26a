//! DNS_CHECK: one UDP query; keepalived's acceptance rule (`dns_recv_thread()`): replies that
//! are too short, carry another id or are not responses are skipped; the first reply that is
//! left succeeds when its RCODE is NOERROR and fails otherwise.

use super::net::{Step, Target};
use super::{ProbeFailure, ProbeOk, ProbeResult};

const HEADER_LEN: usize = 12;
/// keepalived's receive buffer.
const BUFFER: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsProbe {
    pub target: Target,
    /// The RR type number.
    pub query_type: u16,
    /// Default "" (the root).
    pub name: String,
}

impl DnsProbe {
    pub async fn check(&self) -> ProbeResult {
        let step = Step::new("sending the query to");
        self.target
            .within_deadline(&step, self.exchange(&step))
            .await
            .map_err(|f| {
                if f.timed_out() {
                    ProbeFailure::timeout(format!(
                        "read timeout from socket ({}, no reply within {:?})",
                        self.target.peer(),
                        self.target.timeout
                    ))
                } else {
                    f
                }
            })
    }

    async fn exchange(&self, step: &Step) -> ProbeResult {
        let id: u16 = rand::random();
        let query = build_query(id, &self.name, self.query_type);
        let socket = self.target.udp()?;
        socket
            .send(&query)
            .await
            .map_err(|e| ProbeFailure::io(&e, format!("failed to write socket ({e})")))?;
        step.set("waiting for the reply from");
        let mut buf = [0u8; BUFFER];
        loop {
            let n = socket.recv(&mut buf).await.map_err(|e| {
                ProbeFailure::io(
                    &e,
                    format!(
                        "failed to read socket; errno {} ({e})",
                        e.raw_os_error().unwrap_or(0)
                    ),
                )
            })?;
            match judge(id, &buf[..n]) {
                Reply::Skip => continue,
                Reply::Rcode(0) => {
                    return Ok(ProbeOk::new(format!(
                        "DNS reply NOERROR from {}",
                        self.target.peer()
                    )))
                }
                Reply::Rcode(rcode) => {
                    return Err(ProbeFailure::protocol(format!(
                        "read error occurred. (rcode = {rcode})"
                    )))
                }
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Reply {
    /// Not an answer to this query: keep waiting.
    Skip,
    Rcode(u8),
}

fn judge(id: u16, reply: &[u8]) -> Reply {
    if reply.len() < HEADER_LEN {
        return Reply::Skip;
    }
    if u16::from_be_bytes([reply[0], reply[1]]) != id {
        return Reply::Skip;
    }
    let flags = u16::from_be_bytes([reply[2], reply[3]]);
    if flags & 0x8000 == 0 {
        return Reply::Skip;
    }
    Reply::Rcode((flags & 0x000f) as u8)
}

/// A query with Recursion Desired, one question of `qtype` class IN.
pub fn build_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(HEADER_LEN + name.len() + 6);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    q.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    q.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // AN, NS, AR
    for label in name.split('.').filter(|l| !l.is_empty()) {
        // A label is at most 63 bytes; the configuration reader does not check.
        let label = &label.as_bytes()[..label.len().min(63)];
        q.push(label.len() as u8);
        q.extend_from_slice(label);
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // IN
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_bytes() {
        let q = build_query(0x1234, "example.com.", 6);
        assert_eq!(
            q,
            [
                0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 7, b'e', b'x', b'a', b'm', b'p',
                b'l', b'e', 3, b'c', b'o', b'm', 0, 0, 6, 0, 1
            ]
        );
        assert_eq!(build_query(1, "", 2)[HEADER_LEN..], [0, 0, 2, 0, 1]);
        assert_eq!(build_query(1, ".", 2)[HEADER_LEN..], [0, 0, 2, 0, 1]);
    }

    #[test]
    fn acceptance() {
        let mut r = build_query(7, "", 6);
        assert_eq!(judge(7, &r), Reply::Skip, "a query, not a response");
        r[2] |= 0x80;
        assert_eq!(judge(7, &r), Reply::Rcode(0));
        assert_eq!(judge(8, &r), Reply::Skip, "another id");
        r[3] |= 2;
        assert_eq!(judge(7, &r), Reply::Rcode(2));
        assert_eq!(judge(7, &r[..5]), Reply::Skip, "too short");
    }
}
