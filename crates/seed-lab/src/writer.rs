//! The seed's test program (section 6.1) and its record.
//!
//! A [`Load`] runs streams of attempts from the client's namespace through the VIP: a writer
//! inserts one row per tick into `vip_wealth_log`, a reader counts the rows and reads the
//! highest id, and an updater increments the counter row of `counter` with a read-modify-write
//! transaction (`SELECT … FOR UPDATE`, then `UPDATE` to the value read plus one, `COMMIT`): two
//! masters taking such updates at once, or a master that has not applied the other's, lose
//! increments, which the final value shows. Each stream has a small connection pool that behaves as a typical application
//! pool does: a connection is reused until a statement on it fails, then it is thrown away and
//! the next attempt that needs it opens a new one; a failed statement is not retried (the
//! application sees the exception, as the seed's Java program did).
//!
//! Every attempt (time, outcome, id, which server answered, error) goes into a [`Timeline`],
//! together with the lab's own events and the watchers' samples; with the live view on, the
//! timeline is printed to stderr while it grows (failures, changes of server, and events).

use crate::mysql_client::{ConnectOptions, Connection, SqlError};
use crate::topology::{
    instance_of_server_id, server_label, COUNTER, DATABASE, READER, TABLE, VIP, WRITER,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What an attempt does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Write,
    Read,
    /// The counter's read-modify-write transaction.
    Update,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Write => "write",
            Op::Read => "read",
            Op::Update => "update",
        }
    }

    /// Whether the attempt changes data (an insert or a counter update).
    pub fn writes(self) -> bool {
        matches!(self, Op::Write | Op::Update)
    }
}

/// One attempt of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub op: Op,
    /// The VIP's port it went to.
    pub port: u16,
    /// Counts the stream's attempts from 1.
    pub seq: u64,
    /// Seconds since the timeline started, when the attempt began.
    pub at: f64,
    pub took_ms: f64,
    pub ok: bool,
    /// A write's new row id; a read's highest id; an update's new counter value.
    pub id: Option<u64>,
    /// The instance that answered (`253:3306`), from its `server_id`.
    pub server: Option<String>,
    /// The server's id of the connection used.
    pub connection: Option<u32>,
    /// Whether the pool opened the connection for this attempt.
    pub new_connection: bool,
    /// A write's `account` value, unique per attempt: finds rows whose acknowledgement was lost.
    pub tag: Option<String>,
    pub error: Option<String>,
}

/// Something the lab did or saw (a stop, a start, a line of halb's log, a state change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at: f64,
    /// `lab`, `d1`, `d2`.
    pub source: String,
    pub text: String,
}

/// The application's connections open on one instance at one moment, by the address they come
/// from (a director's, since the proxy connects from there).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionSample {
    pub at: f64,
    pub server: String,
    /// Whether the instance answered at all.
    pub up: bool,
    pub by_source: BTreeMap<String, u32>,
}

impl ConnectionSample {
    pub fn total(&self) -> u32 {
        self.by_source.values().sum()
    }
}

/// Everything a timeline holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Records {
    pub attempts: Vec<Attempt>,
    pub events: Vec<Event>,
    pub samples: Vec<ConnectionSample>,
}

/// What the live view last printed for a stream: success, and the server that answered.
type Shown = (bool, Option<String>);

/// The record of one scenario, shared by the threads that add to it.
#[derive(Debug)]
pub struct Timeline {
    t0: Instant,
    records: Mutex<Records>,
    live: Option<String>,
    /// Per stream, the last outcome printed (ok, server): the live view prints changes.
    shown: Mutex<HashMap<(Op, u16), Shown>>,
}

impl Timeline {
    /// A timeline starting now; with `live` set, lines are printed to stderr as they come,
    /// each prefixed with it (the scenario's id).
    pub fn new(live: Option<String>) -> Arc<Timeline> {
        Arc::new(Timeline {
            t0: Instant::now(),
            records: Mutex::new(Records::default()),
            live,
            shown: Mutex::new(HashMap::new()),
        })
    }

    /// Seconds since the start.
    pub fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    /// `instant` in seconds since the start.
    pub fn at(&self, instant: Instant) -> f64 {
        instant.saturating_duration_since(self.t0).as_secs_f64()
    }

    /// Adds an event at the current time and returns that time.
    pub fn event(&self, source: &str, text: impl Into<String>) -> f64 {
        let at = self.now();
        let event = Event {
            at,
            source: source.to_string(),
            text: text.into(),
        };
        self.print(&format!("{:<10} {}", event.source, event.text), at);
        lock(&self.records).events.push(event);
        at
    }

    pub fn record(&self, attempt: Attempt) {
        if self.live.is_some() {
            let key = (attempt.op, attempt.port);
            let state = (attempt.ok, attempt.server.clone());
            let mut shown = lock(&self.shown);
            if !attempt.ok || shown.get(&key) != Some(&state) {
                shown.insert(key, state);
                drop(shown);
                self.print(&describe_attempt(&attempt), attempt.at);
            }
        }
        lock(&self.records).attempts.push(attempt);
    }

    pub fn sample(&self, sample: ConnectionSample) {
        lock(&self.records).samples.push(sample);
    }

    /// A copy of everything so far.
    pub fn records(&self) -> Records {
        lock(&self.records).clone()
    }

    fn print(&self, line: &str, at: f64) {
        if let Some(prefix) = &self.live {
            eprintln!("{prefix:>6} {at:>7.1}s  {line}");
        }
    }
}

/// One line of the timeline for an attempt: `write:3306 ok on 253:3306, id 42 (new connection)`.
pub fn describe_attempt(a: &Attempt) -> String {
    let stream = format!("{}:{}", a.op.name(), a.port);
    if a.ok {
        let mut s = format!("{stream:<10} ok on {}", a.server.as_deref().unwrap_or("?"));
        if let Some(id) = a.id {
            s.push_str(&match a.op {
                Op::Write => format!(", id {id}"),
                Op::Read => format!(", max id {id}"),
                Op::Update => format!(", counter {id}"),
            });
        }
        if a.new_connection {
            s.push_str(" (new connection)");
        }
        s
    } else {
        format!(
            "{stream:<10} FAILED: {}",
            a.error.as_deref().unwrap_or("unknown error")
        )
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking writer thread must not take the record with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How the application behaves.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Attempts per second, per stream (the seed: one row per second).
    pub rate: f64,
    /// Connections per stream's pool, used in turn.
    pub pool: usize,
    pub connect_timeout: Duration,
    /// For each statement (and the login).
    pub io_timeout: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            rate: 1.0,
            pool: 2,
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(5),
        }
    }
}

/// One stream of attempts: writes or reads on one of the VIP's ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    pub op: Op,
    pub port: u16,
}

impl Stream {
    pub fn write(port: u16) -> Stream {
        Stream {
            op: Op::Write,
            port,
        }
    }

    pub fn read(port: u16) -> Stream {
        Stream { op: Op::Read, port }
    }

    pub fn update(port: u16) -> Stream {
        Stream {
            op: Op::Update,
            port,
        }
    }
}

/// Running streams; stopped (their pools closed politely) by [`Load::stop`] or on drop.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts each stream on its own thread inside the network namespace at `netns` (the
    /// client's). `tag` goes into every written row's `account` (`TAG-w3306-17`).
    pub fn start(
        netns: &Path,
        timeline: &Arc<Timeline>,
        streams: &[Stream],
        tag: &str,
        options: &LoadOptions,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = streams
            .iter()
            .map(|&stream| {
                let ctx = StreamThread {
                    netns: netns.to_path_buf(),
                    timeline: Arc::clone(timeline),
                    stream,
                    tag: tag.to_string(),
                    options: options.clone(),
                    stop: Arc::clone(&stop),
                };
                std::thread::spawn(move || ctx.run())
            })
            .collect();
        Load { stop, threads }
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.halt();
    }
}

struct StreamThread {
    netns: PathBuf,
    timeline: Arc<Timeline>,
    stream: Stream,
    tag: String,
    options: LoadOptions,
    stop: Arc<AtomicBool>,
}

impl StreamThread {
    fn run(self) {
        let Stream { op, port } = self.stream;
        if let Err(e) = halb_sys::netns::enter(&self.netns) {
            self.timeline
                .event("lab", format!("{}:{port} cannot start: {e}", op.name()));
            return;
        }
        let account = match op {
            Op::Write | Op::Update => WRITER,
            Op::Read => READER,
        };
        let mut connect = ConnectOptions::new(
            SocketAddr::new(IpAddr::V4(VIP), port),
            account.user,
            account.password,
        )
        .database(DATABASE);
        connect.connect_timeout = self.options.connect_timeout;
        connect.io_timeout = self.options.io_timeout;
        let mut pool = Pool::new(connect, self.options.pool.max(1));
        let period = Duration::from_secs_f64(1.0 / self.options.rate.max(0.01));
        let mut next = Instant::now();
        let mut seq = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now < next {
                std::thread::sleep((next - now).min(Duration::from_millis(50)));
                continue;
            }
            seq += 1;
            let attempt = match op {
                Op::Write => {
                    let tag = format!("{}-w{port}-{seq}", self.tag);
                    let sql = format!(
                        "INSERT INTO {DATABASE}.{TABLE} (account, cert_no, name) \
                         VALUES ('{tag}', 'demo', 'test')"
                    );
                    let mut a = pool.attempt(&self.timeline, op, port, seq, |c| {
                        Ok(Some(c.query(&sql)?.last_insert_id))
                    });
                    a.tag = Some(tag);
                    a
                }
                Op::Read => pool.attempt(&self.timeline, op, port, seq, |c| {
                    let r =
                        c.query(&format!("SELECT COUNT(*), MAX(id) FROM {DATABASE}.{TABLE}"))?;
                    Ok(r.rows
                        .first()
                        .and_then(|row| row.get(1)?.as_deref()?.parse().ok()))
                }),
                Op::Update => pool.attempt(&self.timeline, op, port, seq, increment_counter),
            };
            self.timeline.record(attempt);
            // A late attempt does not make the next ones come in a burst.
            next += period;
            let now = Instant::now();
            while next <= now {
                next += period;
            }
        }
        pool.close();
    }
}

struct Pooled {
    conn: Connection,
    server: Option<String>,
}

/// A fixed number of slots used in turn; a slot's connection is opened when needed and thrown
/// away when a statement on it fails.
struct Pool {
    options: ConnectOptions,
    slots: Vec<Option<Pooled>>,
    next: usize,
}

impl Pool {
    fn new(options: ConnectOptions, size: usize) -> Pool {
        Pool {
            options,
            slots: (0..size).map(|_| None).collect(),
            next: 0,
        }
    }

    fn attempt(
        &mut self,
        timeline: &Timeline,
        op: Op,
        port: u16,
        seq: u64,
        run: impl FnOnce(&mut Connection) -> Result<Option<u64>, SqlError>,
    ) -> Attempt {
        let started = Instant::now();
        let at = timeline.at(started);
        let index = self.next;
        self.next = (self.next + 1) % self.slots.len();
        let mut attempt = Attempt {
            op,
            port,
            seq,
            at,
            took_ms: 0.0,
            ok: false,
            id: None,
            server: None,
            connection: None,
            new_connection: false,
            tag: None,
            error: None,
        };
        if self.slots[index].is_none() {
            attempt.new_connection = true;
            match open(&self.options) {
                Ok(p) => self.slots[index] = Some(p),
                Err(e) => {
                    attempt.error = Some(e.to_string());
                    attempt.took_ms = started.elapsed().as_secs_f64() * 1e3;
                    return attempt;
                }
            }
        }
        let Some(pooled) = self.slots[index].as_mut() else {
            attempt.error = Some("no connection".into());
            return attempt;
        };
        attempt.server = pooled.server.clone();
        attempt.connection = Some(pooled.conn.connection_id);
        match run(&mut pooled.conn) {
            Ok(id) => {
                attempt.ok = true;
                attempt.id = id;
            }
            Err(e) => {
                attempt.error = Some(e.to_string());
                // Thrown away without a goodbye: the connection is broken or suspect.
                self.slots[index] = None;
            }
        }
        attempt.took_ms = started.elapsed().as_secs_f64() * 1e3;
        attempt
    }

    fn close(&mut self) {
        for slot in &mut self.slots {
            if let Some(p) = slot.take() {
                p.conn.close();
            }
        }
    }
}

/// The counter's read-modify-write: reads the value under a row lock and writes it back plus
/// one, as an application that computes the new value itself does. Returns the value written.
fn increment_counter(c: &mut Connection) -> Result<Option<u64>, SqlError> {
    c.query("BEGIN")?;
    let read = c.query(&format!(
        "SELECT n FROM {DATABASE}.{COUNTER} WHERE id = 1 FOR UPDATE"
    ))?;
    let n: u64 = read.first().and_then(|v| v.parse().ok()).unwrap_or(0);
    c.query(&format!(
        "UPDATE {DATABASE}.{COUNTER} SET n = {} WHERE id = 1",
        n + 1
    ))?;
    c.query("COMMIT")?;
    Ok(Some(n + 1))
}

/// Connects and asks which instance answered.
fn open(options: &ConnectOptions) -> Result<Pooled, SqlError> {
    let mut conn = Connection::connect(options)?;
    let server = conn
        .query("SELECT @@server_id")?
        .first()
        .and_then(|v| v.parse().ok())
        .and_then(instance_of_server_id)
        .map(|(side, port)| server_label(side, port));
    Ok(Pooled { conn, server })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(ok: bool) -> Attempt {
        Attempt {
            op: Op::Write,
            port: 3306,
            seq: 1,
            at: 1.0,
            took_ms: 2.0,
            ok,
            id: ok.then_some(42),
            server: ok.then(|| "253:3306".to_string()),
            connection: None,
            new_connection: true,
            tag: None,
            error: (!ok).then(|| "connect to 192.168.66.251:3306: refused".to_string()),
        }
    }

    #[test]
    fn describes_attempts() {
        assert_eq!(
            describe_attempt(&attempt(true)),
            "write:3306 ok on 253:3306, id 42 (new connection)"
        );
        assert_eq!(
            describe_attempt(&attempt(false)),
            "write:3306 FAILED: connect to 192.168.66.251:3306: refused"
        );
    }

    #[test]
    fn the_timeline_keeps_everything_in_order() {
        let t = Timeline::new(None);
        t.record(attempt(true));
        let at = t.event("lab", "stop 253:3306");
        t.record(attempt(false));
        let r = t.records();
        assert_eq!(r.attempts.len(), 2);
        assert_eq!(r.events.len(), 1);
        assert!(r.events[0].at == at && at >= 0.0);
    }
}
