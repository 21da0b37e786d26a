//! The daemon's own life as `halb status --json` and `halb monitor daemon` see it: whether the
//! first configuration is applied, whether a reload is under way, how the last one ended. Kept
//! from the typed [`DaemonEvent`]s on the bus and added to every snapshot on its way from the
//! virtual servers' task to the control socket (and whatever else sends queries).

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, mpsc, oneshot};

use super::protocol::{DaemonView, ReloadView};
use super::server::Query;
use crate::event::{DaemonEvent, Event, EventBus, EventKind};

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The view after `event`.
pub fn apply(view: &mut DaemonView, event: &Event) {
    let EventKind::Daemon(event_kind) = &event.kind else {
        return;
    };
    match event_kind {
        DaemonEvent::Ready => view.ready = true,
        DaemonEvent::ReloadStarted => view.reloading = true,
        DaemonEvent::ReloadFinished(outcome) => {
            view.reloading = false;
            view.reloads += 1;
            view.last_reload = Some(ReloadView {
                at: unix_seconds(event.at),
                applied: outcome.applied,
                details: outcome.details.clone(),
            });
        }
        DaemonEvent::Stopping => view.stopping = true,
        DaemonEvent::HandedOver { .. } | DaemonEvent::TookOver => {}
    }
}

/// Follows `bus` and answers the queries sent to the returned sender by asking `inner` (the
/// virtual servers' task) and adding the daemon's view. Subscribes at once, so that no event
/// published after this call is missed.
pub fn track(bus: &EventBus, inner: mpsc::Sender<Query>) -> mpsc::Sender<Query> {
    let mut events = bus.subscribe();
    let (tx, mut queries) = mpsc::channel::<Query>(16);
    let mut view = DaemonView {
        pid: std::process::id(),
        started: unix_seconds(SystemTime::now()),
        ..DaemonView::default()
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(event) => apply(&mut view, &event),
                    // Missed events may include ours: the next ones still come.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                query = queries.recv() => {
                    let Some((request, answer)) = query else { return };
                    let (inner_tx, inner_rx) = oneshot::channel();
                    if inner.send((request, inner_tx)).await.is_err() {
                        return;
                    }
                    let view = view.clone();
                    tokio::spawn(async move {
                        if let Ok(mut snapshot) = inner_rx.await {
                            snapshot.daemon = view;
                            let _ = answer.send(snapshot);
                        }
                    });
                }
            }
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ReloadOutcome;

    #[test]
    fn ready_then_a_refused_reload() {
        let mut view = DaemonView::default();
        apply(
            &mut view,
            &Event::now(EventKind::Daemon(DaemonEvent::Ready)),
        );
        assert!(view.ready);
        apply(
            &mut view,
            &Event::now(EventKind::Daemon(DaemonEvent::ReloadStarted)),
        );
        assert!(view.reloading);
        apply(
            &mut view,
            &Event::now(EventKind::Daemon(DaemonEvent::ReloadFinished(
                ReloadOutcome {
                    applied: false,
                    details: vec!["keepalived.conf:3:5: unknown keyword".into()],
                },
            ))),
        );
        assert!(!view.reloading);
        assert_eq!(view.reloads, 1);
        let last = view.last_reload.expect("a reload");
        assert!(!last.applied);
        assert_eq!(last.details.len(), 1);
    }
}
