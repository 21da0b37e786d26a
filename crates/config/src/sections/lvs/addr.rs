//! Server addresses as keepalived reads them (`inet_stosockaddr()`), and as halb writes them.

use crate::read::parse_unsigned;
use std::net::IpAddr;

/// An address the way keepalived's `inet_stosockaddr()` takes it: anything from the first `-`
/// or `/` on is dropped (range and prefix notation), a `:` makes it IPv6, and the rest must be
/// a plain numeric address (no `%scope`).
pub fn parse_server_ip(s: &str) -> Option<IpAddr> {
    let end = s.find(['-', '/']).unwrap_or(s.len());
    let text = &s[..end];
    if text.contains(':') {
        text.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
    } else {
        text.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
    }
}

/// A server port: no word, or only zeros, is no port (0, as keepalived has allowed since 2.0.7);
/// otherwise a number in 1..=65535.
pub fn parse_server_port(s: Option<&str>) -> Option<u16> {
    match s {
        None => Some(0),
        Some(p) if p.bytes().all(|b| b == b'0') => Some(0),
        Some(p) => parse_unsigned(p)
            .ok()
            .filter(|v| (1..=65535).contains(v))
            .map(|v| v as u16),
    }
}

/// `IP:PORT`, or `[IPv6]:PORT`.
pub fn format_addr(ip: &IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// `IP PORT` for a configuration line, or `IP` alone for port 0.
pub fn addr_words(ip: &IpAddr, port: u16) -> String {
    if port == 0 {
        ip.to_string()
    } else {
        format!("{ip} {port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalived_address_forms() {
        assert_eq!(
            parse_server_ip("10.0.0.1-5"),
            Some("10.0.0.1".parse().expect("ip"))
        );
        assert_eq!(
            parse_server_ip("10.0.0.0/24"),
            Some("10.0.0.0".parse().expect("ip"))
        );
        assert_eq!(
            parse_server_ip("2001:db8::1"),
            Some("2001:db8::1".parse().expect("ip"))
        );
        assert_eq!(parse_server_ip("10.0.0.300"), None);
        assert_eq!(parse_server_ip("fe80::1%eth0"), None);
        assert_eq!(parse_server_ip("host.example"), None);
        assert_eq!(parse_server_port(None), Some(0));
        assert_eq!(parse_server_port(Some("000")), Some(0));
        assert_eq!(parse_server_port(Some("080")), Some(80));
        assert_eq!(parse_server_port(Some("65536")), None);
        assert_eq!(parse_server_port(Some("http")), None);
        assert_eq!(format_addr(&"::1".parse().expect("ip"), 80), "[::1]:80");
    }
}
