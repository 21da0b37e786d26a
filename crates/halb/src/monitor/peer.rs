//! Reading a director's snapshot: from its HTTP endpoint (`http://HOST:PORT`, the JSON of
//! `/api/v1/status`) or from a control socket (a path, or `unix:PATH`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::control::client;
use crate::control::protocol::{Request, Snapshot};

/// The snapshot of the director `peer` names.
pub fn snapshot(peer: &str, timeout: Duration) -> Result<Snapshot> {
    if let Some(rest) = peer.strip_prefix("http://") {
        let (authority, path) = match rest.find('/') {
            Some(n) => (&rest[..n], &rest[n..]),
            None => (rest, ""),
        };
        let path = if path.is_empty() || path == "/" {
            "/api/v1/status"
        } else {
            path
        };
        let body = http_get(authority, path, timeout).with_context(|| format!("asking {peer}"))?;
        serde_json::from_slice(&body).with_context(|| format!("reading the status {peer} sent"))
    } else if peer.contains("://") {
        bail!("{peer}: only http:// URLs and control socket paths are understood")
    } else {
        let path = peer.strip_prefix("unix:").unwrap_or(peer);
        client::query_within(Path::new(path), &Request::default(), timeout)
    }
}

/// A plain HTTP/1.0 GET (so the answer comes whole, not chunked); the body of a 200 answer.
fn http_get(authority: &str, path: &str, timeout: Duration) -> Result<Vec<u8>> {
    let address: SocketAddr = authority
        .to_socket_addrs()
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .with_context(|| format!("{authority} has no address"))?;
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .with_context(|| format!("connecting to {address}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: application/json\r\n\r\n"
    )
    .with_context(|| format!("writing to {address}"))?;
    let mut answer = Vec::new();
    // A status page is small; a larger answer is not one.
    stream
        .take(16 << 20)
        .read_to_end(&mut answer)
        .with_context(|| format!("reading from {address}"))?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| format!("{address} sent no HTTP answer"))?;
    let head = String::from_utf8_lossy(&answer[..split]);
    let status_line = head.lines().next().unwrap_or_default();
    let code = status_line.split_whitespace().nth(1).unwrap_or_default();
    if code != "200" {
        bail!("{address}{path} answered {status_line:?}");
    }
    Ok(answer[split + 4..].to_vec())
}
