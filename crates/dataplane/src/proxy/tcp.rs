//! TCP services: the accept loop, and per client connection the choice of a real server with
//! passive failover, then the relay.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use halb_lb::sched::Flow;
use halb_lb::table::ProtocolKey;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::OwnedSemaphorePermit;

use super::conn_table::ConnState;
use super::relay::{self, End, Meters};
use super::service::{Choice, Service};
use super::Ctx;

/// Accepts clients for `service` until the task is aborted (`DelService`).
pub(crate) async fn accept_loop(listener: TcpListener, service: Arc<Service>, ctx: Arc<Ctx>) {
    loop {
        match listener.accept().await {
            Ok((client, peer)) => {
                let Ok(slot) = Arc::clone(&ctx.slots).try_acquire_owned() else {
                    // Closed now, cleanly, rather than served until its connect to a real
                    // server fails for want of a descriptor (and takes the descriptors the
                    // control socket, VRRP and the checkers need).
                    if let Some(note) = ctx.turned_away.admit(ctx.now_ms()) {
                        tracing::warn!(
                            "proxy {}: {} client connections open, the most the open files \
                             limit allows; closing client {peer}{note}",
                            service.key,
                            ctx.opts.max_connections
                        );
                    }
                    drop(client);
                    continue;
                };
                tokio::spawn(serve(client, peer, service.clone(), ctx.clone(), slot));
            }
            Err(e) => {
                if let Some(note) = ctx.accept_failed.admit(ctx.now_ms()) {
                    tracing::warn!("proxy {}: accepting a connection: {e}{note}", service.key);
                }
                // Out of descriptors or memory: give the running connections time to end
                // rather than spinning on an error that will repeat at once.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves one client: connects to a real server (trying the next one when a connect fails,
/// then the sorry server), relays, and keeps the closed entry for the linger time. `slot` is
/// given back when both sockets are closed.
async fn serve(
    client: TcpStream,
    peer: SocketAddr,
    service: Arc<Service>,
    ctx: Arc<Ctx>,
    slot: OwnedSemaphorePermit,
) {
    // TCP_NODELAY comes from the listener (accepted sockets inherit it), and the local address
    // is the VIP the listener is bound to: two syscalls per connection saved.
    let local = if service.vip.ip().is_unspecified() {
        client.local_addr().unwrap_or(service.vip)
    } else {
        service.vip
    };
    let flow = Flow {
        client: peer,
        local,
    };
    let mut tried: Vec<SocketAddr> = Vec::new();
    let (server, guard, choice) = loop {
        let Some(choice) = service.choose(Instant::now(), ctx.now_ms(), &flow, &tried) else {
            if let Some(note) = service.unavailable.admit(ctx.now_ms()) {
                tracing::warn!(
                    "proxy {}: no destination available for client {peer}{}; closing it{note}",
                    service.key,
                    if tried.is_empty() {
                        ""
                    } else {
                        " (every connect failed)"
                    },
                );
            }
            return;
        };
        let dest = choice.dest.addr;
        let guard = service.conns.open(
            ProtocolKey::Tcp,
            peer,
            service.vip,
            choice.dest.clone(),
            ConnState::SynRecv,
            ctx.now_ms(),
        );
        let socket = match outgoing_socket(dest) {
            Ok(socket) => socket,
            Err(e) => {
                // Out of descriptors or memory here: this host's shortage, which must never
                // count against the real server's health.
                if let Some(note) = ctx.no_socket.admit(ctx.now_ms()) {
                    tracing::warn!(
                        "proxy {}: no socket for a connection to {dest} ({e}); closing client \
                         {peer}{note}",
                        service.key
                    );
                }
                return;
            }
        };
        let attempt = tokio::select! {
            r = connect(socket, dest, ctx.opts.connect_timeout) => r,
            _ = guard.record.dropped() => return,
        };
        match attempt {
            Ok(server) => break (server, guard, choice),
            Err(e) if !ctx.opts.passive_failover => {
                // As IPVS does: the client's connection fails, and only the checkers take
                // the server out.
                if let Some(note) = choice.dest.connect_failed.admit(ctx.now_ms()) {
                    tracing::warn!(
                        "proxy {}: connecting to {dest} for client {peer} failed: {e}; closing \
                         it{note}",
                        service.key
                    );
                }
                return;
            }
            Err(e) => {
                drop(guard);
                tried.push(dest);
                failed(&service, &ctx, &choice, peer, &e);
            }
        }
    };
    let dest = &choice.dest;
    dest.clear_failed();
    guard.record.transition(|_| ConnState::Established);
    guard.record.touch(ctx.now_ms());
    dest.stats.counters.add_conn();
    service.stats.counters.add_conn();
    if !choice.fallback {
        service.remember(&flow, dest.addr, Instant::now());
    }

    let meters = Meters {
        service: &service.stats,
        dest: &dest.stats,
        record: &guard.record,
        ctx: &ctx,
    };
    let end = relay::run(&client, &server, &meters).await;
    drop(client);
    drop(server);
    drop(slot);
    let closed = match end {
        End::Dropped => return,
        End::Closed => ConnState::TimeWait,
        End::Failed(e) => {
            tracing::debug!(
                "proxy {}: connection {peer} -> {}: {e}",
                service.key,
                dest.addr
            );
            ConnState::Close
        }
    };
    guard.record.transition(|_| closed);
    guard.record.touch(ctx.now_ms());
    if !choice.fallback {
        // The template lives on for its timeout after the last connection.
        service.remember(&flow, dest.addr, Instant::now());
    }
    if !ctx.opts.linger.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(ctx.opts.linger) => {}
            _ = guard.record.dropped() => {}
        }
    }
}

/// A connect failed: log it and let the proxy hold the destination and tell its checkers.
fn failed(service: &Service, ctx: &Ctx, choice: &Choice, peer: SocketAddr, e: &io::Error) {
    if let Some(note) = choice.dest.connect_failed.admit(ctx.now_ms()) {
        tracing::warn!(
            "proxy {}: connecting to {} for client {peer} failed: {e}; trying the next \
             destination{note}",
            service.key,
            choice.dest.addr
        );
    }
    ctx.report_failure(service, choice);
}

/// The socket for a connection to `dest`; failing here is this host's problem, not `dest`'s.
fn outgoing_socket(dest: SocketAddr) -> io::Result<TcpSocket> {
    let socket = match dest {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_nodelay(true)?;
    Ok(socket)
}

async fn connect(socket: TcpSocket, dest: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    match tokio::time::timeout(timeout, socket.connect(dest)).await {
        Ok(stream) => stream,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer within {} ms", timeout.as_millis()),
        )),
    }
}
