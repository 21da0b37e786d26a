//! Plain HTTP/1.1 from inside a namespace (halb's endpoint, Prometheus's API, chromedriver's
//! WebDriver API), and a WebDriver session of a headless Chromium. Everything stays on the
//! namespace's loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use halb_test_support::{ChildGuard, Netns};
use serde_json::{json, Value};

/// One request on a fresh connection; returns the status and the body.
pub fn request(
    ns: &Netns,
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, String)> {
    let method = method.to_string();
    let path = path.to_string();
    let body = body.map(|b| b.to_string());
    ns.run_in(move || {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let payload = body.unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            payload.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(payload.as_bytes())?;
        read_response(&mut stream)
    })
}

/// Reads one answer: up to its Content-Length or last chunk (chromedriver keeps the
/// connection open whatever the request said), else to the end of the stream.
fn read_response(stream: &mut TcpStream) -> std::io::Result<(u16, String)> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
            let body = raw.len() - split - 4;
            let length = head.lines().find_map(|l| {
                l.strip_prefix("content-length:")
                    .and_then(|v| v.trim().parse::<usize>().ok())
            });
            if length.is_some_and(|len| body >= len)
                || (head.contains("transfer-encoding: chunked") && raw.ends_with(b"0\r\n\r\n"))
            {
                break;
            }
        }
    }
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<(u16, String)> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok((status, String::from_utf8_lossy(&body).to_string()))
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..eol])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

/// GET returning the body of a 200 answer.
pub fn get(ns: &Netns, port: u16, path: &str) -> Option<String> {
    match request(ns, port, "GET", path, None) {
        Ok((200, body)) => Some(body),
        _ => None,
    }
}

/// GET of a JSON answer.
pub fn get_json(ns: &Netns, port: u16, path: &str) -> Option<Value> {
    get(ns, port, path).and_then(|b| serde_json::from_str(&b).ok())
}

/// A chromedriver in a namespace, with a session of a headless Chromium; both end on drop.
pub struct Browser<'a> {
    ns: &'a Netns,
    port: u16,
    session: String,
    _driver: ChildGuard,
}

impl<'a> Browser<'a> {
    /// Starts chromedriver on `port` and a Chromium session with a fresh profile in `profile`.
    pub fn start(ns: &'a Netns, port: u16, profile: &Path, log: &Path) -> Browser<'a> {
        let out = std::fs::File::create(log).expect("create the chromedriver log");
        let driver = ChildGuard::spawn(
            ns.command("chromedriver")
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("clone a log file"))
                .stderr(out),
        )
        .expect("start chromedriver");
        let ready = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            get_json(ns, port, "/status").is_some_and(|s| s["value"]["ready"] == true)
        });
        assert!(ready, "chromedriver did not become ready");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1400,900",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
        }}});
        let (status, body) =
            request(ns, port, "POST", "/session", Some(&caps)).expect("a WebDriver session");
        assert_eq!(status, 200, "new session: {body}");
        let v: Value = serde_json::from_str(&body).expect("JSON");
        let session = v["value"]["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        Browser {
            ns,
            port,
            session,
            _driver: driver,
        }
    }

    fn call(&self, method: &str, what: &str, body: Option<&Value>) -> Value {
        let path = format!("/session/{}/{what}", self.session);
        let (status, text) = request(self.ns, self.port, method, &path, body)
            .unwrap_or_else(|e| panic!("WebDriver {what}: {e}"));
        assert_eq!(status, 200, "WebDriver {what}: {text}");
        serde_json::from_str::<Value>(&text).expect("JSON")["value"].take()
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "url", Some(&json!({ "url": url })));
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub fn eval(&self, script: &str) -> Value {
        self.call(
            "POST",
            "execute/sync",
            Some(&json!({ "script": script, "args": [] })),
        )
    }

    /// Saves a PNG of the window.
    pub fn screenshot(&self, to: &Path) {
        let data = self.call("GET", "screenshot", None);
        let png = base64_decode(data.as_str().expect("base64 text"));
        std::fs::write(to, png).expect("write the screenshot");
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        let path = format!("/session/{}", self.session);
        let _ = request(self.ns, self.port, "DELETE", &path, None);
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
