//! The userspace cost of one read of the IPVS connection table for passive detection: a file
//! laid out as `/proc/net/ip_vs_conn` with ENTRIES entries (default 100,000: mostly
//! `ESTABLISHED` and `TIME_WAIT`, one in a thousand `SYN_RECV`), read into the reused buffer,
//! scanned and fed to the stall detector, RUNS times (default 50). The kernel's side (printing
//! the table) is not in it; the kernel lab measures that (`HALB_PASSIVE_FULL=1`, see
//! bench/README.md).
//!
//! `cargo run --release -p halb-dataplane --example conn_scan_cost -- [ENTRIES] [RUNS]`

use std::io::Write;
use std::time::{Duration, Instant};

use halb_dataplane::ipvs::conn_scan::{scan, ConnTableReader};
use halb_dataplane::ipvs::stall::{StallConfig, StallDetector};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let entries: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let runs: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let dir = tempfile_dir()?;
    let path = dir.join("ip_vs_conn");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
    writeln!(
        f,
        "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData"
    )?;
    for i in 0..entries {
        let client = 0x0a00_0000u32 + i / 60_000;
        let port = 1024 + i % 60_000;
        let dest = 0xc0a8_42fd - (i % 4);
        let state = match i % 1000 {
            0 => "SYN_RECV",
            1..=400 => "TIME_WAIT",
            _ => "ESTABLISHED",
        };
        writeln!(
            f,
            "TCP {client:08X} {port:04X} C0A842FB 0CEA {dest:08X} 0CEA {state:<11} {:>7}",
            899
        )?;
    }
    f.flush()?;
    drop(f);
    let size = std::fs::metadata(&path)?.len();
    let mut reader = ConnTableReader::new(&path);
    let mut detector = StallDetector::new(StallConfig::default());
    detector.set_watched(["192.168.66.253:3306".parse().expect("an address")]);
    let mut times = Vec::new();
    let mut seen = 0usize;
    for _ in 0..runs {
        let started = Instant::now();
        let text = reader.read()?;
        detector.begin(started);
        seen = 0;
        scan(text, |c| {
            seen += 1;
            detector.observe(&c);
        });
        let _ = detector.finish();
        times.push(started.elapsed());
    }
    times.sort();
    let median = times[times.len() / 2];
    let max = times.last().copied().unwrap_or(Duration::ZERO);
    println!(
        "{entries} entries ({size} bytes), {seen} TCP connections seen, {} followed in SYN_RECV: \
         read + scan + detect median {median:?}, max {max:?} over {runs} runs",
        detector.pending()
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("halb-conn-scan-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
