//! Reloads (SIGHUP, `halb reload`): the file is read again with the options of the start, a
//! file with errors is refused as a whole (the running configuration stays and every
//! diagnostic is logged), and a good one is applied by the VRRP part first (which may still
//! refuse it: an interface that is not there) and then by the virtual servers, each keeping
//! what did not change ([`crate::reload_plan`]). One reload at a time, in the order asked.

use std::fmt;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use halb_config::model::Config;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use crate::control::protocol::{LastReload, ReloadAnswer};
use crate::control::server::ReloadQuery;
use crate::event::{DaemonEvent, EventBus, EventKind, ReloadOutcome};

/// A configuration read again: the model when it may run (no errors), and every diagnostic
/// as one `file:line:col: severity: message` line.
#[derive(Debug, Clone)]
pub struct Reread {
    pub config: Option<Config>,
    pub diagnostics: Vec<String>,
}

/// How a reload reads the configuration again: the file and options the daemon started with.
#[derive(Clone)]
pub struct ConfigReader(pub Arc<dyn Fn() -> Reread + Send + Sync>);

impl fmt::Debug for ConfigReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConfigReader")
    }
}

/// A new configuration handed to a part of the daemon; it answers with what it changed, one
/// line each, or why it refuses the configuration (before changing anything).
pub(crate) struct Apply {
    pub config: Arc<Config>,
    pub done: oneshot::Sender<Result<Vec<String>, String>>,
}

/// Where reloads go.
pub(crate) struct Parts {
    pub vrrp: mpsc::Sender<Apply>,
    pub lvs: mpsc::Sender<Apply>,
    pub last: watch::Sender<Option<LastReload>>,
    pub bus: EventBus,
}

/// Serves reloads asked for by `hangups` (SIGHUP) and `requests` (the control socket) until
/// both are gone.
pub(crate) async fn serve(
    reader: Option<ConfigReader>,
    mut hangups: Option<mpsc::Receiver<()>>,
    mut requests: mpsc::Receiver<ReloadQuery>,
    parts: Parts,
) {
    loop {
        let answer = tokio::select! {
            Some(()) = next_hangup(&mut hangups) => {
                info!("Reloading on SIGHUP");
                None
            }
            Some(answer) = requests.recv() => {
                info!("Reloading as asked on the control socket");
                Some(answer)
            }
            else => return,
        };
        let outcome = reload_once(reader.as_ref(), &parts).await;
        let at_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        parts.last.send_replace(Some(LastReload {
            at_unix,
            applied: outcome.applied,
            details: outcome.details.clone(),
        }));
        parts
            .bus
            .publish(EventKind::Daemon(DaemonEvent::ReloadFinished(
                outcome.clone(),
            )));
        if let Some(answer) = answer {
            let _ = answer.send(ReloadAnswer {
                applied: outcome.applied,
                details: outcome.details,
            });
        }
    }
}

async fn next_hangup(hangups: &mut Option<mpsc::Receiver<()>>) -> Option<()> {
    match hangups {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn refused(details: Vec<String>) -> ReloadOutcome {
    ReloadOutcome {
        applied: false,
        details,
    }
}

async fn reload_once(reader: Option<&ConfigReader>, parts: &Parts) -> ReloadOutcome {
    parts
        .bus
        .publish(EventKind::Daemon(DaemonEvent::ReloadStarted));
    let started = Instant::now();
    let Some(reader) = reader.cloned() else {
        let why = "this daemon was not started from a file it can read again".to_string();
        error!("Reload refused: {why}");
        return refused(vec![why]);
    };
    let reread = match tokio::task::spawn_blocking(move || (reader.0)()).await {
        Ok(r) => r,
        Err(e) => {
            let why = format!("reading the configuration failed: {e}");
            error!("Reload refused: {why}");
            return refused(vec![why]);
        }
    };
    let Some(config) = reread.config else {
        for line in &reread.diagnostics {
            if line.contains(": error:") {
                error!("{line}");
            } else {
                warn!("{line}");
            }
        }
        error!(
            "Reload refused: the configuration has errors ({} diagnostic(s) above); \
             the running configuration stays",
            reread.diagnostics.len()
        );
        return refused(reread.diagnostics);
    };
    for line in &reread.diagnostics {
        warn!("{line}");
    }
    let config = Arc::new(config);
    // A reload creates a missing `init_file` file, but overwrites none.
    crate::track_file::init_files(&config, true);
    // The VRRP part goes first: it may still refuse the file (an interface that is not on this
    // host) before anything changed.
    let vrrp = match apply(&parts.vrrp, &config).await {
        Ok(lines) => lines,
        Err(why) => {
            error!("Reload refused: {why}; the running configuration stays");
            return refused(vec![why]);
        }
    };
    let lvs = match apply(&parts.lvs, &config).await {
        Ok(lines) => lines,
        Err(why) => {
            // The VRRP part already runs the new file: say so rather than pretend nothing
            // changed.
            error!("Reload: the virtual servers kept their configuration: {why}");
            vec![format!("virtual servers not reloaded: {why}")]
        }
    };
    let mut details = reread.diagnostics;
    details.extend(vrrp);
    details.extend(lvs);
    info!(
        "Reload finished in {} ms: {} change(s)",
        started.elapsed().as_millis(),
        details.len()
    );
    ReloadOutcome {
        applied: true,
        details,
    }
}

async fn apply(to: &mpsc::Sender<Apply>, config: &Arc<Config>) -> Result<Vec<String>, String> {
    let (done, answer) = oneshot::channel();
    let sent = to
        .send(Apply {
            config: Arc::clone(config),
            done,
        })
        .await;
    if sent.is_err() {
        return Err("the daemon is stopping".into());
    }
    answer
        .await
        .unwrap_or_else(|_| Err("the daemon is stopping".into()))
}
