//! Replays of whole conversations through [`Session`]: recorded MariaDB packets where a real
//! server can give them, and hand-built MySQL 8 packets (caching_sha2_password,
//! sha256_password) where MariaDB 10.11 has no such server plugin. The hand-built ones follow the
//! layouts the recorded ones confirm (greeting, OK, EOF, auth switch), with
//! caching_sha2_password's AuthMoreData bytes (0x01 0x03 fast auth, 0x01 0x04 full auth, 0x01 +
//! PEM key).

use super::auth::{caching_sha2_password, native_password};
use super::error::{ErrorKind, Step};
use super::fixtures::*;
use super::handshake::caps;
use super::packet::{frame, Packet, PacketReader};
use super::session::{Action, Session, Settings, READ_ONLY_QUERY};
use super::MysqlStatus;
use rsa::pkcs8::DecodePrivateKey;
use rsa::{Oaep, RsaPrivateKey};
use sha1::Sha1;

const TEST_PRIVATE_KEY: &str = include_str!("testdata/rsa_private.pem");
const TEST_PUBLIC_KEY: &str = include_str!("testdata/rsa_public.pem");

fn settings(user: &str) -> Settings {
    Settings {
        user: user.to_string(),
        password: "secret".to_string(),
        database: None,
        query: "SELECT 1".to_string(),
    }
}

fn packet(seq: u8, payload: &[u8]) -> Packet {
    Packet {
        first_seq: seq,
        last_seq: seq,
        payload: payload.to_vec(),
    }
}

/// The one packet in `action`'s bytes.
fn sent(action: Action) -> (u8, Vec<u8>) {
    let Action::Send(bytes) = action else {
        panic!("expected something to send, got {action:?}");
    };
    let mut r = PacketReader::new();
    r.push(&bytes);
    let p = r.next_packet().unwrap().unwrap();
    assert_eq!(r.buffered(), 0, "more than one packet sent");
    (p.first_seq, p.payload)
}

/// The auth response and plugin name of a HandshakeResponse41 (no database).
fn login_parts(response: &[u8]) -> (String, Vec<u8>, String) {
    let rest = &response[32..];
    let nul = rest.iter().position(|&b| b == 0).unwrap();
    let user = String::from_utf8(rest[..nul].to_vec()).unwrap();
    let len = usize::from(rest[nul + 1]);
    let auth = rest[nul + 2..nul + 2 + len].to_vec();
    let plugin = &rest[nul + 2 + len..];
    let plugin = String::from_utf8(plugin.strip_suffix(&[0]).unwrap().to_vec()).unwrap();
    (user, auth, plugin)
}

/// A protocol-10 greeting as MySQL 8 writes it.
fn mysql8_greeting(plugin: &str, nonce: &[u8; 20]) -> Vec<u8> {
    let capabilities: u32 = 0xdfff_f7ff;
    let mut g = vec![10];
    g.extend_from_slice(b"8.0.36\0");
    g.extend_from_slice(&77u32.to_le_bytes());
    g.extend_from_slice(&nonce[..8]);
    g.push(0);
    g.extend_from_slice(&(capabilities as u16).to_le_bytes());
    g.push(255);
    g.extend_from_slice(&2u16.to_le_bytes());
    g.extend_from_slice(&((capabilities >> 16) as u16).to_le_bytes());
    g.push(21);
    g.extend_from_slice(&[0; 10]);
    g.extend_from_slice(&nonce[8..]);
    g.push(0);
    g.extend_from_slice(plugin.as_bytes());
    g.push(0);
    g
}

/// Runs the two queries after a login OK at `ok_seq`, with `read_only` as the answer.
fn finish_after_login(s: &mut Session, ok_seq: u8, read_only: &[u8]) -> MysqlStatus {
    let (seq, query) = sent(s.handle(packet(ok_seq, LOGIN_OK)).unwrap());
    assert_eq!((seq, &query[..]), (0, &b"\x03SELECT 1"[..]));
    assert_eq!(s.step(), Step::Query);
    // SELECT 1: one column, one row.
    let answer: &[&[u8]] = &[
        b"\x01",
        b"\x03def\0\0\0\x011\0\x0c?\0\x01\0\0\0\x08\x81\0\0\0\0",
        b"\xfe\0\0\x02\0",
        b"\x011",
    ];
    for (i, p) in answer.iter().enumerate() {
        assert_eq!(s.handle(packet(i as u8 + 1, p)).unwrap(), Action::Wait);
    }
    let (seq, query) = sent(s.handle(packet(5, b"\xfe\0\0\x02\0")).unwrap());
    assert_eq!(seq, 0);
    assert_eq!(&query[1..], READ_ONLY_QUERY.as_bytes());
    assert_eq!(s.step(), Step::ReadOnly);
    for (i, p) in READ_ONLY_OFF.iter().enumerate() {
        let p: &[u8] = if i == 3 { read_only } else { p };
        let action = s.handle(packet(i as u8 + 1, p)).unwrap();
        if i < 4 {
            assert_eq!(action, Action::Wait);
        } else {
            let Action::Done(status) = action else {
                panic!("expected the verdict, got {action:?}");
            };
            assert!(s.can_quit());
            assert_eq!(s.quit(), vec![1, 0, 0, 0, 1]);
            return status;
        }
    }
    unreachable!()
}

#[test]
fn mariadb_native_login_and_queries() {
    let mut s = Session::new(settings("mon"));
    assert_eq!(s.step(), Step::Greeting);
    let (seq, response) = sent(s.handle(packet(0, GREETING)).unwrap());
    assert_eq!(seq, 1);
    let (user, auth, plugin) = login_parts(&response);
    assert_eq!(user, "mon");
    assert_eq!(auth, native_password(b"secret", GREETING_NONCE));
    assert_eq!(plugin, "mysql_native_password");
    let status = finish_after_login(&mut s, 2, b"\x010");
    assert_eq!(
        status,
        MysqlStatus {
            read_only: false,
            server_version: "10.11.19-MariaDB-0+deb12u1".to_string(),
            connection_id: 13,
            auth_plugin: "mysql_native_password".to_string(),
        }
    );
    let mut s = Session::new(settings("mon"));
    s.handle(packet(0, GREETING)).unwrap();
    assert!(finish_after_login(&mut s, 2, b"\x011").read_only);
}

#[test]
fn mariadb_declined_ed25519_then_native() {
    let mut s = Session::new(settings("multi"));
    s.handle(packet(0, GREETING)).unwrap();
    // Declined: an empty answer, in sequence.
    let (seq, answer) = sent(s.handle(packet(2, SWITCH_TO_ED25519)).unwrap());
    assert_eq!((seq, answer.len()), (3, 0));
    let (seq, answer) = sent(s.handle(packet(4, SWITCH_TO_NATIVE)).unwrap());
    assert_eq!(seq, 5);
    assert_eq!(answer, native_password(b"secret", GREETING_NONCE));
    let status = finish_after_login(&mut s, 6, b"\x010");
    assert_eq!(status.auth_plugin, "mysql_native_password");
}

#[test]
fn mariadb_ed25519_only_is_a_clear_error() {
    let mut s = Session::new(settings("ed"));
    s.handle(packet(0, GREETING)).unwrap();
    sent(s.handle(packet(2, SWITCH_TO_ED25519)).unwrap());
    let err = s.handle(packet(4, ACCESS_DENIED)).unwrap_err();
    match &err {
        ErrorKind::UnsupportedPlugin {
            user,
            plugin,
            error: Some(e),
        } => {
            assert_eq!(
                (user.as_str(), plugin.as_str(), e.code),
                ("ed", "client_ed25519", 1045)
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("client_ed25519"), "{err}");
    assert!(!s.can_quit());
}

#[test]
fn refused_connections() {
    for (bytes, code) in [(HOST_BLOCKED, 1129), (HOST_NOT_ALLOWED, 1130)] {
        let mut s = Session::new(settings("mon"));
        match s.handle(packet(0, bytes)) {
            Err(ErrorKind::Refused(e)) => assert_eq!(e.code, code),
            other => panic!("{other:?}"),
        }
    }
    let mut s = Session::new(settings("mon"));
    match s.handle(packet(0, b"\xff\x10\x04Too many connections")) {
        Err(e @ ErrorKind::Refused(_)) => {
            assert_eq!(
                e.to_string(),
                "the server refused the connection: 1040 Too many connections"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_password_and_failed_query() {
    let mut s = Session::new(settings("ed"));
    s.handle(packet(0, GREETING)).unwrap();
    match s.handle(packet(2, ACCESS_DENIED)) {
        Err(ErrorKind::LoginRefused { user, error }) => {
            assert_eq!((user.as_str(), error.code), ("ed", 1045))
        }
        other => panic!("{other:?}"),
    }
    let mut s = Session::new(settings("mon"));
    s.handle(packet(0, GREETING)).unwrap();
    sent(s.handle(packet(2, LOGIN_OK)).unwrap());
    let err = s
        .handle(packet(1, b"\xff\x7a\x04#42S02Table 'x.y' doesn't exist"))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "query \"SELECT 1\" failed: 1146 Table 'x.y' doesn't exist"
    );
    // Still logged in with nothing outstanding: the shell can say COM_QUIT.
    assert!(s.can_quit());
}

#[test]
fn sequence_ids_are_checked() {
    let mut s = Session::new(settings("mon"));
    assert!(matches!(
        s.handle(packet(1, GREETING)),
        Err(ErrorKind::Protocol {
            step: Step::Greeting,
            ..
        })
    ));
    let mut s = Session::new(settings("mon"));
    s.handle(packet(0, GREETING)).unwrap();
    assert!(matches!(
        s.handle(packet(3, LOGIN_OK)),
        Err(ErrorKind::Protocol {
            step: Step::Login,
            ..
        })
    ));
}

#[test]
fn database_goes_into_the_handshake() {
    let mut s = Session::new(Settings {
        database: Some("shop".to_string()),
        ..settings("mon")
    });
    let (_, response) = sent(s.handle(packet(0, GREETING)).unwrap());
    let flags = u32::from_le_bytes(response[..4].try_into().unwrap());
    assert_ne!(flags & caps::CONNECT_WITH_DB, 0);
    assert!(response.ends_with(b"shop\0mysql_native_password\0"));
}

const NONCE: &[u8; 20] = b"0123456789abcdefghij";

#[test]
fn caching_sha2_fast_path() {
    let mut s = Session::new(settings("mon"));
    let (seq, response) = sent(
        s.handle(packet(0, &mysql8_greeting("caching_sha2_password", NONCE)))
            .unwrap(),
    );
    assert_eq!(seq, 1);
    let (_, auth, plugin) = login_parts(&response);
    assert_eq!(plugin, "caching_sha2_password");
    assert_eq!(auth, caching_sha2_password(b"secret", NONCE));
    assert_eq!(s.handle(packet(2, b"\x01\x03")).unwrap(), Action::Wait);
    let status = finish_after_login(&mut s, 3, b"\x010");
    assert_eq!(status.server_version, "8.0.36");
    assert_eq!(status.auth_plugin, "caching_sha2_password");
}

#[test]
fn caching_sha2_full_authentication_over_rsa() {
    let mut s = Session::new(settings("mon"));
    s.handle(packet(0, &mysql8_greeting("caching_sha2_password", NONCE)))
        .unwrap();
    // "Perform full authentication": ask for the key.
    assert_eq!(
        sent(s.handle(packet(2, b"\x01\x04")).unwrap()),
        (3, vec![2])
    );
    let mut key = vec![1];
    key.extend_from_slice(TEST_PUBLIC_KEY.as_bytes());
    let (seq, encrypted) = sent(s.handle(packet(4, &key)).unwrap());
    assert_eq!(seq, 5);
    let private = RsaPrivateKey::from_pkcs8_pem(TEST_PRIVATE_KEY).unwrap();
    let plain = private.decrypt(Oaep::new::<Sha1>(), &encrypted).unwrap();
    let password: Vec<u8> = plain
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ NONCE[i % 20])
        .collect();
    assert_eq!(password, b"secret\0");
    // Nothing but OK or ERR may follow the password.
    let mut again = Session::new(settings("mon"));
    again
        .handle(packet(0, &mysql8_greeting("caching_sha2_password", NONCE)))
        .unwrap();
    again.handle(packet(2, b"\x01\x04")).unwrap();
    again.handle(packet(4, &key)).unwrap();
    assert!(again.handle(packet(6, b"\x01\x03")).is_err());
    finish_after_login(&mut s, 6, b"\x011");
}

#[test]
fn mysql8_switches_a_native_user() {
    // MySQL 8 announces caching_sha2_password; a mysql_native_password account gets a switch
    // with a fresh nonce.
    let mut s = Session::new(settings("mon"));
    s.handle(packet(0, &mysql8_greeting("caching_sha2_password", NONCE)))
        .unwrap();
    let mut switch = b"\xfemysql_native_password\0".to_vec();
    switch.extend_from_slice(b"ABCDEFGHIJKLMNOPQRST\0");
    let (seq, answer) = sent(s.handle(packet(2, &switch)).unwrap());
    assert_eq!(seq, 3);
    assert_eq!(answer, native_password(b"secret", b"ABCDEFGHIJKLMNOPQRST"));
    let status = finish_after_login(&mut s, 4, b"\x010");
    assert_eq!(status.auth_plugin, "mysql_native_password");
}

#[test]
fn sha256_password_over_rsa() {
    let mut s = Session::new(settings("mon"));
    let (_, response) = sent(
        s.handle(packet(0, &mysql8_greeting("sha256_password", NONCE)))
            .unwrap(),
    );
    let (_, auth, plugin) = login_parts(&response);
    assert_eq!((auth, plugin.as_str()), (vec![1], "sha256_password"));
    let mut key = vec![1];
    key.extend_from_slice(TEST_PUBLIC_KEY.as_bytes());
    let (seq, encrypted) = sent(s.handle(packet(2, &key)).unwrap());
    assert_eq!((seq, encrypted.len()), (3, 256));
    finish_after_login(&mut s, 4, b"\x010");
}

#[test]
fn unknown_default_plugin_gets_a_native_answer() {
    let mut s = Session::new(settings("mon"));
    let (_, response) = sent(
        s.handle(packet(0, &mysql8_greeting("auth_gssapi_client", NONCE)))
            .unwrap(),
    );
    let (_, auth, plugin) = login_parts(&response);
    assert_eq!(plugin, "mysql_native_password");
    assert_eq!(auth, native_password(b"secret", NONCE));
}

#[test]
fn endless_auth_switches_are_refused() {
    let mut s = Session::new(settings("mon"));
    s.handle(packet(0, GREETING)).unwrap();
    let mut seq = 2;
    let mut result = Ok(Action::Wait);
    for _ in 0..10 {
        result = s.handle(packet(seq, SWITCH_TO_NATIVE));
        if result.is_err() {
            break;
        }
        seq += 2;
    }
    assert!(
        matches!(result, Err(ErrorKind::Protocol { .. })),
        "{result:?}"
    );
}

#[test]
fn abandoned_session_quits_after_login_or_current_command() {
    let mut s = Session::new(settings("mon"));
    s.handle(packet(0, GREETING)).unwrap();
    s.abandon();
    assert_eq!(s.handle(packet(2, LOGIN_OK)).unwrap(), Action::Quit);
    assert!(s.can_quit());

    let mut s = Session::new(settings("mon"));
    s.handle(packet(0, GREETING)).unwrap();
    sent(s.handle(packet(2, LOGIN_OK)).unwrap());
    assert!(s.logged_in() && !s.can_quit());
    s.abandon();
    assert_eq!(
        s.handle(packet(1, b"\0\0\0\x02\0\0\0")).unwrap(),
        Action::Quit
    );
}

#[test]
fn frames_long_queries_across_packets() {
    let long = "SELECT '".to_string() + &"x".repeat(super::packet::MAX_CHUNK) + "'";
    let mut s = Session::new(Settings {
        query: long.clone(),
        ..settings("mon")
    });
    s.handle(packet(0, GREETING)).unwrap();
    let Action::Send(bytes) = s.handle(packet(2, LOGIN_OK)).unwrap() else {
        panic!("expected the query");
    };
    let mut r = PacketReader::new();
    r.push(&bytes);
    let p = r.next_packet().unwrap().unwrap();
    assert_eq!((p.first_seq, p.last_seq), (0, 1));
    assert_eq!(&p.payload[1..], long.as_bytes());
    // The answer continues the sequence after the last chunk.
    let (frame_bytes, _) = frame(2, b"\0\0\0\x02\0\0\0");
    let mut r = PacketReader::new();
    r.push(&frame_bytes);
    assert!(matches!(
        s.handle(r.next_packet().unwrap().unwrap()),
        Ok(Action::Send(_))
    ));
}
