//! The daemon's side: accept, read one request, ask the daemon for a snapshot, answer.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::{debug, warn};

use super::protocol::{ReloadAnswer, Request, Snapshot};
pub use crate::upgrade::UpgradeQuery;

/// A request handed to the daemon, with where to send the answer.
pub type Query = (Request, oneshot::Sender<Snapshot>);

/// A reload asked for by `halb reload`, with where to send how it ended.
pub type ReloadQuery = oneshot::Sender<ReloadAnswer>;

/// How long `halb reload` may wait for the reload to be applied (reading the file, the VRRP
/// instances, the data plane).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// How long one client may take to send its request and read the answer: an idle client must
/// not hold a descriptor for ever.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// At most this many control connections are served at once; more are closed as soon as they
/// are accepted, so that clients of the control socket cannot take the descriptors the data
/// plane and VRRP need.
const MAX_CONNECTIONS: usize = 32;

/// Where the requests that are not status requests go; a missing one is refused.
#[derive(Debug, Clone, Default)]
pub struct Handlers {
    /// `halb reload`.
    pub reloads: Option<mpsc::Sender<ReloadQuery>>,
    /// `halb upgrade`.
    pub upgrades: Option<mpsc::Sender<UpgradeQuery>>,
}

/// The listening socket; removed from the file system when dropped.
pub struct ControlServer {
    path: PathBuf,
}

impl ControlServer {
    /// Binds `path` with mode 0600 from its first moment (replacing a stale socket left by a
    /// killed daemon, but never a live one nor anything that is not a socket) and serves
    /// requests by sending them to `queries`.
    pub fn start(path: &Path, queries: mpsc::Sender<Query>) -> Result<ControlServer> {
        Self::start_with_reload(path, queries, None)
    }

    /// As [`ControlServer::start`], and reload requests go to `reloads` (none: refused).
    pub fn start_with_reload(
        path: &Path,
        queries: mpsc::Sender<Query>,
        reloads: Option<mpsc::Sender<ReloadQuery>>,
    ) -> Result<ControlServer> {
        Self::start_with(
            path,
            queries,
            Handlers {
                reloads,
                upgrades: None,
            },
        )
    }

    /// As [`ControlServer::start`], with reload and upgrade requests going to `handlers`.
    pub fn start_with(
        path: &Path,
        queries: mpsc::Sender<Query>,
        handlers: Handlers,
    ) -> Result<ControlServer> {
        let listener = bind_private(path)?;
        tokio::spawn(accept_loop(listener, queries, handlers));
        Ok(ControlServer {
            path: path.to_path_buf(),
        })
    }
}

/// Refuses what must not be replaced at `path`: a live daemon's socket, or anything but a socket
/// (a regular file given by mistake is the operator's, not a leftover of halb's).
fn check_replaceable(path: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("examining {}", path.display())),
    };
    if !meta.file_type().is_socket() {
        anyhow::bail!(
            "{} exists and is not a socket; refusing to replace it with the control socket \
             (remove it or give another --control-socket)",
            path.display()
        );
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        anyhow::bail!(
            "another halb answers on {}; stop it or give --control-socket",
            path.display()
        );
    }
    Ok(())
}

/// Binds the socket in a fresh directory only root can enter, sets its mode to 0600 there and
/// only then renames it to `path`: whatever the umask, nobody can connect while its mode is
/// wider (a connection made then would outlive the chmod).
pub(crate) fn bind_private(path: &Path) -> Result<UnixListener> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating {} for the control socket", dir.display()))?;
    check_replaceable(path)?;
    // Short: the staged path must fit in a socket address too.
    let private = dir.join(format!(".halb.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .with_context(|| format!("creating {} for the control socket", private.display()))?;
    let staged = private.join("s");
    let bound = UnixListener::bind(&staged)
        .with_context(|| format!("binding the control socket {}", path.display()))
        .and_then(|listener| {
            std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("setting mode 0600 on {}", staged.display()))?;
            std::fs::rename(&staged, path).with_context(|| {
                format!("moving the control socket into place at {}", path.display())
            })?;
            Ok(listener)
        });
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&private);
    bound
}

async fn accept_loop(listener: UnixListener, queries: mpsc::Sender<Query>, handlers: Handlers) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Logged when the cap is reached, not once per refused client.
    let mut full = false;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    if !full {
                        warn!(
                            "control socket: {MAX_CONNECTIONS} clients connected; closing new \
                             ones until one is done"
                        );
                        full = true;
                    }
                    drop(stream);
                    continue;
                };
                full = false;
                let queries = queries.clone();
                let handlers = handlers.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    match serve(stream, queries, handlers).await {
                        Ok(()) => {}
                        Err(_) => debug!(
                            "control socket client: closed after {} s without a complete exchange",
                            EXCHANGE_TIMEOUT.as_secs()
                        ),
                    }
                });
            }
            Err(e) => {
                warn!("control socket: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Requests larger than this are not status requests.
const MAX_REQUEST: usize = 4096;

/// One exchange: a status request within [`EXCHANGE_TIMEOUT`]; a reload, whose answer waits
/// for the reload to end, within [`RELOAD_TIMEOUT`].
async fn serve(
    stream: UnixStream,
    queries: mpsc::Sender<Query>,
    handlers: Handlers,
) -> Result<(), Elapsed> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST as u64));
    let request = tokio::time::timeout(EXCHANGE_TIMEOUT, async {
        reader.read_line(&mut line).await?;
        Ok::<_, io::Error>(serde_json::from_str::<Request>(line.trim()))
    })
    .await?;
    let body = match request {
        Err(e) => Ok(serde_json::json!({ "error": format!("{e}") }).to_string()),
        Ok(Err(e)) => Ok(serde_json::json!({ "error": format!("bad request: {e}") }).to_string()),
        Ok(Ok(request)) if request.reload => {
            tokio::time::timeout(RELOAD_TIMEOUT, reload(handlers.reloads)).await?
        }
        Ok(Ok(request)) if request.upgrade => {
            tokio::time::timeout(EXCHANGE_TIMEOUT, upgrade(handlers.upgrades)).await?
        }
        // A MySQL writer's failback waits for the returning server to catch up.
        Ok(Ok(request)) if request.failback.is_some() => {
            tokio::time::timeout(RELOAD_TIMEOUT, snapshot(queries, request)).await?
        }
        Ok(Ok(request)) => {
            tokio::time::timeout(EXCHANGE_TIMEOUT, snapshot(queries, request)).await?
        }
    };
    let Ok(mut body) = body else {
        return Ok(());
    };
    body.push('\n');
    let _ = tokio::time::timeout(EXCHANGE_TIMEOUT, async {
        write.write_all(body.as_bytes()).await?;
        write.shutdown().await
    })
    .await?;
    Ok(())
}

/// A timeout of the exchange.
type Elapsed = tokio::time::error::Elapsed;

/// The daemon's snapshot as a JSON line; `Err` when the daemon is going away.
async fn snapshot(queries: mpsc::Sender<Query>, request: Request) -> Result<String, ()> {
    let (tx, rx) = oneshot::channel();
    queries.send((request, tx)).await.map_err(|_| ())?;
    let snapshot = rx.await.map_err(|_| ())?;
    serde_json::to_string(&snapshot).map_err(|_| ())
}

/// Asks for a reload and waits for its end.
async fn reload(reloads: Option<mpsc::Sender<ReloadQuery>>) -> Result<String, ()> {
    let Some(reloads) = reloads else {
        return Ok(serde_json::json!({ "error": "this daemon cannot reload" }).to_string());
    };
    let (tx, rx) = oneshot::channel();
    reloads.send(tx).await.map_err(|_| ())?;
    let answer = rx.await.map_err(|_| ())?;
    serde_json::to_string(&answer).map_err(|_| ())
}

/// Asks the daemon to start its successor; answers with its pid.
async fn upgrade(upgrades: Option<mpsc::Sender<UpgradeQuery>>) -> Result<String, ()> {
    let Some(upgrades) = upgrades else {
        return Ok(serde_json::json!({ "error": "this daemon cannot upgrade" }).to_string());
    };
    let (tx, rx) = oneshot::channel();
    upgrades.send(tx).await.map_err(|_| ())?;
    match rx.await.map_err(|_| ())? {
        Ok(answer) => serde_json::to_string(&answer).map_err(|_| ()),
        Err(e) => Ok(serde_json::json!({ "error": e }).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::io::AsyncReadExt;
    use tokio::net::UnixStream;
    use tokio::sync::mpsc;

    use super::ControlServer;

    #[tokio::test]
    async fn a_regular_file_at_the_path_is_refused_and_kept() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("halb.sock");
        std::fs::write(&path, "precious\n").expect("write the file");
        let (queries, _rx) = mpsc::channel(1);
        let error = match ControlServer::start(&path, queries) {
            Ok(_) => panic!("a regular file was replaced by the control socket"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            error.contains(&path.display().to_string()) && error.contains("not a socket"),
            "the error names the path and why: {error}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).expect("the file is still there"),
            "precious\n"
        );
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("halb.sock");
        // A socket nobody listens on any more, as a killed daemon leaves it.
        drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
        let (queries, _rx) = mpsc::channel(1);
        let _server = ControlServer::start(&path, queries).expect("the stale socket is replaced");
        UnixStream::connect(&path)
            .await
            .expect("the new socket answers");
    }

    /// Under a permissive umask, the socket must never be seen (so never connected to) with any
    /// mode but 0600, not even between its creation and a chmod.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_socket_is_never_visible_with_a_wider_mode() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("halb.sock");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (path, seen, done) = (path.clone(), Arc::clone(&seen), Arc::clone(&done));
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    if let Ok(meta) = std::fs::symlink_metadata(&path) {
                        if meta.file_type().is_socket() {
                            seen.lock()
                                .expect("lock")
                                .push(meta.permissions().mode() & 0o777);
                        }
                    }
                }
            })
        };
        for _ in 0..200 {
            let (queries, _rx) = mpsc::channel(1);
            let server = ControlServer::start(&path, queries).expect("start");
            drop(server);
        }
        done.store(true, Ordering::Relaxed);
        watcher.join().expect("the watcher");
        let seen = seen.lock().expect("lock");
        let wider: Vec<String> = seen
            .iter()
            .filter(|&&m| m != 0o600)
            .map(|m| format!("{m:o}"))
            .collect();
        assert!(
            wider.is_empty(),
            "the socket was seen with modes {wider:?} ({} looks in all)",
            seen.len()
        );
    }

    /// Whether the daemon closed `stream` (end of file) within `within`.
    async fn closed_within(stream: &mut UnixStream, within: Duration) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(within, stream.read(&mut byte)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    /// Idle clients must not pile up: beyond a cap, new connections are closed at once, and
    /// one that sends nothing is closed after a few seconds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_connections_are_capped_and_timed_out() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("halb.sock");
        let (queries, _rx) = mpsc::channel(1);
        let _server = ControlServer::start(&path, queries).expect("start");
        let mut held = Vec::new();
        for _ in 0..200 {
            held.push(UnixStream::connect(&path).await.expect("connect"));
        }
        let mut closed_at_once = 0;
        for stream in &mut held {
            if closed_within(stream, Duration::from_millis(20)).await {
                closed_at_once += 1;
            }
        }
        assert!(
            closed_at_once >= 150,
            "only {closed_at_once} of 200 idle connections were closed at once"
        );
        for (n, stream) in held.iter_mut().enumerate() {
            assert!(
                closed_within(stream, Duration::from_secs(10)).await,
                "idle connection {n} still open after 10 s"
            );
        }
    }
}
