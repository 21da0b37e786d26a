//! `halb realserver start|stop|status --vip IP …`: what a real server behind a DR (or TUN)
//! director needs, in place of the seed's `lvs_real` script.
//!
//! - `start` puts each VIP on `lo` as a host address (/32, or /128), so that the server accepts
//!   packets the director forwards to it unchanged, and sets `arp_ignore=1` and
//!   `arp_announce=2` on `lo` and `all` (`net.ipv4.conf.*`), so that the server neither
//!   answers ARP for the VIP nor announces it: only the director may own it on the segment.
//!   (IPv6 needs no such setting: the kernel answers neighbour solicitations only for the
//!   addresses of the interface they arrive on.)
//! - `stop` removes the VIPs and, once no VIP is left, puts back the sysctl values that `start`
//!   changed (the seed's script wrote 0 whatever was there before).
//! - `status` shows what is in place; its exit status is 0 when everything is, 3 when not.
//!
//! Both changes are idempotent: `start` twice leaves the same state as once, `stop` twice
//! does nothing the second time.
//!
//! What `start` changed is kept in a state file, `/run/halb/realserver.json` by default
//! (`--state-file`): `{"vips": [...], "previous": {"net.ipv4.conf.lo.arp_ignore": "0", ...}}`,
//! `previous` holding the value each sysctl had before halb first changed it (sysctls that
//! already had the wanted value are not listed, and so not touched by `stop`). `/run` is
//! emptied at boot, as are the VIPs and sysctls it describes. Everything acts on the network
//! namespace halb runs in.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args as ClapArgs, Subcommand};
use halb_sys::sysctl::{self, SysctlKey};
use halb_sys::{Added, Netlink, VirtualAddress};
use serde::{Deserialize, Serialize};

/// Where `start` records what it changed.
pub const DEFAULT_STATE_FILE: &str = "/run/halb/realserver.json";
const INTERFACE: &str = "lo";

#[derive(ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Put the VIPs on lo and keep the server from answering ARP for them.
    Start(Targets),
    /// Remove the VIPs (all recorded ones without --vip) and restore the ARP settings.
    Stop(Targets),
    /// Show the VIPs and ARP settings; exit 0 when all are in place, 3 when not.
    Status(Targets),
}

#[derive(ClapArgs)]
struct Targets {
    /// A virtual IP address (IPv4 or IPv6); repeat for several.
    #[arg(long = "vip", value_name = "IP")]
    vips: Vec<IpAddr>,
    /// Where the VIPs and the replaced sysctl values are recorded.
    #[arg(long, default_value = DEFAULT_STATE_FILE)]
    state_file: PathBuf,
}

/// The sysctls a DR real server needs, with their values.
fn arp_settings() -> Vec<(SysctlKey, &'static str)> {
    let mut settings = Vec::new();
    for interface in [INTERFACE, "all"] {
        settings.push((SysctlKey::interface("ipv4", interface, "arp_ignore"), "1"));
        settings.push((SysctlKey::interface("ipv4", interface, "arp_announce"), "2"));
    }
    settings
}

/// What `start` changed, as kept in the state file.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    vips: Vec<IpAddr>,
    /// Sysctl name → the value it had before halb first changed it.
    previous: BTreeMap<String, String>,
}

impl State {
    fn load(path: &Path) -> Result<State> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not a halb realserver state file; remove it if nothing uses it",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes the file whole or not at all (a crash leaves the old one).
    fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self)? + "\n";
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    }
}

pub fn run(args: &Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("halb realserver: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match &args.action {
            Action::Start(t) => start(t).await.map(|()| true),
            Action::Stop(t) => stop(t).await.map(|()| true),
            Action::Status(t) => status(t).await,
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(3),
        Err(e) => {
            eprintln!("halb realserver: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn start(targets: &Targets) -> Result<()> {
    if targets.vips.is_empty() {
        bail!("start needs at least one --vip");
    }
    let mut state = State::load(&targets.state_file)?;

    // Record the values to restore before changing anything, so that a failure halfway leaves
    // a state file that `stop` can undo.
    let mut changes = Vec::new();
    for (key, value) in arp_settings() {
        let current = sysctl::read(&key)?;
        if current != value {
            state
                .previous
                .entry(key.to_string())
                .or_insert_with(|| current.clone());
            changes.push((key, value, current));
        }
    }
    for vip in &targets.vips {
        if !state.vips.contains(vip) {
            state.vips.push(*vip);
        }
    }
    state.save(&targets.state_file)?;

    for (key, value, was) in changes {
        sysctl::write(&key, value)?;
        println!("{key} = {value} (was {was})");
    }
    let netlink = Netlink::connect()?;
    for vip in &targets.vips {
        let address = VirtualAddress::host(*vip);
        match netlink.add_address(INTERFACE, &address).await? {
            Added::Added => println!("added {address} to {INTERFACE}"),
            Added::AlreadyPresent => println!("{address} already on {INTERFACE}"),
        }
    }
    Ok(())
}

async fn stop(targets: &Targets) -> Result<()> {
    let mut state = State::load(&targets.state_file)?;
    let vips: Vec<IpAddr> = if targets.vips.is_empty() {
        state.vips.clone()
    } else {
        targets.vips.clone()
    };
    let netlink = Netlink::connect()?;
    let removed = netlink.remove_addresses(INTERFACE, &vips).await?;
    for vip in &vips {
        if removed.contains(vip) {
            println!("removed {vip} from {INTERFACE}");
        } else {
            println!("{vip} was not on {INTERFACE}");
        }
    }
    state.vips.retain(|v| !vips.contains(v));
    if !state.vips.is_empty() {
        // Other VIPs still need the ARP settings.
        state.save(&targets.state_file)?;
        return Ok(());
    }
    for (name, value) in &state.previous {
        let key = restore_key(name)?;
        let was = sysctl::write(&key, value)?;
        println!("{key} = {value} (was {was})");
    }
    match std::fs::remove_file(&targets.state_file) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", targets.state_file.display())),
    }
}

/// A sysctl recorded in the state file, checked to be one of those `start` changes (the file
/// is not trusted to name arbitrary sysctls).
fn restore_key(name: &str) -> Result<SysctlKey> {
    arp_settings()
        .into_iter()
        .map(|(key, _)| key)
        .find(|key| key.to_string() == name)
        .with_context(|| format!("the state file names sysctl {name}, which halb does not set"))
}

/// Prints the state; `Ok(true)` when everything asked for is in place.
async fn status(targets: &Targets) -> Result<bool> {
    let state = State::load(&targets.state_file)?;
    let vips: Vec<IpAddr> = if targets.vips.is_empty() {
        state.vips.clone()
    } else {
        targets.vips.clone()
    };
    let netlink = Netlink::connect()?;
    let on_lo = netlink.addresses(INTERFACE).await?;
    let mut ok = !vips.is_empty();
    if vips.is_empty() {
        println!(
            "no VIP given or recorded in {}",
            targets.state_file.display()
        );
    }
    for vip in &vips {
        match on_lo.iter().find(|a| a.address == *vip) {
            Some(a) => println!("VIP {}/{} on {INTERFACE}", a.address, a.prefix_len),
            None => {
                ok = false;
                println!("VIP {vip} missing from {INTERFACE}");
            }
        }
    }
    for (key, value) in arp_settings() {
        let current = sysctl::read(&key)?;
        let restore = state
            .previous
            .get(&key.to_string())
            .map(|p| format!(", {p} on stop"))
            .unwrap_or_default();
        if current == value {
            println!("{key} = {current}{restore}");
        } else {
            ok = false;
            println!("{key} = {current}, should be {value}{restore}");
        }
    }
    Ok(ok)
}
