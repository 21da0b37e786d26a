//! The unkind scenario `early-failback` in a shortened variant, on the seed's files with
//! halb's safety keywords: the real server returns while its replication from the sorry server
//! is held back for 8 s, and halb must not hand back before it has applied the sorry server's
//! writes. The checkers run every 2 s instead of the seed's 20 s, so that they see the server
//! back well within the hold. The full comparison, seed against safe on all four scenarios, is
//! `halb lab run unkind`.
//!
//! Asserted: the handback comes after the release, and the pair stays one database: no
//! acknowledged row missing, no second with writes on both masters, no lost counter update,
//! no table pt-table-checksum finds differing; the topology is torn down.
//!
//! Needs root, iproute2, nftables, mariadb-server, mariadb-client and percona-toolkit
//! (`scripts/deps.sh`).

mod support;

use anyhow::{Context, Result};
use halb_seed_lab::scenarios::{run_plan, PlanOptions, Scenario};
use halb_seed_lab::topology::{add_safety_keywords, DirectorConfig, TopologyOptions};
use halb_test_support::halb_binary;
use std::time::Duration;
use support::assert_nothing_left;

/// The seed's file with a 2 s `delay_loop`, then halb's safety keywords.
fn shortened(config: DirectorConfig) -> DirectorConfig {
    let DirectorConfig::Seed { file_name, text } = config else {
        unreachable!("a seed configuration")
    };
    DirectorConfig::Made {
        file_name: format!("safe-short-{file_name}"),
        text: add_safety_keywords(&text.replace("delay_loop 20", "delay_loop 2")),
        described: format!("the seed's {file_name}, delay_loop 2, with halb's safety keywords"),
    }
}

#[test]
fn halb_hands_back_only_after_the_returning_master_caught_up() -> Result<()> {
    let mut options = TopologyOptions::new(halb_binary());
    options.prefix = format!("halb-lab-u{}", std::process::id());
    options.progress = true;
    options.master_config = shortened(DirectorConfig::SEED_MASTER);
    options.backup_config = shortened(DirectorConfig::SEED_BACKUP);
    let plan = PlanOptions {
        live: true,
        checker_timeout: Duration::from_secs(60),
        replication_hold: Duration::from_secs(8),
        ..PlanOptions::default()
    };
    let report = run_plan(&options, &plan, &[Scenario::EarlyFailback])?;
    let text = report.render();
    println!("{text}");
    let s = &report.scenarios[0];
    assert!(s.ok, "early-failback failed:\n{text}");
    let f = s.safety.as_ref().context("no safety figures")?;
    let release = s
        .events
        .iter()
        .find(|e| e.event.contains("START SLAVE SQL_THREAD"))
        .context("no release in the timeline")?
        .at;
    let handback = f
        .returns
        .first()
        .and_then(|r| r.handback_at)
        .context("no handback")?;
    assert!(
        handback > release,
        "handed back at {handback:.1} s, before the release at {release:.1} s:\n{text}"
    );
    assert!(f.after.checksum.is_some(), "no checksum: {:?}", f.after);
    assert!(f.clean(), "the pair diverged: {f:#?}\n{text}");
    assert!(
        f.acknowledged_updates > 0 && f.acknowledged_rows > 0,
        "{f:?}"
    );
    assert!(report.teardown.clean(), "{:?}", report.teardown);
    assert_nothing_left(&options.prefix, "early-failback");
    Ok(())
}
