//! Faults the unkind scenarios put into the network, with nftables inside one host's namespace
//! (a table per kind of fault, removed again by [`Topology::clear_faults`]), and a second
//! application host.
//!
//! - [`Topology::refuse_new_connections`]: a host's SYNs to a server are dropped, so new
//!   connections from it never complete while established ones go on working: what an
//!   overloaded master whose listen queue overflows looks like from a director, and a check's
//!   connect runs into its `connect_timeout`.
//! - [`Topology::cut_vrrp`]: a director hears no VRRP adverts; done on both, each director
//!   believes the other gone.

use super::{Host, Netns, Topology};
use anyhow::{Context, Result};
use halb_sys::netns;
use std::net::Ipv4Addr;

/// One nftables table per kind of fault, so that each can be lifted alone.
const REFUSE: &str = "halb_lab_refuse";
const NO_VRRP: &str = "halb_lab_no_vrrp";

impl Topology {
    /// Drops every TCP SYN from `role`'s namespace to `to`.
    pub fn refuse_new_connections(&self, role: &str, to: Ipv4Addr) -> Result<()> {
        self.nft_rule(
            role,
            REFUSE,
            "output",
            &format!("ip daddr {to} tcp flags & (syn | ack) == syn drop"),
        )
    }

    /// Drops VRRP (IP protocol 112) coming into `role`'s namespace (on the way in, so the
    /// director's own adverts still leave without an error).
    pub fn cut_vrrp(&self, role: &str) -> Result<()> {
        self.nft_rule(role, NO_VRRP, "input", "ip protocol vrrp drop")
    }

    /// Lets VRRP through `role`'s namespace again.
    pub fn restore_vrrp(&self, role: &str) -> Result<()> {
        self.drop_table(role, NO_VRRP)
    }

    /// Removes every fault of `role`'s namespace (nothing to do when there is none).
    pub fn clear_faults(&self, role: &str) -> Result<()> {
        self.drop_table(role, REFUSE)?;
        self.drop_table(role, NO_VRRP)
    }

    /// Forgets `role`'s neighbour entry for `ip`, so its next packet asks again.
    pub fn flush_neighbour(&self, role: &str, ip: Ipv4Addr) -> Result<()> {
        let ns = &self.host(role)?.ns.name;
        netns::ip(ns, &["neigh", "flush", "to", &ip.to_string()])?;
        Ok(())
    }

    fn drop_table(&self, role: &str, table: &str) -> Result<()> {
        let ns = &self.host(role)?.ns.name;
        let tables = nft(ns, &["list", "tables"])?;
        if tables
            .lines()
            .any(|l| l.trim() == format!("table inet {table}"))
        {
            nft(ns, &["delete", "table", "inet", table])?;
        }
        Ok(())
    }

    fn nft_rule(&self, role: &str, table: &str, hook: &str, rule: &str) -> Result<()> {
        let ns = &self.host(role)?.ns.name;
        nft(ns, &["add", "table", "inet", table])?;
        nft(
            ns,
            &[
                "add",
                "chain",
                "inet",
                table,
                hook,
                &format!("{{ type filter hook {hook} priority 0; }}"),
            ],
        )?;
        let mut argv = vec!["add", "rule", "inet", table, hook];
        argv.extend(rule.split_whitespace());
        nft(ns, &argv).with_context(|| format!("fault on {role}: {rule}"))?;
        Ok(())
    }

    /// A further host on the bridge (`role`, address `ip`), removed with the topology; its
    /// namespace is `PREFIX-ROLE`.
    pub fn add_host(&mut self, role: &'static str, ip: Ipv4Addr) -> Result<()> {
        let ns = Netns::create(&format!("{}-{role}", self.prefix))?;
        self.hosts.push(Host { role, ip, ns });
        let name = self.host(role)?.ns.name.clone();
        let bridge = self.bridge.as_ref().context("the lab has no bridge")?;
        netns::attach(
            &bridge.name,
            super::network::BRIDGE,
            &format!("{role}0"),
            &name,
            "eth0",
        )?;
        netns::ip(&name, &["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
        netns::ip(&name, &["link", "set", "eth0", "up"])?;
        Ok(())
    }

    /// Removes a host [`Topology::add_host`] made (and whatever runs in it).
    pub fn remove_host(&mut self, role: &str) {
        self.hosts.retain(|h| h.role != role);
    }

    /// Pins `role`'s neighbour entry for `ip` to `director`'s MAC address, as a host whose ARP
    /// cache still names that director (an application server that missed the other
    /// director's gratuitous ARPs).
    pub fn pin_neighbour(&self, role: &str, ip: Ipv4Addr, director: &str) -> Result<()> {
        let d = &self.host(director)?.ns.name;
        let link = netns::ip(d, &["-o", "link", "show", "eth0"])?;
        let mac = link
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .with_context(|| format!("no MAC address of {director} in {link:?}"))?
            .to_string();
        let ns = &self.host(role)?.ns.name;
        netns::ip(
            ns,
            &[
                "neigh",
                "replace",
                &ip.to_string(),
                "lladdr",
                &mac,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ],
        )?;
        Ok(())
    }
}

fn nft(ns: &str, argv: &[&str]) -> Result<String> {
    let out = netns::command(ns, "nft")
        .args(argv)
        .output()
        .with_context(|| format!("cannot run nft in namespace {ns} (is nftables installed?)"))?;
    if !out.status.success() {
        anyhow::bail!(
            "nft {} in namespace {ns} failed: {}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
