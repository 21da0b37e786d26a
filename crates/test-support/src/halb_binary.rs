//! The halb binary under test, for tests of other packages than `halb` (which cannot name its
//! binary through `CARGO_BIN_EXE_halb`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Names an already built halb binary, instead of building one.
pub const HALB_BIN_VAR: &str = "HALB_BIN";

/// `$HALB_BIN`, or the executable of `cargo build -p halb --bin halb` in this checkout's
/// workspace and target directory (the cargo that runs the test, so the same profile and
/// toolchain). Panics, with cargo's exit status, when the build fails.
pub fn halb_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(HALB_BIN_VAR) {
        return PathBuf::from(path);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let started = Instant::now();
    let output = Command::new(&cargo)
        .current_dir(crate::shared::checkout_root())
        .args([
            "build",
            "-p",
            "halb",
            "--bin",
            "halb",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build halb: {e}"));
    assert!(
        output.status.success(),
        "cargo build -p halb failed: {}",
        output.status
    );
    let executable = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "halb")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo built halb but named no executable");
    eprintln!("halb built in {:?}", started.elapsed());
    executable
}
