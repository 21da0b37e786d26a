//! Whole-configuration differential against the kernel: for the seed's keepalived.conf files,
//! every Debian keepalived sample with virtual servers and the reader's LVS fixtures, `ipvsadm -S -n` (with timeouts and sync
//! daemons) after `halb run --dataplane ipvs` equals `ipvsadm -S -n` after keepalived, run from
//! the same file in the IPVS VM.
//!
//! Each file runs in two network namespaces of one boot, keepalived in one and halb in the other,
//! all files at once. No real server is reachable there, so every checker fails the same way and
//! the tables settle into the configuration's answer to failure (servers removed or inhibited,
//! sorry servers in, quorum lost). Both tables are read twice, some seconds apart, to show they
//! settled, and once more after both daemons stopped.
//!
//! Needs root on Debian (missing packages are installed). Run with
//! `cargo test -p halb-ipvs-vm --test ipvs_differential -- --nocapture` to see every table.

use anyhow::{bail, Context, Result};
use halb_ipvs_vm::keepalived_oracle::interfaces_named;
use halb_ipvs_vm::kernel_vm::{sections, KernelVm, Payload};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SCRIPT: &str = include_str!("ipvs_differential.sh");
const SAMPLES: &str = "/usr/share/doc/keepalived/samples";
const MARK: &str = "@@ipvs-diff@@ ";

/// Where the kernel tables differ on purpose: (file name, why).
const DELIBERATE: &[(&str, &str)] = &[
    (
        "keepalived.conf.SSL_GET",
        "its VRRP instance uses auth_type AH, which halb does not implement: halb refuses to start \
         rather than run VRRP without the authentication the file asks for",
    ),
    (
        "keepalived.conf.misc_check",
        "the sample's script does not exist in the lab: keepalived drops the checker at start, so \
         the real server counts as always up; halb keeps it, the missing script fails the check and \
         the server is removed",
    ),
    (
        "fwmark.conf",
        "`virtual_server fwmark 0` is refused by halb; keepalived programs it as an address-less \
         UDP service 255.255.255.255:0",
    ),
    (
        "group_entries.conf",
        "the group's range 10.0.3.1-10.0.4.7 crosses the third octet: keepalived wraps within \
         10.0.3.0/24 (\"Service already exists\" for every address) and never programs the group's \
         later entries (10.0.4.x, the fwmarks, the IPv6 ranges); halb programs every entry",
    ),
    (
        "keepalived.conf.misc_check_arg",
        "as keepalived.conf.misc_check: a MISC_CHECK whose script is missing fails in halb",
    ),
];

/// The seed's configurations and the Debian samples that have virtual servers.
fn files() -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for name in ["keepalived-master.conf", "keepalived-backup.conf"] {
        files.push(halb_test_support::seed_path(name));
    }
    let mut samples: Vec<PathBuf> = std::fs::read_dir(SAMPLES)
        .with_context(|| format!("cannot list {SAMPLES} (package keepalived)"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            std::fs::read_to_string(p).is_ok_and(|t| {
                t.lines()
                    .any(|l| l.trim_start().starts_with("virtual_server "))
            })
        })
        .collect();
    samples.sort();
    files.extend(samples);
    // The reader's LVS fixtures: every forwarding method and tunnel type, weights and
    // thresholds, IPv6, fwmarks, groups with ranges, every scheduler.
    let fixtures = halb_ipvs_vm::repo_root()?.join("crates/config/tests/fixtures/lvs");
    let mut more: Vec<PathBuf> = std::fs::read_dir(&fixtures)
        .with_context(|| format!("cannot list {}", fixtures.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    more.sort();
    files.extend(more);
    Ok(files)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Lines in one list and not the other, marked like a diff.
fn line_diff(keepalived: &[String], halb: &[String]) -> String {
    let mut s = String::new();
    for l in keepalived.iter().filter(|l| !halb.contains(l)) {
        s += &format!("  keepalived only: {l}\n");
    }
    for l in halb.iter().filter(|l| !keepalived.contains(l)) {
        s += &format!("  halb only:       {l}\n");
    }
    s
}

#[test]
fn halb_programs_the_kernel_as_keepalived_does() -> Result<()> {
    halb_ipvs_vm::ensure_prerequisites()?;
    let work = tempfile::tempdir()?;
    let halb = halb_ipvs_vm::halb_binary::stripped_into(work.path())?;
    let files = files()?;
    if files.len() < 10 {
        bail!(
            "only {} configurations found: is keepalived's documentation installed?",
            files.len()
        );
    }

    let mut payload = Payload::new(SCRIPT);
    for (n, path) in files.iter().enumerate() {
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let mut ifaces = interfaces_named(&String::from_utf8_lossy(&text)).join("\n");
        ifaces.push('\n');
        payload = payload
            .file(format!("configs/{n}.conf"), text)
            .file(format!("configs/{n}.ifaces"), ifaces);
    }
    let started = Instant::now();
    let output = KernelVm::new()?
        .extra_bin(&halb)
        .memory_mib(2048)
        .timeout(Duration::from_secs(600))
        .run(&payload)?;
    eprintln!(
        "ipvs differential: boot and {} files in {:?}",
        files.len(),
        started.elapsed()
    );
    if let Some(path) = std::env::var_os("IPVS_DIFF_OUTPUT") {
        std::fs::write(&path, &output.stdout)?;
    }
    let out = sections(&output.stdout, MARK);
    let get = |name: &str| -> Result<Vec<String>> {
        out.get(name)
            .cloned()
            .with_context(|| format!("section {name} missing from:\n{}", output.stdout))
    };

    let mut failures = Vec::new();
    let mut compared = 0;
    for (n, path) in files.iter().enumerate() {
        let name = file_name(path);
        let keepalived = get(&format!("dump 2 keepalived {n}"))?;
        let halb = get(&format!("dump 2 halb {n}"))?;
        let settled = get(&format!("dump 1 keepalived {n}"))? == keepalived
            && get(&format!("dump 1 halb {n}"))? == halb;
        eprintln!("== {name}: keepalived's table\n{}", keepalived.join("\n"));
        let services = keepalived.iter().filter(|l| l.starts_with("-A ")).count();
        let dests = keepalived.iter().filter(|l| l.starts_with("-a ")).count();
        let deliberate = DELIBERATE.iter().find(|(f, _)| *f == name);
        let mut problems = Vec::new();
        if !settled {
            problems.push("a table changed between the two reads: not settled".to_string());
        }
        if keepalived != halb {
            problems.push(format!("tables differ:\n{}", line_diff(&keepalived, &halb)));
        }
        let k_stopped = get(&format!("dump stopped keepalived {n}"))?;
        let h_stopped = get(&format!("dump stopped halb {n}"))?;
        if k_stopped != h_stopped {
            problems.push(format!(
                "after SIGTERM the tables differ:\n{}",
                line_diff(&k_stopped, &h_stopped)
            ));
        }
        match (problems.is_empty(), deliberate) {
            (true, None) => {
                compared += 1;
                eprintln!("{name}: equal ({services} services, {dests} destinations)");
            }
            (true, Some(_)) => failures.push(format!(
                "{name}: listed as deliberately different, but the tables are equal"
            )),
            (false, Some((_, why))) => eprintln!("{name}: differs on purpose: {why}"),
            (false, None) => {
                let klog = get(&format!("log keepalived {n}"))?.join("\n");
                let hlog = get(&format!("log halb {n}"))?.join("\n");
                failures.push(format!(
                    "{name}:\n{}\n--- keepalived's log ---\n{klog}\n--- halb's log ---\n{hlog}",
                    problems.join("\n")
                ));
            }
        }
    }
    eprintln!(
        "ipvs differential: {compared} of {} files equal, {} differ on purpose",
        files.len(),
        DELIBERATE.len()
    );
    if !failures.is_empty() {
        bail!(
            "{} file(s) program the kernel differently:\n\n{}",
            failures.len(),
            failures.join("\n\n")
        );
    }
    Ok(())
}
