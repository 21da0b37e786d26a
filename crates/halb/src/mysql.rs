//! `halb mysql doctor -f FILE`: a pre-flight for the MySQL pairs behind the file's virtual
//! servers. Every virtual server with a MYSQL_CHECK is looked at: its real servers and sorry
//! server, logged in to with the check's user, and what makes a dual-master pair behind a VIP
//! unsafe reported in the monitoring plugins' convention (first line `STATUS - summary |
//! perfdata`, one line per finding after it; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args as ClapArgs, Subcommand};
use halb_check::mysql::doctor::{self, Finding, Severity};
use halb_check::mysql::fence::Credentials;
use halb_config::diagnostic::Format;
use halb_config::model::{Protocol, VirtualServer};

#[derive(ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Log in to the servers of every virtual server with a MYSQL_CHECK (with its user) and
    /// warn about what makes a dual-master pair unsafe: overlapping auto_increment, log_bin or
    /// log_slave_updates off, replication without GTIDs or with one GTID domain for both
    /// masters, semi-synchronous replication off, replication threads not running, every server
    /// writable without mysql_writer.
    ///
    /// Exit status: 0 nothing found, 1 warnings, 2 something critical, 3 the file cannot be
    /// read or names no MySQL service.
    Doctor(DoctorArgs),
}

#[derive(ClapArgs)]
pub struct DoctorArgs {
    #[command(flatten)]
    config: crate::config_args::ConfigArgs,
}

const OK: u8 = 0;
const WARNING: u8 = 1;
const CRITICAL: u8 = 2;
const UNKNOWN: u8 = 3;

pub fn run(args: &Args) -> ExitCode {
    match &args.command {
        Command::Doctor(a) => doctor_run(a),
    }
}

/// One MySQL service of the file and what was found.
struct Service {
    name: String,
    fencing: bool,
    servers: Vec<SocketAddr>,
    findings: Vec<Finding>,
}

fn doctor_run(args: &DoctorArgs) -> ExitCode {
    let opts = args.config.load_options(false);
    let loaded = halb_config::load(&args.config.file, &opts);
    if loaded.diagnostics.has_errors() {
        eprint!(
            "{}",
            loaded
                .diagnostics
                .render(&loaded.sources, Format::Short, false)
        );
        println!(
            "UNKNOWN - {} has errors (see halb check-config)",
            args.config.file.display()
        );
        return ExitCode::from(UNKNOWN);
    }
    let services: Vec<Service> = loaded
        .config
        .lvs
        .virtual_servers
        .iter()
        .filter_map(examine)
        .collect();
    if services.is_empty() {
        println!(
            "UNKNOWN - no virtual server in {} has a MYSQL_CHECK to log in with",
            args.config.file.display()
        );
        return ExitCode::from(UNKNOWN);
    }
    let count = |s: Severity| {
        services
            .iter()
            .flat_map(|v| &v.findings)
            .filter(|f| f.severity == s)
            .count()
    };
    let (critical, warning) = (count(Severity::Critical), count(Severity::Warning));
    let servers: usize = services.iter().map(|s| s.servers.len()).sum();
    let (status, code) = if critical > 0 {
        ("CRITICAL", CRITICAL)
    } else if warning > 0 {
        ("WARNING", WARNING)
    } else {
        ("OK", OK)
    };
    println!(
        "{status} - {critical} critical, {warning} warning finding(s) on {servers} server(s) of {} \
         MySQL service(s) | critical={critical} warning={warning} servers={servers}",
        services.len()
    );
    for s in &services {
        println!(
            "VS {}{}: {}",
            s.name,
            if s.fencing { " (mysql_writer)" } else { "" },
            s.servers
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        for f in &s.findings {
            println!(
                "  {} {}: {}",
                match f.severity {
                    Severity::Critical => "CRITICAL",
                    Severity::Warning => "WARNING",
                },
                f.server.map_or("the pair".to_string(), |a| a.to_string()),
                f.message
            );
        }
    }
    ExitCode::from(code)
}

/// Reads the servers of one virtual server with a MYSQL_CHECK, at once.
fn examine(vs: &VirtualServer) -> Option<Service> {
    let check = vs.writer_check()?;
    let timeout_us = check
        .common
        .connect_timeout_us
        .unwrap_or(vs.connect_timeout_us);
    let creds = Credentials {
        user: check.user.clone(),
        password: check.password.clone(),
        timeout: Duration::from_micros(timeout_us),
    };
    let mut servers: Vec<SocketAddr> = vs
        .real_servers
        .iter()
        .map(|rs| SocketAddr::new(rs.ip, rs.port))
        .collect();
    if let Some(s) = &vs.sorry_server {
        servers.push(SocketAddr::new(s.ip, s.port));
    }
    servers.dedup();
    let facts: Vec<(SocketAddr, Result<doctor::ServerFacts, String>)> =
        std::thread::scope(|scope| {
            let handles: Vec<_> = servers
                .iter()
                .map(|&addr| {
                    let creds = &creds;
                    scope.spawn(move || {
                        (addr, doctor::gather(addr, creds).map_err(|e| e.to_string()))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| match h.join() {
                    Ok(r) => r,
                    Err(e) => std::panic::resume_unwind(e),
                })
                .collect()
        });
    Some(Service {
        name: halb_config::names::virtual_server(
            &vs.key,
            Some(vs.protocol.unwrap_or(Protocol::Tcp)),
            0,
        ),
        fencing: vs.mysql_writer,
        findings: doctor::assess(&facts, vs.mysql_writer),
        servers,
    })
}
