//! The IPVS machine of halb's tests (development only, never shipped).
//!
//! - [`kernel_vm`]: runs a payload (a shell script and its files) inside Debian's cloud kernel under
//!   qemu, through `ipvs-vm/run.sh`. That kernel has IPVS, which the development and CI kernels
//!   lack.
//! - [`keepalived_oracle`]: asks keepalived 2.2.7 itself, inside that machine, how it reads
//!   configuration files: `keepalived -t` verdicts and the configuration dumps of `keepalived -d`.
//! - [`keepalived_dump`]: reduces such a dump to a [`halb_config::summary::Summary`], the form
//!   halb's own reading is compared with.
//! - [`halb_binary`]: the halb binary under test, built by cargo, to copy into the machine.
//! - [`mariadb`]: a real MariaDB server to run in the machine.
//!
//! Everything here needs root and a Debian system (packages are installed when missing); see
//! [`ensure_prerequisites`]. The seed's lab in network namespaces (`halb lab`) is another crate,
//! `halb-seed-lab`.

pub mod halb_binary;
pub mod keepalived_dump;
pub mod keepalived_oracle;
pub mod kernel_vm;
pub mod mariadb;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian packages the IPVS machine uses, on the host (qemu, the kernel tools) and copied into the
/// machine (busybox, iproute2, keepalived, ipvsadm, kmod, strace for the tests that trace what a
/// daemon sends, and BIRD 2 for the routers and directors of the scale-out lab).
pub const DEBIAN_PACKAGES: &[&str] = &[
    "busybox-static",
    "qemu-system-x86",
    "kmod",
    "cpio",
    "keepalived",
    "ipvsadm",
    "iproute2",
    "strace",
    "bird2",
];

/// The machine's scripts (fetch the kernel, build the initramfs, boot a payload), relative to the
/// repository's root.
pub const VM_SCRIPTS: &str = "ipvs-vm";

/// The repository's root: two levels above this crate's manifest directory. A development
/// crate's tests run in the repository, so the compile-time path is the right one here.
pub fn repo_root() -> Result<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest
        .parent()
        .and_then(Path::parent)
        .with_context(|| format!("{} has no grandparent directory", manifest.display()))?;
    let run = root.join(VM_SCRIPTS).join("run.sh");
    if !run.is_file() {
        bail!(
            "{} not found: halb-ipvs-vm expects to live in crates/ipvs-vm of the halb repository",
            run.display()
        );
    }
    Ok(root.to_path_buf())
}

/// The directory beside the repository that holds `DESIGN.md`, `seed/` and `notes/`
/// (`../shared` relative to the repository root, as on CI).
pub fn shared_dir() -> Result<PathBuf> {
    let dir = repo_root()?.join("../shared");
    if !dir.is_dir() {
        bail!(
            "{} not found: the shared directory must sit beside the repository",
            dir.display()
        );
    }
    Ok(dir)
}

/// Installs the Debian packages the machine needs when they are missing, and fetches the kernel.
///
/// Needs root on a Debian machine; does nothing that is already done. The machine's scripts do the same
/// on their own, so calling this first only moves the slow part before any time limit starts.
pub fn ensure_prerequisites() -> Result<()> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .context("cannot run id -u to check for root")?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        bail!("the IPVS machine needs root (apt-get, device nodes in the initramfs); run the tests as root");
    }
    ensure_packages(DEBIAN_PACKAGES)?;
    let kernel_dir = repo_root()?.join(VM_SCRIPTS);
    let fetch = kernel_dir.join("fetch-kernel.sh");
    let status = Command::new("bash")
        .arg(&fetch)
        .status()
        .with_context(|| format!("cannot run {}", fetch.display()))?;
    if !status.success() {
        bail!("{} failed: {status}", fetch.display());
    }
    Ok(())
}

/// Installs the Debian packages among `packages` that are missing (`ipvs-vm/common.sh`'s
/// `ensure_packages`; needs root).
pub fn ensure_packages(packages: &[&str]) -> Result<()> {
    let kernel_dir = repo_root()?.join(VM_SCRIPTS);
    let status = Command::new("bash")
        .arg("-c")
        .arg(r#"set -euo pipefail; source "$1/common.sh"; shift; ensure_packages "$@""#)
        .arg("ensure-packages")
        .arg(&kernel_dir)
        .args(packages)
        .status()
        .context("cannot run bash to install Debian packages")?;
    if !status.success() {
        bail!(
            "installing the Debian packages {} failed: {status}",
            packages.join(" ")
        );
    }
    Ok(())
}
