//! Runs keepalived (the oracle) over the fixture configurations and the seed's two files in one
//! boot of the IPVS machine, and stores what it said under `crates/ipvs-vm/tests/fixtures/dumps/`:
//! `NAME.dump` (the configuration dump) and `NAME.test` (`keepalived -t`'s exit status and
//! diagnostics). Needs root; run with `cargo run -p halb-ipvs-vm --example capture_oracle_fixtures`.

use anyhow::{Context, Result};
use halb_ipvs_vm::keepalived_oracle::KeepalivedOracle;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn main() -> Result<()> {
    halb_ipvs_vm::ensure_prerequisites()?;
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let seed = halb_ipvs_vm::shared_dir()?.join("seed");

    let mut inputs: Vec<(String, PathBuf)> = vec![
        ("seed-master".into(), seed.join("keepalived-master.conf")),
        ("seed-backup".into(), seed.join("keepalived-backup.conf")),
    ];
    let mut configs: Vec<PathBuf> = fs::read_dir(fixtures.join("configs"))
        .context("cannot list the fixture configurations")?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    configs.sort();
    for path in configs {
        if path.extension().is_some_and(|e| e == "conf") {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .with_context(|| format!("{} has no UTF-8 name", path.display()))?
                .to_owned();
            inputs.push((name, path));
        }
    }

    let paths: Vec<&PathBuf> = inputs.iter().map(|(_, path)| path).collect();
    let started = Instant::now();
    let reports = KeepalivedOracle::new()?.run(&paths)?;
    let elapsed = started.elapsed();

    let out = fixtures.join("dumps");
    fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    for (n, ((name, path), report)) in inputs.iter().zip(&reports).enumerate() {
        let mut test = format!("exit {}\n", report.test_exit_code);
        // The path inside the machine says nothing; name the file as the fixture does.
        let file_name = path
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
        for line in &report.test_diagnostics {
            test.push_str(&line.replace(&format!("/payload/configs/{n}.conf"), &file_name));
            test.push('\n');
        }
        fs::write(out.join(format!("{name}.test")), test)?;
        let dump = report.dump_text();
        if !dump.is_empty() {
            fs::write(out.join(format!("{name}.dump")), dump)?;
        }
        println!(
            "{name}: -t exit {} in {:?}, dumps {:?} (vrrp {}, checker {}), stop {:?}, notes {:?}",
            report.test_exit_code,
            report.test_time,
            report.run_time,
            report.vrrp_dump.as_ref().map_or("none", |d| if d.complete {
                "complete"
            } else {
                "incomplete"
            }),
            report
                .check_dump
                .as_ref()
                .map_or("none", |d| if d.complete {
                    "complete"
                } else {
                    "incomplete"
                }),
            report.stop_time,
            report.notes,
        );
    }
    println!("{} files in one boot: {:?}", reports.len(), elapsed);
    Ok(())
}
