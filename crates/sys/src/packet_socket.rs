//! `AF_PACKET` sockets: whole Ethernet frames in and out of one interface, for what the kernel
//! has no call for (a gratuitous ARP, an unsolicited NA with the override flag, a SYN addressed
//! to a real server's MAC for DR_PATH_CHECK). Needs `CAP_NET_RAW`.
//!
//! Errors are the system call's alone: each caller says what it was doing in its own words.

use std::io::{self, Read};
use std::mem::size_of;

use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

/// One instruction of a classic BPF program (`struct sock_filter`).
pub use socket2::SockFilter;

/// An `AF_PACKET` raw socket bound to one interface. It receives the frames of one ethertype
/// arriving there, or none at all.
pub struct PacketSocket {
    fd: AsyncFd<Socket>,
}

impl PacketSocket {
    /// A socket bound to interface `index`, receiving the frames of `ethertype` (`None`: none,
    /// for a socket that only sends). Must be called inside a tokio runtime with I/O enabled.
    pub fn open(index: u32, ethertype: Option<u16>) -> io::Result<PacketSocket> {
        // The kernel takes the protocol in network byte order, in the socket call and in
        // sockaddr_ll alike; 0 registers for nothing, so the socket never queues a frame.
        let protocol = ethertype.unwrap_or(0).to_be();
        let socket = Socket::new(
            Domain::PACKET,
            Type::RAW,
            Some(Protocol::from(i32::from(protocol))),
        )?;
        socket.set_nonblocking(true)?;
        socket.bind(&link_layer_address(index, protocol)?)?;
        // SAFETY: the Socket owns its descriptor, keeps it open until it is dropped (with the
        // AsyncFd that owns it) and always reports the same one.
        let fd = unsafe { AsyncFd::register(socket) }.map_err(|e| e.into_parts().1)?;
        Ok(PacketSocket { fd })
    }

    /// Sends `frame`, a whole Ethernet frame, out of the interface; returns the bytes sent.
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        self.fd.get_ref().send(frame)
    }

    /// Lets only what `program` accepts reach this socket, and drops the frames that were
    /// queued before it was attached.
    pub fn attach_filter(&self, program: &[SockFilter]) -> io::Result<()> {
        self.fd.get_ref().attach_filter(program)?;
        let mut buf = [0u8; 64];
        while self.try_recv(&mut buf)?.is_some() {}
        Ok(())
    }

    /// The next queued frame, cut to `buf`'s length, without waiting: its length in `buf`, or
    /// `None` when none is queued.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // `Read for &Socket`: recv(2) into an initialised buffer.
        let mut socket = self.fd.get_ref();
        match socket.read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The next frame, cut to `buf`'s length, or `None` at `until`.
    pub async fn recv_until(&self, buf: &mut [u8], until: Instant) -> io::Result<Option<usize>> {
        loop {
            let Ok(ready) = tokio::time::timeout_at(until, self.fd.readable()).await else {
                return Ok(None);
            };
            let mut guard = ready?;
            match self.try_recv(buf)? {
                Some(n) => return Ok(Some(n)),
                None => guard.clear_ready(),
            }
        }
    }
}

/// A `sockaddr_ll` for interface `index` and `protocol` (network byte order). socket2 builds
/// no link-layer addresses, so this one is written by hand.
fn link_layer_address(index: u32, protocol: u16) -> io::Result<SockAddr> {
    let index = i32::try_from(index).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface index {index} out of range"),
        )
    })?;
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: sockaddr_ll is one of the platform's sockaddr types and fits in the storage.
    let address = unsafe { storage.view_as::<libc::sockaddr_ll>() };
    address.sll_family = libc::AF_PACKET as libc::sa_family_t;
    address.sll_protocol = protocol;
    address.sll_ifindex = index;
    let len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: the family says AF_PACKET and the length is that of the sockaddr_ll written.
    Ok(unsafe { SockAddr::new(storage, len) })
}
