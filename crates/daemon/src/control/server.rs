//! The daemon's side: accept, read one request, ask the daemon for a snapshot, answer.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::protocol::{Request, Snapshot};

/// A request handed to the daemon, with where to send the answer.
pub type Query = (Request, oneshot::Sender<Snapshot>);

/// The listening socket; removed from the file system when dropped.
pub struct ControlServer {
    path: PathBuf,
}

impl ControlServer {
    /// Binds `path` (replacing a stale socket left by a killed daemon, but never a live one)
    /// and serves requests by sending them to `queries`.
    pub fn start(path: &Path, queries: mpsc::Sender<Query>) -> Result<ControlServer> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating {} for the control socket", dir.display()))?;
        }
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                anyhow::bail!(
                    "another halb answers on {}; stop it or give --control-socket",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing the stale socket {}", path.display()))?;
        }
        let listener = UnixListener::bind(path)
            .with_context(|| format!("binding the control socket {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("setting mode 0600 on {}", path.display()))?;
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let queries = queries.clone();
                        tokio::spawn(async move {
                            if let Err(e) = serve(stream, queries).await {
                                debug!("control socket client: {e}");
                            }
                        });
                    }
                    Err(e) => {
                        warn!("control socket: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(ControlServer {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Requests larger than this are not status requests.
const MAX_REQUEST: usize = 4096;

async fn serve(stream: UnixStream, queries: mpsc::Sender<Query>) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST as u64));
    reader.read_line(&mut line).await?;
    let request: Request = match serde_json::from_str(line.trim()) {
        Ok(r) => r,
        Err(e) => {
            let msg = serde_json::json!({ "error": format!("bad request: {e}") });
            write.write_all(format!("{msg}\n").as_bytes()).await?;
            return Ok(());
        }
    };
    let (tx, rx) = oneshot::channel();
    if queries.send((request, tx)).await.is_err() {
        return Ok(());
    }
    let Ok(snapshot) = rx.await else {
        return Ok(());
    };
    let mut body = serde_json::to_vec(&snapshot).map_err(io::Error::other)?;
    body.push(b'\n');
    write.write_all(&body).await?;
    write.shutdown().await
}
