//! The read-only HTTP endpoint of `halb run` (`--http-listen`, by default 127.0.0.1:9165, the
//! port keepalived-exporter's users already scrape): Prometheus metrics, the status and the
//! recent events as JSON, the events as they happen (Server-Sent Events), and a dashboard.
//! Nothing here changes state: draining or weighting a server goes through the root-only
//! control socket.
//!
//! Everything comes from the daemon's typed sources: the snapshot the control socket answers
//! with, the VRRP counters, and the event bus. Nothing parses a log line.

mod dashboard;
pub mod journal;
pub mod metrics;

use std::convert::Infallible;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::{Query as UrlQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::control::protocol::{Request, Snapshot};
use crate::control::server::Query;
use crate::event::{EventBus, InstanceCounters};
use journal::{Journal, Record};
use metrics::EventMetrics;

/// Where `halb run` listens unless `--http-listen` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9165";

/// How long a request waits for the daemon's snapshot.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(3);

/// What the endpoint reads.
pub struct Sources {
    /// Where snapshots are asked for (the control socket's queue).
    pub queries: mpsc::Sender<Query>,
    /// The VRRP instances' counters.
    pub vrrp_counters: watch::Receiver<Vec<InstanceCounters>>,
    pub events: EventBus,
    /// Every checker probe (its time, failure kind, MySQL's read_only).
    pub probes: mpsc::UnboundedReceiver<halb_check::ProbeSample>,
}

#[derive(Clone)]
struct AppState {
    queries: mpsc::Sender<Query>,
    vrrp_counters: watch::Receiver<Vec<InstanceCounters>>,
    journal: Arc<Mutex<Journal>>,
    live: broadcast::Sender<Arc<Record>>,
    metrics: Arc<EventMetrics>,
}

/// The running endpoint; stops when dropped.
///
/// It runs on a thread of its own with a runtime of its own, at a lower scheduling priority
/// than the daemon: a scrape of 10,000 real servers writes 16 MB of text, and on the proxy's
/// worker threads that time was taken from the connections being relayed (a Prometheus
/// scraping every second cost the proxy a third of its throughput on two cores). At its
/// priority the endpoint takes what the relays leave, and still its share when they want it
/// all.
pub struct HttpServer {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The endpoint thread's nice value: below the daemon's, not idle (the dashboard and the
/// event stream stay live under load).
const NICE: libc::c_int = 10;

impl HttpServer {
    /// Binds `listen` and serves. The event bus is subscribed to before this returns, so every
    /// event published afterwards is numbered and counted.
    pub async fn start(listen: SocketAddr, sources: Sources) -> Result<HttpServer> {
        let listener = std::net::TcpListener::bind(listen)
            .with_context(|| format!("binding the HTTP endpoint to {listen} (--http-listen)"))?;
        listener
            .set_nonblocking(true)
            .with_context(|| format!("the HTTP endpoint's socket on {listen}"))?;
        let local_addr = listener.local_addr().unwrap_or(listen);
        if !listen.ip().is_loopback() {
            warn!(
                "HTTP endpoint on {local_addr}, a non-loopback address: metrics, status and \
                 events are readable from the network"
            );
        }
        let state = AppState {
            queries: sources.queries,
            vrrp_counters: sources.vrrp_counters,
            journal: Arc::new(Mutex::new(Journal::default())),
            live: broadcast::channel(journal::CAPACITY).0,
            metrics: Arc::new(EventMetrics::new()),
        };
        let bus = sources.events.subscribe();
        let probes = sources.probes;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("halb-http".into())
            .spawn(move || {
                lower_priority();
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        warn!("HTTP endpoint on {local_addr}: cannot start its runtime: {e}");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            warn!("HTTP endpoint on {local_addr}: {e}");
                            return;
                        }
                    };
                    let follower = tokio::spawn(follow(bus, probes, state.clone()));
                    let app = router(state);
                    tokio::select! {
                        served = axum::serve(listener, app).into_future() => {
                            if let Err(e) = served {
                                warn!("HTTP endpoint on {local_addr}: {e}");
                            }
                        }
                        _ = stopped => {}
                    }
                    follower.abort();
                });
            })
            .context("starting the HTTP endpoint's thread")?;
        info!("HTTP endpoint on http://{local_addr}/ (metrics at /metrics)");
        Ok(HttpServer {
            local_addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address bound (the port the system chose when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // The runtime drops every open request and event stream as it ends: a short wait.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Lowers the calling thread's scheduling priority to [`NICE`] (on Linux `setpriority` on a
/// thread id applies to that thread alone). Failing leaves the endpoint at the daemon's.
fn lower_priority() {
    // SAFETY: gettid and setpriority take and return plain integers.
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICE)
    };
    if rc != 0 {
        warn!(
            "HTTP endpoint: cannot lower its thread's priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Parses `--http-listen`: `ADDR:PORT`, or `none` for no endpoint.
pub fn parse_listen(value: &str) -> Result<Option<SocketAddr>, String> {
    if value.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| {
        format!("`{value}` is not ADDRESS:PORT (as 127.0.0.1:9165 or [::1]:9165) nor `none`")
    })
}

/// Numbers, keeps and counts every event of the bus, and hands it to the event streams;
/// counts every probe.
async fn follow(
    mut bus: broadcast::Receiver<crate::event::Event>,
    mut probes: mpsc::UnboundedReceiver<halb_check::ProbeSample>,
    state: AppState,
) {
    loop {
        let received = tokio::select! {
            Some(sample) = probes.recv() => {
                state.metrics.observe_probe(&sample);
                continue;
            }
            received = bus.recv() => received,
        };
        match received {
            Ok(event) => {
                state.metrics.observe(&event);
                let record = lock(&state.journal).push(&event);
                // No stream open is fine: the journal has it.
                let _ = state.live.send(record);
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                warn!("HTTP endpoint: {missed} event(s) published faster than recorded were lost");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The journal's lock; a panic while holding it cannot leave it half-changed (a push is one
/// `VecDeque` operation), so a poisoned lock is taken as it is.
fn lock(journal: &Mutex<Journal>) -> std::sync::MutexGuard<'_, Journal> {
    journal
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(dashboard::index))
        .route("/app.js", get(dashboard::script))
        .route("/style.css", get(dashboard::style))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/status", get(status))
        .route("/api/v1/events", get(events))
        .route("/api/v1/events/stream", get(stream))
        .with_state(state)
}

async fn snapshot(state: &AppState, connections: bool) -> Result<Snapshot, Response> {
    let unavailable = |why: &str| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": why })),
        )
            .into_response()
    };
    let (tx, rx) = oneshot::channel();
    if state
        .queries
        .send((
            Request {
                connections,
                ..Request::default()
            },
            tx,
        ))
        .await
        .is_err()
    {
        return Err(unavailable("the daemon is stopping"));
    }
    match tokio::time::timeout(SNAPSHOT_TIMEOUT, rx).await {
        Ok(Ok(snapshot)) => Ok(snapshot),
        Ok(Err(_)) => Err(unavailable("the daemon is stopping")),
        Err(_) => Err(unavailable("the daemon did not answer within 3 s")),
    }
}

#[derive(Debug, Deserialize)]
struct StatusParams {
    /// Include the connection table, as `halb status --json` does (the default); the
    /// dashboard leaves it out.
    connections: Option<bool>,
}

/// What `halb status --json` prints.
async fn status(State(state): State<AppState>, UrlQuery(p): UrlQuery<StatusParams>) -> Response {
    match snapshot(&state, p.connections.unwrap_or(true)).await {
        Ok(s) => Json(s).into_response(),
        Err(r) => r,
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let snapshot = match snapshot(&state, false).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let counters = state.vrrp_counters.borrow().clone();
    match state.metrics.render(snapshot, counters) {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct EventsParams {
    /// Only the events numbered after this one.
    since: Option<u64>,
}

/// The kept events after `since`.
async fn events(State(state): State<AppState>, UrlQuery(p): UrlQuery<EventsParams>) -> Response {
    let journal = lock(&state.journal);
    let (records, lost) = journal.since(p.since.unwrap_or(0));
    Json(serde_json::json!({
        "last_seq": journal.last_seq(),
        "lost": lost,
        "events": records.iter().map(|r| &**r).collect::<Vec<&Record>>(),
    }))
    .into_response()
}

/// The events as they happen; a client that reconnects with `Last-Event-ID` (or asks with
/// `since=`) first gets the kept ones it missed.
async fn stream(
    State(state): State<AppState>,
    UrlQuery(p): UrlQuery<EventsParams>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(p.since);
    // Subscribed before the journal is read: an event between the two is in both, and the
    // sequence numbers drop the copy.
    let live = state.live.subscribe();
    let backlog = match resume {
        Some(since) => lock(&state.journal).since(since).0,
        None => Vec::new(),
    };
    let last = backlog.last().map(|r| r.seq).or(resume).unwrap_or(0);
    let stream = futures_util::stream::unfold(
        (backlog.into_iter(), live, last),
        |(mut backlog, mut live, mut last)| async move {
            if let Some(record) = backlog.next() {
                return Some((Ok(sse_event(&record)), (backlog, live, last)));
            }
            loop {
                match live.recv().await {
                    Ok(record) if record.seq <= last => continue,
                    Ok(record) => {
                        last = record.seq;
                        return Some((Ok(sse_event(&record)), (backlog, live, last)));
                    }
                    // Too slow a client misses events; it can fetch them with `since=`.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn sse_event(record: &Record) -> SseEvent {
    let data = serde_json::to_string(record).unwrap_or_else(|_| "{}".into());
    SseEvent::default()
        .id(record.seq.to_string())
        .event(record.kind)
        .data(data)
}

#[cfg(test)]
mod tests {
    use super::parse_listen;

    #[test]
    fn listen_addresses_and_none() {
        assert_eq!(
            parse_listen("127.0.0.1:9165").unwrap(),
            Some("127.0.0.1:9165".parse().unwrap())
        );
        assert_eq!(
            parse_listen("[::1]:80").unwrap(),
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(parse_listen("none").unwrap(), None);
        let e = parse_listen("localhost").unwrap_err();
        assert!(e.contains("localhost") && e.contains("ADDRESS:PORT"), "{e}");
    }
}
