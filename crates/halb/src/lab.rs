//! `halb lab`: the seed's topology in network namespaces and its test plan (crate `halb-seed-lab`).
//!
//! - `halb lab run [SCENARIO...] [--json]` builds the topology, runs the scenarios with a live
//!   timeline on stderr, prints the report and takes everything down (also on Ctrl-C).
//! - `halb lab up` builds it and leaves it running for a user to explore; `halb lab down` stops
//!   what `up` started (from the state file `up` wrote) and whatever else runs in the lab's
//!   namespaces by then.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use clap::{Args as ClapArgs, Subcommand};
use halb_seed_lab::scenarios::{run_compare, run_plan, PlanOptions, Scenario};
use halb_seed_lab::topology::{Cancel, DirectorConfig, LabState, Topology, TopologyOptions, VIP};
use halb_seed_lab::writer::LoadOptions;

#[derive(ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Subcommand)]
enum LabCommand {
    /// Build the topology, run the seed's scenarios (all when none is named), print the
    /// report, and take everything down.
    ///
    /// Scenarios, by name or the seed's section: forwarding (4.2), real-server (4.3.1),
    /// director (5), mysql-failure (6.2), crash (6.3). Exit status 0 when every scenario ended
    /// with writes succeeding and replication running and the teardown left nothing behind.
    ///
    /// The scenarios that break the seed's setup: slow-master (U1), early-failback (U2), flap
    /// (U3), director-partition (U4); `unkind` names all four. Each runs twice, on the seed's
    /// files and on the same files with halb's safety keywords, and the report puts the two
    /// side by side (missing rows, rows on both masters, lost counter updates, tables
    /// pt-table-checksum finds differing, the longest time without a write, return to
    /// handback).
    Run(RunArgs),
    /// Build the topology and leave it running (namespaces halb-lab-*), for `halb status` on a
    /// director and `mariadb` on the client.
    Up(UpArgs),
    /// Stop what `halb lab up` started, then every other process still inside its namespaces
    /// (a director or database restarted by hand), and remove the namespaces.
    Down(DownArgs),
}

#[derive(ClapArgs)]
struct RunArgs {
    /// Scenarios to run, in order.
    scenarios: Vec<String>,
    /// Print the report as JSON (every attempt included).
    #[arg(long)]
    json: bool,
    /// Attempts per second of each writer and reader (the seed: one row per second).
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Connections in each writer's and reader's pool.
    #[arg(long, default_value_t = 2)]
    pool: usize,
    /// No live timeline on stderr.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    seed: SeedArgs,
}

#[derive(ClapArgs)]
struct SeedArgs {
    /// The MASTER director's configuration [default: the seed's keepalived-master.conf, built
    /// into halb]
    #[arg(long)]
    master_config: Option<PathBuf>,
    /// The BACKUP director's configuration [default: the seed's keepalived-backup.conf, built
    /// into halb]
    #[arg(long)]
    backup_config: Option<PathBuf>,
}

#[derive(ClapArgs)]
struct UpArgs {
    /// Where the logs, control sockets and the state for `down` go.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    #[command(flatten)]
    seed: SeedArgs,
}

#[derive(ClapArgs)]
struct DownArgs {
    /// The directory `halb lab up` used.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
}

const DEFAULT_STATE_DIR: &str = "/run/halb-lab";
/// Namespace prefix of `halb lab up`: fixed, so a user finds `halb-lab-d1` and friends.
const UP_PREFIX: &str = "halb-lab";

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: std::ffi::c_int) {
    // Only an atomic store: async-signal-safe. The lab's waits see it and unwind, and the
    // topology is taken down on the way out.
    INTERRUPTED.store(true, Ordering::Relaxed);
}

fn catch_interrupts() -> Cancel {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        let _ = unsafe { sigaction(signal, &action) };
    }
    Cancel::new(&INTERRUPTED)
}

pub fn run(args: &Args) -> ExitCode {
    let result = match &args.command {
        LabCommand::Run(a) => run_plan_command(a),
        LabCommand::Up(a) => up(a).map(|()| ExitCode::SUCCESS),
        LabCommand::Down(a) => down(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("halb lab: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn topology_options(seed: &SeedArgs, cancel: Cancel) -> Result<TopologyOptions> {
    let halb = std::env::current_exe().context("cannot find the halb executable")?;
    let mut options = TopologyOptions::new(halb);
    if let Some(p) = &seed.master_config {
        options.master_config = DirectorConfig::File(p.clone());
    }
    if let Some(p) = &seed.backup_config {
        options.backup_config = DirectorConfig::File(p.clone());
    }
    options.cancel = cancel;
    options.progress = true;
    Ok(options)
}

fn run_plan_command(args: &RunArgs) -> Result<ExitCode> {
    let scenarios = if args.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else if args.scenarios.iter().any(|s| s == "unkind") {
        Scenario::UNKIND.to_vec()
    } else {
        args.scenarios
            .iter()
            .map(|s| Scenario::parse(s))
            .collect::<Result<Vec<_>>>()?
    };
    let unkind = scenarios.iter().any(|s| s.is_unkind());
    if !(args.rate > 0.0 && args.rate <= 100.0) {
        bail!("--rate must be above 0 and at most 100 per second");
    }
    let cancel = catch_interrupts();
    let mut topology = topology_options(&args.seed, cancel)?;
    topology.progress = !args.quiet;
    let plan = PlanOptions {
        load: LoadOptions {
            rate: args.rate,
            pool: args.pool.max(1),
            ..LoadOptions::default()
        },
        live: !args.quiet,
        ..PlanOptions::default()
    };
    if unkind {
        let comparison = run_compare(&topology, &plan, &scenarios)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&comparison)?);
        } else {
            print!("{}", comparison.render());
        }
        if INTERRUPTED.load(Ordering::Relaxed) {
            eprintln!("halb lab: interrupted; everything the lab started was stopped");
            return Ok(ExitCode::from(130));
        }
        return Ok(if comparison.ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let report = run_plan(&topology, &plan, &scenarios)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    if INTERRUPTED.load(Ordering::Relaxed) {
        eprintln!("halb lab: interrupted; everything the lab started was stopped");
        return Ok(ExitCode::from(130));
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn state_file(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

fn up(args: &UpArgs) -> Result<()> {
    let state_path = state_file(&args.state_dir);
    if state_path.exists() {
        bail!(
            "a lab is already up (state in {}); run `halb lab down` first",
            state_path.display()
        );
    }
    let bridge = format!("{UP_PREFIX}-br");
    if halb_sys::netns::named(&bridge).exists() {
        bail!(
            "namespace {bridge} exists but {} does not: a lab left by hand? remove its \
             namespaces (ip netns del {UP_PREFIX}-…) first",
            state_path.display()
        );
    }
    let cancel = catch_interrupts();
    let mut options = topology_options(&args.seed, cancel)?;
    options.prefix = UP_PREFIX.to_string();
    options.dir = Some(args.state_dir.clone());
    let topology = Topology::build(&options)?;
    let state = topology.detach();
    if let Err(e) = state.save(&state_path) {
        let report = state.teardown();
        bail!(
            "{e:#}; took the lab down again ({} problems)",
            report.problems.len()
        );
    }
    print!("{}", describe_up(&state, &state_path));
    Ok(())
}

fn describe_up(state: &LabState, state_path: &Path) -> String {
    use std::fmt::Write as _;
    let halb = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "halb".into());
    let mut out = String::new();
    let _ = writeln!(out, "halb lab is up (state in {}).", state_path.display());
    for h in &state.hosts {
        let _ = writeln!(out, "  {:<7} {:<16} namespace {}", h.role, h.ip, h.ns);
    }
    for d in &state.directors {
        let _ = writeln!(
            out,
            "  {} runs halb with {}; log {}",
            d.name,
            d.config.display(),
            d.log.display()
        );
    }
    for db in &state.databases {
        let _ = writeln!(
            out,
            "  MariaDB {} on {} (socket {}, log {})",
            db.label,
            db.addr,
            db.socket.display(),
            db.error_log.display()
        );
    }
    let d1 = state.directors.first();
    let client = state.hosts.iter().find(|h| h.role == "client");
    let _ = writeln!(out, "\nTry:");
    if let Some(d1) = d1 {
        let _ = writeln!(
            out,
            "  ip netns exec {} {halb} status --control-socket {}",
            d1.ns,
            d1.socket.display()
        );
    }
    if let Some(c) = client {
        let _ = writeln!(
            out,
            "  ip netns exec {} mariadb -h {VIP} -P 3306 -u writer -pwriter lab \
             -e 'INSERT INTO vip_wealth_log (account) VALUES (\"me\"); SELECT @@server_id, LAST_INSERT_ID()'",
            c.ns
        );
    }
    if let Some(db) = state.databases.first() {
        let _ = writeln!(
            out,
            "  mariadb --socket={} -e 'SHOW SLAVE STATUS\\G'",
            db.socket.display()
        );
    }
    let _ = match state_path.parent() {
        Some(dir) if dir != Path::new(DEFAULT_STATE_DIR) => {
            writeln!(out, "  {halb} lab down --state-dir {}", dir.display())
        }
        _ => writeln!(out, "  {halb} lab down"),
    };
    out
}

fn down(args: &DownArgs) -> Result<ExitCode> {
    let state_path = state_file(&args.state_dir);
    if !state_path.exists() {
        bail!("no lab is up: {} does not exist", state_path.display());
    }
    let state = LabState::load(&state_path)?;
    let report = state.teardown();
    println!(
        "halb lab down: {} process(es) stopped, {} namespace(s) removed",
        report.stopped + report.strays.len(),
        report.namespaces_removed
    );
    if !report.strays.is_empty() {
        println!(
            "  of those, {} were started in the lab's namespaces after `halb lab up`:",
            report.strays.len()
        );
        for s in &report.strays {
            println!("    {s}");
        }
    }
    for p in &report.problems {
        println!("  {p}");
    }
    // The directory (with the state) is among those removed; make sure the state is gone.
    let _ = std::fs::remove_file(&state_path);
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
