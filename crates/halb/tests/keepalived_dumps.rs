//! keepalived's dump signals: halb and the real keepalived (Debian's 2.2.7) each run the seed's
//! VRRP part as MASTER on the same director, one after the other, and each gets SIGUSR1 (data),
//! SIGUSR2 (statistics) and SIGRTMIN+2 (JSON). The files are compared section by section: every
//! line halb writes must be one keepalived writes too, in keepalived's order and with its value
//! (times and advert counts aside); what keepalived writes and halb does not is printed, the
//! list the README keeps. Needs root.

mod support;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use halb_test_support::{installed, is_root, skip, ChildGuard};
use support::vrrp_lab::{seed_vrrp, wait_for, Lab, VIP};

/// The three dump files, as text.
struct Dumps {
    data: String,
    stats: String,
    json: String,
}

/// Starts `argv` in `ns` with `TMPDIR=dir`, waits for the VIP, signals it, reads the dumps.
fn dumps_of(lab: &Lab, what: &str, argv: &[&str], dir: &Path) -> Dumps {
    std::fs::create_dir_all(dir).expect("a dump directory");
    let log = lab.dir.path().join(format!("{what}.log"));
    let out = File::create(&log).expect("a log file");
    let mut daemon = ChildGuard::spawn(
        lab.a
            .ns
            .command(argv[0])
            .args(&argv[1..])
            .env("TMPDIR", dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone the log"))
            .stderr(out),
    )
    .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for(Duration::from_secs(10), || lab.a.has(VIP))
        .unwrap_or_else(|| panic!("{what} did not take the VIP\n{}", read_log()));
    // Past the gratuitous ARPs of the transition, so both have settled the same way.
    std::thread::sleep(Duration::from_millis(1500));
    let pid = daemon.pid().expect("running") as libc::pid_t;
    for (signal, file) in [
        (libc::SIGUSR1, "keepalived.data"),
        (libc::SIGUSR2, "keepalived.stats"),
        (libc::SIGRTMIN() + 2, "keepalived.json"),
    ] {
        // SAFETY: kill(2) on the pid of a child this test started and still holds.
        unsafe { libc::kill(pid, signal) };
        wait_for(Duration::from_secs(5), || dir.join(file).exists())
            .unwrap_or_else(|| panic!("{what} wrote no {file}\n{}", read_log()));
    }
    // keepalived writes through stdio: let it finish the file.
    std::thread::sleep(Duration::from_millis(300));
    daemon.terminate(Duration::from_secs(5));
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect("a dump file");
    Dumps {
        data: read("keepalived.data"),
        stats: read("keepalived.stats"),
        json: read("keepalived.json"),
    }
}

/// A dump's lines grouped by section (`------< NAME >------`), the instance and group blocks
/// inside a section told apart by their heading line.
fn sections(text: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut section = String::from("(top)");
    for line in text.lines() {
        if let Some(name) = line
            .strip_prefix("------< ")
            .and_then(|l| l.strip_suffix(" >------"))
        {
            section = name.to_string();
            continue;
        }
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let (key, value) = match trimmed.split_once(" = ") {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (trimmed.to_string(), String::new()),
        };
        // The heading of an instance or a group names it: keep it in the key.
        let key = if indent == 1 {
            trimmed.to_string()
        } else {
            format!("{indent}:{key}")
        };
        out.entry(section.clone()).or_default().push((key, value));
    }
    out
}

/// Values that differ between two runs of the same program: times and counters of adverts.
const VOLATILE: &[&str] = &["Last transition", "Read timeout", "Sent", "Received"];

fn volatile(key: &str) -> bool {
    let name = key.split_once(':').map_or(key, |(_, k)| k);
    VOLATILE.contains(&name)
}

/// Compares one dump; returns what keepalived writes that halb does not, and fails on a line
/// halb writes that keepalived does not, on a value that differs, or on a line out of order.
fn compare(what: &str, keepalived: &str, halb: &str) -> Vec<String> {
    let ours = sections(halb);
    let theirs = sections(keepalived);
    let mut missing = Vec::new();
    let mut problems = Vec::new();
    for (section, lines) in &theirs {
        match ours.get(section) {
            None => missing.push(format!("{what}: section `{section}`")),
            Some(ours) => {
                let mut at = 0;
                for (key, value) in ours {
                    match lines[at..].iter().position(|(k, _)| k == key) {
                        None => problems.push(format!(
                            "{what} [{section}]: halb writes `{key}` that keepalived does not \
                             (or not at this place)"
                        )),
                        Some(offset) => {
                            let theirs = &lines[at + offset].1;
                            if theirs != value && !volatile(key) {
                                problems.push(format!(
                                    "{what} [{section}] {key}: halb `{value}`, keepalived `{theirs}`"
                                ));
                            }
                            at += offset + 1;
                        }
                    }
                }
                for (key, _) in lines {
                    if !ours.iter().any(|(k, _)| k == key) {
                        missing.push(format!(
                            "{what} [{section}]: `{}`",
                            key.trim_start_matches(|c: char| c.is_ascii_digit() || c == ':')
                        ));
                    }
                }
            }
        }
    }
    for section in ours.keys().filter(|s| !theirs.contains_key(*s)) {
        problems.push(format!(
            "{what}: halb writes a section `{section}` keepalived does not"
        ));
    }
    assert!(
        problems.is_empty(),
        "{what} differs from keepalived's:\n{}\n--- halb:\n{halb}\n--- keepalived:\n{keepalived}",
        problems.join("\n")
    );
    missing
}

/// The JSON dump: the same keys in the same order, with the same values (times and advert
/// counts aside), for each instance.
fn compare_json(keepalived: &str, halb: &str) -> Vec<String> {
    let theirs: serde_json::Value = serde_json::from_str(keepalived).expect("keepalived's JSON");
    let ours: serde_json::Value = serde_json::from_str(halb).expect("halb's JSON is JSON");
    let (theirs, ours) = (
        theirs.as_array().expect("an array"),
        ours.as_array().expect("an array"),
    );
    assert_eq!(theirs.len(), ours.len(), "one object per instance");
    // Key order is part of the layout: read it from the text, serde_json's maps sort.
    let keys = |text: &str, part: &str| -> Vec<String> {
        let start = text.find(&format!("\"{part}\":{{")).expect("the part") + part.len() + 4;
        let end = start + text[start..].find('}').expect("its end");
        text[start..end]
            .split(',')
            .filter_map(|kv| {
                kv.split_once("\":")
                    .map(|(k, _)| k.trim_matches('"').to_string())
            })
            .filter(|k| !k.starts_with(' ') && !k.contains(' '))
            .collect()
    };
    let mut missing = Vec::new();
    for part in ["data", "stats"] {
        let (their_keys, our_keys) = (keys(keepalived, part), keys(halb, part));
        let mut at = 0;
        for key in &our_keys {
            let offset = their_keys[at..]
                .iter()
                .position(|k| k == key)
                .unwrap_or_else(|| panic!("keepalived.json {part}: halb writes `{key}` that keepalived does not (or not there)\n{halb}\n{keepalived}"));
            at += offset + 1;
            let (t, o) = (&theirs[0][part][key], &ours[0][part][key]);
            if !["last_transition", "advert_sent", "advert_rcvd"].contains(&key.as_str()) {
                assert_eq!(t, o, "keepalived.json {part}.{key}");
            }
        }
        for key in their_keys.iter().filter(|k| !our_keys.contains(k)) {
            missing.push(format!("keepalived.json {part}: `{key}`"));
        }
    }
    missing
}

#[test]
fn dumps_match_keepalived_2_2_7_for_the_seed() {
    if !is_root() {
        return skip("needs root for network namespaces");
    }
    if !installed("keepalived") {
        return skip("keepalived is not installed (scripts/deps.sh)");
    }
    let lab = Lab::new("dump");
    let conf = lab.write("seed.conf", &seed_vrrp("MASTER", 100));
    let conf = conf.to_str().expect("UTF-8");
    let dir = |name: &str| -> PathBuf { lab.dir.path().join(name) };
    let pid = |name: &str| dir(name).to_str().expect("UTF-8").to_string();
    let (main, vrrp, check) = (pid("k.pid"), pid("k-vrrp.pid"), pid("k-check.pid"));
    let keepalived = dumps_of(
        &lab,
        "keepalived",
        &[
            "keepalived",
            "--dont-fork",
            "--log-console",
            "--vrrp",
            "-f",
            conf,
            "-p",
            &main,
            "-r",
            &vrrp,
            "-c",
            &check,
        ],
        &dir("keepalived-tmp"),
    );
    let socket = pid("halb.sock");
    let halb = dumps_of(
        &lab,
        "halb",
        &[
            env!("CARGO_BIN_EXE_halb"),
            "run",
            "-f",
            conf,
            "--control-socket",
            &socket,
        ],
        &dir("halb-tmp"),
    );
    let mut missing = compare("keepalived.data", &keepalived.data, &halb.data);
    missing.extend(compare("keepalived.stats", &keepalived.stats, &halb.stats));
    missing.extend(compare_json(&keepalived.json, &halb.json));
    // The statistics are complete: every counter keepalived prints.
    assert!(
        !missing.iter().any(|m| m.starts_with("keepalived.stats")),
        "{missing:#?}"
    );
    eprintln!("keepalived writes, halb does not:");
    for line in &missing {
        eprintln!("  {line}");
    }
}
