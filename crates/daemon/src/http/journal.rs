//! The recent events as the HTTP API serves them: each event of the bus gets a sequence number
//! and a JSON form, and the last [`CAPACITY`] are kept, so a client that polls with `since=` (or
//! an event stream that reconnects with `Last-Event-ID`) gets what it missed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use serde::Serialize;
use serde_json::{json, Value};

use crate::event::{DaemonEvent, Event, EventKind, VrrpEvent};

/// How many events are kept.
pub const CAPACITY: usize = 4096;

/// One event as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// 1 for the first event since the daemon started, then one more per event.
    pub seq: u64,
    /// When it happened, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// `vrrp`, `checker`, `virtual_server` or `daemon`: the SSE event name.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// keepalived's log line for it (or the checker's last word).
    pub text: String,
    /// The event's fields.
    pub data: Value,
}

/// The last [`CAPACITY`] records, oldest first.
#[derive(Debug, Default)]
pub struct Journal {
    records: VecDeque<Arc<Record>>,
    last_seq: u64,
}

impl Journal {
    /// Numbers and keeps `event`; returns its record.
    pub fn push(&mut self, event: &Event) -> Arc<Record> {
        self.last_seq += 1;
        let record = Arc::new(record(self.last_seq, event));
        if self.records.len() == CAPACITY {
            self.records.pop_front();
        }
        self.records.push_back(Arc::clone(&record));
        record
    }

    /// The sequence number of the newest event (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The kept records newer than `since`, and whether some newer than `since` were already
    /// dropped (the client fell more than [`CAPACITY`] events behind).
    pub fn since(&self, since: u64) -> (Vec<Arc<Record>>, bool) {
        let first_kept = self.records.front().map_or(self.last_seq + 1, |r| r.seq);
        let lost = since + 1 < first_kept;
        let skip = since.saturating_sub(first_kept.saturating_sub(1));
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        (self.records.iter().skip(skip).cloned().collect(), lost)
    }
}

fn record(seq: u64, event: &Event) -> Record {
    let at_ms = event
        .at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let lines = event
        .log_lines()
        .into_iter()
        .map(|(_, line)| line)
        .collect::<Vec<_>>()
        .join("; ");
    let (kind, text, data) = match &event.kind {
        EventKind::Vrrp(e) => ("vrrp", lines, vrrp_data(e)),
        EventKind::CheckerVerdict(r) => (
            "checker",
            r.detail.clone(),
            json!({
                "virtual_server": r.id.vs,
                "real_server_index": r.id.rs,
                "checker": r.id.checker,
                "real_server": r.real_server.to_string(),
                "up": r.up,
                "weight": r.weight,
                "failure": r.failure.as_ref().map(|f| f.kind.as_str()),
                "probe_ms": r.probe_duration.as_secs_f64() * 1000.0,
            }),
        ),
        EventKind::VirtualServer(e) => (
            "virtual_server",
            lines,
            serde_json::to_value(e).unwrap_or(Value::Null),
        ),
        EventKind::Daemon(e) => {
            let (text, data) = daemon_data(e);
            ("daemon", text, data)
        }
    };
    Record {
        seq,
        at_ms,
        kind,
        text,
        data,
    }
}

fn vrrp_data(event: &VrrpEvent) -> Value {
    match event {
        VrrpEvent::Transition {
            instance,
            change,
            priority,
        } => json!({
            "event": "transition",
            "instance": instance,
            "from": change.from.to_string(),
            "to": change.to.to_string(),
            "reason": change.reason.to_string(),
            "priority": priority,
        }),
        VrrpEvent::PriorityChanged { instance, from, to } => json!({
            "event": "priority",
            "instance": instance,
            "from": from,
            "to": to,
        }),
        VrrpEvent::GroupSynced { group, state } => json!({
            "event": "group",
            "group": group,
            "state": state.to_string(),
        }),
    }
}

fn daemon_data(event: &DaemonEvent) -> (String, Value) {
    match event {
        DaemonEvent::Ready => ("Configuration applied".into(), json!({"event": "ready"})),
        DaemonEvent::ReloadStarted => (
            "Reloading the configuration".into(),
            json!({"event": "reload_started"}),
        ),
        DaemonEvent::ReloadFinished(outcome) => (
            if outcome.applied {
                "Reload applied".into()
            } else {
                "Reload refused; the running configuration stays".into()
            },
            json!({
                "event": "reload_finished",
                "applied": outcome.applied,
                "details": outcome.details,
            }),
        ),
        DaemonEvent::Stopping => ("Stopping".into(), json!({"event": "stopping"})),
        DaemonEvent::HandedOver { successor } => (
            match successor {
                Some(pid) => format!("Handed over to the new halb (pid {pid}); draining"),
                None => "Handed over to the new halb; draining".into(),
            },
            json!({"event": "handed_over", "successor": successor}),
        ),
        DaemonEvent::TookOver => (
            "Took over from the previous halb".into(),
            json!({"event": "took_over"}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{DaemonEvent, EventKind};

    fn ready() -> Event {
        Event::now(EventKind::Daemon(DaemonEvent::Ready))
    }

    #[test]
    fn records_are_numbered_and_served_after_since() {
        let mut journal = Journal::default();
        for _ in 0..5 {
            journal.push(&ready());
        }
        let (records, lost) = journal.since(3);
        assert!(!lost);
        assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(journal.since(5).0.len(), 0);
        assert_eq!(journal.since(0).0.len(), 5);
        assert_eq!(records[0].kind, "daemon");
    }

    #[test]
    fn the_oldest_go_and_a_client_left_behind_is_told() {
        let mut journal = Journal::default();
        for _ in 0..CAPACITY + 10 {
            journal.push(&ready());
        }
        let (records, lost) = journal.since(0);
        assert!(lost, "events 1 to 10 are gone");
        assert_eq!(records.len(), CAPACITY);
        assert_eq!(records[0].seq, 11);
        let (records, lost) = journal.since(10);
        assert!(!lost);
        assert_eq!(records[0].seq, 11);
        let (records, _) = journal.since(CAPACITY as u64 + 8);
        assert_eq!(
            records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [4105, 4106]
        );
    }
}
