//! The IPVS VM end to end: boots Debian's cloud kernel under qemu (TCG) and checks, with
//! keepalived 2.2.7 and ipvsadm inside, that the seed's configuration programs IPVS, and that the
//! keepalived oracle reads the seed as expected.
//!
//! Needs root on Debian (missing packages are installed) and takes about 10-20 s per test. Run with
//! `cargo test -p halb-ipvs-vm --test keepalived_in_vm`.

use anyhow::{Context, Result};
use halb_config::summary::{CheckerSummary, VirtualServerSummary};
use halb_ipvs_vm::keepalived_oracle::KeepalivedOracle;
use halb_ipvs_vm::kernel_vm::{KernelVm, Payload};
use std::fs;
use std::path::PathBuf;
use std::time::Instant;

/// The seed's master configuration, beside the repository as on CI.
fn seed_master() -> Result<PathBuf> {
    Ok(halb_test_support::seed_path("keepalived-master.conf"))
}

/// keepalived's checker process alone (-C) programs IPVS; the real servers need not be reachable,
/// since keepalived adds them before the first check (after a random warm-up of up to delay_loop).
const IPVS_SCRIPT: &str = r#"
set -u
ip link add eth0 type veth peer name eth0-peer
ip link set eth0-peer up
ip link set eth0 up
ip addr add 192.168.66.250/24 dev eth0
keepalived -C -n -l -G -f /payload/keepalived.conf -p /run/ka.pid -c /run/ka-check.pid \
    >/dev/null 2>/tmp/keepalived.log &
ka=$!
for i in $(seq 200); do
    [ "$(ipvsadm -S -n | grep -c '^-A')" -ge 2 ] && break
    sleep 0.1
done
echo "--- ipvsadm -S -n"
ipvsadm -S -n
echo "--- end"
kill -TERM "$ka"
wait "$ka"
status=$?
if [ "$status" -ne 0 ]; then
    echo "keepalived exited with $status"
    cat /tmp/keepalived.log
fi
exit "$status"
"#;

#[test]
fn keepalived_programs_ipvs_from_the_seed() -> Result<()> {
    halb_ipvs_vm::ensure_prerequisites()?;
    let seed = seed_master()?;
    let config = fs::read(&seed).with_context(|| format!("cannot read {}", seed.display()))?;
    let payload = Payload::new(IPVS_SCRIPT).file("keepalived.conf", config);
    let started = Instant::now();
    let output = KernelVm::new()?.run(&payload)?;
    eprintln!(
        "ipvs-vm: boot + keepalived -C + ipvsadm in {:?}",
        started.elapsed()
    );
    assert_eq!(output.exit_code, 0, "payload output:\n{}", output.stdout);
    let table: Vec<&str> = output
        .stdout
        .lines()
        .skip_while(|line| *line != "--- ipvsadm -S -n")
        .skip(1)
        .take_while(|line| *line != "--- end")
        .collect();
    for service in [
        "-A -t 192.168.66.251:3306 -s wrr -p 120",
        "-A -t 192.168.66.251:3308 -s wrr -p 120",
    ] {
        assert!(
            table.contains(&service),
            "{service:?} missing from ipvsadm -S -n:\n{}",
            table.join("\n")
        );
    }
    Ok(())
}

#[test]
fn oracle_reads_the_seed() -> Result<()> {
    halb_ipvs_vm::ensure_prerequisites()?;
    let seed = seed_master()?;
    let started = Instant::now();
    let reports = KeepalivedOracle::new()?.run(&[&seed])?;
    eprintln!(
        "keepalived oracle: boot + one file in {:?}",
        started.elapsed()
    );
    let [report] = reports.as_slice() else {
        anyhow::bail!("expected one report, got {}", reports.len());
    };

    // 2.2.7 does not know nb_get_retry inside TCP_CHECK: warnings, exit status 5.
    assert_eq!(report.test_exit_code, 5, "{:#?}", report.test_diagnostics);
    assert!(
        report
            .test_diagnostics
            .iter()
            .any(|line| line.contains("Unknown keyword 'nb_get_retry'")),
        "{:#?}",
        report.test_diagnostics
    );

    let summary = report.summary()?;
    let [int] = summary.vrrp_instances.as_slice() else {
        anyhow::bail!("expected one VRRP instance: {summary:#?}");
    };
    assert_eq!(int.name, "INT");
    assert_eq!(int.vrid, 200);
    assert_eq!(int.priority, 100);
    assert_eq!(int.vips, ["192.168.66.251/32"]);

    assert_eq!(summary.virtual_servers.len(), 2, "{summary:#?}");
    for (vs, port) in summary.virtual_servers.iter().zip([3306, 3308]) {
        let VirtualServerSummary {
            key, real_servers, ..
        } = vs;
        assert_eq!(*key, format!("192.168.66.251:{port}"));
        let [rs] = real_servers.as_slice() else {
            anyhow::bail!("expected one real server in {key}: {vs:#?}");
        };
        assert_eq!(rs.addr, format!("192.168.66.253:{port}"));
        let [tcp] = rs.checkers.as_slice() else {
            anyhow::bail!("expected one checker on {}: {rs:#?}", rs.addr);
        };
        // With nb_get_retry ignored, the retry is TCP_CHECK's default: 1.
        assert_eq!(
            *tcp,
            CheckerSummary {
                kind: "TCP_CHECK".into(),
                connect_timeout_us: Some(5_000_000),
                retry: 1,
                delay_before_retry_us: 3_000_000,
                delay_loop_us: 20_000_000,
            }
        );
    }
    Ok(())
}
