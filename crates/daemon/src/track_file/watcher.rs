//! The I/O half: one watcher per tracked file, shared by everyone who tracks it (the VRRP
//! instances and the FILE_CHECKs). As keepalived does, it watches the file's directory with
//! inotify for `IN_CLOSE_WRITE`, `IN_DELETE` and `IN_MOVE` of the file's name: a write that is
//! closed or a file renamed into place is read again; a file deleted or renamed away reads
//! as 0. Its value is published on a `watch` channel; the watcher ends when nobody listens.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd as _, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use tracing::{info, warn};

use super::value::{self, Reading};

type Registry = Arc<Mutex<HashMap<PathBuf, watch::Sender<i64>>>>;

/// The tracked files being watched, by path.
#[derive(Clone, Default)]
pub struct TrackFiles {
    watching: Registry,
}

impl std::fmt::Debug for TrackFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrackFiles")
    }
}

impl TrackFiles {
    /// `path`'s value, kept up to date for as long as the receiver (or a clone of it) lives.
    /// `name` is the `track_file`'s, for the log. Must be called within a tokio runtime.
    pub fn subscribe(&self, name: &str, path: &Path) -> watch::Receiver<i64> {
        let mut watching = self.watching.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = watching.get(path) {
            return tx.subscribe();
        }
        // Watched before it is read, so that no change falls in between.
        let started = Watch::start(name, path);
        let (tx, rx) = watch::channel(current(path));
        match started {
            Ok(watch) => {
                watching.insert(path.to_path_buf(), tx.clone());
                tokio::spawn(watch.run(tx, Arc::clone(&self.watching)));
            }
            // Never changes: the sender goes, the value stays.
            Err(why) => warn!("{why}"),
        }
        rx
    }
}

/// The value of `path` now, as at start: an invalid number is logged and read as 0.
pub fn current(path: &Path) -> i64 {
    match value::read(path) {
        Reading::Value(v) => v,
        Reading::Invalid(v) => {
            invalid(v, path);
            0
        }
    }
}

fn invalid(value: i64, path: &Path) {
    info!(
        "Invalid number {value} read from {} - ignoring",
        path.display()
    );
}

struct Watch {
    path: PathBuf,
    file_name: PathBuf,
    inotify: AsyncFd<OwnedInotify>,
}

/// An inotify instance as tokio's readiness wants it.
struct OwnedInotify(Inotify);

impl AsRawFd for OwnedInotify {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl Watch {
    /// Watches `path`'s directory, which must exist (keepalived: "Track file directory for
    /// %s does not exist - removing").
    fn start(name: &str, path: &Path) -> Result<Watch, String> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file_name = path
            .file_name()
            .map(PathBuf::from)
            .ok_or_else(|| format!("Track file {name}: {} names no file", path.display()))?;
        if !dir.is_dir() {
            return Err(format!(
                "Track file directory for {name} does not exist - removing"
            ));
        }
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| format!("Unable to monitor track files: {e}"))?;
        inotify
            .add_watch(
                &dir,
                AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVE,
            )
            .map_err(|e| {
                format!(
                    "Unable to monitor track file {name} (directory {}): {e}",
                    dir.display()
                )
            })?;
        // SAFETY: the Inotify owns its descriptor, keeps it open until it is dropped (with the
        // AsyncFd that owns it) and always reports the same one.
        let inotify = unsafe { AsyncFd::register(OwnedInotify(inotify)) }
            .map_err(|e| format!("Unable to monitor track files: {}", e.into_parts().1))?;
        Ok(Watch {
            path: path.to_path_buf(),
            file_name,
            inotify,
        })
    }

    async fn run(self, tx: watch::Sender<i64>, registry: Registry) {
        loop {
            tokio::select! {
                () = tx.closed() => {
                    // Nobody listens: leave, unless someone subscribed meanwhile.
                    let mut watching = registry.lock().unwrap_or_else(|e| e.into_inner());
                    if tx.receiver_count() == 0 {
                        watching.remove(&self.path);
                        return;
                    }
                }
                ready = self.inotify.readable() => {
                    let mut guard = match ready {
                        Ok(g) => g,
                        Err(e) => {
                            warn!("inotify on {}: {e}; no longer watched", self.path.display());
                            return;
                        }
                    };
                    let events = match guard.try_io(|fd| {
                        fd.get_ref().0.read_events().map_err(std::io::Error::from)
                    }) {
                        Ok(Ok(events)) => events,
                        Ok(Err(e)) => {
                            info!("inotify read() returned error {e}");
                            continue;
                        }
                        Err(_would_block) => continue,
                    };
                    for event in events {
                        if let Some(v) = self.value_after(&event) {
                            tx.send_if_modified(|old| std::mem::replace(old, v) != v);
                        }
                    }
                }
            }
        }
    }

    /// The file's value after `event`, if it concerns the file.
    fn value_after(&self, event: &InotifyEvent) -> Option<i64> {
        if event.mask.contains(AddWatchFlags::IN_ISDIR)
            || event.name.as_deref() != Some(OsStr::new(&self.file_name))
        {
            return None;
        }
        if event
            .mask
            .intersects(AddWatchFlags::IN_MOVED_FROM | AddWatchFlags::IN_DELETE)
        {
            // The file has disappeared: as though the value were 0.
            return Some(0);
        }
        match value::read(&self.path) {
            Reading::Value(v) => Some(v),
            Reading::Invalid(v) => {
                invalid(v, &self.path);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The next value `rx` is told of, within a generous time (inotify answers at once).
    async fn next(rx: &mut watch::Receiver<i64>) -> i64 {
        tokio::time::timeout(Duration::from_secs(10), rx.changed())
            .await
            .expect("a change within 10 s")
            .expect("the watcher is alive");
        *rx.borrow_and_update()
    }

    #[tokio::test]
    async fn writes_renames_and_removal_reach_every_subscriber() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("flag");
        std::fs::write(&path, "3\n").expect("write");
        let files = TrackFiles::default();
        let mut a = files.subscribe("flag", &path);
        let mut b = files.subscribe("flag", &path);
        assert_eq!(*a.borrow(), 3);
        assert_eq!(
            files.watching.lock().expect("registry").len(),
            1,
            "one watcher for both"
        );

        std::fs::write(&path, "-7\n").expect("write");
        assert_eq!(next(&mut a).await, -7);
        assert_eq!(next(&mut b).await, -7);

        // Another file in the directory is none of its business.
        std::fs::write(dir.path().join("other"), "9\n").expect("write");
        let tmp = dir.path().join("flag.new");
        std::fs::write(&tmp, "0x10").expect("write");
        std::fs::rename(&tmp, &path).expect("rename");
        assert_eq!(next(&mut a).await, 16);

        // An invalid number leaves the value as it was; the next good one is read.
        std::fs::write(&path, "99999999999").expect("write");
        std::fs::write(&path, "5").expect("write");
        assert_eq!(next(&mut a).await, 5);

        std::fs::remove_file(&path).expect("remove");
        assert_eq!(next(&mut a).await, 0);

        // Once nobody listens, the watcher goes.
        drop((a, b));
        let gone = tokio::time::timeout(Duration::from_secs(10), async {
            while !files.watching.lock().expect("registry").is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(gone.is_ok(), "the watcher outlived its subscribers");
    }

    #[tokio::test]
    async fn a_missing_directory_reads_as_zero() {
        let files = TrackFiles::default();
        let rx = files.subscribe("flag", Path::new("/nonexistent/halb/flag"));
        assert_eq!(*rx.borrow(), 0);
    }
}
