//! The sockets on the virtual address. They are bound with `IP_FREEBIND` (and
//! `IPV6_FREEBIND` for IPv6), so a BACKUP director listens on a VIP it does not hold yet and
//! serves the instant VRRP moves the address to it. TCP listeners carry `TCP_NODELAY`, which
//! Linux copies to every socket they accept: the relay forwards each read at once, and no
//! per-connection `setsockopt` is needed for it.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// A listening TCP socket on `addr` with room for `backlog` pending connections.
pub(crate) fn tcp(addr: SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    let socket = bound(addr, Type::STREAM, Protocol::TCP)?;
    socket.set_tcp_nodelay(true)?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// Sets what the clients' sockets inherit from a listener handed over by a predecessor (which
/// may not have set it).
pub(crate) fn prepare_inherited(listener: &std::net::TcpListener) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    SockRef::from(listener).set_tcp_nodelay(true)
}

/// A UDP socket on `addr`: it receives the clients' datagrams and sends the replies, so they
/// come from the address the clients sent to.
pub(crate) fn udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    Ok(bound(addr, Type::DGRAM, Protocol::UDP)?.into())
}

fn bound(addr: SocketAddr, kind: Type, protocol: Protocol) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    // A restarted daemon must rebind while its old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    match addr {
        SocketAddr::V4(_) => socket.set_freebind_v4(true)?,
        SocketAddr::V6(_) => {
            // An IPv6 VIP serves IPv6 only; an IPv4 service on the same port is its own socket.
            socket.set_only_v6(true)?;
            socket.set_freebind_v6(true)?;
            // Kernels before 4.15 know only the IPv4 option, which they honour on IPv6
            // sockets too; newer ones accept both.
            let _ = socket.set_freebind_v4(true);
        }
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_sockets_inherit_nodelay() {
        let listener = tcp("127.0.0.1:0".parse().unwrap(), 16).expect("listener");
        let addr = listener.local_addr().expect("local address");
        let _client = std::net::TcpStream::connect(addr).expect("connect");
        listener.set_nonblocking(false).expect("blocking accept");
        let (accepted, _) = listener.accept().expect("accept");
        assert!(accepted.nodelay().expect("TCP_NODELAY"));
    }
}
