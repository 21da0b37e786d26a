//! The connection phase's packets: the server's initial handshake (protocol 10), the client's
//! HandshakeResponse41 and the server's auth switch request.

use super::packet::{Cursor, Malformed};

/// Capability flags (the client's and the server's share one numbering).
pub mod caps {
    /// MySQL: "new" (4.1) password hashes. MariaDB reads the same bit as CLIENT_MYSQL.
    pub const LONG_PASSWORD: u32 = 0x0000_0001;
    pub const CONNECT_WITH_DB: u32 = 0x0000_0008;
    pub const PROTOCOL_41: u32 = 0x0000_0200;
    pub const TRANSACTIONS: u32 = 0x0000_2000;
    /// 4.1 authentication: a 20-byte scramble and a length-prefixed auth response.
    pub const SECURE_CONNECTION: u32 = 0x0000_8000;
    pub const MULTI_RESULTS: u32 = 0x0002_0000;
    pub const PLUGIN_AUTH: u32 = 0x0008_0000;
}

/// The plugin a server that does not name one (no PLUGIN_AUTH) uses.
pub const NATIVE_PASSWORD: &str = "mysql_native_password";
pub const CACHING_SHA2_PASSWORD: &str = "caching_sha2_password";
pub const SHA256_PASSWORD: &str = "sha256_password";

/// utf8mb4_general_ci: every server since MySQL 5.5.3 and MariaDB 5.5 knows it.
pub const CHARSET_UTF8MB4: u8 = 45;

/// The prefix MariaDB puts before its version so that old MySQL clients accept it.
const MARIADB_VERSION_PREFIX: &str = "5.5.5-";

/// The server's initial handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// As the server reports it, without MariaDB's `5.5.5-` prefix.
    pub server_version: String,
    pub connection_id: u32,
    pub capabilities: u32,
    /// The auth plugin data (the nonce, 20 bytes for the password plugins).
    pub nonce: Vec<u8>,
    /// The server's default auth plugin; `None` when it does not speak PLUGIN_AUTH.
    pub auth_plugin: Option<String>,
}

impl Greeting {
    pub fn parse(payload: &[u8]) -> Result<Greeting, Malformed> {
        let mut c = Cursor::new(payload);
        let protocol = c.u8("empty greeting")?;
        if protocol != 10 {
            return Err(Malformed(
                "greeting is not protocol version 10 (not a MySQL 4.1+ or MariaDB server?)",
            ));
        }
        let version = c.nul_str("greeting: server version without NUL", false)?;
        let mut server_version = String::from_utf8_lossy(version).into_owned();
        if let Some(v) = server_version.strip_prefix(MARIADB_VERSION_PREFIX) {
            if !v.is_empty() {
                server_version = v.to_string();
            }
        }
        let connection_id = c.u32("greeting: short connection id")?;
        let mut nonce = c.bytes(8, "greeting: short auth plugin data")?.to_vec();
        c.u8("greeting: missing filler")?;
        let mut capabilities = u32::from(c.u16("greeting: missing capability flags")?);
        let mut auth_plugin = None;
        if !c.is_empty() {
            c.u8("greeting: missing character set")?;
            c.u16("greeting: missing status flags")?;
            capabilities |= u32::from(c.u16("greeting: missing upper capability flags")?) << 16;
            let data_len = c.u8("greeting: missing auth plugin data length")?;
            // Reserved; MariaDB keeps its extended capabilities in the last four.
            c.bytes(10, "greeting: short reserved bytes")?;
            if capabilities & caps::SECURE_CONNECTION != 0 {
                // At least 13 bytes: the rest of the nonce and its NUL terminator.
                let n = usize::from(data_len).saturating_sub(8).max(13);
                let part2 = c.bytes(n, "greeting: short auth plugin data (part 2)")?;
                let part2 = part2.strip_suffix(&[0]).unwrap_or(part2);
                nonce.extend_from_slice(part2);
            }
            if capabilities & caps::PLUGIN_AUTH != 0 {
                let name = c.nul_str("greeting: auth plugin name", true)?;
                auth_plugin = Some(String::from_utf8_lossy(name).into_owned());
            }
        }
        Ok(Greeting {
            server_version,
            connection_id,
            capabilities,
            nonce,
            auth_plugin,
        })
    }
}

/// The capabilities the checker asks for, given the server's. Fails if the server lacks the
/// 4.1 protocol and authentication the checker needs (MySQL before 4.1).
pub fn client_capabilities(server: u32, with_database: bool) -> Result<u32, &'static str> {
    let needed = caps::PROTOCOL_41 | caps::SECURE_CONNECTION;
    if server & needed != needed {
        return Err("the server does not speak the 4.1 protocol (MySQL 4.1 or newer is needed)");
    }
    if with_database && server & caps::CONNECT_WITH_DB == 0 {
        return Err("the server cannot select a database at login (no CONNECT_WITH_DB)");
    }
    let mut wanted = caps::LONG_PASSWORD
        | caps::PROTOCOL_41
        | caps::TRANSACTIONS
        | caps::SECURE_CONNECTION
        | caps::MULTI_RESULTS
        | caps::PLUGIN_AUTH;
    if with_database {
        wanted |= caps::CONNECT_WITH_DB;
    }
    Ok(wanted & server)
}

/// The client's HandshakeResponse41 payload.
pub fn handshake_response(
    capabilities: u32,
    user: &str,
    auth_response: &[u8],
    database: Option<&str>,
    auth_plugin: &str,
) -> Vec<u8> {
    let mut p = Vec::with_capacity(64 + user.len() + auth_response.len());
    p.extend_from_slice(&capabilities.to_le_bytes());
    // Max packet size: what the checker accepts at most (it never sends large packets).
    p.extend_from_slice(&(16u32 << 20).to_le_bytes());
    p.push(CHARSET_UTF8MB4);
    p.extend_from_slice(&[0; 23]);
    p.extend_from_slice(user.as_bytes());
    p.push(0);
    // The scrambles are 20 or 32 bytes; a one-byte length is enough (SECURE_CONNECTION).
    let n = auth_response.len().min(255);
    p.push(n as u8);
    p.extend_from_slice(&auth_response[..n]);
    if capabilities & caps::CONNECT_WITH_DB != 0 {
        if let Some(db) = database {
            p.extend_from_slice(db.as_bytes());
            p.push(0);
        }
    }
    if capabilities & caps::PLUGIN_AUTH != 0 {
        p.extend_from_slice(auth_plugin.as_bytes());
        p.push(0);
    }
    p
}

/// An auth switch request (0xfe during login): the plugin to use now, with its own nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSwitch {
    pub plugin: String,
    pub nonce: Vec<u8>,
}

impl AuthSwitch {
    pub fn parse(payload: &[u8]) -> Result<AuthSwitch, Malformed> {
        let mut c = Cursor::new(payload);
        c.u8("empty auth switch request")?;
        if c.is_empty() {
            // The pre-4.1 form, a bare 0xfe: "send the old (3.23) password hash".
            return Ok(AuthSwitch {
                plugin: "mysql_old_password".to_string(),
                nonce: Vec::new(),
            });
        }
        let name = c.nul_str("auth switch request: plugin name without NUL", true)?;
        let data = c.rest();
        // The password plugins send their 20-byte nonce followed by a NUL.
        let data = data.strip_suffix(&[0]).unwrap_or(data);
        Ok(AuthSwitch {
            plugin: String::from_utf8_lossy(name).into_owned(),
            nonce: data.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::mysql::fixtures::{GREETING as MARIADB_GREETING, GREETING_NONCE};

    #[test]
    fn parses_a_mariadb_greeting() {
        let g = Greeting::parse(MARIADB_GREETING).unwrap();
        assert_eq!(g.server_version, "10.11.19-MariaDB-0+deb12u1");
        assert_eq!(g.connection_id, 13);
        assert_eq!(&g.nonce[..], &GREETING_NONCE[..]);
        assert_eq!(g.auth_plugin.as_deref(), Some(NATIVE_PASSWORD));
        assert_ne!(g.capabilities & caps::PLUGIN_AUTH, 0);
        // MariaDB leaves CLIENT_MYSQL unset.
        assert_eq!(g.capabilities & caps::LONG_PASSWORD, 0);
    }

    #[test]
    fn parses_a_greeting_without_the_final_nul() {
        let mut g = MARIADB_GREETING.to_vec();
        g.pop();
        assert_eq!(
            Greeting::parse(&g).unwrap().auth_plugin.as_deref(),
            Some(NATIVE_PASSWORD)
        );
    }

    #[test]
    fn every_truncation_of_a_greeting_is_an_error_or_a_shorter_greeting() {
        for n in 0..MARIADB_GREETING.len() {
            // Must not panic; a cut inside a required field is an error.
            let _ = Greeting::parse(&MARIADB_GREETING[..n]);
        }
        assert!(Greeting::parse(&MARIADB_GREETING[..30]).is_err());
    }

    #[test]
    fn refuses_other_protocols() {
        assert!(Greeting::parse(b"\x09old\0").is_err());
        assert!(Greeting::parse(b"HTTP/1.1 400 Bad Request\r\n").is_err());
    }

    #[test]
    fn capabilities_follow_the_server() {
        let g = Greeting::parse(MARIADB_GREETING).unwrap();
        let c = client_capabilities(g.capabilities, true).unwrap();
        assert_ne!(c & caps::CONNECT_WITH_DB, 0);
        assert_eq!(c & caps::LONG_PASSWORD, 0);
        let c = client_capabilities(g.capabilities, false).unwrap();
        assert_eq!(c & caps::CONNECT_WITH_DB, 0);
        assert!(client_capabilities(caps::PROTOCOL_41, false).is_err());
    }

    #[test]
    fn response_layout() {
        let caps = caps::PROTOCOL_41 | caps::SECURE_CONNECTION | caps::PLUGIN_AUTH;
        let p = handshake_response(
            caps | caps::CONNECT_WITH_DB,
            "mon",
            &[1, 2],
            Some("db"),
            "p",
        );
        assert_eq!(&p[..4], &(caps | caps::CONNECT_WITH_DB).to_le_bytes());
        assert_eq!(p[8], CHARSET_UTF8MB4);
        assert_eq!(&p[32..], b"mon\0\x02\x01\x02db\0p\0");
        let p = handshake_response(caps, "mon", &[], Some("db"), "p");
        assert_eq!(&p[32..], b"mon\0\0p\0");
    }

    #[test]
    fn auth_switch_forms() {
        let s = AuthSwitch::parse(b"\xfemysql_native_password\0abcdefghijklmnopqrst\0").unwrap();
        assert_eq!(s.plugin, NATIVE_PASSWORD);
        assert_eq!(s.nonce, b"abcdefghijklmnopqrst");
        let s = AuthSwitch::parse(b"\xfeclient_ed25519\0abcdefghijklmnopqrstuvwxyz012345").unwrap();
        assert_eq!(s.plugin, "client_ed25519");
        assert_eq!(s.nonce.len(), 32);
        assert_eq!(
            AuthSwitch::parse(b"\xfe").unwrap().plugin,
            "mysql_old_password"
        );
    }
}
