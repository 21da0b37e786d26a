//! The proxy's listening sockets as one process hands them to the next (an upgrade that must
//! not refuse a single client, as HAProxy's `-x`): the old process exports duplicates of its
//! listeners, the new one serves on those very sockets instead of binding new ones (the
//! kernel's accept queue is shared, so no connection waiting in it is lost), and then the old
//! one stops accepting and lets its established connections finish.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use halb_lb::table::ProtocolKey;
use tokio::sync::{watch, Semaphore};

use super::stats::lock;

/// One listening socket and what it serves.
#[derive(Debug)]
pub struct HandedSocket {
    pub protocol: ProtocolKey,
    pub addr: SocketAddr,
    pub fd: OwnedFd,
}

/// Shared between the daemon and its proxy: the sockets inherited from a predecessor, the
/// ones bound now, and the switch that makes every listener stop accepting. Cloning gives
/// another handle on the same sockets.
#[derive(Debug, Clone)]
pub struct Listeners {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    sockets: Mutex<Sockets>,
    closing: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct Sockets {
    /// From the predecessor, until a service claims its socket.
    inherited: HashMap<(ProtocolKey, SocketAddr), OwnedFd>,
    /// A duplicate of each socket a service serves on now.
    bound: HashMap<(ProtocolKey, SocketAddr), OwnedFd>,
    /// The proxy's connection slots and how many there are: the taken ones are the TCP
    /// connections being served.
    slots: Option<(Arc<Semaphore>, usize)>,
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners {
            inner: Arc::new(Inner {
                sockets: Mutex::new(Sockets::default()),
                closing: watch::channel(false).0,
            }),
        }
    }
}

impl Listeners {
    /// Sockets from a predecessor: a service on the same protocol and address serves on them.
    pub fn inherit(&self, sockets: Vec<HandedSocket>) {
        let mut s = lock(&self.inner.sockets);
        for socket in sockets {
            s.inherited
                .insert((socket.protocol, socket.addr), socket.fd);
        }
    }

    /// How many inherited sockets no service has claimed yet.
    pub fn unclaimed(&self) -> usize {
        lock(&self.inner.sockets).inherited.len()
    }

    /// Duplicates of every socket served on now, for a successor.
    pub fn export(&self) -> io::Result<Vec<HandedSocket>> {
        let s = lock(&self.inner.sockets);
        s.bound
            .iter()
            .map(|(&(protocol, addr), fd)| {
                Ok(HandedSocket {
                    protocol,
                    addr,
                    fd: fd.try_clone()?,
                })
            })
            .collect()
    }

    /// Every listener stops accepting (its socket stays open in the successor); established
    /// connections go on.
    pub fn close(&self) {
        self.inner.closing.send_replace(true);
    }

    /// The TCP connections being served.
    pub fn active_connections(&self) -> usize {
        match &lock(&self.inner.sockets).slots {
            Some((slots, total)) => total.saturating_sub(slots.available_permits()),
            None => 0,
        }
    }

    pub(crate) fn take_inherited(
        &self,
        protocol: ProtocolKey,
        addr: SocketAddr,
    ) -> Option<OwnedFd> {
        lock(&self.inner.sockets)
            .inherited
            .remove(&(protocol, addr))
    }

    /// `fd` (a duplicate) serves `protocol` on `addr` now, and goes to a successor.
    pub fn bound(&self, protocol: ProtocolKey, addr: SocketAddr, fd: OwnedFd) {
        lock(&self.inner.sockets).bound.insert((protocol, addr), fd);
    }

    pub(crate) fn unbound(&self, protocol: ProtocolKey, addr: SocketAddr) {
        lock(&self.inner.sockets).bound.remove(&(protocol, addr));
    }

    pub(crate) fn count_slots(&self, slots: Arc<Semaphore>, total: usize) {
        lock(&self.inner.sockets).slots = Some((slots, total));
    }

    /// Completes once [`Listeners::close`] was called.
    pub(crate) fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut closing = self.inner.closing.subscribe();
        async move {
            let _ = closing.wait_for(|c| *c).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exported_sockets_are_the_same_sockets_and_close_reaches_every_listener() {
        let listeners = Listeners::default();
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        listeners.bound(ProtocolKey::Tcp, addr, OwnedFd::from(socket));
        let exported = listeners.export().unwrap();
        assert_eq!(exported.len(), 1);
        let successor = Listeners::default();
        successor.inherit(exported);
        assert_eq!(successor.unclaimed(), 1);
        let fd = successor.take_inherited(ProtocolKey::Tcp, addr).unwrap();
        assert_eq!(successor.unclaimed(), 0);
        let inherited = std::net::TcpListener::from(fd);
        assert_eq!(inherited.local_addr().unwrap(), addr);
        // A client connecting now waits in the one accept queue both processes share.
        let _client = std::net::TcpStream::connect(addr).unwrap();
        assert!(inherited.accept().is_ok());

        let closed = listeners.closed();
        listeners.close();
        closed.await;
        listeners.closed().await;
    }
}
