//! Sockets shared by the client and the server: listeners with a deep backlog, connects from
//! a chosen source address, and the one request/reply exchange.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

pub const REQUEST: &[u8] = b"GET\n";
pub const REPLY: &[u8] = b"OK\n";

/// A listener whose backlog does not drop SYNs under a connection storm (the default of std
/// and tokio is 128 / 1024).
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("bind {addr}: {e}")))?;
    sock.listen(65535)?;
    TcpListener::from_std(sock.into())
}

/// Connects to `target`, from `source` when given. IP_BIND_ADDRESS_NO_PORT lets the kernel
/// choose the port at connect time, against the full 4-tuple, instead of at bind time.
pub async fn connect(target: SocketAddr, source: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    let stream = match source {
        None => TcpStream::connect(target).await?,
        Some(src) => {
            let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
            sock.set_nonblocking(true)?;
            let one: libc::c_int = 1;
            // SAFETY: a valid socket fd and a c_int option value of the right size.
            let rc = unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_BIND_ADDRESS_NO_PORT,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            sock.bind(&SocketAddr::new(src.into(), 0).into())
                .map_err(|e| io::Error::new(e.kind(), format!("bind {src}: {e}")))?;
            let std_stream: std::net::TcpStream = sock.into();
            TcpSocket::from_std_stream(std_stream)
                .connect(target)
                .await?
        }
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Sends the request and reads until the whole reply has come back.
pub async fn exchange(stream: &mut TcpStream) -> io::Result<()> {
    stream.write_all(REQUEST).await?;
    let mut buf = [0u8; 16];
    let mut got = 0;
    while got < REPLY.len() {
        let n = stream.read(&mut buf[got..]).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before the whole reply",
            ));
        }
        got += n;
    }
    Ok(())
}
