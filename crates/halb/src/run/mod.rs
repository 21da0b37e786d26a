//! `halb run`: reads the configuration, reports its diagnostics, and runs `halb_daemon` on a
//! tokio runtime.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args as ClapArgs;
use halb_config::diagnostic::{Format, Severity};
use halb_config::load;
use tracing::{error, info};

/// keepalived's exit status for a configuration it cannot run (KEEPALIVED_EXIT_CONFIG).
const EXIT_CONFIG: u8 = 4;
const EXIT_FAILURE: u8 = 1;

#[derive(ClapArgs)]
pub struct Args {
    #[command(flatten)]
    config: crate::config_args::ConfigArgs,
    /// Write the daemon's process id here, and remove the file on exit.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Where `halb status` reaches the daemon (a unix socket, mode 0600).
    #[arg(long, default_value = crate::control::DEFAULT_SOCKET)]
    control_socket: PathBuf,
    /// The data plane: kernel IPVS, the userspace proxy, or IPVS when the kernel has it.
    #[arg(long, value_enum, default_value = "auto")]
    dataplane: DataplaneArg,
    /// Turn passive failure detection off: the proxy neither tries the next real server (or
    /// the sorry server) when a connect fails nor asks the checkers to look at once, and on
    /// IPVS the connection table is not read for stalling connections; only the checkers'
    /// own timing takes a dead server out (keepalived's behaviour).
    #[arg(long)]
    no_passive: bool,
    /// With IPVS, do not add a DR-path check to direct-routing real servers (a SYN to VIP:port
    /// through the real server's MAC, which finds a real server that lost its VIP on lo).
    #[arg(long)]
    no_dr_path_check: bool,
    /// Take over from the halb running with the same --control-socket (an upgrade): its
    /// listening sockets and VRRP MASTER role pass to this process over CONTROL.handover with
    /// no failover, no priority 0 advert and no refused client; it then drains its
    /// connections and exits, leaving VIPs and virtual servers in place.
    #[arg(long)]
    takeover: bool,
    /// After handing over to a new halb, how long established connections may run before
    /// this process exits anyway.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    drain_timeout: u64,
    /// The read-only HTTP endpoint: Prometheus metrics at /metrics, the status and events as
    /// JSON under /api/v1/, a dashboard at /. ADDRESS:PORT, or `none` to turn it off; an
    /// address other than loopback is allowed but logged as a warning.
    #[arg(long, default_value = halb_daemon::http::DEFAULT_LISTEN, value_name = "ADDR:PORT|none",
          value_parser = parse_http_listen)]
    http_listen: HttpListen,
}

/// `--http-listen`: an address, or none (a plain `Option` would make clap treat the flag as
/// optional instead of parsing `none`).
#[derive(Debug, Clone, Copy)]
struct HttpListen(Option<std::net::SocketAddr>);

fn parse_http_listen(value: &str) -> Result<HttpListen, String> {
    halb_daemon::http::parse_listen(value).map(HttpListen)
}

/// `--dataplane`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DataplaneArg {
    /// IPVS when the kernel has it, else the userspace proxy.
    Auto,
    Proxy,
    Ipvs,
}

impl From<DataplaneArg> for halb_daemon::DataplaneChoice {
    fn from(arg: DataplaneArg) -> Self {
        match arg {
            DataplaneArg::Auto => halb_daemon::DataplaneChoice::Auto,
            DataplaneArg::Proxy => halb_daemon::DataplaneChoice::Proxy,
            DataplaneArg::Ipvs => halb_daemon::DataplaneChoice::Ipvs,
        }
    }
}

pub fn run(args: &Args) -> ExitCode {
    let journal = crate::journal::stderr_is_journal();
    init_logging(journal);
    let opts = args.config.load_options(true);
    let loaded = load(&args.config.file, &opts);
    let rendered = loaded.diagnostics.render(
        &loaded.sources,
        Format::Human,
        std::io::stderr().is_terminal(),
    );
    let rendered = if journal && !rendered.is_empty() {
        // The report's lines, each a journal record, at the priority of its worst finding.
        let priority = if loaded.diagnostics.has_errors() {
            crate::journal::priority(tracing::Level::ERROR)
        } else {
            crate::journal::priority(tracing::Level::WARN)
        };
        crate::journal::prefixed(priority, &rendered)
    } else {
        rendered
    };
    let _ = std::io::stderr().lock().write_all(rendered.as_bytes());
    if loaded.diagnostics.has_errors() {
        let errors = loaded
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        error!(
            "{}: {errors} error(s); not starting (see `halb check-config -f {}`)",
            args.config.file.display(),
            args.config.file.display()
        );
        return ExitCode::from(EXIT_CONFIG);
    }

    let _pid_file = match args.pid_file.as_deref().map(PidFile::create).transpose() {
        Ok(p) => p,
        Err(e) => {
            error!("{e:#}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    // Two workers: the proxy relays on both cores while VRRP and the checkers stay responsive.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error!("cannot start the tokio runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    info!("Starting halb {}", env!("CARGO_PKG_VERSION"));
    let options = halb_daemon::Options {
        control_socket: args.control_socket.clone(),
        dataplane: args.dataplane.into(),
        passive: !args.no_passive,
        dr_path_checks: !args.no_dr_path_check,
        handover: halb_daemon::HandOverOptions {
            takeover: args.takeover,
            drain_timeout: std::time::Duration::from_secs(args.drain_timeout),
        },
        dumps: halb_daemon::DumpRequests::default(),
        reload: Some(config_reader(&args.config)),
        http_listen: args.http_listen.0,
        successor: successor_command(),
    };
    // The file's text and the diagnostics are not needed any more (a file of 10,000 real
    // servers is half a megabyte); the model goes to the daemon.
    let halb_config::Loaded {
        config,
        sources,
        diagnostics,
    } = loaded;
    drop((sources, diagnostics));
    match runtime.block_on(halb_daemon::run(config, &options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// What `halb upgrade` starts: this program as found on disk now (a package upgrade replaced
/// the file, the running process keeps the old one), with this process's arguments and
/// `--takeover`.
fn successor_command() -> Option<halb_daemon::SuccessorCommand> {
    let program = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("cannot tell this program's path ({e}); `halb upgrade` is refused");
            return None;
        }
    };
    // Read from /proc/self/exe: a binary replaced before this point shows as "… (deleted)".
    let program = match program.to_str().and_then(|p| p.strip_suffix(" (deleted)")) {
        Some(p) => PathBuf::from(p),
        None => program,
    };
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if !args.iter().any(|a| a == "--takeover") {
        args.push("--takeover".into());
    }
    Some(halb_daemon::SuccessorCommand { program, args })
}

/// How a reload reads the file again: the same file, config id and checks as at start (the
/// host's interfaces read anew), each diagnostic as one `file:line:col` line.
fn config_reader(config: &crate::config_args::ConfigArgs) -> halb_daemon::ConfigReader {
    let file = config.file.clone();
    let opts = config.load_options(true);
    halb_daemon::ConfigReader(std::sync::Arc::new(move || {
        let mut opts = opts.clone();
        opts.interfaces = halb_config::host_interfaces();
        let loaded = load(&file, &opts);
        let diagnostics = loaded
            .diagnostics
            .render(&loaded.sources, Format::Short, false)
            .lines()
            .map(str::to_string)
            .collect();
        halb_daemon::Reread {
            config: (!loaded.diagnostics.has_errors()).then_some(loaded.config),
            diagnostics,
        }
    }))
}

/// keepalived-like lines on stderr; `RUST_LOG` chooses the level (default `info`). Under
/// journald (`journal`), priority prefixes instead of timestamps and level words.
fn init_logging(journal: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if journal {
        builder
            .with_ansi(false)
            .event_format(crate::journal::JournalFormat)
            .try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
}

/// The `--pid-file`, removed when the daemon ends (also on an error return).
struct PidFile(PathBuf);

impl PidFile {
    fn create(path: &Path) -> anyhow::Result<PidFile> {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| anyhow::anyhow!("cannot write the pid file {}: {e}", path.display()))?;
        Ok(PidFile(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    /// Removes the file unless a successor (`halb upgrade`) has written its own pid there.
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.0)
            .is_ok_and(|text| text.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}
