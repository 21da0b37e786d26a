//! Small servers for the probe tests, all on 127.0.0.1.
#![allow(dead_code)]

use halb_check::probe::Target;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

pub fn target(addr: SocketAddr) -> Target {
    Target::new(addr, Duration::from_secs(3))
}

/// Requests a server saw, in order.
pub type Seen = Arc<Mutex<Vec<String>>>;

/// Reads a request head (up to the blank line).
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Answers each request with what `respond` makes of its head, then closes.
pub async fn serve_http<S, F>(mut stream: S, seen: Seen, respond: Arc<F>)
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Fn(&str) -> Vec<u8> + Send + Sync + 'static,
{
    let head = read_head(&mut stream).await;
    let answer = respond(&head);
    seen.lock().unwrap().push(head);
    let _ = stream.write_all(&answer).await;
    let _ = stream.shutdown().await;
}

/// An HTTP server on 127.0.0.1; returns its address and the requests it saw.
pub async fn http_server<F>(respond: F) -> (SocketAddr, Seen)
where
    F: Fn(&str) -> Vec<u8> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let respond = Arc::new(respond);
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(serve_http(stream, seen2.clone(), respond.clone()));
        }
    });
    (addr, seen)
}

pub fn response(status: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// A port nothing listens on (a listener bound and dropped).
pub fn dead_tcp_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}
