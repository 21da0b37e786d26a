//! `halb ipvs …` (hidden): the kernel's IPVS driven directly through halb's data plane, for the
//! tests in the IPVS VM and for benchmarks. Not an operator's command: `halb run` owns the table
//! in production.
//!
//! Tables are JSON files holding a list of services (`halb_lb::table::Service`, destinations
//! keyed by address); every answer is JSON on stdout.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args as ClapArgs, Subcommand, ValueEnum};
use halb_dataplane::ipvs::{Ipvs, SyncDaemon, SyncState};
use halb_dataplane::{ApplyError, Dataplane};
use halb_lb::table::{Change, ProtocolKey, Service, ServiceKey, Table};
use serde::Serialize;

#[derive(ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Exit status 0 when the kernel has IPVS, 1 when not.
    Available {
        /// Try `modprobe ip_vs` first, as `auto` mode does.
        #[arg(long)]
        load: bool,
    },
    /// IPVS's version and connection table size.
    Info,
    /// Apply the changes that turn table FROM (default: empty) into TABLE, through the data
    /// plane's `apply`.
    Apply {
        #[arg(long)]
        table: PathBuf,
        #[arg(long)]
        from: Option<PathBuf>,
    },
    /// Read the kernel's table and repair halb's part of it: the services of TABLE and of
    /// every OWN file; any other service is left alone.
    Reconcile {
        #[arg(long)]
        table: PathBuf,
        #[arg(long)]
        own: Vec<PathBuf>,
    },
    /// The kernel's table, as far as halb can express it.
    Dump,
    /// Counters and rates of every service and destination.
    Stats,
    /// The connection table.
    Connections,
    /// Remove a destination and drop its connections.
    DropDest {
        /// `tcp:IP:PORT`, `udp:…`, `sctp:…` or `fwm:MARK[:6]`.
        #[arg(long)]
        service: String,
        #[arg(long)]
        dest: SocketAddr,
    },
    /// Set the timeouts given (seconds), then print all three.
    Timeouts {
        #[arg(long)]
        tcp: Option<u32>,
        #[arg(long)]
        tcpfin: Option<u32>,
        #[arg(long)]
        udp: Option<u32>,
    },
    /// Start a sync daemon.
    DaemonStart {
        #[arg(long, value_enum)]
        state: StateArg,
        #[arg(long)]
        interface: String,
        #[arg(long, default_value_t = 0)]
        syncid: u32,
        #[arg(long)]
        maxlen: Option<u16>,
        #[arg(long)]
        group: Option<IpAddr>,
        #[arg(long)]
        port: Option<u16>,
        #[arg(long)]
        ttl: Option<u8>,
    },
    /// Stop a sync daemon.
    DaemonStop {
        #[arg(long, value_enum)]
        state: StateArg,
    },
    /// The running sync daemons.
    Daemons,
    /// Remove every service, halb's or not (`ipvsadm -C`).
    Flush,
}

#[derive(Clone, Copy, ValueEnum)]
enum StateArg {
    Master,
    Backup,
}

impl From<StateArg> for SyncState {
    fn from(s: StateArg) -> SyncState {
        match s {
            StateArg::Master => SyncState::Master,
            StateArg::Backup => SyncState::Backup,
        }
    }
}

pub fn run(args: &Args) -> ExitCode {
    if let Action::Available { load } = args.action {
        let yes = if load {
            Ipvs::available_or_load()
        } else {
            Ipvs::available()
        };
        println!("{yes}");
        return if yes {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    match act(&args.action) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A data plane error already says what its cause is; anyhow's chain would repeat it.
            match e.downcast_ref::<halb_dataplane::DataplaneError>() {
                Some(dataplane) => eprintln!("halb ipvs: {dataplane}"),
                None => eprintln!("halb ipvs: {e:#}"),
            }
            ExitCode::from(1)
        }
    }
}

fn print_json(value: &impl Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn act(action: &Action) -> Result<()> {
    let mut ipvs = Ipvs::open()?;
    match action {
        Action::Available { .. } => {}
        Action::Info => {
            let info = ipvs.info()?;
            print_json(&serde_json::json!({
                "version": info.version_string(),
                "conn_tab_size": info.conn_tab_size,
            }))?;
        }
        Action::Apply { table, from } => {
            let target = read_table(table)?;
            let base = match from {
                Some(path) => read_table(path)?,
                None => Table::default(),
            };
            let changes = base.diff(&target);
            let result = ipvs.apply(&changes);
            print_changes(&changes, result)?;
        }
        Action::Reconcile { table, own } => {
            let desired = read_table(table)?;
            let mut owned: BTreeSet<ServiceKey> = desired.services.keys().copied().collect();
            for path in own {
                owned.extend(read_table(path)?.services.keys().copied());
            }
            let reconciled = ipvs.reconcile(&desired, &owned)?;
            print_changes(&reconciled.changes, reconciled.result)?;
        }
        Action::Dump => {
            let table = ipvs.table()?;
            print_json(&table.services.values().collect::<Vec<_>>())?;
        }
        Action::Stats => print_json(&ipvs.stats())?,
        Action::Connections => print_json(&ipvs.connections())?,
        Action::DropDest { service, dest } => {
            let key = parse_service_key(service)?;
            // Counting first also sets expire_nodest_conn, so that the kernel flushes the
            // destination's connections as it removes it.
            let dropped = ipvs.drop_connections(&key, *dest);
            ipvs.apply_all(&[Change::DelDest(key, *dest)])?;
            print_json(&serde_json::json!({ "dropped": dropped }))?;
        }
        Action::Timeouts { tcp, tcpfin, udp } => {
            if tcp.is_some() || tcpfin.is_some() || udp.is_some() {
                ipvs.set_timeouts(*tcp, *tcpfin, *udp)?;
            }
            print_json(&ipvs.timeouts()?)?;
        }
        Action::DaemonStart {
            state,
            interface,
            syncid,
            maxlen,
            group,
            port,
            ttl,
        } => {
            ipvs.start_daemon(&SyncDaemon {
                state: (*state).into(),
                interface: interface.clone(),
                sync_id: *syncid,
                max_len: *maxlen,
                group: *group,
                port: *port,
                ttl: *ttl,
            })?;
            print_json(&ipvs.daemons()?)?;
        }
        Action::DaemonStop { state } => {
            ipvs.stop_daemon((*state).into())?;
            print_json(&ipvs.daemons()?)?;
        }
        Action::Daemons => print_json(&ipvs.daemons()?)?,
        Action::Flush => ipvs.flush()?,
    }
    Ok(())
}

/// The changes tried, those that landed and those that failed with why; then the failure, for
/// the exit status.
fn print_changes(changes: &[Change], result: Result<(), ApplyError>) -> Result<()> {
    let (applied, failed) = match &result {
        Ok(()) => (changes.to_vec(), Vec::new()),
        Err(e) => (
            e.landed.clone(),
            e.failed
                .iter()
                .map(|f| serde_json::json!({ "change": f.change, "error": f.to_string() }))
                .collect(),
        ),
    };
    print_json(&serde_json::json!({
        "changes": changes.len(),
        "applied": applied,
        "failed": failed,
    }))?;
    Ok(result?)
}

/// A table file: a JSON list of services.
fn read_table(path: &Path) -> Result<Table> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let services: Vec<Service> = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a JSON list of services", path.display()))?;
    let mut table = Table::default();
    for service in services {
        if table
            .services
            .insert(service.key, service.clone())
            .is_some()
        {
            bail!("{}: service {} appears twice", path.display(), service.key);
        }
    }
    Ok(table)
}

/// `tcp:IP:PORT` (IPv6 in brackets), `udp:…`, `sctp:…`, `fwm:MARK` or `fwm:MARK:6`.
fn parse_service_key(text: &str) -> Result<ServiceKey> {
    let (kind, rest) = text
        .split_once(':')
        .with_context(|| format!("service {text:?}: expected PROTOCOL:ADDRESS or fwm:MARK"))?;
    let protocol = match kind {
        "tcp" => ProtocolKey::Tcp,
        "udp" => ProtocolKey::Udp,
        "sctp" => ProtocolKey::Sctp,
        "fwm" => {
            let (mark, inet6) = match rest.split_once(':') {
                Some((mark, "6")) => (mark, true),
                Some((_, other)) => bail!("service {text:?}: family {other:?} is not 6"),
                None => (rest, false),
            };
            let mark = mark
                .parse()
                .with_context(|| format!("service {text:?}: bad mark"))?;
            return Ok(ServiceKey::Fwmark { mark, inet6 });
        }
        other => bail!("service {text:?}: unknown protocol {other:?}"),
    };
    let addr = rest
        .parse()
        .with_context(|| format!("service {text:?}: bad address"))?;
    Ok(ServiceKey::Addr { protocol, addr })
}
