//! Traffic for the IPVS machine's passive-detection test (`tests/ipvs_passive.sh`), where only
//! busybox and bash exist and neither can open a connection every millisecond:
//!
//! - `serve ADDR:PORT NAME`: answers every connection with `NAME\n` and closes it (a real
//!   server that says who it is; it stands for the MySQL port, which TCP_CHECK only connects to).
//! - `client ADDR:PORT EVERY_US FOR_MS TIMEOUT_MS OUT`: starts a connection every `EVERY_US`
//!   microseconds for `FOR_MS` (one thread, nonblocking sockets), waits at most `TIMEOUT_MS` for the
//!   connect and the server's name (a MariaDB server's greeting names it by the end of its
//!   version string, see `halb_ipvs_vm::mariadb`; `serve` by its line), and writes one line per attempt to `OUT`:
//!   `START_MS END_MS RESULT` (wall-clock milliseconds, as bash's `EPOCHREALTIME`; RESULT is the
//!   name that answered or `fail:WHY`: `refused`, `connect-timeout`, `reset`, `closed`,
//!   `read-timeout`).
//! - `summary OUT FAULT_MS NAME`: from such a file, when the first attempt that started after
//!   `FAULT_MS` was answered by NAME (`first_ms`, after the fault), how many attempts started
//!   after it still failed or went elsewhere (`after_first_unserved`: of those, how many no
//!   server took), how many failed and ended before the fault (`unserved_before`: the same), and
//!   the tallies, and the runs of equal results after the fault (`timeline`).
//! - `established SRC DST:PORT COUNT`: COUNT connection entries in a director's IPVS table
//!   without COUNT connections: from SRC's namespace, a raw SYN then an ACK per source port
//!   (the director, in DR mode, sees only the client's side and calls each `ESTABLISHED`; the
//!   real server's reset of the stray ACK goes straight to SRC). Used to fill the table to
//!   100,000 entries for the cost of reading it.
//! - `echo ADDR:PORT NAME`: a real server for long-lived connections (`tests/bgp_lab.sh`):
//!   greets each connection with `NAME\n`, answers every line with `NAME\n`, and closes when the
//!   client does.
//! - `hold ADDR:PORT COUNT SPREAD_MS FOR_MS OUT`: COUNT long-lived connections opened over
//!   SPREAD_MS, each sending a line every 100 ms and reading the answer (at most
//!   [`HOLD_READ_TIMEOUT`] each) until FOR_MS after the start or until `OUT.stop` exists,
//!   then closing (shutdown, then reading to the end: a reset there counts too). `OUT.ready`
//!   appears once every connection is open; `OUT` gets one line per connection: `LOCAL_PORT NAME RESULT EXCHANGES FAILED_AT_MS`
//!   (NAME the greeting, RESULT `ok` or how it ended: `connect`, `reset`, `timeout`, `eof`,
//!   `moved` (another server answered), `close-reset`, `error`; FAILED_AT_MS wall-clock, 0 when
//!   ok).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn usage() -> ! {
    eprintln!(
        "usage: vm-conn-load serve ADDR:PORT NAME | client ADDR:PORT EVERY_US FOR_MS TIMEOUT_MS OUT \
         | summary OUT FAULT_MS NAME | established SRC DST:PORT COUNT | echo ADDR:PORT NAME \
         | hold ADDR:PORT COUNT SPREAD_MS FOR_MS OUT"
    );
    std::process::exit(2)
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> T {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| usage())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(arg(&args, 1), &arg::<String>(&args, 2)),
        Some("client") => client(
            arg(&args, 1),
            arg(&args, 2),
            arg(&args, 3),
            arg(&args, 4),
            &arg::<String>(&args, 5),
        ),
        Some("summary") => summary(
            &arg::<String>(&args, 1),
            arg(&args, 2),
            &arg::<String>(&args, 3),
        ),
        Some("established") => established(arg(&args, 1), arg(&args, 2), arg(&args, 3)),
        Some("echo") => echo(arg(&args, 1), &arg::<String>(&args, 2)),
        Some("hold") => hold(
            arg(&args, 1),
            arg(&args, 2),
            arg(&args, 3),
            arg(&args, 4),
            &arg::<String>(&args, 5),
        ),
        _ => usage(),
    }
}

fn serve(addr: SocketAddr, name: &str) {
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| {
        eprintln!("vm-conn-load: binding {addr}: {e}");
        std::process::exit(1)
    });
    let line = format!("{name}\n");
    loop {
        match listener.accept() {
            Ok((mut s, _)) => {
                let _ = s.write_all(line.as_bytes());
            }
            // Out of descriptors or memory for a moment: the next accept may do.
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// Who answered, from the first bytes a server sent: a MySQL greeting (protocol 10) names the
/// server by the end of its version string (`10.11-rs` is `rs`), `serve` by its line.
fn server_name(got: &[u8]) -> Option<String> {
    if got.len() >= 5 && got[3] == 0 && got[4] == 10 {
        let len = usize::from(got[0]) | usize::from(got[1]) << 8 | usize::from(got[2]) << 16;
        let packet = got.get(4..4 + len)?;
        let version = &packet[1..packet.iter().position(|&b| b == 0)?];
        let version = String::from_utf8_lossy(version);
        return Some(version.rsplit('-').next().unwrap_or_default().to_string());
    }
    if got.len() >= 5 && got[3] == 0 && got[4] == 0xff {
        // A MySQL error packet before any greeting ("Host ... is not allowed").
        return Some("refused".into());
    }
    let end = got.iter().position(|&b| b == b'\n')?;
    Some(String::from_utf8_lossy(&got[..end]).trim().to_string())
}

/// One attempt in flight: its socket, when it started and must end, and what it read so far.
struct Attempt {
    fd: libc::c_int,
    start_ms: u128,
    deadline: Instant,
    connected: bool,
    got: Vec<u8>,
}

/// The client's attempts, on one thread with nonblocking sockets and epoll: a thread per
/// attempt (as before) cost the emulated CPU more than the connections themselves, and held
/// the rate under 500 a second.
fn client(to: SocketAddr, every_us: u64, for_ms: u64, timeout_ms: u64, out: &str) {
    let SocketAddr::V4(to) = to else { usage() };
    let mut f = std::io::BufWriter::new(std::fs::File::create(out).expect("the output file"));
    let timeout = Duration::from_millis(timeout_ms);
    let started = Instant::now();
    let until = started + Duration::from_millis(for_ms);
    let every = Duration::from_micros(every_us.max(1));
    let mut next = started;
    // Every attempt has the same timeout, so deadlines come in the order attempts started.
    let mut order = std::collections::VecDeque::<u64>::new();
    let mut live = std::collections::HashMap::<u64, Attempt>::new();
    let mut id = 0u64;
    // Up to a second of attempts at a time, each a descriptor: more than the usual soft limit.
    raise_nofile();
    {
        // SAFETY: a new descriptor this function owns and closes.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(
            ep >= 0,
            "epoll_create1: {}",
            std::io::Error::last_os_error()
        );
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        loop {
            let now = Instant::now();
            while next <= now && next < until {
                // Keyed by a number of their own: a descriptor is reused once closed.
                id += 1;
                match open_attempt(ep, to, now + timeout, id) {
                    Some(a) => {
                        order.push_back(id);
                        live.insert(id, a);
                    }
                    None => {
                        let at = now_ms();
                        let _ = writeln!(f, "{at} {at} fail:connect");
                    }
                }
                next += every;
            }
            // Attempts past their deadline.
            while let Some(&front) = order.front() {
                match live.get(&front) {
                    Some(a) if a.deadline <= now => {
                        let why = if a.connected {
                            "fail:read-timeout"
                        } else {
                            "fail:connect-timeout"
                        };
                        finish(ep, &mut live, front, why, &mut f);
                        order.pop_front();
                    }
                    Some(_) => break,
                    None => {
                        order.pop_front();
                    }
                }
            }
            if next >= until && live.is_empty() {
                break;
            }
            let wake = [
                (next < until).then_some(next),
                order
                    .front()
                    .and_then(|id| live.get(id))
                    .map(|a| a.deadline),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + Duration::from_millis(10));
            let wait_ms = wake
                .saturating_duration_since(Instant::now())
                .as_micros()
                .div_ceil(1000) as i32;
            // SAFETY: the buffer holds `events.len()` entries.
            let n =
                unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, wait_ms) };
            for e in events.iter().take(n.max(0) as usize) {
                let id = e.u64;
                if let Some(result) = live.get_mut(&id).and_then(|a| progress(ep, a, id)) {
                    finish(ep, &mut live, id, &result, &mut f);
                }
            }
        }
        // SAFETY: closed once, after its last use.
        unsafe { libc::close(ep) };
    }
    let _ = f.flush();
}

/// A nonblocking connect to `to`, watched by `ep` under `id`; `None` when no socket could be
/// had (out of descriptors).
fn open_attempt(ep: libc::c_int, to: SocketAddrV4, deadline: Instant, id: u64) -> Option<Attempt> {
    let start_ms = now_ms();
    // SAFETY: a new socket this function owns, an address that outlives the calls.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: sockaddr_in is plain old data.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = to.port().to_be();
    sa.sin_addr.s_addr = u32::from_ne_bytes(to.ip().octets());
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP) as u32,
        u64: id,
    };
    // SAFETY: as above; the connect's outcome is read from SO_ERROR once epoll reports.
    unsafe {
        libc::connect(
            fd,
            (&raw const sa).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev);
    }
    Some(Attempt {
        fd,
        start_ms,
        deadline,
        connected: false,
        got: Vec::new(),
    })
}

/// The soft limit on open descriptors raised to the hard one.
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` outlives both calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// What an event on `a` settles: its result, or `None` while it waits for more.
fn progress(ep: libc::c_int, a: &mut Attempt, id: u64) -> Option<String> {
    if !a.connected {
        let mut err: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the attempt's own socket; `err` and `len` outlive the call.
        unsafe {
            libc::getsockopt(
                a.fd,
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&raw mut err).cast(),
                &mut len,
            )
        };
        match err {
            0 => {
                a.connected = true;
                // Level-triggered, a connected socket is always writable: from now on only
                // what it reads matters.
                let mut ev = libc::epoll_event {
                    events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
                    u64: id,
                };
                // SAFETY: the attempt's own socket, registered with `ep` when it opened.
                unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_MOD, a.fd, &mut ev) };
            }
            libc::ECONNREFUSED => return Some("fail:refused".into()),
            libc::ETIMEDOUT => return Some("fail:connect-timeout".into()),
            libc::EINPROGRESS | libc::EALREADY => return None,
            _ => return Some("fail:connect".into()),
        }
    }
    let mut buf = [0u8; 256];
    loop {
        // SAFETY: the attempt's own socket, into a buffer of the length given.
        let n = unsafe { libc::read(a.fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            a.got.extend_from_slice(&buf[..n as usize]);
            if let Some(name) = server_name(&a.got) {
                return Some(name);
            }
            if a.got.len() > 4096 {
                return Some("fail:read-timeout".into());
            }
            continue;
        }
        if n == 0 {
            return Some("fail:closed".into());
        }
        return match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) => None,
            Some(libc::ECONNRESET) => Some("fail:reset".into()),
            // A reset before the handshake's end shows here as a refusal.
            Some(libc::ECONNREFUSED) => Some("fail:refused".into()),
            _ => Some("fail:read-timeout".into()),
        };
    }
}

/// Ends the attempt `id` with `result`, written as `START_MS END_MS RESULT`.
fn finish(
    ep: libc::c_int,
    live: &mut std::collections::HashMap<u64, Attempt>,
    id: u64,
    result: &str,
    f: &mut impl Write,
) {
    if let Some(a) = live.remove(&id) {
        let fd = a.fd;
        // SAFETY: the attempt's own socket, closed once: it has just left `live`.
        unsafe {
            libc::epoll_ctl(ep, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut());
            libc::close(fd);
        }
        let _ = writeln!(f, "{} {} {result}", a.start_ms, now_ms());
    }
}

fn summary(out: &str, fault_ms: u128, name: &str) {
    let mut text = String::new();
    if let Err(e) = std::fs::File::open(out).and_then(|mut f| f.read_to_string(&mut text)) {
        eprintln!("vm-conn-load: reading {out}: {e}");
        std::process::exit(1)
    }
    let mut rows: Vec<(u128, u128, &str)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?, f.next()?))
        })
        .collect();
    rows.sort();
    let mut tally = std::collections::BTreeMap::<&str, usize>::new();
    for (_, _, r) in &rows {
        *tally.entry(r).or_default() += 1;
    }
    let before: Vec<_> = rows.iter().filter(|r| r.0 < fault_ms).collect();
    let after: Vec<_> = rows.iter().filter(|r| r.0 >= fault_ms).collect();
    println!(
        "attempts: {} ({} before the fault)",
        rows.len(),
        before.len()
    );
    println!(
        "tally: {}",
        tally
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    // Attempts still running when the fault came are the fault's, not failures before it.
    println!(
        "fail_before: {}",
        before
            .iter()
            .filter(|r| r.1 < fault_ms && r.2.starts_with("fail"))
            .count()
    );
    println!(
        "unserved_before: {}",
        before
            .iter()
            .filter(|r| r.1 < fault_ms && unserved(r.2))
            .count()
    );
    match after.iter().position(|r| r.2 == name) {
        Some(i) => {
            let first = after[i];
            println!("first_ms: {}", first.1.saturating_sub(fault_ms));
            println!("first_started_ms: {}", first.0.saturating_sub(fault_ms));
            let later = &after[i + 1..];
            println!(
                "after_first_not_{name}: {}",
                later.iter().filter(|r| r.2 != name).count()
            );
            println!("after_first: {}", later.len());
            println!(
                "after_first_unserved: {}",
                later.iter().filter(|r| unserved(r.2)).count()
            );
        }
        None => println!("first_ms: never"),
    }
    // Runs of the same result among the attempts started after the fault: where the time went
    // on the client's side ("fail 12 @0..180" is 12 failures started 0 to 180 ms after it).
    let mut runs: Vec<(&str, usize, u128, u128)> = Vec::new();
    for r in &after {
        let at = r.0.saturating_sub(fault_ms);
        match runs.last_mut() {
            Some(last) if last.0 == r.2 => {
                last.1 += 1;
                last.3 = at;
            }
            _ => runs.push((r.2, 1, at, at)),
        }
    }
    println!(
        "timeline: {}",
        runs.iter()
            .take(12)
            .map(|(what, n, from, to)| format!("{what} {n} @{from}..{to}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// A failure that says no server took the connection (refused, reset, no answer to the SYN),
/// as opposed to a server that accepted it and was slow to greet (`read-timeout`, `closed`): an
/// emulated machine running MariaDB is sometimes that slow, whatever the director does.
fn unserved(result: &str) -> bool {
    result.starts_with("fail:refused")
        || result.starts_with("fail:reset")
        || result.starts_with("fail:connect")
}

/// The Internet checksum of `parts` laid end to end (each of even length but the last).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn tcp_packet(
    src: Ipv4Addr,
    dst: SocketAddrV4,
    sport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
) -> [u8; 40] {
    let mut p = [0u8; 40];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.ip().octets());
    let ip_sum = checksum(&[&p[..20]]);
    p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    let t = &mut p[20..];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dst.port().to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.ip().octets());
    pseudo[9] = 6;
    pseudo[10..12].copy_from_slice(&20u16.to_be_bytes());
    let sum = checksum(&[&pseudo, &p[20..]]);
    p[36..38].copy_from_slice(&sum.to_be_bytes());
    p
}

fn established(src: Ipv4Addr, dst: SocketAddrV4, count: u32) {
    // SAFETY: plain socket calls on a descriptor this function owns; the buffers outlive them.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW);
        if fd < 0 {
            eprintln!(
                "vm-conn-load: raw socket: {}",
                std::io::Error::last_os_error()
            );
            std::process::exit(1);
        }
        let mut to: libc::sockaddr_in = std::mem::zeroed();
        to.sin_family = libc::AF_INET as libc::sa_family_t;
        to.sin_addr.s_addr = u32::from_ne_bytes(dst.ip().octets());
        let mut sent = 0u32;
        for i in 0..count {
            // Source ports 1024..=65535, then the next address would be needed: COUNT up to
            // 64,512 per source; the test uses two sources for 100,000.
            let sport = 1024 + (i % 64_512) as u16;
            let seq = 1_000_000 + i;
            for (flags, s, a) in [(0x02u8, seq, 0u32), (0x10, seq + 1, 1)] {
                let p = tcp_packet(src, dst, sport, s, a, flags);
                let n = libc::sendto(
                    fd,
                    p.as_ptr().cast(),
                    p.len(),
                    0,
                    (&raw const to).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                );
                if n < 0 {
                    // A full queue: give the stack a moment and go on.
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            sent += 1;
            if i % 200 == 199 {
                // Let the bridge and the director keep up (a full backlog drops the rest).
                std::thread::sleep(Duration::from_millis(3));
            }
        }
        libc::close(fd);
        println!("sent {sent}");
    }
}

fn echo(addr: SocketAddr, name: &str) {
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| {
        eprintln!("vm-conn-load: binding {addr}: {e}");
        std::process::exit(1)
    });
    let line = format!("{name}\n");
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                let line = line.clone();
                std::thread::spawn(move || {
                    let Ok(mut w) = s.try_clone() else { return };
                    if w.write_all(line.as_bytes()).is_err() {
                        return;
                    }
                    let mut r = BufReader::new(s);
                    let mut got = String::new();
                    while matches!(r.read_line(&mut got), Ok(n) if n > 0) {
                        if w.write_all(line.as_bytes()).is_err() {
                            return;
                        }
                        got.clear();
                    }
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// How long a held connection waits for one answer: longer than a VRRP takeover (3 adverts and
/// the skew) plus TCP's retransmission backoff, so that a connection that comes back counts as
/// kept.
const HOLD_READ_TIMEOUT: Duration = Duration::from_secs(12);
/// Between two lines of a held connection.
const HOLD_EVERY: Duration = Duration::from_millis(100);

fn io_result(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => "reset",
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => "timeout",
        std::io::ErrorKind::BrokenPipe => "reset",
        _ => "error",
    }
}

/// One held connection: (local port, greeting, result, exchanges). `settled` counts the
/// connections that are open (greeted) or failed before that.
fn hold_one(
    to: SocketAddr,
    until: Instant,
    settled: &std::sync::atomic::AtomicU32,
    stop: &std::sync::atomic::AtomicBool,
) -> (u16, String, &'static str, u64) {
    let settle = || settled.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let Ok(s) = TcpStream::connect_timeout(&to, Duration::from_secs(5)) else {
        settle();
        return (0, "-".into(), "connect", 0);
    };
    let port = s.local_addr().map(|a| a.port()).unwrap_or(0);
    let _ = s.set_nodelay(true);
    let (Ok(()), Ok(mut w)) = (s.set_read_timeout(Some(HOLD_READ_TIMEOUT)), s.try_clone()) else {
        settle();
        return (port, "-".into(), "error", 0);
    };
    let mut r = BufReader::new(s);
    let mut line = String::new();
    let greeting = r.read_line(&mut line);
    settle();
    let name = match greeting {
        Ok(0) => return (port, "-".into(), "eof", 0),
        Ok(_) => line.trim().to_string(),
        Err(e) => return (port, "-".into(), io_result(&e), 0),
    };
    let mut exchanges = 0u64;
    let mut next = Instant::now();
    while Instant::now() < until && !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if let Err(e) = w.write_all(b"ping\n") {
            return (port, name, io_result(&e), exchanges);
        }
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) => return (port, name, "eof", exchanges),
            Ok(_) if line.trim() != name => return (port, name, "moved", exchanges),
            Ok(_) => exchanges += 1,
            Err(e) => return (port, name, io_result(&e), exchanges),
        }
        next += HOLD_EVERY;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    // A clean end: our FIN, then the server's; a reset on the way is a failure too.
    let _ = w.shutdown(std::net::Shutdown::Write);
    let mut rest = Vec::new();
    match r.read_to_end(&mut rest) {
        Ok(_) => (port, name, "ok", exchanges),
        Err(e) if io_result(&e) == "reset" => (port, name, "close-reset", exchanges),
        Err(e) => (port, name, io_result(&e), exchanges),
    }
}

fn hold(to: SocketAddr, count: u32, spread_ms: u64, for_ms: u64, out: &str) {
    let started = Instant::now();
    let until = started + Duration::from_millis(for_ms);
    let settled = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut threads = Vec::new();
    for i in 0..count {
        let at =
            started + Duration::from_millis(spread_ms * u64::from(i) / u64::from(count.max(1)));
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let (settled, stop) = (settled.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let (port, name, result, exchanges) = hold_one(to, until, &settled, &stop);
            let failed_at = if result == "ok" { 0 } else { now_ms() };
            format!("{port} {name} {result} {exchanges} {failed_at}\n")
        }));
    }
    // Ready once every connection is open or failed (a connect gives up after 5 s).
    while settled.load(std::sync::atomic::Ordering::SeqCst) < count
        && started.elapsed() < Duration::from_millis(spread_ms) + Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::write(format!("{out}.ready"), format!("{count}\n"));
    // The caller ends the connections early by creating OUT.stop (a loaded machine runs its
    // scenario slower than any fixed duration would guess).
    let stop_file = format!("{out}.stop");
    while Instant::now() < until && !std::path::Path::new(&stop_file).exists() {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let lines: Vec<String> = threads
        .into_iter()
        .map(|t| t.join().unwrap_or_else(|_| "0 - error 0 0\n".into()))
        .collect();
    if let Err(e) = std::fs::write(out, lines.concat()) {
        eprintln!("vm-conn-load: writing {out}: {e}");
        std::process::exit(1)
    }
}
