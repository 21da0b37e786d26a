//! The seed's whole test plan against real MariaDB 10.11 and halb on the seed's unchanged
//! configurations, in network namespaces (`halb_seed_lab::scenarios::run_plan`), plus the lab's
//! own promise that a build failing half-way leaves nothing behind (`up_down.rs` holds `halb lab
//! up` and `down` to theirs).
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

mod support;

use anyhow::{bail, Context, Result};
use halb_seed_lab::scenarios::{run_plan, PlanOptions, Scenario};
use halb_seed_lab::topology::{Topology, TopologyOptions};
use halb_test_support::halb_binary;
use std::time::Instant;
use support::assert_nothing_left;

#[test]
fn the_seeds_plan_runs_and_the_lab_cleans_up() -> Result<()> {
    let started = Instant::now();
    let halb = halb_binary();
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

    // 2. The plan.
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
