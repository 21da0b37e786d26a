//! Passive detection on IPVS: which destinations leave their clients' new connections hanging.
//!
//! In DR and TUN mode the director sees only the client's side of a connection. IPVS puts a
//! connection in `SYN_RECV` at the client's SYN and in `ESTABLISHED` at the client's ACK of the
//! server's SYN-ACK, which on a LAN comes within a millisecond. A connection still in `SYN_RECV`
//! a few hundred milliseconds later means the server did not answer (a vanished host) or
//! refused (its reset went straight to the client): either way the client's next tries will
//! fail too. In NAT mode a server that does not answer looks the same.
//!
//! This is evidence, never a verdict: a slow or hostile client (a SYN flood) leaves entries in
//! `SYN_RECV` in front of a healthy server too. A [`Stall`] only asks the destination's
//! checkers to look now; their own probe decides (see `halb_check::policy::Policy::expedite`).
//!
//! The detector is sans-IO: the shell reads the table (see [`super::conn_scan`]) and hands each
//! scan's connections to [`StallDetector::observe`] between [`StallDetector::begin`] and
//! [`StallDetector::finish`], with the time of the read. Only connections seen in `SYN_RECV` are
//! remembered (a handful in a healthy table, whatever its size), keyed by their addresses; one
//! that is no longer in `SYN_RECV` at the next scan made progress.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::conn_scan::{ConnView, TcpState};

/// How long a connection may stay in `SYN_RECV` before it counts as stalled. A handshake on a
/// LAN takes well under a millisecond; 100 ms leaves room for a loaded director and a client
/// that is slow to run, and equals the reader's shortest pause: a connection found in
/// `SYN_RECV` by two reads in a row is stalled, so the first one is seen 100 to 200 ms after
/// it started.
pub const DEFAULT_THRESHOLD: Duration = Duration::from_millis(100);

/// At most this many `SYN_RECV` connections are followed (a SYN flood must not grow the
/// detector without bound); beyond it new ones are ignored until some leave.
pub const MAX_PENDING: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StallConfig {
    pub threshold: Duration,
    pub max_pending: usize,
}

impl Default for StallConfig {
    fn default() -> Self {
        StallConfig {
            threshold: DEFAULT_THRESHOLD,
            max_pending: MAX_PENDING,
        }
    }
}

/// A destination whose new connections stall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    pub dest: SocketAddr,
    /// Connections to it stalled in `SYN_RECV` now.
    pub stalled: usize,
    /// How long the oldest of them has been waiting (since it was first seen).
    pub longest: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ConnKey {
    client: SocketAddr,
    virtual_addr: SocketAddr,
    dest: SocketAddr,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    first_seen: Instant,
    scan: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct DestProgress {
    /// When the newest connection known to have got past `SYN_RECV` was first seen.
    started: Option<Instant>,
}

#[derive(Debug)]
struct Tally {
    stalled: usize,
    oldest: Instant,
    newest: Instant,
}

/// See the module's documentation.
#[derive(Debug)]
pub struct StallDetector {
    cfg: StallConfig,
    watched: HashSet<SocketAddr>,
    pending: HashMap<ConnKey, Pending>,
    progress: HashMap<SocketAddr, DestProgress>,
    tallies: HashMap<SocketAddr, Tally>,
    scan: u64,
    now: Option<Instant>,
}

impl StallDetector {
    pub fn new(cfg: StallConfig) -> StallDetector {
        StallDetector {
            cfg,
            watched: HashSet::new(),
            pending: HashMap::new(),
            progress: HashMap::new(),
            tallies: HashMap::new(),
            scan: 0,
            now: None,
        }
    }

    /// The destinations to watch (real servers with checkers; not sorry servers, which nothing
    /// checks). What is known of others is forgotten.
    pub fn set_watched(&mut self, dests: impl IntoIterator<Item = SocketAddr>) {
        self.watched = dests.into_iter().collect();
        let watched = &self.watched;
        self.pending.retain(|k, _| watched.contains(&k.dest));
        self.progress.retain(|d, _| watched.contains(d));
    }

    pub fn is_idle(&self) -> bool {
        self.watched.is_empty()
    }

    /// Connections followed now (in `SYN_RECV` at the last scan).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Starts a scan of the table as read at `now`.
    pub fn begin(&mut self, now: Instant) {
        self.scan += 1;
        self.now = Some(now);
    }

    /// One connection of the scan.
    pub fn observe(&mut self, conn: &ConnView) {
        if conn.state != TcpState::SynRecv || !self.watched.contains(&conn.dest) {
            return;
        }
        let Some(now) = self.now else {
            return;
        };
        let key = ConnKey {
            client: conn.client,
            virtual_addr: conn.virtual_addr,
            dest: conn.dest,
        };
        let scan = self.scan;
        if let Some(p) = self.pending.get_mut(&key) {
            p.scan = scan;
        } else if self.pending.len() < self.cfg.max_pending {
            self.pending.insert(
                key,
                Pending {
                    first_seen: now,
                    scan,
                },
            );
        }
    }

    /// Ends the scan: the destinations whose newest stalled connection started after the
    /// newest connection that got through (a server that answers others is not the one that
    /// stalls this client).
    pub fn finish(&mut self) -> Vec<Stall> {
        let Some(now) = self.now.take() else {
            return Vec::new();
        };
        let scan = self.scan;
        let threshold = self.cfg.threshold;
        let progress = &mut self.progress;
        let tallies = &mut self.tallies;
        tallies.clear();
        self.pending.retain(|key, p| {
            if p.scan != scan {
                // Left SYN_RECV since the last scan: the handshake went on (or the client gave
                // up with a reset, which does not blame the server either).
                let d = progress.entry(key.dest).or_default();
                d.started = Some(d.started.map_or(p.first_seen, |s| s.max(p.first_seen)));
                return false;
            }
            if now.saturating_duration_since(p.first_seen) >= threshold {
                let t = tallies.entry(key.dest).or_insert(Tally {
                    stalled: 0,
                    oldest: p.first_seen,
                    newest: p.first_seen,
                });
                t.stalled += 1;
                t.oldest = t.oldest.min(p.first_seen);
                t.newest = t.newest.max(p.first_seen);
            }
            true
        });
        let mut out: Vec<Stall> = tallies
            .iter()
            .filter(|(dest, t)| {
                progress
                    .get(dest)
                    .and_then(|d| d.started)
                    .is_none_or(|started| t.newest > started)
            })
            .map(|(dest, t)| Stall {
                dest: *dest,
                stalled: t.stalled,
                longest: now.saturating_duration_since(t.oldest),
            })
            .collect();
        out.sort_by_key(|s| s.dest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RS: &str = "192.168.66.253:3306";
    const OTHER: &str = "192.168.66.252:3306";
    const VIP: &str = "192.168.66.251:3306";

    fn conn(port: u16, dest: &str, state: TcpState) -> ConnView {
        ConnView {
            client: SocketAddr::new("192.168.66.10".parse().unwrap(), port),
            virtual_addr: VIP.parse().unwrap(),
            dest: dest.parse().unwrap(),
            state,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn detector() -> StallDetector {
        let mut d = StallDetector::new(StallConfig::default());
        d.set_watched([RS.parse().unwrap(), OTHER.parse().unwrap()]);
        d
    }

    fn scan(d: &mut StallDetector, at: Instant, conns: &[ConnView]) -> Vec<Stall> {
        d.begin(at);
        for c in conns {
            d.observe(c);
        }
        d.finish()
    }

    #[test]
    fn a_connection_left_in_syn_recv_past_the_threshold_is_a_stall() {
        let t0 = Instant::now();
        let mut d = detector();
        let stuck = conn(40000, RS, TcpState::SynRecv);
        assert!(scan(&mut d, t0, &[stuck]).is_empty(), "just seen");
        assert!(
            scan(&mut d, t0 + ms(60), &[stuck]).is_empty(),
            "under 100 ms"
        );
        let out = scan(&mut d, t0 + ms(200), &[stuck]);
        assert_eq!(
            out,
            vec![Stall {
                dest: RS.parse().unwrap(),
                stalled: 1,
                longest: ms(200),
            }]
        );
        // And again at every scan while it stays.
        let more = conn(40001, RS, TcpState::SynRecv);
        assert_eq!(scan(&mut d, t0 + ms(300), &[stuck, more])[0].stalled, 1);
        assert_eq!(scan(&mut d, t0 + ms(400), &[stuck, more])[0].stalled, 2);
    }

    #[test]
    fn handshakes_that_complete_are_no_stall() {
        let t0 = Instant::now();
        let mut d = detector();
        // 1,000 connections a second, caught in SYN_RECV now and then, ESTABLISHED at the next
        // read.
        for i in 0..100u16 {
            let at = t0 + ms(u64::from(i) * 100);
            let mut table = vec![conn(30000 + i, RS, TcpState::SynRecv)];
            if i > 0 {
                table.push(conn(30000 + i - 1, RS, TcpState::Established));
            }
            assert!(scan(&mut d, at, &table).is_empty());
        }
        assert_eq!(d.pending(), 1);
    }

    #[test]
    fn templates_other_destinations_and_other_states_are_not_followed() {
        let t0 = Instant::now();
        let mut d = detector();
        let sorry = conn(40000, "192.168.66.254:3306", TcpState::SynRecv);
        let closing = conn(40001, RS, TcpState::Close);
        for i in 0..5 {
            assert!(scan(&mut d, t0 + ms(i * 100), &[sorry, closing]).is_empty());
        }
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn a_stalled_client_does_not_blame_a_server_that_others_get_through_to() {
        let t0 = Instant::now();
        let mut d = detector();
        let slow = conn(40000, RS, TcpState::SynRecv);
        let later = conn(40001, RS, TcpState::SynRecv);
        scan(&mut d, t0, &[slow]);
        scan(&mut d, t0 + ms(100), &[slow, later]);
        // `later`, which started after `slow`, completed: the server answers.
        assert!(scan(&mut d, t0 + ms(200), &[slow]).is_empty());
        assert!(scan(&mut d, t0 + ms(900), &[slow]).is_empty());
        // A new connection that stalls after that is evidence again.
        let new = conn(40002, RS, TcpState::SynRecv);
        scan(&mut d, t0 + ms(1000), &[slow, new]);
        let out = scan(&mut d, t0 + ms(1200), &[slow, new]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].stalled, 2);
        assert_eq!(out[0].longest, ms(1200));
    }

    #[test]
    fn each_destination_on_its_own() {
        let t0 = Instant::now();
        let mut d = detector();
        let a = conn(40000, RS, TcpState::SynRecv);
        let b = conn(40000, OTHER, TcpState::SynRecv);
        scan(&mut d, t0, &[a, b]);
        let out = scan(&mut d, t0 + ms(100), &[a, b]);
        assert_eq!(
            out.iter().map(|s| s.dest.to_string()).collect::<Vec<_>>(),
            vec![OTHER, RS]
        );
    }

    #[test]
    fn unwatching_forgets_and_the_pending_set_is_bounded() {
        let t0 = Instant::now();
        let mut d = StallDetector::new(StallConfig {
            max_pending: 10,
            ..StallConfig::default()
        });
        d.set_watched([RS.parse().unwrap()]);
        let flood: Vec<ConnView> = (0..100)
            .map(|p| conn(10000 + p, RS, TcpState::SynRecv))
            .collect();
        scan(&mut d, t0, &flood);
        assert_eq!(d.pending(), 10);
        assert_eq!(scan(&mut d, t0 + ms(200), &flood)[0].stalled, 10);
        d.set_watched([]);
        assert!(d.is_idle());
        assert_eq!(d.pending(), 0);
        assert!(scan(&mut d, t0 + ms(400), &flood).is_empty());
    }

    #[test]
    fn a_scan_without_begin_gives_nothing() {
        let mut d = detector();
        d.observe(&conn(1, RS, TcpState::SynRecv));
        assert!(d.finish().is_empty());
        assert_eq!(d.pending(), 0);
    }
}
