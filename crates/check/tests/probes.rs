//! The probes against small real servers on 127.0.0.1.

mod support;

use halb_check::probe::dns::DnsProbe;
use halb_check::probe::http::HttpProbe;
use halb_check::probe::ping::PingProbe;
use halb_check::probe::smtp::SmtpProbe;
use halb_check::probe::udp::UdpProbe;
use halb_check::probe::{tcp, Target};
use halb_check::FailureKind;
use halb_config::model::{HexBytes, HttpCheck, HttpProtocol, Url, UrlRegex};
use halb_test_support::skip;
use md5::{Digest, Md5};
use std::net::SocketAddr;
use std::time::Duration;
use support::{dead_tcp_port, http_server, response, target};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};

// ---------------------------------------------------------------- TCP_CHECK

#[tokio::test]
async fn tcp_up_and_down() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(tcp::check(&target(addr)).await.is_ok());
    drop(listener);
    let err = tcp::check(&target(addr)).await.unwrap_err();
    assert!(!err.timed_out());
    assert_eq!(err.kind, FailureKind::Refused, "{err}");
    assert!(
        err.message
            .contains(&format!("[127.0.0.1]:{}", addr.port())),
        "{err}"
    );
    assert!(tcp::check(&target(dead_tcp_port())).await.is_err());
}

#[tokio::test]
async fn tcp_bind_port_and_bind_if() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let src = dead_tcp_port();
    let mut t = target(addr);
    t.bind = Some(src);
    t.bind_if = Some("lo".into());
    let accept = tokio::spawn(async move { listener.accept().await.unwrap().1 });
    tcp::check(&t).await.unwrap();
    let peer = accept.await.unwrap();
    assert_eq!(peer, src, "the probe came from bindto:bind_port");
    t.bind_if = Some("halb-no-such-if".into());
    let err = tcp::check(&t).await.unwrap_err();
    assert!(err.message.contains("halb-no-such-if"), "{err}");
}

// ---------------------------------------------------------------- HTTP_GET

fn http(urls: Vec<Url>) -> HttpCheck {
    HttpCheck {
        urls,
        ..HttpCheck::default()
    }
}

fn probe(cfg: &HttpCheck, addr: SocketAddr, vhost: Option<&str>) -> HttpProbe {
    HttpProbe::new(cfg, false, target(addr), vhost, None).unwrap()
}

#[tokio::test]
async fn http_status_ranges() {
    let (addr, _) = http_server(|head| {
        if head.starts_with("GET /busy ") {
            response("503 Service Unavailable", b"busy")
        } else {
            response("200 OK", b"fine")
        }
    })
    .await;
    let ok = http(vec![Url::new("/health".into())]);
    probe(&ok, addr, None).check().await.unwrap();
    let busy = http(vec![Url::new("/busy".into())]);
    let err = probe(&busy, addr, None).check().await.unwrap_err();
    assert_eq!(
        err.message,
        format!(
            "HTTP status 503 from [127.0.0.1]:{}/busy, expected 200-299",
            addr.port()
        )
    );
    assert_eq!(err.kind, FailureKind::Protocol);
    let mut url = Url::new("/busy".into());
    url.status_codes = vec![(200, 200), (500, 503)];
    probe(&http(vec![url]), addr, None).check().await.unwrap();
    // Every url is checked: the second one fails the probe.
    let both = http(vec![Url::new("/a".into()), Url::new("/busy".into())]);
    let err = probe(&both, addr, None).check().await.unwrap_err();
    assert!(err.message.contains("/busy"), "{err}");
}

fn md5(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

#[tokio::test]
async fn http_digest() {
    let (addr, _) = http_server(|_| response("200 OK", b"<html>up</html>")).await;
    let mut url = Url::new("/".into());
    url.digest = Some(md5(b"<html>up</html>"));
    probe(&http(vec![url.clone()]), addr, None)
        .check()
        .await
        .unwrap();
    url.digest = Some(md5(b"something else"));
    let err = probe(&http(vec![url]), addr, None)
        .check()
        .await
        .unwrap_err();
    assert!(err.message.starts_with("MD5 digest error"), "{err}");
}

fn regex(pattern: &str, no_match: bool) -> UrlRegex {
    UrlRegex {
        pattern: pattern.into(),
        no_match,
        options: vec![],
        min_offset: None,
        max_offset: None,
        stack: None,
    }
}

#[tokio::test]
async fn http_regex_and_no_match() {
    let (addr, _) = http_server(|_| response("200 OK", b"status: READY\nload: 3\n")).await;
    let with = |r: UrlRegex| {
        let mut url = Url::new("/".into());
        url.regex = Some(r);
        http(vec![url])
    };
    probe(&with(regex("status: (READY|OK)", false)), addr, None)
        .check()
        .await
        .unwrap();
    assert!(probe(&with(regex("status: DOWN", false)), addr, None)
        .check()
        .await
        .is_err());
    probe(&with(regex("ERROR", true)), addr, None)
        .check()
        .await
        .unwrap();
    let err = probe(&with(regex("READY", true)), addr, None)
        .check()
        .await
        .unwrap_err();
    assert!(err.message.contains("no_match"), "{err}");
    let mut caseless = regex("ready", false);
    caseless.options = vec!["caseless".into()];
    probe(&with(caseless), addr, None).check().await.unwrap();
    let mut late = regex("load", false);
    late.min_offset = Some(20);
    assert!(probe(&with(late), addr, None).check().await.is_err());
}

#[tokio::test]
async fn http_host_header() {
    let (addr, seen) = http_server(|_| response("200 OK", b"ok")).await;
    probe(&http(vec![Url::new("/".into())]), addr, None)
        .check()
        .await
        .unwrap();
    probe(
        &http(vec![Url::new("/".into())]),
        addr,
        Some("www.example.org"),
    )
    .check()
    .await
    .unwrap();
    let mut own = Url::new("/own".into());
    own.virtualhost = Some("own.example.org".into());
    probe(&http(vec![own]), addr, Some("www.example.org"))
        .check()
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert!(
        seen[0].contains(&format!("\r\nHost: 127.0.0.1:{}\r\n", addr.port())),
        "{}",
        seen[0]
    );
    assert!(
        seen[1].contains("\r\nHost: www.example.org\r\n"),
        "{}",
        seen[1]
    );
    assert!(
        seen[2].contains("\r\nHost: own.example.org\r\n"),
        "{}",
        seen[2]
    );
    assert!(seen[0].contains("\r\nUser-Agent: KeepAliveClient\r\n"));
}

#[tokio::test]
async fn http_chunked_body() {
    let body = b"<html>chunked and well</html>";
    let (addr, _) = http_server(|_| {
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n<html>\r\n13\r\nchunked and well</h\r\n4\r\ntml>\r\n0\r\n\r\n".to_vec()
    })
    .await;
    let mut url = Url::new("/".into());
    url.digest = Some(md5(body));
    url.regex = Some(regex("chunked and well", false));
    let mut cfg = http(vec![url]);
    cfg.http_protocol = Some(HttpProtocol::Http11);
    probe(&cfg, addr, None).check().await.unwrap();
}

#[tokio::test]
async fn http_protocol_versions() {
    let (addr, seen) = http_server(|_| response("200 OK", b"ok")).await;
    for proto in [
        None,
        Some(HttpProtocol::Http10Close),
        Some(HttpProtocol::Http11),
    ] {
        let mut cfg = http(vec![Url::new("/v".into())]);
        cfg.http_protocol = proto;
        probe(&cfg, addr, None).check().await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    assert!(seen[0].starts_with("GET /v HTTP/1.0\r\n"));
    assert!(!seen[0].contains("Connection: close"));
    assert!(seen[1].starts_with("GET /v HTTP/1.0\r\n"));
    assert!(seen[1].contains("\r\nConnection: close\r\n"));
    assert!(seen[2].starts_with("GET /v HTTP/1.1\r\n"));
    assert!(seen[2].contains("\r\nConnection: close\r\n"));
}

#[tokio::test]
async fn http_body_cut_by_close_and_open_connection() {
    // Content-Length promises more than comes: judged on what arrived.
    let (addr, _) =
        http_server(|_| b"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\npartial".to_vec()).await;
    let mut url = Url::new("/".into());
    url.digest = Some(md5(b"partial"));
    probe(&http(vec![url]), addr, None).check().await.unwrap();

    // A server that keeps the connection open after a complete body: no need to wait.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        support::read_head(&mut s).await;
        s.write_all(&response("200 OK", b"done")).await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let mut t = target(addr);
    t.timeout = Duration::from_secs(10);
    let started = std::time::Instant::now();
    HttpProbe::new(&http(vec![Url::new("/".into())]), false, t, None, None)
        .unwrap()
        .check()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn http_timeout_and_no_data() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (s, _) = listener.accept().await.unwrap();
            held.push(s);
        }
    });
    let mut t = target(addr);
    t.timeout = Duration::from_millis(300);
    let err = HttpProbe::new(&http(vec![Url::new("/slow".into())]), false, t, None, None)
        .unwrap()
        .check()
        .await
        .unwrap_err();
    assert!(err.timed_out());
    assert_eq!(err.kind, FailureKind::Timeout);
    assert!(err.message.contains("reading the response"), "{err}");
    assert!(err.message.contains("/slow"), "{err}");

    let (addr, _) = http_server(|_| Vec::new()).await;
    let err = probe(&http(vec![Url::new("/".into())]), addr, None)
        .check()
        .await
        .unwrap_err();
    assert!(err.message.contains("no data received"), "{err}");
}

// ---------------------------------------------------------------- SMTP_CHECK

/// A fake SMTP server speaking the given banner and HELO reply; returns the lines it read.
async fn smtp_server(
    banner: &'static str,
    helo_reply: &'static str,
) -> (SocketAddr, support::Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: support::Seen = Default::default();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            let seen = seen2.clone();
            tokio::spawn(async move {
                let mut s = BufReader::new(s);
                s.get_mut().write_all(banner.as_bytes()).await.unwrap();
                let mut line = String::new();
                if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                seen.lock().unwrap().push(line.clone());
                s.get_mut().write_all(helo_reply.as_bytes()).await.unwrap();
                line.clear();
                if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                seen.lock().unwrap().push(line.clone());
                let _ = s.get_mut().write_all(b"221 bye\r\n").await;
            });
        }
    });
    (addr, seen)
}

fn smtp(addr: SocketAddr, helo: &str) -> SmtpProbe {
    SmtpProbe {
        target: target(addr),
        helo_name: helo.into(),
    }
}

#[tokio::test]
async fn smtp_conversation() {
    let (addr, seen) = smtp_server("220 mx.test ESMTP\r\n", "250 mx.test\r\n").await;
    smtp(addr, "smtpchecker.keepalived.org")
        .check()
        .await
        .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec!["HELO smtpchecker.keepalived.org\r\n", "QUIT\r\n"]
    );
    let (addr, _) = smtp_server("220-mx.test first\r\n220 mx.test ESMTP\r\n", "250 ok\r\n").await;
    smtp(addr, "me").check().await.unwrap();
}

#[tokio::test]
async fn smtp_failures() {
    let (addr, _) = smtp_server("554 go away\r\n", "250 ok\r\n").await;
    let err = smtp(addr, "me").check().await.unwrap_err();
    assert!(
        err.message
            .starts_with("Bad greeting banner from server [127.0.0.1]"),
        "{err}"
    );
    let (addr, _) = smtp_server("220 ok\r\n", "501 who are you\r\n").await;
    let err = smtp(addr, "me").check().await.unwrap_err();
    assert!(err.message.starts_with("Bad HELO response"), "{err}");
    assert!(smtp(dead_tcp_port(), "me").check().await.is_err());
}

// ---------------------------------------------------------------- DNS_CHECK

#[derive(Clone, Copy)]
enum DnsAnswer {
    Good,
    WrongIdThenGood,
    WrongIdOnly,
    ServFail,
}

async fn dns_server(answer: DnsAnswer) -> (SocketAddr, support::Seen) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let seen: support::Seen = Default::default();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        loop {
            let (n, from) = socket.recv_from(&mut buf).await.unwrap();
            let query = buf[..n].to_vec();
            seen2.lock().unwrap().push(format!("{query:?}"));
            let mut reply = query.clone();
            reply[2] |= 0x80; // QR
            let mut wrong = reply.clone();
            wrong[0] ^= 0xff;
            match answer {
                DnsAnswer::Good => {}
                DnsAnswer::WrongIdThenGood => {
                    socket.send_to(&wrong, from).await.unwrap();
                }
                DnsAnswer::WrongIdOnly => reply = wrong,
                DnsAnswer::ServFail => reply[3] = (reply[3] & 0xf0) | 2,
            }
            socket.send_to(&reply, from).await.unwrap();
        }
    });
    (addr, seen)
}

fn dns(addr: SocketAddr, timeout: Duration) -> DnsProbe {
    DnsProbe {
        target: Target::new(addr, timeout),
        query_type: 6,
        name: "example.org".into(),
    }
}

#[tokio::test]
async fn dns_answers() {
    let (addr, seen) = dns_server(DnsAnswer::Good).await;
    dns(addr, Duration::from_secs(3)).check().await.unwrap();
    let q = seen.lock().unwrap()[0].clone();
    assert!(
        q.contains("7, 101, 120, 97, 109, 112, 108, 101"),
        "QNAME in {q}"
    );

    let (addr, _) = dns_server(DnsAnswer::WrongIdThenGood).await;
    dns(addr, Duration::from_secs(3)).check().await.unwrap();

    let (addr, _) = dns_server(DnsAnswer::WrongIdOnly).await;
    let err = dns(addr, Duration::from_millis(300))
        .check()
        .await
        .unwrap_err();
    assert!(err.timed_out());
    assert!(err.message.starts_with("read timeout from socket"), "{err}");

    let (addr, _) = dns_server(DnsAnswer::ServFail).await;
    let err = dns(addr, Duration::from_secs(3)).check().await.unwrap_err();
    assert_eq!(err.message, "read error occurred. (rcode = 2)");
}

// ---------------------------------------------------------------- UDP_CHECK

/// A UDP server answering every datagram with `reply` (nothing when `None`); returns what it
/// received.
async fn udp_server(reply: Option<Vec<u8>>) -> (SocketAddr, support::Seen) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let seen: support::Seen = Default::default();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        loop {
            let (n, from) = socket.recv_from(&mut buf).await.unwrap();
            seen2
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            if let Some(r) = &reply {
                socket.send_to(r, from).await.unwrap();
            }
        }
    });
    (addr, seen)
}

fn udp(addr: SocketAddr, require_reply: bool, reply: Option<HexBytes>) -> UdpProbe {
    UdpProbe {
        target: Target::new(addr, Duration::from_millis(500)),
        payload: b"ping?".to_vec(),
        require_reply,
        reply,
        min_reply_length: 0,
        max_reply_length: 255,
    }
}

#[tokio::test]
async fn udp_require_reply() {
    let (addr, seen) = udp_server(Some(vec![0xde, 0xad, 0xbe, 0xef])).await;
    udp(addr, true, None).check().await.unwrap();
    assert_eq!(seen.lock().unwrap()[0], "ping?");
    let masked = HexBytes {
        data: vec![0xde, 0xa0, 0x00],
        mask: Some(vec![0x00, 0x0f, 0xff]),
    };
    udp(addr, true, Some(masked.clone())).check().await.unwrap();
    let wrong = HexBytes {
        data: vec![0xde, 0xb0],
        mask: Some(vec![0x00, 0x0f]),
    };
    let err = udp(addr, true, Some(wrong)).check().await.unwrap_err();
    assert!(err.message.contains("mismatch"), "{err}");
    let mut p = udp(addr, true, Some(masked.clone()));
    p.min_reply_length = 5;
    assert!(p.check().await.is_err(), "reply too short");
    let mut p = udp(addr, true, Some(masked));
    p.max_reply_length = 3;
    assert!(p.check().await.is_err(), "reply too long");

    let (silent, _) = udp_server(None).await;
    let err = udp(silent, true, None).check().await.unwrap_err();
    assert!(err.timed_out(), "{err}");
}

#[tokio::test]
async fn udp_without_reply_and_port_unreachable() {
    let (silent, _) = udp_server(None).await;
    udp(silent, false, None).check().await.unwrap();
    let closed = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let err = udp(closed, false, None).check().await.unwrap_err();
    assert!(!err.timed_out());
    assert!(err.message.to_lowercase().contains("refused"), "{err}");
}

// ---------------------------------------------------------------- PING_CHECK

#[tokio::test]
async fn ping_loopback() {
    for ip in ["127.0.0.1", "::1"] {
        let addr = SocketAddr::new(ip.parse().unwrap(), 0);
        if ip == "::1" && std::net::UdpSocket::bind("[::1]:0").is_err() {
            skip("PING_CHECK to ::1: no IPv6 loopback");
            continue;
        }
        for (kind, p) in [
            (
                "ICMP or raw",
                PingProbe::new(Target::new(addr, Duration::from_secs(3))),
            ),
            (
                "raw",
                PingProbe::raw(Target::new(addr, Duration::from_secs(3))),
            ),
        ] {
            match p.check().await {
                Ok(_) => {}
                Err(e)
                    if e.message.contains("Operation not permitted")
                        || e.message.contains("Permission denied") =>
                {
                    skip(format!(
                        "PING_CHECK to {ip} ({kind}): sockets denied here ({e})"
                    ));
                    continue;
                }
                Err(e) => panic!("ping {ip} ({kind}): {e}"),
            }
            // Sequence numbers advance; a second probe still matches its own reply.
            p.check().await.unwrap();
        }
    }
}
