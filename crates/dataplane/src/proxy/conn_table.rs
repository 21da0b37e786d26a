//! The proxy's connection table, with IPVS's meaning (`ipvsadm -L -c`).
//!
//! A proxy sees sockets, not segments, so the states come from what the relay observes:
//!
//! | proxy event                                   | state        | counted as |
//! |-----------------------------------------------|--------------|------------|
//! | client accepted, connecting to the real server | `SYN_RECV`   | InActConn  |
//! | both sockets connected                        | `ESTABLISHED`| ActiveConn |
//! | client sent FIN first (IPVS: input FIN)       | `CLOSE_WAIT` | InActConn  |
//! | real server sent FIN first (output FIN)       | `FIN_WAIT`   | InActConn  |
//! | both sides sent FIN, sockets closed           | `TIME_WAIT`  | InActConn  |
//! | a reset or error closed both sockets          | `CLOSE`      | InActConn  |
//! | a UDP flow                                    | `UDP`        | InActConn  |
//!
//! As in IPVS, a connection starts inactive and only ESTABLISHED counts as active; UDP flows
//! never do. Closed connections (`TIME_WAIT`, `CLOSE`) stay listed for the proxy's linger
//! (default 2 s, not IPVS's 2 min: the proxy holds no state that needs it, and a long linger
//! would only weigh on the least-connection schedulers), then leave the table.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use halb_lb::table::ProtocolKey;
use tokio::sync::Notify;

use super::dest::DestState;
use super::stats::lock;
use crate::ConnectionEntry;

/// IPVS's connection states, as far as a proxy can tell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ConnState {
    SynRecv = 0,
    Established = 1,
    FinWait = 2,
    CloseWait = 3,
    TimeWait = 4,
    Close = 5,
    Udp = 6,
    /// Out of the table; counted nowhere any more.
    Removed = 7,
}

impl ConnState {
    fn from_u8(v: u8) -> ConnState {
        match v {
            0 => ConnState::SynRecv,
            1 => ConnState::Established,
            2 => ConnState::FinWait,
            3 => ConnState::CloseWait,
            4 => ConnState::TimeWait,
            5 => ConnState::Close,
            6 => ConnState::Udp,
            _ => ConnState::Removed,
        }
    }

    /// `ipvsadm -L -c`'s name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ConnState::SynRecv => "SYN_RECV",
            ConnState::Established => "ESTABLISHED",
            ConnState::FinWait => "FIN_WAIT",
            ConnState::CloseWait => "CLOSE_WAIT",
            ConnState::TimeWait => "TIME_WAIT",
            ConnState::Close => "CLOSE",
            ConnState::Udp => "UDP",
            ConnState::Removed => "NONE",
        }
    }

    pub(crate) fn is_active(self) -> bool {
        self == ConnState::Established
    }

    /// Both sockets are gone; only the entry lingers.
    pub(crate) fn is_closed(self) -> bool {
        matches!(
            self,
            ConnState::TimeWait | ConnState::Close | ConnState::Removed
        )
    }

    /// The client half-closed (IPVS's INPUT `fin` row).
    pub(crate) fn after_client_fin(self) -> ConnState {
        match self {
            ConnState::Established => ConnState::CloseWait,
            ConnState::FinWait => ConnState::TimeWait,
            other => other,
        }
    }

    /// The real server half-closed (IPVS's OUTPUT `fin` row).
    pub(crate) fn after_server_fin(self) -> ConnState {
        match self {
            ConnState::Established => ConnState::FinWait,
            ConnState::CloseWait => ConnState::TimeWait,
            other => other,
        }
    }
}

/// How long each state lasts without traffic, for `expires_s`: IPVS's default TCP timeouts
/// (`ipvsadm --set` shows 900 / 120 / 300), the proxy's linger for closed entries, and its UDP
/// flow timeout. The proxy does not cut an idle TCP connection; the ESTABLISHED figure only
/// says what IPVS would show.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) linger: Duration,
    pub(crate) udp: Duration,
}

impl Timeouts {
    fn of(&self, state: ConnState) -> Duration {
        match state {
            ConnState::SynRecv => Duration::from_secs(60),
            ConnState::Established => Duration::from_secs(900),
            ConnState::FinWait => Duration::from_secs(120),
            ConnState::CloseWait => Duration::from_secs(60),
            ConnState::TimeWait | ConnState::Close => self.linger,
            ConnState::Udp => self.udp,
            ConnState::Removed => Duration::ZERO,
        }
    }
}

/// One connection (or UDP flow) of a service.
#[derive(Debug)]
pub(crate) struct ConnRecord {
    id: u64,
    pub(crate) protocol: ProtocolKey,
    pub(crate) client: SocketAddr,
    pub(crate) vip: SocketAddr,
    pub(crate) dest: Arc<DestState>,
    state: AtomicU8,
    /// The proxy's milliseconds at the last traffic (or at the close, once closed).
    last_ms: AtomicU64,
    /// Woken by `drop_connections`: the task that owns the sockets closes them.
    dropped: Notify,
}

impl ConnRecord {
    pub(crate) fn state(&self) -> ConnState {
        ConnState::from_u8(self.state.load(Relaxed))
    }

    /// Moves to `next(state)`, moving the connection between ActiveConn and InActConn when
    /// the class changes. A removed record stays removed (it is no longer counted, and the
    /// task that owns it may learn so only later).
    pub(crate) fn transition(&self, next: impl Fn(ConnState) -> ConnState) -> ConnState {
        let mut current = self.state.load(Relaxed);
        loop {
            let from = ConnState::from_u8(current);
            if from == ConnState::Removed {
                return from;
            }
            let to = next(from);
            if to == from {
                return from;
            }
            match self
                .state
                .compare_exchange_weak(current, to as u8, Relaxed, Relaxed)
            {
                Ok(_) => {
                    if from.is_active() != to.is_active() && to != ConnState::Removed {
                        self.dest.reclass(from.is_active());
                    }
                    return to;
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Takes the record out of the counts; true the first time only.
    fn unbind(&self) -> bool {
        let from = ConnState::from_u8(self.state.swap(ConnState::Removed as u8, Relaxed));
        if from == ConnState::Removed {
            return false;
        }
        self.dest.unbind(from.is_active());
        true
    }

    pub(crate) fn touch(&self, now_ms: u64) {
        self.last_ms.store(now_ms, Relaxed);
    }

    pub(crate) fn last_ms(&self) -> u64 {
        self.last_ms.load(Relaxed)
    }

    /// Resolves once `drop_connections` asked this connection to close.
    pub(crate) async fn dropped(&self) {
        self.dropped.notified().await
    }

    fn entry(&self, now_ms: u64, timeouts: &Timeouts) -> Option<ConnectionEntry> {
        let state = self.state();
        if state == ConnState::Removed {
            return None;
        }
        let idle = Duration::from_millis(now_ms.saturating_sub(self.last_ms()));
        let left = timeouts.of(state).saturating_sub(idle);
        Some(ConnectionEntry {
            protocol: self.protocol,
            client: self.client,
            virtual_addr: self.vip,
            dest: self.dest.addr,
            state: state.name().to_string(),
            // Rounded up, so a live entry never shows 0 (ipvsadm shows 00:00 only at the end).
            expires_s: left.as_millis().div_ceil(1000) as u32,
        })
    }
}

/// A service's connections. The lock is taken when a connection starts and ends, never per
/// packet.
#[derive(Debug, Default)]
pub(crate) struct ConnTable {
    next_id: AtomicU64,
    records: Mutex<HashMap<u64, Arc<ConnRecord>>>,
}

impl ConnTable {
    /// Enters a new connection to `dest` in `state` (counted as IPVS counts a new connection:
    /// inactive until established).
    pub(crate) fn open(
        self: &Arc<Self>,
        protocol: ProtocolKey,
        client: SocketAddr,
        vip: SocketAddr,
        dest: Arc<DestState>,
        state: ConnState,
        now_ms: u64,
    ) -> ConnGuard {
        dest.bind(state.is_active());
        let record = Arc::new(ConnRecord {
            id: self.next_id.fetch_add(1, Relaxed),
            protocol,
            client,
            vip,
            dest,
            state: AtomicU8::new(state as u8),
            last_ms: AtomicU64::new(now_ms),
            dropped: Notify::new(),
        });
        lock(&self.records).insert(record.id, record.clone());
        ConnGuard {
            table: self.clone(),
            record,
        }
    }

    fn remove(&self, record: &ConnRecord) {
        lock(&self.records).remove(&record.id);
        record.unbind();
    }

    pub(crate) fn is_empty(&self) -> bool {
        lock(&self.records).is_empty()
    }

    pub(crate) fn entries(&self, now_ms: u64, timeouts: &Timeouts) -> Vec<ConnectionEntry> {
        let records: Vec<Arc<ConnRecord>> = lock(&self.records).values().cloned().collect();
        records
            .iter()
            .filter_map(|r| r.entry(now_ms, timeouts))
            .collect()
    }

    /// Closes every connection to `dest`: their entries leave the table now, and the tasks
    /// that hold their sockets are told to close them. Returns how many were still open
    /// (lingering closed entries go too, uncounted).
    pub(crate) fn drop_to(&self, dest: SocketAddr) -> usize {
        let victims: Vec<Arc<ConnRecord>> = {
            let mut records = lock(&self.records);
            let ids: Vec<u64> = records
                .values()
                .filter(|r| r.dest.addr == dest)
                .map(|r| r.id)
                .collect();
            ids.iter().filter_map(|id| records.remove(id)).collect()
        };
        let mut open = 0;
        for record in victims {
            if !record.state().is_closed() {
                open += 1;
            }
            record.unbind();
            record.dropped.notify_one();
        }
        open
    }
}

/// A connection's place in the table, held by the task that owns its sockets: dropping it
/// (on any path, including the task's abort) takes the entry out and uncounts it.
#[derive(Debug)]
pub(crate) struct ConnGuard {
    table: Arc<ConnTable>,
    pub(crate) record: Arc<ConnRecord>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.table.remove(&self.record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use halb_lb::table::{Destination, Forwarding};

    fn dest() -> Arc<DestState> {
        Arc::new(DestState::new(&Destination {
            addr: "127.0.0.1:80".parse().unwrap(),
            weight: 1,
            forwarding: Forwarding::Nat,
            uthreshold: 0,
            lthreshold: 0,
        }))
    }

    fn open(table: &Arc<ConnTable>, dest: &Arc<DestState>, state: ConnState) -> ConnGuard {
        table.open(
            ProtocolKey::Tcp,
            "127.0.0.1:5000".parse().unwrap(),
            "127.0.0.2:80".parse().unwrap(),
            dest.clone(),
            state,
            0,
        )
    }

    #[test]
    fn fin_rows_follow_ipvs() {
        use ConnState::*;
        assert_eq!(Established.after_client_fin(), CloseWait);
        assert_eq!(Established.after_server_fin(), FinWait);
        assert_eq!(CloseWait.after_server_fin(), TimeWait);
        assert_eq!(FinWait.after_client_fin(), TimeWait);
        assert_eq!(CloseWait.after_client_fin(), CloseWait);
    }

    #[test]
    fn counts_follow_the_state() {
        let table = Arc::new(ConnTable::default());
        let d = dest();
        let guard = open(&table, &d, ConnState::SynRecv);
        assert_eq!((d.active(), d.inactive()), (0, 1));
        guard.record.transition(|_| ConnState::Established);
        assert_eq!((d.active(), d.inactive()), (1, 0));
        guard.record.transition(ConnState::after_client_fin);
        assert_eq!((d.active(), d.inactive()), (0, 1));
        drop(guard);
        assert_eq!((d.active(), d.inactive()), (0, 0));
        assert!(table.is_empty());
    }

    #[test]
    fn a_dropped_connection_is_uncounted_once() {
        let table = Arc::new(ConnTable::default());
        let d = dest();
        let guard = open(&table, &d, ConnState::Established);
        let closed = open(&table, &d, ConnState::TimeWait);
        assert_eq!(table.drop_to(d.addr), 1, "the TIME_WAIT entry was not open");
        assert_eq!((d.active(), d.inactive()), (0, 0));
        // The owning task notices later: nothing changes twice.
        guard.record.transition(ConnState::after_server_fin);
        drop(guard);
        drop(closed);
        assert_eq!((d.active(), d.inactive()), (0, 0));
        assert!(table.is_empty());
    }

    #[test]
    fn entries_show_state_and_expiry() {
        let table = Arc::new(ConnTable::default());
        let d = dest();
        let guard = open(&table, &d, ConnState::Established);
        let timeouts = Timeouts {
            linger: Duration::from_secs(2),
            udp: Duration::from_secs(300),
        };
        let e = table.entries(100_000, &timeouts);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].state, "ESTABLISHED");
        assert_eq!(e[0].expires_s, 800);
        guard.record.transition(|_| ConnState::TimeWait);
        guard.record.touch(100_000);
        assert_eq!(table.entries(100_500, &timeouts)[0].expires_s, 2);
    }
}
