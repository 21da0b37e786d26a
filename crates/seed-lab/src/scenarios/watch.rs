//! Watchers that run beside a scenario and add to its timeline: the application's connections
//! open on each MariaDB instance (from its process list), and the directors' log lines.

use crate::mysql_client::{ConnectOptions, Connection};
use crate::topology::{server_label, Side, MONITOR, PORTS, READER, WRITER};
use crate::writer::{ConnectionSample, Timeline};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A background thread stopped on drop.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sleeps `total` in small steps; false when asked to stop meanwhile.
fn pause(stop: &AtomicBool, total: Duration) -> bool {
    let step = Duration::from_millis(50);
    let mut left = total;
    while !left.is_zero() {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let s = left.min(step);
        std::thread::sleep(s);
        left -= s;
    }
    !stop.load(Ordering::Relaxed)
}

/// Every `period`, from the client's namespace as the monitor account, counts the writer's and
/// reader's connections on each of the four instances, by the address they come from (the
/// proxy connects from the director's address).
pub fn connections(netns: PathBuf, timeline: Arc<Timeline>, period: Duration) -> Watcher {
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        if let Err(e) = halb_sys::netns::enter(&netns) {
            timeline.event("lab", format!("the connection watcher cannot start: {e}"));
            return;
        }
        let instances: Vec<(String, ConnectOptions)> = [Side::A, Side::B]
            .iter()
            .flat_map(|&side| PORTS.iter().map(move |&port| (side, port)))
            .map(|(side, port)| {
                let mut o = ConnectOptions::new(
                    SocketAddr::new(IpAddr::V4(side.ip()), port),
                    MONITOR.user,
                    MONITOR.password,
                );
                o.connect_timeout = Duration::from_millis(500);
                o.io_timeout = Duration::from_secs(2);
                (server_label(side, port), o)
            })
            .collect();
        let mut conns: Vec<Option<Connection>> = instances.iter().map(|_| None).collect();
        let sql = format!(
            "SELECT SUBSTRING_INDEX(HOST, ':', 1), COUNT(*) FROM information_schema.PROCESSLIST \
             WHERE USER IN ('{}', '{}') GROUP BY 1",
            WRITER.user, READER.user
        );
        loop {
            for ((label, options), slot) in instances.iter().zip(conns.iter_mut()) {
                let at = timeline.now();
                if slot.is_none() {
                    *slot = Connection::connect(options).ok();
                }
                let result = slot.as_mut().map(|c| c.query(&sql));
                let sample = match result {
                    Some(Ok(r)) => ConnectionSample {
                        at,
                        server: label.clone(),
                        up: true,
                        by_source: r
                            .rows
                            .iter()
                            .filter_map(|row| {
                                let source = row.first()?.clone()?;
                                let n = row.get(1)?.as_deref()?.parse().ok()?;
                                Some((source, n))
                            })
                            .collect::<BTreeMap<String, u32>>(),
                    },
                    _ => {
                        *slot = None;
                        ConnectionSample {
                            at,
                            server: label.clone(),
                            up: false,
                            by_source: BTreeMap::new(),
                        }
                    }
                };
                timeline.sample(sample);
            }
            if !pause(&stopping, period) {
                break;
            }
        }
        for c in conns.into_iter().flatten() {
            c.close();
        }
    });
    Watcher {
        stop,
        thread: Some(thread),
    }
}

/// Follows the directors' logs from their current end and puts the lines an operator would
/// look for into the timeline, with the director's name as the source.
pub fn logs(directors: Vec<(String, PathBuf)>, timeline: Arc<Timeline>) -> Watcher {
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    let mut offsets: Vec<u64> = directors
        .iter()
        .map(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .collect();
    let mut partial: Vec<String> = directors.iter().map(|_| String::new()).collect();
    let thread = std::thread::spawn(move || loop {
        for (i, (name, path)) in directors.iter().enumerate() {
            let Ok(mut file) = File::open(path) else {
                continue;
            };
            if file.seek(SeekFrom::Start(offsets[i])).is_err() {
                continue;
            }
            let mut bytes = Vec::new();
            if file.read_to_end(&mut bytes).is_err() {
                continue;
            }
            offsets[i] += bytes.len() as u64;
            partial[i].push_str(&String::from_utf8_lossy(&bytes));
            while let Some(end) = partial[i].find('\n') {
                let line: String = partial[i].drain(..=end).collect();
                if let Some(message) = interesting(line.trim_end()) {
                    timeline.event(name, message);
                }
            }
        }
        if !pause(&stopping, Duration::from_millis(100)) {
            break;
        }
    });
    Watcher {
        stop,
        thread: Some(thread),
    }
}

/// The message of a halb log line (`TIMESTAMP  LEVEL message`) worth a place in the timeline:
/// warnings and errors, and the state changes keepalived's operators grep for.
pub fn interesting(line: &str) -> Option<String> {
    let mut words = line.split_whitespace();
    let _timestamp = words.next()?;
    let level = words.next()?;
    let rest = line
        .split_once(level)
        .map(|(_, r)| r.trim())
        .unwrap_or_default();
    if !matches!(level, "INFO" | "WARN" | "ERROR") {
        return None;
    }
    const KEYS: &[&str] = &[
        "STATE",
        "sorry server",
        "Removing service",
        "Adding service",
        "quorum",
        "TCP_CHECK",
        "TCP connection",
        "gratuitous",
        "Stopping",
        "Starting halb",
        "priority",
        "closing",
        "closed",
    ];
    // One line per burst is enough ("Sending/queueing gratuitous ARPs …").
    if rest.starts_with("Sending gratuitous ARP on") {
        return None;
    }
    if level != "INFO" || KEYS.iter().any(|k| rest.contains(k)) {
        Some(if level == "INFO" {
            rest.to_string()
        } else {
            format!("{level} {rest}")
        })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_lines_operators_look_for() {
        assert_eq!(
            interesting("2026-01-01T00:00:00.000001Z  INFO (INT) Entering MASTER STATE"),
            Some("(INT) Entering MASTER STATE".into())
        );
        assert_eq!(
            interesting("2026-01-01T00:00:00.000001Z  WARN something odd"),
            Some("WARN something odd".into())
        );
        assert_eq!(
            interesting("2026-01-01T00:00:00.000001Z  INFO routine chatter"),
            None
        );
        assert_eq!(interesting("DEBUG"), None);
        assert_eq!(
            interesting(
                "2026-01-01T00:00:00Z  INFO Sending gratuitous ARP on eth0 for 192.168.66.251"
            ),
            None
        );
    }
}
