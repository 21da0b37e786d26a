//! The daemon behind `halb run`, like `keepalived -f FILE`: the VRRP part (instances, sync
//! groups, VIPs, gratuitous ARP), the virtual servers (checkers, quorum, sorry server) on a data
//! plane, and the control socket `halb status` reads. The binary parses arguments and calls
//! [`run`]; everything else lives here.

pub mod control;
mod daemon;
mod dr_path;
pub mod event;
mod lvs;
mod notify;
mod process;
mod track_script;
pub mod vrrp_map;

use std::path::PathBuf;

use halb_config::model::Config;
use tracing::error;

pub use event::{Event, EventBus, EventKind, InstanceStatus, VrrpEvent};
pub use lvs::DataplaneChoice;

/// How `halb run` was asked to run, beyond the configuration itself.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where `halb status` reaches the daemon (a unix socket, mode 0600).
    pub control_socket: PathBuf,
    /// The data plane: kernel IPVS, the userspace proxy, or IPVS when the kernel has it.
    pub dataplane: DataplaneChoice,
    /// Passive failure detection: the proxy tries the next real server when a connect fails
    /// and asks the checkers to look at once.
    pub passive: bool,
    /// With IPVS, add a DR-path check to direct-routing real servers.
    pub dr_path_checks: bool,
}

/// Runs every part of the daemon until SIGTERM or SIGINT stops the VRRP part.
pub async fn run(config: &Config, options: &Options) -> anyhow::Result<()> {
    let (views_tx, views) = tokio::sync::watch::channel(Vec::new());
    let events = EventBus::new();
    let (query_tx, queries) = tokio::sync::mpsc::channel(16);
    let _control = control::server::ControlServer::start(&options.control_socket, query_tx)?;
    let (stop_tx, stop) = tokio::sync::oneshot::channel();
    let lvs_options = lvs::LvsOptions {
        dataplane: options.dataplane,
        passive_checks: options.passive,
        dr_path_checks: options.dr_path_checks,
        proxy: halb_dataplane::proxy::ProxyOptions {
            passive_failover: options.passive,
            ..halb_dataplane::proxy::ProxyOptions::default()
        },
    };
    let lvs = tokio::spawn(lvs::run(
        std::sync::Arc::new(config.clone()),
        lvs_options,
        views,
        events.clone(),
        queries,
        stop,
    ));
    let vrrp = daemon::run(config, views_tx, events).await;
    let _ = stop_tx.send(());
    match lvs.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => error!("virtual servers: {e:#}"),
        Err(e) => error!("the virtual servers' task failed: {e}"),
    }
    vrrp
}
