//! The seed's whole test plan against real MariaDB 10.11 and halb on the seed's unchanged
//! configurations, in network namespaces (`halb_seed_lab::scenarios::run_plan`), plus the lab's
//! own promises: a build that fails half-way leaves nothing behind, and a detached lab (`halb
//! lab up`) is stopped exactly by its state (`halb lab down`).
//!
//! Asserted: the VIP answers on both ports, every scenario ends with writes succeeding and
//! replication running, and the topology is torn down. Every other figure (outages, failed
//! attempts, missing rows, rows on both masters, connections left open) is printed in the
//! report, not asserted: run with `--nocapture` to see it, or set `SEED_LAB_REPORT=FILE` (text)
//! and `SEED_LAB_JSON=FILE`.
//!
//! The halb binary: `HALB_BIN` when set, else `cargo build -p halb` (a test cannot name another
//! package's binary). Needs root, iproute2, mariadb-server and mariadb-client
//! (`scripts/deps.sh`).

use anyhow::{bail, Context, Result};
use halb_seed_lab::scenarios::{run_plan, PlanOptions, Scenario};
use halb_seed_lab::topology::{process_alive, LabState, Topology, TopologyOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

fn namespaces_with(prefix: &str) -> Vec<String> {
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
fn our_mariadb_processes() -> Vec<u32> {
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
fn our_mariadb_dirs() -> Vec<PathBuf> {
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

fn assert_nothing_left(prefix: &str, what: &str) {
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

#[test]
fn the_seeds_plan_runs_and_the_lab_cleans_up() -> Result<()> {
    let started = Instant::now();
    let halb = halb_binary()?;
    eprintln!(
        "seed lab: halb at {} ({:?})",
        halb.display(),
        started.elapsed()
    );

    // 1. A build that fails after the databases are up (the directors' program exits at once)
    //    stops and removes everything it made.
    let mut broken = TopologyOptions::new("/bin/false");
    broken.prefix = format!("halb-lab-t{}-fail", std::process::id());
    let t = Instant::now();
    match Topology::build(&broken) {
        Ok(_) => bail!("a lab whose directors cannot run was built"),
        Err(e) => {
            let text = format!("{e:#}");
            assert!(text.contains("exited"), "unexpected error: {text}");
        }
    }
    assert_nothing_left(&broken.prefix, "a failed build");
    eprintln!("seed lab: a failed build cleaned up ({:?})", t.elapsed());

    // 2. A detached lab (`halb lab up`) keeps running, and its state stops exactly it.
    let mut up = TopologyOptions::new(&halb);
    up.prefix = format!("halb-lab-t{}-up", std::process::id());
    let t = Instant::now();
    let lab = Topology::build(&up)?;
    let state_dir = tempfile::tempdir()?;
    let state_path = state_dir.path().join("state.json");
    lab.detach().save(&state_path)?;
    let state = LabState::load(&state_path)?;
    assert_eq!(state.processes.len(), 6, "{state:?}");
    assert_eq!(state.namespaces.len(), 6, "{state:?}");
    assert!(state.processes.iter().all(|p| process_alive(p.pid)));
    assert_eq!(namespaces_with(&up.prefix).len(), 6);
    let report = state.teardown();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!((report.stopped, report.namespaces_removed), (6, 6));
    assert!(state.processes.iter().all(|p| !process_alive(p.pid)));
    assert!(state.dirs.iter().all(|d| !d.exists()), "{:?}", state.dirs);
    assert_nothing_left(&up.prefix, "a detached lab after its teardown");
    eprintln!("seed lab: up and down ({:?})", t.elapsed());

    // 3. The plan.
    let mut options = TopologyOptions::new(&halb);
    options.prefix = format!("halb-lab-t{}", std::process::id());
    options.progress = true;
    let plan = PlanOptions {
        live: true,
        ..PlanOptions::default()
    };
    let t = Instant::now();
    let report = run_plan(&options, &plan, &Scenario::ALL)?;
    let text = report.render();
    println!("{text}");
    if let Some(path) = std::env::var_os("SEED_LAB_REPORT") {
        std::fs::write(&path, &text)?;
    }
    if let Some(path) = std::env::var_os("SEED_LAB_JSON") {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    }
    eprintln!("seed lab: the plan ran in {:?}", t.elapsed());

    assert_eq!(report.scenarios.len(), Scenario::ALL.len());
    let forwarding = &report.scenarios[0];
    for port in [3306, 3308] {
        let check = forwarding
            .checks
            .iter()
            .find(|c| c.what.starts_with(&format!("the VIP answers on {port}")))
            .with_context(|| format!("no check of the VIP on {port}"))?;
        assert!(
            check.ok,
            "the VIP does not answer on {port}: {}",
            check.detail
        );
    }
    for s in &report.scenarios {
        assert!(
            s.error.is_none(),
            "{} {} stopped early: {:?}\n{text}",
            s.id,
            s.name,
            s.error
        );
        for c in &s.checks {
            if c.what.starts_with("writes succeed at the end")
                || c.what.starts_with("replication running")
            {
                assert!(c.ok, "{} {}: {} failed: {}", s.id, s.name, c.what, c.detail);
            }
        }
        assert!(s.ok, "{} {} failed a required check:\n{text}", s.id, s.name);
    }
    assert!(report.teardown.clean(), "{:?}", report.teardown);
    assert_nothing_left(&options.prefix, "the plan");
    eprintln!("seed lab: everything in {:?}", started.elapsed());
    Ok(())
}

/// `HALB_BIN`, or `cargo build -p halb --bin halb` in this workspace and target directory.
fn halb_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("HALB_BIN") {
        return Ok(PathBuf::from(path));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new(&cargo)
        .current_dir(&root)
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
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "halb")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo built halb but named no executable")
}
