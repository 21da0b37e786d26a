//! FILE_CHECK on a real kernel's IPVS, keepalived against halb, in one boot of the IPVS VM (see
//! `ipvs_file_check.sh`): four real servers follow one file with different weights (the
//! track_file's own, `weight 3 reverse`, `weight 0`, `weight 0 reverse` with
//! `inhibit_on_failure`), and the file goes through numbers, 0, negative values, garbage, a
//! number out of range, removal, a rename into place and a reload that changes a weight. After
//! each step both kernels' tables (`ipvsadm -S -n`) must be equal.
//!
//! Needs root on Debian (missing packages are installed). Run with
//! `cargo test -p halb-ipvs-vm --test ipvs_file_check -- --nocapture` to see every table.

use anyhow::{bail, Result};
use halb_ipvs_vm::kernel_vm::{sections, KernelVm, Payload};
use std::time::{Duration, Instant};

const SCRIPT: &str = include_str!("ipvs_file_check.sh");
const LAN: &str = include_str!("lan.sh");
const MARK: &str = "@@ipvs-file@@ ";

fn config(rs1_weight: &str) -> String {
    format!(
        "global_defs {{
    router_id d1
}}
track_file flag {{
    file /tmp/flag
}}
virtual_server 10.0.0.100 9000 {{
    delay_loop 2
    lb_algo wrr
    lb_kind DR
    protocol TCP
    real_server 10.0.0.21 9000 {{
        weight 10
        FILE_CHECK {{
            track_file flag
{rs1_weight}        }}
    }}
    real_server 10.0.0.22 9000 {{
        weight 10
        FILE_CHECK {{
            track_file flag
            weight 3 reverse
        }}
    }}
    real_server 10.0.0.23 9000 {{
        weight 5
        FILE_CHECK {{
            track_file flag
            weight 0
        }}
    }}
    real_server 10.0.0.24 9000 {{
        weight 5
        inhibit_on_failure
        FILE_CHECK {{
            track_file flag
            weight 0 reverse
        }}
    }}
}}
"
    )
}

const STEPS: &str = "\
five write 5
zero write 0
negative write -4
garbage write up
seven write 7
out-of-range write 99999999999
removed remove
renamed-in rename 2
hex write 0x3
below-zero write -1000
reload-weight reload b.conf
after-reload write 6
";

#[test]
fn file_check_changes_reach_ipvs_as_with_keepalived() -> Result<()> {
    halb_ipvs_vm::ensure_prerequisites()?;
    let work = tempfile::tempdir()?;
    let halb = halb_ipvs_vm::halb_binary::stripped_into(work.path())?;
    let payload = Payload::new(SCRIPT)
        .file("lan.sh", LAN)
        .file("configs/a.conf", config(""))
        .file("configs/b.conf", config("            weight 4\n"))
        .file("steps", STEPS);
    let started = Instant::now();
    let output = KernelVm::new()?
        .extra_bin(&halb)
        .timeout(Duration::from_secs(300))
        .run(&payload)?;
    eprintln!("ipvs file check: boot and steps in {:?}", started.elapsed());
    let out = sections(&output.stdout, MARK);
    if !out.contains_key("end") || out.keys().any(|k| k.starts_with("failed")) {
        bail!("the run did not finish:\n{}", output.stdout);
    }
    let mut steps: Vec<(usize, String, Vec<String>)> = out
        .iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix("step ")?;
            let (n, name) = rest.split_once(' ')?;
            Some((n.parse().ok()?, name.to_string(), v.clone()))
        })
        .collect();
    steps.sort_by_key(|(n, _, _)| *n);
    let expected = STEPS.lines().count() + 1;
    if steps.len() != expected {
        bail!(
            "{} steps reported, expected {expected}:\n{}",
            steps.len(),
            output.stdout
        );
    }
    let mut failures = Vec::new();
    for (n, name, lines) in &steps {
        let table = |p: &str| -> Vec<String> {
            let prefix = format!("{p} table ");
            lines
                .iter()
                .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
                .collect()
        };
        let (k, h) = (table("k"), table("h"));
        eprintln!("step {n} {name}:\n  {}", k.join("\n  "));
        if k != h {
            failures.push(format!(
                "step {n} {name}: the tables differ\nkeepalived:\n{}\nhalb:\n{}",
                k.join("\n"),
                h.join("\n")
            ));
        }
        if let Some(l) = lines
            .iter()
            .find(|l| l.starts_with("settle:") || l.starts_with("halb reload:"))
        {
            failures.push(format!("step {n} {name}: {l}"));
        }
    }
    if !failures.is_empty() {
        for p in ["k", "h"] {
            if let Some(log) = out.get(&format!("log {p}")) {
                eprintln!("--- {p} log ---\n{}", log.join("\n"));
            }
        }
        bail!("{}", failures.join("\n\n"));
    }
    Ok(())
}
