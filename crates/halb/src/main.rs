//! `halb`: a high-availability layer-4 load balancer that reads keepalived.conf.

mod check_config;
mod config_args;
mod control;
mod dist_files;
mod drain;
mod failback;
mod ipvs_tool;
mod journal;
mod lab;
mod monitor;
mod mysql;
mod realserver;
mod reload;
mod run;
mod status;
mod upgrade;

// Reading a large configuration is dominated by many small allocations; mimalloc makes them
// (and freeing them) several times cheaper than glibc's malloc. Built without its transparent
// huge pages (`no_thp`): it would madvise its arenas MADV_HUGEPAGE, and the kernel then backs a
// few touched bytes with 2 MiB pages (check-config of 10,000 real servers: 28 MB resident
// instead of 18 MB; the daemon likewise), which costs more memory than the TLB saves here.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "halb", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and validate a configuration, like `keepalived -t`.
    ///
    /// Exit status, as keepalived's: 0 clean, 5 when it would run after halb fixed values up
    /// (warnings), 4 when it cannot run (errors).
    CheckConfig(check_config::Args),
    /// Run the daemon, like `keepalived -f FILE`: VRRP instances, virtual servers and their checkers.
    ///
    /// Exit status: 0 after SIGTERM or SIGINT, 4 when the configuration has errors, 1 when
    /// the host cannot run it (a missing interface, no permission for raw sockets).
    Run(run::Args),
    /// Show the running daemon's tables, like `ipvsadm -L -n`, then its VRRP instances and
    /// the health of every real server.
    Status(status::Args),
    /// Make the running daemon read its configuration file again and apply it, keeping the
    /// state of everything that did not change, as SIGHUP does; waits for the outcome.
    ///
    /// Exit status: 0 applied, 4 when the file has errors (refused: the running configuration
    /// stays, the diagnostics are printed), 1 when the daemon cannot be reached.
    Reload(reload::Args),
    /// Replace the running daemon by the halb binary now on disk without a failover (after a
    /// package upgrade): the daemon starts it with its own arguments and `--takeover`, the new
    /// process takes the listening sockets and the VRRP role, the old one drains and exits.
    ///
    /// Under systemd the new process becomes the service's main process (MAINPID=) in the same
    /// service. Exit status: 0 taken over, 1 failed (the running daemon carries on), 3 the
    /// running daemon predates `halb upgrade` (only a restart, a failover, replaces it).
    Upgrade(upgrade::Args),
    /// Hand a virtual server back from its sorry server to its real servers now, past
    /// `failback manual` and `failback_limit`; a `mysql_writer`'s returning server must still
    /// have caught up with the sorry server.
    ///
    /// Exit status: 0 handed back, 2 not (an unknown virtual server, nothing to fail back, no
    /// real server ready, a writer that has not caught up: the reason is printed), 1 when the
    /// daemon cannot be reached.
    Failback(failback::Args),
    /// Withdraw every route announced by BGP (`bgp_announce`), then wait until this director's
    /// connections have ended; `--resume` announces again.
    ///
    /// Exit status: 0 drained (or resumed), 2 `drain_timeout` passed with connections open, 1
    /// when the daemon cannot be reached or announces nothing.
    Drain(drain::Args),
    /// Put VIPs on lo for a DR real server and keep it from answering ARP for them, or undo it.
    Realserver(realserver::Args),
    /// Monitoring-plugins checks for Nagios, Icinga and Zabbix: `halb monitor daemon`, `vrrp`,
    /// `realservers`, `service`.
    ///
    /// Each prints one line, `OK|WARNING|CRITICAL|UNKNOWN - text | perfdata`, and exits 0, 1,
    /// 2 or 3.
    Monitor(monitor::Args),
    /// MySQL pre-flight: `halb mysql doctor -f FILE` logs in to the servers of every virtual
    /// server with a MYSQL_CHECK and reports what makes the pair unsafe behind a VIP.
    Mysql(mysql::Args),
    /// The seed's topology in network namespaces and its test plan: `halb lab run`, `up`, `down`.
    Lab(lab::Args),
    /// Drive the kernel's IPVS directly (tests and benchmarks).
    #[command(hide = true)]
    Ipvs(ipvs_tool::Args),
    /// Write the man pages and shell completions generated from this CLI (packaging).
    #[command(hide = true)]
    DistFiles(dist_files::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A monitoring system reads a plugin's usage error as UNKNOWN (exit 3), not as
        // clap's exit 2, which it would take for CRITICAL.
        Err(e) if is_monitor() && e.use_stderr() => return monitor::usage_error(&e),
        Err(e) => e.exit(),
    };
    match cli.command {
        Command::CheckConfig(args) => check_config::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Reload(args) => reload::run(&args),
        Command::Upgrade(args) => upgrade::run(&args),
        Command::Failback(args) => failback::run(&args),
        Command::Drain(args) => drain::run(&args),
        Command::Realserver(args) => realserver::run(&args),
        Command::Ipvs(args) => ipvs_tool::run(&args),
        Command::Lab(args) => lab::run(&args),
        Command::Monitor(args) => monitor::run(&args),
        Command::Mysql(args) => mysql::run(&args),
        Command::DistFiles(args) => dist_files::run(&args, Cli::command()),
    }
}

/// Whether the command line asks for `halb monitor`.
fn is_monitor() -> bool {
    std::env::args().nth(1).as_deref() == Some("monitor")
}
