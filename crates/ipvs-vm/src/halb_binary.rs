//! The halb binary that goes into the IPVS VM: the one under test
//! ([`halb_test_support::halb_binary`]: `HALB_BIN`, or built by cargo in this workspace).

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The halb binary, stripped of debug information (a smaller initramfs), as `dir/halb`.
pub fn stripped_into(dir: &Path) -> Result<PathBuf> {
    let built = halb_test_support::halb_binary();
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
