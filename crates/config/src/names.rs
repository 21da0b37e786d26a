//! How keepalived names what it checks and balances, shared by every part that logs or reports
//! on it: the address of a checker in the configuration ([`CheckerId`]) and keepalived's
//! spelling of real and virtual servers in its log lines (`[192.168.66.253]:tcp:3306`,
//! `FWM 7`, `[GROUP]:0`), so that operators' greps keep working.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::model::{Protocol, VirtualServerKey};

/// Which checker of which real server of which virtual server: indices into
/// `LvsConfig::virtual_servers`, its `real_servers` and their `checkers`. The health checkers
/// report under it and the virtual servers judge by it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct CheckerId {
    pub vs: usize,
    pub rs: usize,
    pub checker: usize,
}

impl CheckerId {
    pub fn new(vs: usize, rs: usize, checker: usize) -> Self {
        CheckerId { vs, rs, checker }
    }
}

/// keepalived's lower-case protocol in a name; a firewall-mark service has none, which
/// keepalived prints as `none`.
pub fn protocol_name(protocol: Option<Protocol>) -> &'static str {
    match protocol {
        Some(Protocol::Tcp) => "tcp",
        Some(Protocol::Udp) => "udp",
        Some(Protocol::Sctp) => "sctp",
        None => "none",
    }
}

/// keepalived's `[ADDR]:PROTO:PORT` (`inet_sockaddrtotrio()`, `FMT_RS`): a real server, a
/// sorry server, or an address virtual server.
pub fn trio(ip: IpAddr, protocol: Option<Protocol>, port: u16) -> String {
    format!("[{ip}]:{}:{port}", protocol_name(protocol))
}

/// A virtual server as keepalived names it (`FMT_VS`). A group's virtual servers are
/// `[GROUP]:N`, where the caller says which N its log lines use.
pub fn virtual_server(key: &VirtualServerKey, protocol: Option<Protocol>, group_n: u32) -> String {
    match key {
        VirtualServerKey::Addr { ip, port } => trio(*ip, protocol, *port),
        VirtualServerKey::Fwmark(mark) => format!("FWM {mark}"),
        VirtualServerKey::Group(name) => format!("[{name}]:{group_n}"),
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
        assert_eq!(
            virtual_server(&VirtualServerKey::Fwmark(7), None, 0),
            "FWM 7"
        );
        let addr = VirtualServerKey::Addr {
            ip: "192.168.66.251".parse().unwrap(),
            port: 3306,
        };
        assert_eq!(
            virtual_server(&addr, Some(Protocol::Tcp), 0),
            "[192.168.66.251]:tcp:3306"
        );
        let group = VirtualServerKey::Group("DB".into());
        assert_eq!(virtual_server(&group, Some(Protocol::Tcp), 2), "[DB]:2");
    }
}
