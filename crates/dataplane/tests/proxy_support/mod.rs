//! Shared pieces of the proxy tests: small real servers on loopback, table changes, and
//! helpers that wait with generous bounds.
#![allow(dead_code)]

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use halb_dataplane::proxy::{Proxy, ProxyOptions};
use halb_dataplane::{Dataplane, PassiveFailure};
use halb_lb::table::{
    Change, Destination, Forwarding, ProtocolKey, SchedFlags, Scheduler, ServiceKey,
    ServiceSettings,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;

/// Generous: the machine running the tests may be busy.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The defaults, with IPVS's schedulers.
pub fn options() -> ProxyOptions {
    ProxyOptions::default()
}

pub fn proxy(options: ProxyOptions) -> (Proxy, UnboundedReceiver<PassiveFailure>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (Proxy::new(tx, options), rx)
}

/// A free port on `ip` for a VIP (released at once; the proxy binds it next).
pub fn free_tcp_port(ip: IpAddr) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .expect("binding a port to learn a free one")
        .local_addr()
        .expect("local address")
        .port()
}

pub fn free_udp_port(ip: IpAddr) -> u16 {
    std::net::UdpSocket::bind((ip, 0))
        .expect("binding a port to learn a free one")
        .local_addr()
        .expect("local address")
        .port()
}

/// A VIP on loopback other than 127.0.0.1, so that it is plainly not a backend's address.
pub fn vip(protocol: ProtocolKey, last_octet: u8) -> ServiceKey {
    let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, last_octet));
    let port = match protocol {
        ProtocolKey::Udp => free_udp_port(ip),
        _ => free_tcp_port(ip),
    };
    ServiceKey::Addr {
        protocol,
        addr: SocketAddr::new(ip, port),
    }
}

pub fn vip_addr(key: &ServiceKey) -> SocketAddr {
    match key {
        ServiceKey::Addr { addr, .. } => *addr,
        ServiceKey::Fwmark { .. } => panic!("no address"),
    }
}

pub fn settings(key: ServiceKey) -> ServiceSettings {
    ServiceSettings {
        key,
        scheduler: Scheduler::Rr,
        flags: SchedFlags::default(),
        persistence: None,
        persistence_engine: None,
        fallback: None,
    }
}

pub fn dest(addr: SocketAddr, weight: u32) -> Destination {
    Destination {
        addr,
        weight,
        forwarding: Forwarding::Nat,
        uthreshold: 0,
        lthreshold: 0,
    }
}

/// A service with these destinations, all of weight 1.
pub fn service_changes(settings: ServiceSettings, backends: &[SocketAddr]) -> Vec<Change> {
    let key = settings.key;
    let mut changes = vec![Change::AddService(settings)];
    changes.extend(backends.iter().map(|a| Change::AddDest(key, dest(*a, 1))));
    changes
}

/// A TCP server that greets each connection with its name and a newline, then echoes.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Backend {
    pub async fn banner(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("backend bind");
        let addr = listener.local_addr().expect("backend address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let (greeting, count) = (format!("{name}\n"), accepted.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let greeting = greeting.clone();
                tokio::spawn(async move {
                    if conn.write_all(greeting.as_bytes()).await.is_err() {
                        return;
                    }
                    let (mut r, mut w) = conn.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        Backend {
            name: name.to_string(),
            addr,
            accepted,
            task,
        }
    }

    /// Stops listening (new connects are refused); open connections go on.
    pub async fn stop_listening(&self) {
        self.task.abort();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while TcpStream::connect(self.addr).await.is_ok() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "backend still listening"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An address where nothing listens (connects are refused).
pub fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address")
}

/// A client connection through the proxy, with the banner already read.
pub struct Client {
    pub reader: BufReader<TcpStream>,
    pub banner: String,
}

impl Client {
    pub async fn connect(vip: SocketAddr) -> Client {
        let stream = within(TcpStream::connect(vip), "connecting to the VIP")
            .await
            .unwrap_or_else(|e| panic!("connecting to the VIP {vip}: {e}"));
        let mut reader = BufReader::new(stream);
        let mut banner = String::new();
        let n = within(reader.read_line(&mut banner), "reading the banner")
            .await
            .expect("reading the banner");
        assert!(
            n > 0,
            "the proxy closed the connection instead of serving it"
        );
        Client {
            reader,
            banner: banner.trim_end().to_string(),
        }
    }

    /// Sends a line and expects it back.
    pub async fn echo(&mut self, line: &str) {
        let stream = self.reader.get_mut();
        within(stream.write_all(format!("{line}\n").as_bytes()), "writing")
            .await
            .expect("write");
        let mut back = String::new();
        within(self.reader.read_line(&mut back), "reading the echo")
            .await
            .expect("read");
        assert_eq!(back.trim_end(), line);
    }

    /// True when the connection was closed (EOF or reset) within `limit`.
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let mut buf = [0u8; 64];
        match tokio::time::timeout(limit, self.reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(_)) => false,
            Err(_) => false,
        }
    }
}

/// Runs `f` with the tests' patience; panics naming `what` if it takes longer.
pub async fn within<F: Future>(f: F, what: &str) -> F::Output {
    match tokio::time::timeout(PATIENCE, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no result within {PATIENCE:?}"),
    }
}

/// Waits until `cond` holds, checking every 20 ms, with the tests' patience.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not true within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (ActiveConn, InActConn) of one destination.
pub fn conn_counts(proxy: &Proxy, key: &ServiceKey, dest: SocketAddr) -> (u32, u32) {
    proxy
        .stats()
        .into_iter()
        .find(|s| s.key == *key)
        .and_then(|s| s.dests.into_iter().find(|d| d.addr == dest))
        .map(|d| (d.active, d.inactive))
        .unwrap_or((u32::MAX, u32::MAX))
}

/// A UDP server that answers each datagram with its name, a colon and the datagram.
pub struct UdpBackend {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl UdpBackend {
    pub async fn echo(name: &str) -> UdpBackend {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("udp bind");
        let addr = socket.local_addr().expect("udp address");
        let prefix = format!("{name}:").into_bytes();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let mut reply = prefix.clone();
                reply.extend_from_slice(&buf[..n]);
                let _ = socket.send_to(&reply, from).await;
            }
        });
        UdpBackend { addr, task }
    }
}

impl Drop for UdpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}
