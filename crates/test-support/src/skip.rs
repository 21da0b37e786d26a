//! Tests that cannot run on this machine (no root, a program not installed) say so in a line the
//! test harness does not swallow, and fail under `CI=true`: CI installs everything
//! (`scripts/deps.sh`) and runs as root, so a skip there is a broken setup, not a pass.

use std::fmt::Display;
use std::io::{ErrorKind, Write};
use std::process::{Command, Stdio};

/// Reports that the calling test does not run here, because of `why`; the caller then returns.
///
/// Outside CI: writes `skipped: TEST: WHY` straight to the process's stderr, which the harness
/// shows even for a passing test (it captures only `print!`/`eprint!`). Under CI (`CI` set to
/// `true` or `1`): panics with the same words, so the test fails.
pub fn skip(why: impl Display) {
    let current = std::thread::current();
    let test = current.name().unwrap_or("a test");
    if under_ci() {
        panic!("{test} cannot run: {why}; under CI=true everything the tests need must be there");
    }
    let _ = writeln!(std::io::stderr(), "skipped: {test}: {why}");
}

/// Whether the tests run under CI (`CI=true`, as CI systems set it, or `CI=1`).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Whether the test runs as root (network namespaces, raw sockets, changing user).
pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Whether `program` can be started from `PATH` (started once with `--version`, its output
/// thrown away; only "not found" counts as missing).
pub fn installed(program: &str) -> bool {
    let started = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    !matches!(started, Err(e) if e.kind() == ErrorKind::NotFound)
}
