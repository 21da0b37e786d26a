//! Differential test against the real `keepalived -t` (Debian's keepalived 2.2.7).
//!
//! For every sample keepalived ships and every file of halb's own corpus of edge and broken
//! configurations, both programs check the file inside one fresh network namespace (so both
//! see the same interfaces: `lo` and `eth0`..`eth3`), and:
//! (a) the same files are clean;
//! (b) for every line keepalived reports a diagnostic on, halb reports one on the same line.
//!
//! Requires root (for the namespace) and keepalived; `.ci/run` installs it.

use halb_test_support::Netns;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const SAMPLES: &str = "/usr/share/doc/keepalived/samples";

/// Files whose clean/not-clean verdict differs from keepalived's on purpose, and why.
/// The README lists the same differences.
const DELIBERATE_VERDICT: &[(&str, &str)] = &[];

/// keepalived lines that halb deliberately does not report, as (file name, line, why).
const DELIBERATE_LINES: &[(&str, u32, &str)] = &[
    (
        "unknown-keyword-block.conf",
        4,
        "halb skips an unknown keyword with its whole block; keepalived reads the block's lines as keywords",
    ),
    (
        "unknown-keyword-block.conf",
        6,
        "the unknown block's '}' closes that block in halb; in keepalived it closed global_defs, leaving this '}' extra",
    ),
];

#[derive(Debug)]
struct Verdict {
    clean: bool,
    /// (file, line) pairs with a diagnostic.
    lines: BTreeSet<(PathBuf, u32)>,
    text: String,
}

fn corpus() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in [
        Path::new(SAMPLES).to_path_buf(),
        here.join("tests/corpus"),
        here.join("../config/tests/fixtures/vrrp"),
        here.join("../config/tests/fixtures/lvs"),
    ] {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "cannot read {}: {e} (is keepalived installed?)",
                dir.display()
            )
        });
        for e in entries.flatten() {
            let p = e.path();
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let is_conf = name.starts_with("keepalived.conf") || name.ends_with(".conf");
            if p.is_file() && is_conf {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// Parses keepalived's `(FILE: Line N) message` / `(Line N) message` lines.
fn keepalived_lines(main: &Path, stderr: &str) -> BTreeSet<(PathBuf, u32)> {
    let mut out = BTreeSet::new();
    let dir = main.parent().unwrap_or(Path::new("/"));
    for line in stderr.lines() {
        let Some(rest) = line.strip_prefix('(') else {
            continue;
        };
        let Some(close) = rest.find(')') else {
            continue;
        };
        let inner = &rest[..close];
        let (file, num) = match inner.rsplit_once("Line ") {
            Some((f, n)) => (f.trim_end_matches(": ").trim(), n),
            None => continue,
        };
        let Ok(num) = num.trim().parse::<u32>() else {
            continue;
        };
        let path = if file.is_empty() {
            main.to_path_buf()
        } else if Path::new(file).is_absolute() {
            PathBuf::from(file)
        } else {
            dir.join(file)
        };
        out.insert((path, num));
    }
    out
}

/// Parses halb's short format `path:line:col: severity: message`.
fn halb_lines(stderr: &str) -> BTreeSet<(PathBuf, u32)> {
    let mut out = BTreeSet::new();
    for line in stderr.lines() {
        let mut parts = line.splitn(4, ':');
        let (Some(path), Some(num), Some(_col)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if let Ok(n) = num.parse::<u32>() {
            out.insert((PathBuf::from(path), n));
        }
    }
    out
}

fn keepalived_verdict(ns: &Netns, file: &Path) -> Verdict {
    let out = ns
        .command("keepalived")
        .args(["-t", "-f"])
        .arg(file)
        .output()
        .expect("run keepalived -t (is keepalived installed?)");
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    Verdict {
        clean: out.status.code() == Some(0),
        lines: keepalived_lines(file, &text),
        text,
    }
}

fn halb_verdict(ns: &Netns, file: &Path) -> Verdict {
    let out = ns
        .command(env!("CARGO_BIN_EXE_halb"))
        .args(["check-config", "--message-format", "short", "-f"])
        .arg(file)
        .output()
        .expect("run halb check-config");
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    let code = out.status.code();
    assert!(
        matches!(code, Some(0 | 4 | 5)),
        "halb check-config exited {code:?} on {}:\n{text}",
        file.display()
    );
    Verdict {
        clean: code == Some(0),
        lines: halb_lines(&text),
        text,
    }
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[test]
fn halb_agrees_with_keepalived_t() {
    let ns = Netns::new("diff");
    for i in 0..4 {
        ns.ip(&[
            "link",
            "add",
            &format!("eth{i}"),
            "type",
            "veth",
            "peer",
            "name",
            &format!("peer{i}"),
        ]);
    }
    let files = corpus();
    assert!(files.len() > 70, "corpus too small: {} files", files.len());
    let mut failures = Vec::new();
    let mut compared_lines = 0;
    for file in &files {
        let name = name_of(file);
        let k = keepalived_verdict(&ns, file);
        let h = halb_verdict(&ns, file);
        if k.clean != h.clean && !DELIBERATE_VERDICT.iter().any(|(f, _)| *f == name) {
            failures.push(format!(
                "{name}: keepalived says {}, halb says {}\n--- keepalived:\n{}--- halb:\n{}",
                if k.clean { "clean" } else { "not clean" },
                if h.clean { "clean" } else { "not clean" },
                k.text,
                h.text
            ));
        }
        for (path, line) in &k.lines {
            compared_lines += 1;
            let excused = DELIBERATE_LINES
                .iter()
                .any(|(f, l, _)| *f == name_of(path) && l == line);
            if !excused && !h.lines.contains(&(path.clone(), *line)) {
                failures.push(format!(
                    "{name}: keepalived reports {}:{line}, halb reports nothing there\n--- keepalived:\n{}--- halb:\n{}",
                    path.display(),
                    k.text,
                    h.text
                ));
            }
        }
    }
    eprintln!(
        "compared {} files and {compared_lines} keepalived diagnostic lines",
        files.len()
    );
    assert!(
        failures.is_empty(),
        "{} differences:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
