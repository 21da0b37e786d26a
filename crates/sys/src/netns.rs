//! Network namespaces: making them, wiring them (veth pairs, bridges), running commands and
//! code inside them, deleting them.
//!
//! The namespaces themselves are made and wired with iproute2 (`ip netns`, `ip -n`), so that
//! they are the named namespaces an operator sees with `ip netns list` and can enter by hand;
//! an error names the command, the namespace and what `ip` said. Who owns a namespace (a test's
//! guard, `halb lab`'s topology) decides when it is deleted.
//!
//! A network namespace belongs to a thread, not to a process: after `setns(2)` the calling
//! thread's new sockets, netlink requests and `/proc/sys/net` reads act on that namespace,
//! while the other threads stay where they were. So a test (or `halb lab`) can drive several
//! namespaces from one process by giving each its own thread.

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::JoinHandle;

use nix::sched::{setns, CloneFlags};

use crate::error::{Error, IoContext, Result};

/// Where `ip netns add NAME` puts the namespace.
pub fn named(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// Moves the calling thread into the network namespace at `path` (for good: a thread that
/// must come back should be a new thread, see [`spawn_in`]).
pub fn enter(path: &Path) -> Result<()> {
    let namespace =
        File::open(path).context(|| format!("opening network namespace {}", path.display()))?;
    setns(&namespace, CloneFlags::CLONE_NEWNET)
        .context(|| format!("entering network namespace {}", path.display()))
}

/// Runs `f` on a new thread inside the namespace at `path`.
pub fn spawn_in<T, F>(path: &Path, f: F) -> JoinHandle<Result<T>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        enter(&path)?;
        Ok(f())
    })
}

/// Runs `f` on a new thread inside the namespace at `path` and waits for it; a panic in `f`
/// goes on in the caller.
pub fn run_in<T, F>(path: &Path, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    match spawn_in(path, f).join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// `ip netns add NAME`, then `lo` up inside it: a namespace with loopback and nothing else.
pub fn add(name: &str) -> Result<()> {
    output_of(
        Command::new("ip").args(["netns", "add", name]),
        format!("ip netns add {name}"),
    )?;
    ip(name, &["link", "set", "lo", "up"])?;
    Ok(())
}

/// `ip netns del NAME`; a namespace that does not exist is already deleted.
pub fn delete(name: &str) -> Result<()> {
    if !named(name).exists() {
        return Ok(());
    }
    output_of(
        Command::new("ip").args(["netns", "del", name]),
        format!("ip netns del {name}"),
    )?;
    Ok(())
}

/// A command that runs `program` inside namespace `name` (`ip netns exec NAME PROGRAM`; the
/// program replaces `ip`, so the child's pid is the program's).
pub fn command(name: &str, program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", name]).arg(program);
    c
}

/// Runs `argv` inside namespace `name`; its stdout.
pub fn run(name: &str, argv: &[&str]) -> Result<String> {
    let Some((program, args)) = argv.split_first() else {
        return Err(Error::invalid(
            format!("running a command in namespace {name}"),
            "no command given",
        ));
    };
    output_of(
        command(name, program).args(args),
        format!("{} in namespace {name}", argv.join(" ")),
    )
}

/// `ip -n NAME ARGS…`; its stdout.
pub fn ip(name: &str, args: &[&str]) -> Result<String> {
    output_of(
        Command::new("ip").args(["-n", name]).args(args),
        format!("ip -n {name} {}", args.join(" ")),
    )
}

/// A veth pair: `ifname` in namespace `name`, `peer_ifname` in namespace `peer`; both down,
/// without addresses.
pub fn add_veth(name: &str, ifname: &str, peer: &str, peer_ifname: &str) -> Result<()> {
    ip(
        name,
        &[
            "link",
            "add",
            ifname,
            "type",
            "veth",
            "peer",
            "name",
            peer_ifname,
            "netns",
            peer,
        ],
    )?;
    Ok(())
}

/// A bridge `bridge` in namespace `name`, up. Multicast snooping is off: VRRP's adverts
/// (224.0.0.18, ff02::12) must flood to every port without anyone sending IGMP or MLD reports.
pub fn add_bridge(name: &str, bridge: &str) -> Result<()> {
    ip(name, &["link", "add", bridge, "type", "bridge"])?;
    ip(
        name,
        &[
            "link",
            "set",
            bridge,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ],
    )?;
    ip(name, &["link", "set", bridge, "up"])?;
    Ok(())
}

/// Joins namespace `host` to `bridge` in namespace `name` by a veth pair: `port` on the bridge
/// (up), `ifname` in the host (down, without addresses).
pub fn attach(name: &str, bridge: &str, port: &str, host: &str, ifname: &str) -> Result<()> {
    add_veth(name, port, host, ifname)?;
    ip(name, &["link", "set", port, "master", bridge, "up"])?;
    Ok(())
}

/// The processes inside namespace `name` (`ip netns pids`); none when it does not exist.
pub fn pids(name: &str) -> Result<Vec<u32>> {
    if !named(name).exists() {
        return Ok(Vec::new());
    }
    let what = format!("ip netns pids {name}");
    let out = output_of(
        Command::new("ip").args(["netns", "pids", name]),
        what.clone(),
    )?;
    out.split_whitespace()
        .map(|pid| {
            pid.parse()
                .map_err(|_| Error::invalid(what.clone(), format!("printed {pid:?}, not a pid")))
        })
        .collect()
}

/// Runs `command`, described as `what`; its stdout, or an error naming `what` with the
/// program's stderr.
fn output_of(command: &mut Command, what: String) -> Result<String> {
    let out = command
        .output()
        .context(|| format!("cannot run {what} (is iproute2 installed?)"))?;
    if !out.status.success() {
        return Err(Error::Command {
            command: what,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
