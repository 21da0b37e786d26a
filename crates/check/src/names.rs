//! How keepalived names real and virtual servers in its log lines, so that operators' greps keep
//! working: `[192.168.66.253]:tcp:3306` for a real server (`format_rs()`), and the same, `FWM 7`
//! or `[group]:0` for a virtual server (`format_vs()`).

use halb_config::model::{Protocol, VirtualServer, VirtualServerKey};
use std::net::IpAddr;

/// keepalived's `[ADDR]:PROTO:PORT` (`inet_sockaddrtotrio()`); a firewall-mark service has no
/// protocol, which keepalived prints as `none`.
pub fn trio(ip: IpAddr, protocol: Option<Protocol>, port: u16) -> String {
    let proto = match protocol {
        Some(Protocol::Tcp) => "tcp",
        Some(Protocol::Udp) => "udp",
        Some(Protocol::Sctp) => "sctp",
        None => "none",
    };
    format!("[{ip}]:{proto}:{port}")
}

/// A real server of `vs` as keepalived's checkers name it.
pub fn real_server(vs: &VirtualServer, ip: IpAddr, port: u16) -> String {
    trio(ip, vs.protocol, port)
}

/// A virtual server as keepalived names it.
pub fn virtual_server(vs: &VirtualServer) -> String {
    match &vs.key {
        VirtualServerKey::Addr { ip, port } => trio(*ip, vs.protocol, *port),
        VirtualServerKey::Fwmark(mark) => format!("FWM {mark}"),
        // keepalived prints the port of the (unset) service address of a group: 0.
        VirtualServerKey::Group(name) => format!("[{name}]:0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trio_matches_keepalived() {
        let ip: IpAddr = "192.168.66.253".parse().unwrap();
        assert_eq!(
            trio(ip, Some(Protocol::Tcp), 3306),
            "[192.168.66.253]:tcp:3306"
        );
        let ip6: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(trio(ip6, Some(Protocol::Udp), 53), "[fd00::1]:udp:53");
        assert_eq!(trio(ip, None, 0), "[192.168.66.253]:none:0");
    }

    #[test]
    fn virtual_server_names() {
        let vs = VirtualServer::new(VirtualServerKey::Fwmark(7));
        assert_eq!(virtual_server(&vs), "FWM 7");
        let mut vs = VirtualServer::new(VirtualServerKey::Addr {
            ip: "192.168.66.251".parse().unwrap(),
            port: 3306,
        });
        vs.protocol = Some(Protocol::Tcp);
        assert_eq!(virtual_server(&vs), "[192.168.66.251]:tcp:3306");
    }
}
