//! What the seed lab's tests share: checks that a lab left nothing behind.

use halb_seed_lab::topology::process_alive;
use std::path::PathBuf;
use std::process::Command;

pub fn namespaces_with(prefix: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("run ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .map(str::to_string)
        .collect()
}

/// Every mariadbd whose data directory is one of this process's (`halb-mariadb-PID-…`).
pub fn our_mariadb_processes() -> Vec<u32> {
    let marker = format!("halb-mariadb-{}-", std::process::id());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| process_alive(pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&marker))
                .unwrap_or(false)
        })
        .collect()
}

/// This process's MariaDB directories left in the temporary directory.
pub fn our_mariadb_dirs() -> Vec<PathBuf> {
    let marker = format!("halb-mariadb-{}-", std::process::id());
    std::fs::read_dir(std::env::temp_dir())
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(&marker))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

pub fn assert_nothing_left(prefix: &str, what: &str) {
    assert_eq!(
        namespaces_with(prefix),
        Vec::<String>::new(),
        "{what}: namespaces left"
    );
    assert_eq!(
        our_mariadb_processes(),
        Vec::<u32>::new(),
        "{what}: mariadbd left"
    );
    assert_eq!(
        our_mariadb_dirs(),
        Vec::<PathBuf>::new(),
        "{what}: data directories left"
    );
}
