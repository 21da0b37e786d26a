//! The lab's network: a network namespace per host, each wired to one bridge by a veth pair
//! (made with [`halb_sys::netns`]).

use super::{Side, Topology, CLIENT_IP};
use anyhow::{Context, Result};
use halb_sys::netns;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// The bridge's name in its namespace.
pub(super) const BRIDGE: &str = "br0";

/// A network namespace; removed on drop unless disowned (for `halb lab up`).
#[derive(Debug)]
pub struct Netns {
    pub name: String,
    owned: bool,
}

impl Netns {
    /// A new namespace `name`, with only `lo`, up.
    pub fn create(name: &str) -> Result<Netns> {
        let created = netns::add(name);
        // Owned from here, so that a namespace made without its `lo` up is removed again.
        let ns = Netns {
            name: name.to_string(),
            owned: true,
        };
        created.with_context(|| format!("cannot create namespace {name} (the lab needs root)"))?;
        Ok(ns)
    }

    /// `/run/netns/NAME`, for `halb_sys::netns::enter`.
    pub fn path(&self) -> PathBuf {
        netns::named(&self.name)
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
            for pid in netns::pids(&self.name).unwrap_or_default() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            let _ = netns::delete(&self.name);
        }
    }
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
        // VRRP adverts are multicast; no snooping, so they flood without IGMP reports.
        netns::add_bridge(&bridge.name, BRIDGE)?;
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
            let name = &host.ns.name;
            netns::attach(&bridge.name, BRIDGE, &format!("{role}0"), name, "eth0")?;
            netns::ip(name, &["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
            netns::ip(name, &["link", "set", "eth0", "up"])?;
        }
        Ok(())
    }
}
