//! `track_file`: a file whose number moves the priority of the VRRP instances that track it
//! (or puts them in FAULT) and the weight of the real servers whose FILE_CHECK follows it (or
//! takes them out), as keepalived 2.2 does it.
//!
//! [`value`] reads a file as keepalived does, [`effect`] turns a value into what each tracker
//! gets (both pure); [`TrackFiles`] is the shell that watches the files.

pub mod effect;
pub mod value;
mod watcher;

use std::io::Write as _;
use std::path::PathBuf;

use halb_config::model::{Checker, Config};
use halb_lb::virtual_server::CheckerId;
use tracing::warn;

pub use effect::Tracking;
pub use watcher::{current, TrackFiles};

/// A FILE_CHECK resolved against its `track_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheck {
    pub id: CheckerId,
    /// The `track_file`'s name.
    pub name: String,
    pub path: PathBuf,
    pub tracking: Tracking,
}

/// Every FILE_CHECK of `config` whose `track_file` exists (keepalived drops the others with
/// "track_file %s not found", logged here once per checker).
pub fn file_checks(config: &Config) -> Vec<FileCheck> {
    let mut found = Vec::new();
    for (v, vs) in config.lvs.virtual_servers.iter().enumerate() {
        for (r, rs) in vs.real_servers.iter().enumerate() {
            for (c, checker) in rs.checkers.iter().enumerate() {
                let Checker::File(f) = checker else {
                    continue;
                };
                let Some(file) = config.vrrp.track_file(&f.track_file) else {
                    warn!("track_file {} not found", f.track_file);
                    continue;
                };
                // FILE_CHECK's own weight, with its reverse, or the track_file's.
                let tracking = match f.weight {
                    Some(weight) => Tracking {
                        weight,
                        reverse: f.reverse,
                    },
                    None => Tracking {
                        weight: file.weight,
                        reverse: file.weight_reverse,
                    },
                };
                found.push(FileCheck {
                    id: CheckerId::new(v, r, c),
                    name: file.name.clone(),
                    path: PathBuf::from(&file.file),
                    tracking,
                });
            }
        }
    }
    found
}

/// `init_file [VALUE] [overwrite]` (track_file.c `track_file_end_handler()`): a missing file
/// is created holding VALUE; with `overwrite` an existing regular file is written too, except
/// on a reload.
pub fn init_files(config: &Config, reload: bool) {
    for file in &config.vrrp.track_files {
        let Some(init) = file.init_file else {
            continue;
        };
        match std::fs::metadata(&file.file) {
            Ok(_) if !init.overwrite || reload => continue,
            Ok(meta) if !meta.is_file() => {
                warn!(
                    "Cannot initialise track file {} - it is not a regular file",
                    file.name
                );
                continue;
            }
            _ => {}
        }
        let written =
            std::fs::File::create(&file.file).and_then(|mut f| writeln!(f, "{}", init.value));
        if let Err(e) = written {
            warn!(
                "Unable to initialise track file {} ({}: {e})",
                file.name, file.file
            );
        }
    }
}

/// A tracked file's new value, for a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileValue {
    /// The `track_file`'s name.
    pub name: String,
    pub value: i64,
}

/// The files a shell follows: their values now, and the tasks that send it each change.
/// Dropping it stops following them (and watching those nobody else follows).
#[derive(Debug, Default)]
pub struct Followed {
    pub values: std::collections::BTreeMap<String, i64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Followed {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Follows `files` (name, path), sending every change of a value to `to`.
pub fn follow(
    registry: &TrackFiles,
    files: &[(String, PathBuf)],
    to: &tokio::sync::mpsc::Sender<FileValue>,
) -> Followed {
    let mut followed = Followed::default();
    for (name, path) in files {
        if followed.values.contains_key(name) {
            continue;
        }
        let mut rx = registry.subscribe(name, path);
        followed
            .values
            .insert(name.clone(), *rx.borrow_and_update());
        let (name, to) = (name.clone(), to.clone());
        followed.tasks.push(tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let value = *rx.borrow_and_update();
                let change = FileValue {
                    name: name.clone(),
                    value,
                };
                if to.send(change).await.is_err() {
                    return;
                }
            }
        }));
    }
    followed
}

/// The `track_file`s the VRRP instances of `config` track, as (name, path).
pub fn vrrp_files(config: &Config) -> Vec<(String, PathBuf)> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for i in &config.vrrp.instances {
        for t in &i.track_file {
            if let Some(f) = config.vrrp.track_file(&t.name) {
                if !files.iter().any(|(n, _)| *n == f.name) {
                    files.push((f.name.clone(), PathBuf::from(&f.file)));
                }
            }
        }
    }
    files
}
