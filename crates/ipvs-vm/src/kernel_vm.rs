//! A throwaway virtual machine with Debian's cloud kernel (which has IPVS), driven through
//! `ipvs-vm/run.sh`.
//!
//! A [`Payload`] is a shell script plus files; the machine boots with them under `/payload`, runs
//! the script as root with iproute2, keepalived, ipvsadm and kmod at hand, and powers off. The
//! script's output (stdout and stderr, merged on the console) and exit status come back as a
//! [`VmOutput`]. The machine has no network device: whatever network the script needs, it builds
//! inside (veth pairs, bridges, namespaces).

use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What the machine runs: `/payload/run.sh` and the files beside it.
#[derive(Debug, Clone, Default)]
pub struct Payload {
    script: String,
    files: Vec<(PathBuf, Vec<u8>)>,
}

impl Payload {
    /// A payload whose `/payload/run.sh` is `script` (run by bash, as root, with `/payload` as its
    /// working directory).
    pub fn new(script: impl Into<String>) -> Self {
        Payload {
            script: script.into(),
            files: Vec::new(),
        }
    }

    /// Adds a file at `/payload/RELATIVE_PATH`. The path must be relative and stay inside
    /// `/payload`; this is checked by [`KernelVm::run`].
    pub fn file(mut self, relative_path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((relative_path.into(), contents.into()));
        self
    }

    /// Writes the payload into `dir`.
    fn write_to(&self, dir: &Path) -> Result<()> {
        let run = dir.join("run.sh");
        fs::write(&run, &self.script).with_context(|| format!("cannot write {}", run.display()))?;
        for (relative, contents) in &self.files {
            let escapes = relative
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
            if escapes || relative.as_os_str().is_empty() {
                bail!(
                    "payload file path {} must be relative and stay inside /payload",
                    relative.display()
                );
            }
            if relative == Path::new("run.sh") {
                bail!("payload file run.sh would replace the payload's script");
            }
            let path = dir.join(relative);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            fs::write(&path, contents)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }
}

/// What came back from one boot.
#[derive(Debug, Clone)]
pub struct VmOutput {
    /// The payload's output: its stdout and stderr as they appeared on the console.
    pub stdout: String,
    /// The payload script's exit status.
    pub exit_code: i32,
    /// The lab scripts' own messages (building the initramfs, installing packages).
    pub lab_stderr: String,
    /// Wall-clock time of the whole run: initramfs, boot, payload, power-off.
    pub elapsed: Duration,
}

/// Boots payloads in qemu through `ipvs-vm/run.sh`.
#[derive(Debug, Clone)]
pub struct KernelVm {
    run_script: PathBuf,
    timeout: Duration,
    memory_mib: u32,
    cpus: u32,
    extra_bins: Vec<PathBuf>,
}

impl KernelVm {
    /// A machine driven by the `ipvs-vm/run.sh` of this repository (found from
    /// `CARGO_MANIFEST_DIR`), with 1 GiB of memory and a 300 s limit per boot.
    pub fn new() -> Result<Self> {
        let root = crate::repo_root()?;
        Ok(KernelVm {
            run_script: root.join(crate::VM_SCRIPTS).join("run.sh"),
            timeout: Duration::from_secs(300),
            memory_mib: 1024,
            cpus: 1,
            extra_bins: Vec::new(),
        })
    }

    /// The wall-clock limit of one boot, payload included.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Guest memory in MiB.
    pub fn memory_mib(mut self, memory_mib: u32) -> Self {
        self.memory_mib = memory_mib;
        self
    }

    /// Emulated CPUs (default 1). More than one runs TCG multi-threaded: one host thread per
    /// emulated CPU, so the machine competes with the host's other work for that many cores.
    pub fn cpus(mut self, cpus: u32) -> Self {
        self.cpus = cpus.max(1);
        self
    }

    /// Adds a host binary (with the libraries `ldd` lists for it) to the machine's
    /// `/usr/local/bin`, for example the halb binary under test.
    pub fn extra_bin(mut self, path: impl Into<PathBuf>) -> Self {
        self.extra_bins.push(path.into());
        self
    }

    /// Boots the machine with `payload` and returns the payload's output and exit status.
    ///
    /// A non-zero exit status of the payload is not an error; failing to boot or to run the
    /// payload (no kernel, qemu failing, the time limit) is.
    pub fn run(&self, payload: &Payload) -> Result<VmOutput> {
        let work = tempfile::Builder::new()
            .prefix("halb-ipvs-vm-payload.")
            .tempdir()
            .context("cannot create a temporary directory for the payload")?;
        let payload_dir = work.path().join("payload");
        fs::create_dir(&payload_dir)
            .with_context(|| format!("cannot create {}", payload_dir.display()))?;
        payload.write_to(&payload_dir)?;
        let status_file = work.path().join("status");

        let mut extra_bins = Vec::new();
        for bin in &self.extra_bins {
            let bin = bin
                .canonicalize()
                .with_context(|| format!("extra binary {} not found", bin.display()))?;
            let text = bin
                .to_str()
                .with_context(|| format!("extra binary path {} is not UTF-8", bin.display()))?;
            if text.contains(char::is_whitespace) {
                bail!(
                    "extra binary path {text} contains whitespace, which EXTRA_BINS cannot carry"
                );
            }
            extra_bins.push(text.to_owned());
        }

        let started = Instant::now();
        let output = Command::new("bash")
            .arg(&self.run_script)
            .arg(&payload_dir)
            .env(
                "HALB_LAB_TIMEOUT",
                self.timeout.as_secs().max(1).to_string(),
            )
            .env("HALB_LAB_MEMORY", self.memory_mib.to_string())
            .env("HALB_LAB_SMP", self.cpus.to_string())
            .env("HALB_LAB_STATUS_FILE", &status_file)
            .env("EXTRA_BINS", extra_bins.join(" "))
            .output()
            .with_context(|| format!("cannot run {}", self.run_script.display()))?;
        let elapsed = started.elapsed();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let lab_stderr = String::from_utf8_lossy(&output.stderr).into_owned();

        // run.sh writes the status file only once the payload has run to its end marker, so its
        // absence means the lab itself failed, whatever the exit status.
        let status = match fs::read_to_string(&status_file) {
            Ok(status) => status,
            Err(_) => bail!(
                "the IPVS VM failed to run the payload ({}, exit status {}):\n{}",
                self.run_script.display(),
                output.status,
                lab_stderr.trim_end()
            ),
        };
        let exit_code = status
            .trim()
            .strip_prefix("payload_exit=")
            .and_then(|code| code.parse::<i32>().ok())
            .with_context(|| {
                format!(
                    "unexpected status file content {status:?} from {}",
                    self.run_script.display()
                )
            })?;
        Ok(VmOutput {
            stdout,
            exit_code,
            lab_stderr,
            elapsed,
        })
    }
}

/// A payload's output split at lines `MARK NAME`: each section's lines by name; what comes before
/// the first mark is under "preamble".
pub fn sections(stdout: &str, mark: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut current = String::from("preamble");
    for line in stdout.lines() {
        if let Some(name) = line.strip_prefix(mark) {
            current = name.to_string();
            out.entry(current.clone()).or_default();
        } else {
            out.entry(current.clone())
                .or_default()
                .push(line.to_string());
        }
    }
    out
}
