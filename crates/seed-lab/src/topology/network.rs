//! The lab's network: a network namespace per host, each wired to one bridge by a veth pair.

use super::{Side, Topology, CLIENT_IP};
use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

/// A network namespace; removed on drop unless disowned (for `halb lab up`).
#[derive(Debug)]
pub struct Netns {
    pub name: String,
    owned: bool,
}

impl Netns {
    pub fn create(name: &str) -> Result<Netns> {
        let out = Command::new("ip")
            .args(["netns", "add", name])
            .output()
            .context("cannot run `ip netns add` (is iproute2 installed?)")?;
        if !out.status.success() {
            bail!(
                "ip netns add {name} failed (the lab needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let ns = Netns {
            name: name.to_string(),
            owned: true,
        };
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `/run/netns/NAME`, for `halb_sys::netns::enter`.
    pub fn path(&self) -> PathBuf {
        halb_sys::netns::named(&self.name)
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs a command inside the namespace; its stdout, or an error with its stderr.
    pub fn run(&self, argv: &[&str]) -> Result<String> {
        let out = self
            .command(argv[0])
            .args(&argv[1..])
            .output()
            .with_context(|| format!("cannot run {argv:?} in namespace {}", self.name))?;
        if !out.status.success() {
            bail!(
                "{} in namespace {} failed: {}",
                argv.join(" "),
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub(super) fn disown(mut self) -> String {
        self.owned = false;
        std::mem::take(&mut self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.owned {
            // The lab stopped what it started before its namespaces go; anything still inside
            // was started there behind its back and would outlive the namespace's name.
            for pid in pids_in(&self.name).unwrap_or_default() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            delete_netns(&self.name);
        }
    }
}

/// The processes inside namespace `name` (`ip netns pids`); none when it does not exist.
pub(super) fn pids_in(name: &str) -> Result<Vec<u32>> {
    if !halb_sys::netns::named(name).exists() {
        return Ok(Vec::new());
    }
    let out = Command::new("ip")
        .args(["netns", "pids", name])
        .output()
        .context("cannot run `ip netns pids` (is iproute2 installed?)")?;
    if !out.status.success() {
        bail!(
            "ip netns pids {name} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|pid| {
            pid.parse()
                .with_context(|| format!("ip netns pids {name} printed {pid:?}, not a pid"))
        })
        .collect()
}

pub(super) fn delete_netns(name: &str) {
    let _ = Command::new("ip").args(["netns", "del", name]).output();
}

/// A host on the bridge.
#[derive(Debug)]
pub struct Host {
    /// `client`, `d1`, `d2`, `db253`, `db254`.
    pub role: &'static str,
    pub ip: Ipv4Addr,
    pub ns: Netns,
}

impl Topology {
    pub(super) fn build_network(&mut self) -> Result<()> {
        let bridge = Netns::create(&format!("{}-br", self.prefix))?;
        bridge.run(&["ip", "link", "add", "br0", "type", "bridge"])?;
        // VRRP adverts are multicast; no snooping, so they flood without IGMP reports.
        bridge.run(&[
            "ip",
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        bridge.run(&["ip", "link", "set", "br0", "up"])?;
        self.bridge = Some(bridge);
        let hosts: [(&'static str, Ipv4Addr); 5] = [
            ("client", CLIENT_IP),
            ("d1", Ipv4Addr::new(192, 168, 66, 6)),
            ("d2", Ipv4Addr::new(192, 168, 66, 12)),
            (Side::A.host_role(), Side::A.ip()),
            (Side::B.host_role(), Side::B.ip()),
        ];
        for (role, ip) in hosts {
            let ns = Netns::create(&format!("{}-{role}", self.prefix))?;
            let host = Host { role, ip, ns };
            // In the list before it is wired, so a failure below still removes it.
            self.hosts.push(host);
            let host = self.hosts.last().context("a host was just added")?;
            let bridge = self.bridge.as_ref().context("the bridge was just made")?;
            let port = format!("{role}0");
            bridge.run(&[
                "ip",
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &host.ns.name,
            ])?;
            bridge.run(&["ip", "link", "set", &port, "master", "br0", "up"])?;
            host.ns
                .run(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
            host.ns.run(&["ip", "link", "set", "eth0", "up"])?;
        }
        Ok(())
    }
}
