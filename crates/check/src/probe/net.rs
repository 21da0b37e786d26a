//! Where a probe connects and how its socket is set up: keepalived's `connect_ip`,
//! `connect_port`, `bindto`, `bind_port`, `bind_if` (SO_BINDTODEVICE) and `fwmark` (SO_MARK),
//! and the whole-probe deadline (`connect_timeout`).

use super::ProbeFailure;
use halb_config::model::CheckerCommon;
use socket2::{Domain, Protocol, Socket, Type};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

/// Where and how a probe connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `connect_ip`:`connect_port`, by default the real server's address and port.
    pub connect: SocketAddr,
    /// `bindto` / `bind_port`.
    pub bind: Option<SocketAddr>,
    /// `bind_if`: SO_BINDTODEVICE.
    pub bind_if: Option<String>,
    /// `fwmark`: SO_MARK.
    pub fwmark: Option<u32>,
    /// `connect_timeout`: the deadline of the whole probe.
    pub timeout: Duration,
}

impl Target {
    /// A plain target: no binding, no mark.
    pub fn new(connect: SocketAddr, timeout: Duration) -> Target {
        Target {
            connect,
            bind: None,
            bind_if: None,
            fwmark: None,
            timeout,
        }
    }

    /// The target of a checker of the real server `rs_ip`:`rs_port`.
    pub fn from_config(
        common: &CheckerCommon,
        rs_ip: IpAddr,
        rs_port: u16,
        timeout: Duration,
    ) -> Target {
        let (ip, port) = common.connect_to(rs_ip, rs_port);
        let connect = SocketAddr::new(ip, port);
        let bind = match (common.bindto, common.bind_port) {
            (Some(ip), port) => Some(SocketAddr::new(ip, port.unwrap_or(0))),
            // A source port alone: any address of the family.
            (None, Some(port)) => Some(SocketAddr::new(unspecified_like(&connect), port)),
            (None, None) => None,
        };
        Target {
            connect,
            bind,
            bind_if: common.bind_if.clone(),
            fwmark: common.fwmark,
            timeout,
        }
    }

    /// The peer as keepalived-style text: `[10.0.0.1]:80`.
    pub fn peer(&self) -> String {
        peer(self.connect)
    }

    /// A socket with the target's mark, device and source address set, not yet connected.
    pub(crate) fn socket(&self, ty: Type, protocol: Option<Protocol>) -> io::Result<Socket> {
        let domain = Domain::for_address(self.connect);
        let socket = Socket::new(domain, ty, protocol)?;
        socket.set_nonblocking(true)?;
        if let Some(mark) = self.fwmark {
            socket
                .set_mark(mark)
                .map_err(|e| context(e, format!("setting fwmark {mark}")))?;
        }
        if let Some(dev) = &self.bind_if {
            socket
                .bind_device(Some(dev.as_bytes()))
                .map_err(|e| context(e, format!("binding to device {dev}")))?;
        }
        if let Some(bind) = self.bind {
            socket
                .bind(&bind.into())
                .map_err(|e| context(e, format!("binding to {}", peer(bind))))?;
        }
        Ok(socket)
    }

    /// A TCP connection to the target.
    pub(crate) async fn tcp(&self) -> Result<TcpStream, ProbeFailure> {
        let socket = self
            .socket(Type::STREAM, Some(Protocol::TCP))
            .map_err(|e| self.bind_failure(e))?;
        let std: std::net::TcpStream = socket.into();
        let socket = TcpSocket::from_std_stream(std);
        socket.connect(self.connect).await.map_err(|e| {
            ProbeFailure::io(&e, format!("TCP connection to {} failed: {e}", self.peer()))
        })
    }

    /// A UDP socket connected to the target, so that ICMP errors come back as recv errors.
    pub(crate) fn udp(&self) -> Result<UdpSocket, ProbeFailure> {
        let socket = self
            .socket(Type::DGRAM, Some(Protocol::UDP))
            .map_err(|e| self.bind_failure(e))?;
        socket
            .connect(&self.connect.into())
            .map_err(|e| ProbeFailure::io(&e, format!("UDP connect to {}: {e}", self.peer())))?;
        let std: std::net::UdpSocket = socket.into();
        UdpSocket::from_std(std).map_err(|e| self.setup_failure(e))
    }

    pub(crate) fn setup_failure(&self, e: io::Error) -> ProbeFailure {
        ProbeFailure::new(format!("socket for {}: {e}", self.peer()))
    }

    /// keepalived reschedules a TCP or UDP check whose socket cannot be made or bound ("TCP
    /// socket bind failed. Rescheduling."): the source address may simply not be here yet.
    fn bind_failure(&self, e: io::Error) -> ProbeFailure {
        ProbeFailure::local(format!("socket for {}: {e}", self.peer()))
    }

    /// Runs `probe` within the target's deadline; on timeout the failure names the step the
    /// probe was at.
    pub(crate) async fn within_deadline<T, F>(
        &self,
        step: &Step,
        probe: F,
    ) -> Result<T, ProbeFailure>
    where
        F: Future<Output = Result<T, ProbeFailure>>,
    {
        match tokio::time::timeout(self.timeout, probe).await {
            Ok(result) => result,
            Err(_) => Err(ProbeFailure::timeout(format!(
                "timeout {} {} after {:?}",
                step.get(),
                self.peer(),
                self.timeout
            ))),
        }
    }
}

/// The step a probe is at, for the message when its deadline passes.
#[derive(Debug)]
pub(crate) struct Step(Mutex<&'static str>);

impl Step {
    pub(crate) fn new(first: &'static str) -> Step {
        Step(Mutex::new(first))
    }

    pub(crate) fn set(&self, step: &'static str) {
        if let Ok(mut s) = self.0.lock() {
            *s = step;
        }
    }

    pub(crate) fn get(&self) -> &'static str {
        self.0.lock().map(|s| *s).unwrap_or("probing")
    }
}

/// `[ip]:port` for both families, as keepalived prints a peer.
pub fn peer(addr: SocketAddr) -> String {
    format!("[{}]:{}", addr.ip(), addr.port())
}

fn unspecified_like(addr: &SocketAddr) -> IpAddr {
    match addr {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

fn context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_from_config() {
        let common = CheckerCommon {
            connect_port: Some(8080),
            bind_port: Some(4000),
            fwmark: Some(3),
            ..CheckerCommon::default()
        };
        let t = Target::from_config(
            &common,
            "10.0.0.1".parse().unwrap(),
            80,
            Duration::from_secs(5),
        );
        assert_eq!(t.connect, "10.0.0.1:8080".parse().unwrap());
        assert_eq!(t.bind, Some("0.0.0.0:4000".parse().unwrap()));
        assert_eq!(t.fwmark, Some(3));
        assert_eq!(t.peer(), "[10.0.0.1]:8080");
        let common = CheckerCommon {
            connect_ip: Some("fd00::2".parse().unwrap()),
            bindto: Some("fd00::1".parse().unwrap()),
            ..CheckerCommon::default()
        };
        let t = Target::from_config(
            &common,
            "10.0.0.1".parse().unwrap(),
            80,
            Duration::from_secs(5),
        );
        assert_eq!(t.connect, "[fd00::2]:80".parse().unwrap());
        assert_eq!(t.bind, Some("[fd00::1]:0".parse().unwrap()));
        assert_eq!(t.peer(), "[fd00::2]:80");
    }
}
