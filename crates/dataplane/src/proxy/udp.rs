//! UDP services. Each client address is a flow: its first datagram is scheduled, and the
//! flow gets its own socket connected to the chosen real server; the server's replies are
//! sent back from the VIP socket, so the client sees them come from the address it used. A
//! flow ends after the UDP timeout without traffic either way (IPVS's 300 s by default).
//!
//! Counters count real datagrams here. An ICMP port unreachable from the real server (seen
//! as ECONNREFUSED on the connected socket) is a passive failure: the flow ends, and the
//! client's next datagram is scheduled again, away from the failed server.
//!
//! One-packet scheduling (`ops`) is served as ordinary flows.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use halb_lb::sched::Flow;
use halb_lb::table::ProtocolKey;
use socket2::SockRef;
use tokio::net::UdpSocket;
use tokio::sync::Notify;

use super::conn_table::{ConnGuard, ConnRecord, ConnState};
use super::service::{Choice, Service};
use super::Ctx;

/// The largest UDP payload.
const DATAGRAM_MAX: usize = 65_535;

/// How often the flow map forgets the flows that ended.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

thread_local! {
    /// One receive buffer per worker thread for every flow's replies, rather than 64 KiB per
    /// flow: it is only borrowed between two non-blocking calls, never across an await.
    static REPLY_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; DATAGRAM_MAX]);
}

struct UdpFlow {
    /// Connected to the real server.
    socket: UdpSocket,
    choice: Choice,
    record: Arc<ConnRecord>,
    closed: AtomicBool,
    close: Notify,
}

impl UdpFlow {
    /// Ended by its task, or dropped from the table (its task may not have noticed yet).
    fn is_closed(&self) -> bool {
        self.closed.load(Relaxed) || self.record.state() == ConnState::Removed
    }

    fn end(&self) {
        self.closed.store(true, Relaxed);
        self.close.notify_one();
    }
}

/// Receives the clients' datagrams on the VIP until the task is aborted (`DelService`).
pub(crate) async fn serve(vip_socket: Arc<UdpSocket>, service: Arc<Service>, ctx: Arc<Ctx>) {
    let mut flows: HashMap<SocketAddr, Arc<UdpFlow>> = HashMap::new();
    let mut buf = vec![0u8; DATAGRAM_MAX];
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    loop {
        let (n, client) = tokio::select! {
            r = vip_socket.recv_from(&mut buf) => match r {
                Ok(received) => received,
                Err(e) => {
                    tracing::warn!("proxy {}: receiving: {e}", service.key);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = sweep.tick() => {
                flows.retain(|_, f| !f.is_closed());
                continue;
            }
        };
        let flow = match flows.get(&client) {
            Some(flow) if !flow.is_closed() => flow.clone(),
            _ => match open_flow(&vip_socket, &service, &ctx, client).await {
                Some(flow) => {
                    flows.insert(client, flow.clone());
                    flow
                }
                None => continue,
            },
        };
        match send(&flow.socket, &buf[..n], None) {
            Ok(_) => {
                service.stats.counters.add_in(1, n as u64);
                flow.choice.dest.stats.counters.add_in(1, n as u64);
                flow.record.touch(ctx.now_ms());
            }
            // A full send buffer drops the datagram, as a congested network would.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                if e.kind() == io::ErrorKind::ConnectionRefused {
                    ctx.report_failure(&service, &flow.choice);
                }
                tracing::debug!(
                    "proxy {}: forwarding from {client} to {}: {e}",
                    service.key,
                    flow.choice.dest.addr
                );
                flow.end();
            }
        }
    }
}

async fn open_flow(
    vip_socket: &Arc<UdpSocket>,
    service: &Arc<Service>,
    ctx: &Arc<Ctx>,
    client: SocketAddr,
) -> Option<Arc<UdpFlow>> {
    let flow = Flow {
        client,
        local: service.vip,
    };
    let Some(choice) = service.choose(Instant::now(), ctx.now_ms(), &flow, &[]) else {
        if let Some(note) = service.unavailable.admit(ctx.now_ms()) {
            tracing::warn!(
                "proxy {}: no destination available for client {client}{note}",
                service.key
            );
        }
        return None;
    };
    let socket = match connected(choice.dest.addr).await {
        Ok(socket) => socket,
        Err(e) => {
            if let Some(note) = ctx.no_socket.admit(ctx.now_ms()) {
                tracing::warn!(
                    "proxy {}: socket to {} for client {client}: {e}{note}",
                    service.key,
                    choice.dest.addr
                );
            }
            return None;
        }
    };
    let guard = service.conns.open(
        ProtocolKey::Udp,
        client,
        service.vip,
        choice.dest.clone(),
        ConnState::Udp,
        ctx.now_ms(),
    );
    service.stats.counters.add_conn();
    choice.dest.stats.counters.add_conn();
    if !choice.fallback {
        service.remember(&flow, choice.dest.addr, Instant::now());
    }
    let flow = Arc::new(UdpFlow {
        socket,
        choice,
        record: guard.record.clone(),
        closed: AtomicBool::new(false),
        close: Notify::new(),
    });
    tokio::spawn(replies(
        flow.clone(),
        guard,
        vip_socket.clone(),
        service.clone(),
        ctx.clone(),
        client,
    ));
    Some(flow)
}

async fn connected(dest: SocketAddr) -> io::Result<UdpSocket> {
    let any: SocketAddr = match dest {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(any).await?;
    socket.connect(dest).await?;
    Ok(socket)
}

/// Sends the real server's replies back to the client until the flow times out, fails or is
/// dropped; owns the flow's table entry.
async fn replies(
    flow: Arc<UdpFlow>,
    guard: ConnGuard,
    vip_socket: Arc<UdpSocket>,
    service: Arc<Service>,
    ctx: Arc<Ctx>,
    client: SocketAddr,
) {
    let record = &guard.record;
    let timeout_ms = u64::try_from(ctx.opts.udp_timeout.as_millis()).unwrap_or(u64::MAX);
    loop {
        let idle_for = ctx.now_ms().saturating_sub(record.last_ms());
        if idle_for >= timeout_ms {
            break;
        }
        let wait = Duration::from_millis(timeout_ms - idle_for);
        tokio::select! {
            ready = flow.socket.readable() => {
                if let Err(e) = ready.and_then(|_| relay_replies(&flow, &vip_socket, &service, &ctx, client)) {
                    if e.kind() == io::ErrorKind::ConnectionRefused {
                        ctx.report_failure(&service, &flow.choice);
                    }
                    tracing::debug!(
                        "proxy {}: flow {client} -> {}: {e}",
                        service.key,
                        flow.choice.dest.addr
                    );
                    break;
                }
            }
            // Traffic may have come in meanwhile: the loop recomputes the deadline.
            _ = tokio::time::sleep(wait) => {}
            _ = flow.close.notified() => break,
            _ = record.dropped() => break,
        }
    }
    flow.closed.store(true, Relaxed);
}

/// Moves every reply waiting on the flow's socket to the client.
fn relay_replies(
    flow: &UdpFlow,
    vip_socket: &UdpSocket,
    service: &Service,
    ctx: &Ctx,
    client: SocketAddr,
) -> io::Result<()> {
    REPLY_BUFFER.with(|buf| {
        let mut buf = buf.borrow_mut();
        loop {
            let n = match flow.socket.try_recv(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            flow.choice.dest.clear_failed();
            match send(vip_socket, &buf[..n], Some(client)) {
                Ok(_) => {
                    service.stats.counters.add_out(1, n as u64);
                    flow.choice.dest.stats.counters.add_out(1, n as u64);
                }
                Err(e) => tracing::debug!("proxy {}: reply to {client} dropped: {e}", service.key),
            }
            flow.record.touch(ctx.now_ms());
        }
    })
}

/// Sends one datagram now, or drops it if the socket buffer is full (as a congested network
/// would). A direct non-blocking syscall: tokio's `try_send` would also refuse while it has
/// not yet seen the socket writable, which loses the first datagram of a new flow.
fn send(socket: &UdpSocket, datagram: &[u8], to: Option<SocketAddr>) -> io::Result<usize> {
    let socket = SockRef::from(socket);
    match to {
        Some(to) => socket.send_to(datagram, &to.into()),
        None => socket.send(datagram),
    }
}
