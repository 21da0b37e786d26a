//! Relaying one TCP connection: two directions, each copied through a short-lived buffer
//! until it carries bulk data, then moved by `splice(2)` through a pipe of its own (see
//! [`pump`]), driven by tokio's readiness.
//!
//! A FIN on one side becomes a `shutdown(SHUT_WR)` on the other, so half-closed
//! conversations (a client that sends its request, shuts down writing and waits for the
//! reply) work end to end.
//!
//! Counting: bytes are exact. A proxy cannot see packets, so "packets" are estimated as IPVS
//! would roughly have counted the data segments: each read of `n` bytes counts
//! `ceil(n / MSS)`, with the MSS of the socket the data came from (a read of at most 536
//! bytes counts one). Pure ACKs, handshakes and FINs, which IPVS counts too, are not seen.
//!
//! splice(2) into a socket whose peer has gone raises SIGPIPE (it cannot pass MSG_NOSIGNAL):
//! the process must ignore SIGPIPE, as every Rust program does unless it opts out.

use std::cell::RefCell;
use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::conn_table::{ConnRecord, ConnState};
use super::splice::{self, Pipe};
use super::stats::Stats;
use super::Ctx;

/// How a relay ended.
#[derive(Debug)]
pub(crate) enum End {
    /// Both sides sent FIN.
    Closed,
    /// A socket failed (reset, timeout); both are closed now.
    Failed(io::Error),
    /// `drop_connections` closed it.
    Dropped,
}

/// What the relay counts into.
pub(crate) struct Meters<'a> {
    pub(crate) service: &'a Stats,
    pub(crate) dest: &'a Stats,
    pub(crate) record: &'a ConnRecord,
    pub(crate) ctx: &'a Ctx,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// Client to real server (IPVS's "in").
    In,
    /// Real server to client ("out").
    Out,
}

struct Meter<'a> {
    way: Way,
    /// The MSS of the socket the data comes from, asked for only when a read could span more
    /// than one segment (0: not asked yet).
    mss: AtomicUsize,
    from: &'a TcpStream,
    meters: &'a Meters<'a>,
}

/// A read of at most this many bytes counts as one packet without asking the socket its MSS
/// (one `getsockopt` per direction and connection saved on request/reply traffic): every
/// TCP MSS but the pathologically small ones is at least this much.
const ONE_SEGMENT: usize = 536;

impl Meter<'_> {
    fn new<'a>(way: Way, from: &'a TcpStream, meters: &'a Meters<'a>) -> Meter<'a> {
        Meter {
            way,
            mss: AtomicUsize::new(0),
            from,
            meters,
        }
    }

    fn mss(&self) -> usize {
        match self.mss.load(Relaxed) {
            0 => {
                let mss = SockRef::from(self.from).tcp_mss().unwrap_or(1460).max(1) as usize;
                self.mss.store(mss, Relaxed);
                mss
            }
            mss => mss,
        }
    }

    fn count(&self, bytes: usize) {
        let packets = if bytes <= ONE_SEGMENT {
            1
        } else {
            bytes.div_ceil(self.mss()) as u64
        };
        let bytes = bytes as u64;
        let m = self.meters;
        match self.way {
            Way::In => {
                m.service.counters.add_in(packets, bytes);
                m.dest.counters.add_in(packets, bytes);
            }
            Way::Out => {
                m.service.counters.add_out(packets, bytes);
                m.dest.counters.add_out(packets, bytes);
            }
        }
        m.record.touch(m.ctx.now_ms());
    }
}

/// Relays until both sides have closed, one fails, or the connection is dropped.
pub(crate) async fn run(client: &TcpStream, server: &TcpStream, meters: &Meters<'_>) -> End {
    let record = meters.record;
    // A direction that ends while the other still runs passes the FIN on with a shutdown; the
    // one that ends last does not, as both sockets are closed right after and a close sends
    // the FIN as well: one syscall less per connection.
    let (in_done, out_done) = (AtomicBool::new(false), AtomicBool::new(false));
    let inbound = async {
        pump(client, server, &Meter::new(Way::In, client, meters)).await?;
        in_done.store(true, Relaxed);
        if !out_done.load(Relaxed) {
            let _ = SockRef::from(server).shutdown(Shutdown::Write);
        }
        record.transition(ConnState::after_client_fin);
        io::Result::Ok(())
    };
    let outbound = async {
        pump(server, client, &Meter::new(Way::Out, server, meters)).await?;
        out_done.store(true, Relaxed);
        if !in_done.load(Relaxed) {
            let _ = SockRef::from(client).shutdown(Shutdown::Write);
        }
        record.transition(ConnState::after_server_fin);
        io::Result::Ok(())
    };
    tokio::pin!(inbound, outbound);
    let (mut inbound_over, mut outbound_over) = (false, false);
    while !(inbound_over && outbound_over) {
        tokio::select! {
            r = &mut inbound, if !inbound_over => {
                inbound_over = true;
                if let Err(e) = r {
                    return End::Failed(e);
                }
            }
            r = &mut outbound, if !outbound_over => {
                outbound_over = true;
                if let Err(e) = r {
                    return End::Failed(e);
                }
            }
            _ = record.dropped() => return End::Dropped,
        }
    }
    End::Closed
}

/// A read that fills this much means bulk data: the direction switches to splice.
const COPY_CHUNK: usize = 16 * 1024;

/// Moves one direction until `from` sends FIN.
///
/// Each direction starts by copying through a short-lived buffer and takes a pipe for
/// splice(2) only when a read fills [`COPY_CHUNK`] (HAProxy's `splice-auto` idea): an idle
/// or chatty connection (a MySQL session) then holds two descriptors and no pipe pages, and
/// opening a connection costs no pipe2/fcntl calls; bulk transfers still never enter userspace
/// after their first chunk.
async fn pump(from: &TcpStream, to: &TcpStream, meter: &Meter<'_>) -> io::Result<()> {
    let opts = &meter.meters.ctx.opts;
    let mut may_splice = opts.splice;
    loop {
        let n = copy_once(from, to, meter).await?;
        if n == 0 {
            return Ok(());
        }
        if n == COPY_CHUNK && may_splice {
            match Pipe::new(opts.pipe_size) {
                Ok(pipe) => match pump_splice(from, to, &pipe, meter).await? {
                    Spliced::Eof => return Ok(()),
                    Spliced::Unsupported => may_splice = false,
                },
                Err(e) => {
                    tracing::debug!("proxy: no pipe for splice ({e}); copying instead");
                    may_splice = false;
                }
            }
        }
    }
}

thread_local! {
    /// The copy buffer of every connection this worker thread relays: a read is written on at
    /// once from here, so an idle connection owns no buffer at all.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; COPY_CHUNK].into_boxed_slice());
}

/// Waits for data, copies one read of at most [`COPY_CHUNK`] bytes to `to`, and returns how
/// much it was (0: FIN). Only what `to` cannot take at once is kept across an await.
async fn copy_once(from: &TcpStream, to: &TcpStream, meter: &Meter<'_>) -> io::Result<usize> {
    let (n, rest) = loop {
        from.readable().await?;
        let step = SCRATCH.with(|cell| -> io::Result<Option<(usize, Vec<u8>)>> {
            let mut buf = cell.borrow_mut();
            let n = match read_draining(from, &mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(e),
            };
            let mut sent = 0;
            while sent < n {
                match to.try_write(&buf[sent..n]) {
                    Ok(m) => sent += m,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            Ok(Some((n, buf[sent..n].to_vec())))
        })?;
        if let Some(step) = step {
            break step;
        }
    };
    let mut sent = 0;
    while sent < rest.len() {
        to.writable().await?;
        match to.try_write(&rest[sent..]) {
            Ok(m) => sent += m,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    if n > 0 {
        meter.count(n);
    }
    Ok(n)
}

/// One read from `from` into `buf`. A read that does not fill `buf` has emptied the socket's
/// receive queue (TCP copies all it has, up to the buffer): it also marks the socket as not
/// readable, as a read ending in EAGAIN would, so that the next wait goes straight to the
/// poller instead of costing a read that can only fail (nginx does the same with epoll). Data
/// arriving after the read is not lost: the readiness is cleared only if no event came since
/// the one this read answers.
fn read_draining(from: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    let result = from.try_io(Interest::READABLE, || {
        got = from.try_read(buf)?;
        if got > 0 && got < buf.len() {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(got)
        }
    });
    match result {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        other => other,
    }
}

enum Spliced {
    Eof,
    /// The kernel refused to splice this socket before any byte moved: copy instead.
    Unsupported,
}

async fn pump_splice(
    from: &TcpStream,
    to: &TcpStream,
    pipe: &Pipe,
    meter: &Meter<'_>,
) -> io::Result<Spliced> {
    let (from_fd, to_fd) = (from.as_raw_fd(), to.as_raw_fd());
    let mut first = true;
    loop {
        // The pipe is empty here, so a WouldBlock can only mean the socket has nothing.
        let n = loop {
            from.readable().await?;
            match from.try_io(Interest::READABLE, || pipe.fill_from(from_fd)) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if first && splice::is_unsupported(&e) => return Ok(Spliced::Unsupported),
                Err(e) => return Err(e),
            }
        };
        first = false;
        if n == 0 {
            return Ok(Spliced::Eof);
        }
        let mut left = n;
        while left > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || pipe.drain_into(to_fd, left)) {
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        meter.count(n);
    }
}
