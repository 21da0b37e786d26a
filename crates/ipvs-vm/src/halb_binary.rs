//! The halb binary that goes into the IPVS VM.
//!
//! A test cannot name another package's binary, so this asks cargo to build it (in the same
//! workspace and target directory as the test), unless `HALB_BIN` names one already built.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The halb binary, stripped of debug information (a smaller initramfs), as `dir/halb`.
pub fn stripped_into(dir: &Path) -> Result<PathBuf> {
    let built = match std::env::var_os("HALB_BIN") {
        Some(path) => PathBuf::from(path),
        None => build()?,
    };
    let stripped = dir.join("halb");
    let status = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(&built)
        .arg(&stripped)
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        // Without binutils the binary goes in whole: slower to pack, same test.
        std::fs::copy(&built, &stripped).with_context(|| format!("copying {}", built.display()))?;
    }
    Ok(stripped)
}

/// `cargo build -p halb --bin halb` in this workspace; returns the executable cargo reports.
pub fn build() -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let started = Instant::now();
    let output = Command::new(&cargo)
        .current_dir(crate::repo_root()?)
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
        .context("cannot run cargo to build halb")?;
    if !output.status.success() {
        bail!("cargo build -p halb failed: {}", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let exe = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "halb")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo built halb but named no executable")?;
    eprintln!("ipvs-vm: halb built in {:?}", started.elapsed());
    Ok(exe)
}
