//! Packets recorded from MariaDB 10.11.19 (Debian 12), for the replay tests. Payloads only; the
//! comments give each one's sequence id.
//!
//! The conversation is a login as a user `multi` identified
//! `VIA ed25519 USING PASSWORD('secret') OR mysql_native_password USING PASSWORD('secret')`:
//! the server first asks for client_ed25519, and after the client declines, for
//! mysql_native_password with the greeting's nonce.

/// seq 0.
pub const GREETING: &[u8] = b"\n5.5.5-10.11.19-MariaDB-0+deb12u1\0\r\0\0\x001rkCK0Ki\0\xfe\xf7\x08\x02\0\xff\x81\x15\0\0\0\0\0\0\x1d\0\0\0Q8clry)Zm7h)\0mysql_native_password\0";

/// The nonce of [`GREETING`].
pub const GREETING_NONCE: &[u8; 20] = b"1rkCK0KiQ8clry)Zm7h)";

/// seq 2, after the handshake response.
pub const SWITCH_TO_ED25519: &[u8] = b"\xfeclient_ed25519\0\x9f\xd7Z\xac\x9f\xd1\xfe\x93&\r\x04\x1bV2\xdf\xbd)\xddG\x0cR}\xc7\t\xce<\xf8\xa5|\xdc\xd4\x9a";

/// seq 4, after the empty answer to [`SWITCH_TO_ED25519`].
pub const SWITCH_TO_NATIVE: &[u8] = b"\xfemysql_native_password\x001rkCK0KiQ8clry)Zm7h)\0";

/// seq 6 here; seq 2 for a user of mysql_native_password.
pub const LOGIN_OK: &[u8] = b"\0\0\0\x02\0\0\0";

/// seq 2 (or 4): the login of user `ed`, identified only via ed25519, after the declined switch.
pub const ACCESS_DENIED: &[u8] =
    b"\xff\x15\x04#28000Access denied for user 'ed'@'127.0.0.1' (using password: YES)";

/// seq 1..=5: the answer to `SELECT @@global.read_only` with read_only off.
pub const READ_ONLY_OFF: &[&[u8]] = &[
    b"\x01",
    b"\x03def\0\0\0\x12@@global.read_only\0\x0c?\0\x01\0\0\0\x08\x80\0\0\0\0",
    b"\xfe\0\0\x02\0",
    b"\x010",
    b"\xfe\0\0\x02\0",
];

/// The server's answer when it refuses a connection from a host with too many broken
/// handshakes (seq 0, instead of the greeting; recorded with max_connect_errors=2).
pub const HOST_BLOCKED: &[u8] = b"\xffi\x04Host '127.0.0.2' is blocked because of many connection errors; unblock with 'mariadb-admin flush-hosts'";

/// The same, for a host no account matches.
pub const HOST_NOT_ALLOWED: &[u8] =
    b"\xffj\x04Host '127.0.0.2' is not allowed to connect to this MariaDB server";
