//! `halb status`'s side.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::protocol::{ReloadAnswer, Request, Snapshot, UpgradeAnswer};

/// Asks the daemon listening on `path` for a snapshot.
pub fn query(path: &Path, request: &Request) -> Result<Snapshot> {
    exchange(path, request, Duration::from_secs(10))
}

/// Asks the daemon listening on `path` for a snapshot, waiting at most `timeout` for each read
/// and write.
pub fn query_within(path: &Path, request: &Request, timeout: Duration) -> Result<Snapshot> {
    exchange(path, request, timeout)
}

/// Asks the daemon listening on `path` to reload, and waits for the outcome.
pub fn reload(path: &Path) -> Result<ReloadAnswer> {
    let request = Request {
        reload: true,
        ..Request::default()
    };
    // The daemon gives a reload two minutes; the answer comes after it.
    exchange(path, &request, Duration::from_secs(130))
}

/// What the daemon on `path` answered to an upgrade request.
pub enum UpgradeStart {
    /// It started its successor.
    Started(UpgradeAnswer),
    /// A halb from before `halb upgrade`: it took the request for a status request.
    NotSupported { version: String },
}

/// Asks the daemon listening on `path` to start its successor.
pub fn upgrade(path: &Path) -> Result<UpgradeStart> {
    let request = Request {
        upgrade: true,
        ..Request::default()
    };
    let answer: serde_json::Value = exchange(path, &request, Duration::from_secs(10))?;
    if answer.get("successor_pid").is_some() {
        return Ok(UpgradeStart::Started(
            serde_json::from_value(answer)
                .with_context(|| format!("reading halb's answer from {}", path.display()))?,
        ));
    }
    let version = answer
        .get("version")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    Ok(UpgradeStart::NotSupported { version })
}

fn exchange<T: serde::de::DeserializeOwned>(
    path: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<T> {
    let mut stream = UnixStream::connect(path).with_context(|| {
        format!(
            "cannot reach halb on {} (is `halb run` running, and are you root?)",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .with_context(|| format!("writing to {}", path.display()))?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .with_context(|| format!("reading from {}", path.display()))?;
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(&answer) {
        if let Some(e) = map.get("error") {
            anyhow::bail!("halb on {} refused the request: {e}", path.display());
        }
    }
    serde_json::from_str(&answer)
        .with_context(|| format!("reading halb's answer from {}", path.display()))
}
