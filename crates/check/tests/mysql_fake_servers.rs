//! MYSQL_CHECK against small servers written here, for what MariaDB 10.11 cannot show:
//! caching_sha2_password (MySQL 8's default; no MariaDB server plugin) with its fast path and its
//! RSA full authentication over plain TCP, a silent server, and garbage.
//!
//! The server side checks the client's answers its own way, as MySQL does: it keeps only
//! SHA256(SHA256(password)), recovers SHA256(password) from the scramble and hashes it again;
//! for the full authentication it decrypts the RSA-OAEP block with its private key.

use halb_check::mysql::{check, ErrorKind, Step};
use halb_config::model::{CheckerCommon, MysqlCheck};
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use rsa::{Oaep, RsaPrivateKey};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PRIVATE_KEY: &str = include_str!("../src/mysql/testdata/rsa_private.pem");
const NONCE: &[u8; 20] = b"n0nce-for-the-tests!";
const TIMEOUT: Duration = Duration::from_secs(10);

fn cfg(password: &str) -> MysqlCheck {
    MysqlCheck {
        common: CheckerCommon::default(),
        user: "halb_monitor".to_string(),
        password: password.to_string(),
        database: None,
        query: "SELECT 1".to_string(),
    }
}

async fn read_packet(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 4];
    s.read_exact(&mut h).await?;
    let len = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
    let mut p = vec![0; len];
    s.read_exact(&mut p).await?;
    Ok((h[3], p))
}

async fn write_packet(s: &mut TcpStream, seq: u8, payload: &[u8]) {
    let mut b = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    b.push(seq);
    b.extend_from_slice(payload);
    s.write_all(&b).await.unwrap();
}

fn greeting(plugin: &str) -> Vec<u8> {
    let capabilities: u32 = 0xdfff_f7ff;
    let mut g = vec![10];
    g.extend_from_slice(b"8.0.36-fake\0");
    g.extend_from_slice(&5u32.to_le_bytes());
    g.extend_from_slice(&NONCE[..8]);
    g.push(0);
    g.extend_from_slice(&(capabilities as u16).to_le_bytes());
    g.push(255);
    g.extend_from_slice(&2u16.to_le_bytes());
    g.extend_from_slice(&((capabilities >> 16) as u16).to_le_bytes());
    g.push(21);
    g.extend_from_slice(&[0; 10]);
    g.extend_from_slice(&NONCE[8..]);
    g.push(0);
    g.extend_from_slice(plugin.as_bytes());
    g.push(0);
    g
}

/// The auth response of a HandshakeResponse41 (one-byte length; no database).
fn auth_response(p: &[u8]) -> Vec<u8> {
    let rest = &p[32..];
    let nul = rest.iter().position(|&b| b == 0).unwrap();
    let len = usize::from(rest[nul + 1]);
    rest[nul + 2..nul + 2 + len].to_vec()
}

/// What the server checks on the way: the scramble, and the RSA block.
#[derive(Debug, Default)]
struct Seen {
    scramble_ok: bool,
    rsa_password: Option<Vec<u8>>,
    read_only_asked: bool,
    quit: bool,
}

/// A caching_sha2_password server for one connection; `cached`: the fast path, else the full
/// authentication with the RSA key exchange.
async fn caching_sha2_server(mut s: TcpStream, password: &str, cached: bool) -> Seen {
    let mut seen = Seen::default();
    let stored = Sha256::digest(Sha256::digest(password.as_bytes()));
    write_packet(&mut s, 0, &greeting("caching_sha2_password")).await;
    let (seq, response) = read_packet(&mut s).await.unwrap();
    assert_eq!(seq, 1);
    let scramble = auth_response(&response);
    if scramble.len() == 32 {
        let mut h = Sha256::new();
        h.update(stored);
        h.update(NONCE);
        let mask = h.finalize();
        let stage1: Vec<u8> = scramble
            .iter()
            .zip(mask.iter())
            .map(|(a, b)| a ^ b)
            .collect();
        seen.scramble_ok = Sha256::digest(&stage1)[..] == stored[..];
    }
    let mut seq = seq + 1;
    let ok = if cached {
        write_packet(&mut s, seq, b"\x01\x03").await;
        seq += 1;
        seen.scramble_ok
    } else {
        write_packet(&mut s, seq, b"\x01\x04").await;
        let (rseq, request) = read_packet(&mut s).await.unwrap();
        assert_eq!((rseq, &request[..]), (seq + 1, &b"\x02"[..]));
        let private = RsaPrivateKey::from_pkcs8_pem(PRIVATE_KEY).unwrap();
        let pem = private
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let mut key = vec![1];
        key.extend_from_slice(pem.as_bytes());
        write_packet(&mut s, rseq + 1, &key).await;
        let (eseq, encrypted) = read_packet(&mut s).await.unwrap();
        assert_eq!(eseq, rseq + 2);
        let plain = private
            .decrypt(Oaep::new::<sha1::Sha1>(), &encrypted)
            .unwrap();
        let password_sent: Vec<u8> = plain
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ NONCE[i % NONCE.len()])
            .collect();
        let mut expected = password.as_bytes().to_vec();
        expected.push(0);
        let ok = password_sent == expected;
        seen.rsa_password = Some(password_sent);
        seq = eseq + 1;
        ok
    };
    if !ok {
        write_packet(
            &mut s,
            seq,
            b"\xff\x15\x04#28000Access denied for user 'halb_monitor'@'localhost' (using password: YES)",
        )
        .await;
        return seen;
    }
    write_packet(&mut s, seq, b"\0\0\0\x02\0\0\0").await;
    loop {
        let Ok((_, command)) = read_packet(&mut s).await else {
            return seen;
        };
        match command.first() {
            Some(1) => {
                seen.quit = true;
                return seen;
            }
            Some(3) if command[1..] == *b"SELECT @@global.read_only" => {
                seen.read_only_asked = true;
                for (i, p) in [
                    &b"\x01"[..],
                    b"\x03def\0\0\0\x12@@global.read_only\0\x0c?\0\x01\0\0\0\x08\x80\0\0\0\0",
                    b"\xfe\0\0\x02\0",
                    b"\x011",
                    b"\xfe\0\0\x02\0",
                ]
                .iter()
                .enumerate()
                {
                    write_packet(&mut s, i as u8 + 1, p).await;
                }
            }
            Some(3) => write_packet(&mut s, 1, b"\0\0\0\x02\0\0\0").await,
            _ => panic!("unexpected command {command:?}"),
        }
    }
}

async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

async fn caching_sha2(password_sent: &str, cached: bool) -> (Result<String, String>, Seen) {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        caching_sha2_server(s, "s3cret", cached).await
    });
    let result = check(&cfg(password_sent), addr, None, TIMEOUT)
        .await
        .map(|s| format!("{s:?}"))
        .map_err(|e| e.to_string());
    (result, server.await.unwrap())
}

#[tokio::test]
async fn caching_sha2_fast_path() {
    let (result, seen) = caching_sha2("s3cret", true).await;
    let status = result.unwrap();
    assert!(status.contains("read_only: true"), "{status}");
    assert!(status.contains("caching_sha2_password"), "{status}");
    assert!(
        seen.scramble_ok && seen.read_only_asked && seen.quit,
        "{seen:?}"
    );
}

#[tokio::test]
async fn caching_sha2_full_authentication_with_the_servers_rsa_key() {
    let (result, seen) = caching_sha2("s3cret", false).await;
    result.unwrap();
    assert_eq!(seen.rsa_password.as_deref(), Some(&b"s3cret\0"[..]));
    assert!(seen.quit, "{seen:?}");

    let (result, seen) = caching_sha2("wrong", false).await;
    let err = result.unwrap_err();
    println!("{err}");
    assert!(err.contains("login as halb_monitor refused: 1045"), "{err}");
    assert_eq!(seen.rsa_password.as_deref(), Some(&b"wrong\0"[..]));
}

#[tokio::test]
async fn silent_server_times_out_at_the_greeting() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        // Hold the connection without a word until the client gives up on it.
        let mut buf = [0u8; 16];
        let _ = s.read(&mut buf).await;
    });
    let err = check(&cfg("x"), addr, None, Duration::from_millis(300))
        .await
        .unwrap_err();
    println!("{err}");
    assert!(err.is_timeout());
    assert_eq!(err.step(), Step::Greeting);
    assert!(
        err.to_string().starts_with(&format!(
            "[127.0.0.1]:{}: timed out after 300ms",
            addr.port()
        )),
        "{err}"
    );
    server.abort();
}

#[tokio::test]
async fn garbage_is_a_protocol_error() {
    for (reply, what) in [
        (&b"\x05\0\0\0\x09old\0"[..], "not protocol version 10"),
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "closed the connection"),
        (b"\x01\0\0\x05\x0a", "sequence id 5, expected 0"),
    ] {
        let (l, addr) = listener().await;
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(reply).await.unwrap();
        });
        let err = check(&cfg("x"), addr, None, TIMEOUT).await.unwrap_err();
        println!("{err}");
        assert_eq!(err.step(), Step::Greeting, "{err}");
        assert!(err.to_string().contains(what), "{err}");
        assert!(
            matches!(
                err.kind(),
                ErrorKind::Protocol { .. } | ErrorKind::Closed { .. }
            ),
            "{err:?}"
        );
        server.await.unwrap();
    }
}
