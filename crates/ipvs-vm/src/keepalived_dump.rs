//! keepalived 2.2.7's configuration dump (`keepalived -d`), read into a [`Summary`].
//!
//! The dump is keepalived's own account of what it parsed, after its defaults and inheritance
//! have been applied, so it is the reference for "halb reads this file as keepalived does". The
//! VRRP child and the checker child each dump their part; this parser takes either, or both one
//! after the other, with or without `keepalived -l`'s timestamps.
//!
//! The layout, from keepalived's `vrrp_data.c`, `check_data.c` and `check_api.c`:
//! sections titled `------< NAME >------`; in `VRRP Topology`, one ` VRRP Instance = NAME` block
//! per instance; in `LVS Topology`, ` ------< Virtual server >------` blocks each followed by their
//! `   ------< Real server >------` blocks; in `Health checkers`, one block per checker, headed
//! ` VS -> RS` (keepalived's `[ADDR]:PROTO:PORT` forms), which is how checkers are matched to real
//! servers. The indentation tells levels apart and is relied on.
//!
//! Where the dump shows a value differently from the configuration:
//! - times are decimal seconds with six digits (`20.000000`), or integer microseconds (`us`);
//! - `Advert interval` is whole seconds for VRRPv2 (`1 sec`) and milliseconds for v3;
//! - `Wantstate` is the initial state after keepalived's adjustments (no `state`: MASTER only at
//!   priority 255; a sync group with a non-255 member demotes its MASTER members to BACKUP);
//! - a VIP prints without its prefix when it is /32 (/128), with it otherwise;
//! - a checker whose `Retries = 0` does not print its delay before retry; it is rebuilt from the
//!   real server's `Retry delay`, else the checker's default, else its delay loop, which is what
//!   keepalived resolves unless the checker set `delay_before_retry` itself.

use crate::keepalived_oracle::strip_log_timestamp;
use anyhow::{bail, Context, Result};
use halb_config::summary::{
    CheckerSummary, InstanceSummary, RealServerSummary, Summary, VirtualServerSummary,
};
use std::net::IpAddr;

/// Reads a dump (one or both children's) into a [`Summary`].
pub fn parse(dump: &str) -> Result<Summary> {
    let mut parser = Parser::default();
    for (index, raw) in dump.lines().enumerate() {
        let line = strip_log_timestamp(raw.trim_end_matches('\r'));
        parser
            .line(line)
            .with_context(|| format!("dump line {}: {line:?}", index + 1))?;
    }
    parser.finish()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Section {
    #[default]
    Other,
    Vrrp,
    Lvs,
    Checkers,
}

/// Where the VRRP part is inside an instance block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum InstanceList {
    #[default]
    None,
    Vips,
    /// Another indented list (excluded VIPs, tracked scripts, ...): skipped.
    Other,
}

/// Where the LVS part is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum LvsBlock {
    #[default]
    None,
    Group,
    VirtualServer,
    RealServer,
}

#[derive(Debug, Default)]
struct VirtualServer {
    summary: VirtualServerSummary,
    /// keepalived's name for it in the checkers' headers: `[ADDR]:PROTO:PORT`, `FWM N` or
    /// `[GROUP]:0`.
    checker_name: String,
    /// The address and port, to name the real servers the same way once the protocol is known.
    addr_port: Option<(IpAddr, u16)>,
    real_servers: Vec<RealServer>,
}

#[derive(Debug, Default)]
struct RealServer {
    summary: RealServerSummary,
    addr_port: Option<(IpAddr, u16)>,
    initial_weight: Option<i32>,
    retry_delay_us: Option<u64>,
}

#[derive(Debug, Default)]
struct Checker {
    /// The ` VS -> RS` header.
    vs: String,
    rs: String,
    kind: Option<String>,
    connect_timeout_us: Option<u64>,
    retry: Option<u32>,
    delay_before_retry_us: Option<u64>,
    default_delay_before_retry_us: Option<u64>,
    delay_loop_us: Option<u64>,
    in_connection: bool,
}

#[derive(Debug, Default)]
struct Parser {
    section: Section,
    instances: Vec<InstanceSummary>,
    instance_list: InstanceList,
    virtual_servers: Vec<VirtualServer>,
    lvs_block: LvsBlock,
    checkers: Vec<Checker>,
}

impl Parser {
    fn line(&mut self, line: &str) -> Result<()> {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let text = line.trim();
        if text.is_empty() {
            return Ok(());
        }
        if indent == 0 && text.starts_with("------<") {
            self.section = match text {
                "------< VRRP Topology >------" => Section::Vrrp,
                "------< LVS Topology >------" => Section::Lvs,
                "------< Health checkers >------" => Section::Checkers,
                _ => Section::Other,
            };
            self.lvs_block = LvsBlock::None;
            self.instance_list = InstanceList::None;
            return Ok(());
        }
        match self.section {
            Section::Vrrp => self.vrrp_line(indent, text),
            Section::Lvs => self.lvs_line(indent, text),
            Section::Checkers => self.checker_line(indent, text),
            Section::Other => Ok(()),
        }
    }

    fn vrrp_line(&mut self, indent: usize, text: &str) -> Result<()> {
        if indent == 1 {
            if let Some(name) = text.strip_prefix("VRRP Instance = ") {
                self.instances.push(InstanceSummary {
                    name: name.to_owned(),
                    ..InstanceSummary::default()
                });
                self.instance_list = InstanceList::None;
            }
            return Ok(());
        }
        let Some(instance) = self.instances.last_mut() else {
            return Ok(());
        };
        if indent >= 5 {
            if self.instance_list == InstanceList::Vips {
                let addr = text.split_whitespace().next().unwrap_or(text);
                instance.vips.push(vip(addr)?);
            }
            return Ok(());
        }
        if indent != 3 {
            return Ok(());
        }
        self.instance_list = InstanceList::None;
        let Some((key, value)) = text.split_once(" = ") else {
            if text.starts_with("Virtual IP (") {
                self.instance_list = InstanceList::Vips;
            } else if text.ends_with(':') {
                self.instance_list = InstanceList::Other;
            }
            return Ok(());
        };
        match key {
            "VRRP Version" => instance.version = value.parse().context("VRRP version")?,
            "Wantstate" => instance.initial_state = value.to_owned(),
            "Interface" => instance.interface = configured_interface(value),
            "Configured interface" => instance.interface = Some(value.to_owned()),
            "Virtual Router ID" => instance.vrid = value.parse().context("virtual router id")?,
            "Priority" => instance.priority = value.parse().context("priority")?,
            "Advert interval" => instance.advert_int_us = advert_interval_us(value)?,
            _ => {}
        }
        Ok(())
    }

    fn lvs_line(&mut self, indent: usize, text: &str) -> Result<()> {
        match (indent, text) {
            (1, "------< Virtual server group >------") => {
                self.lvs_block = LvsBlock::Group;
                return Ok(());
            }
            (1, "------< Virtual server >------") => {
                self.virtual_servers.push(VirtualServer::default());
                self.lvs_block = LvsBlock::VirtualServer;
                return Ok(());
            }
            (3, "------< Real server >------") => {
                let Some(vs) = self.virtual_servers.last_mut() else {
                    bail!("real server outside a virtual server");
                };
                vs.real_servers.push(RealServer::default());
                self.lvs_block = LvsBlock::RealServer;
                return Ok(());
            }
            _ => {}
        }
        match self.lvs_block {
            LvsBlock::VirtualServer if indent == 1 => self.vs_title_line(text),
            LvsBlock::VirtualServer if indent == 3 => self.vs_line(text),
            LvsBlock::RealServer if indent == 3 => self.rs_line(text),
            _ => Ok(()),
        }
    }

    /// The line naming a virtual server, right after its title.
    fn vs_title_line(&mut self, text: &str) -> Result<()> {
        let Some(vs) = self.virtual_servers.last_mut() else {
            return Ok(());
        };
        if let Some(group) = text.strip_prefix("VS GROUP = ") {
            // keepalived prints "[NAME]:PORT"; the port of a group is always 0.
            let name = group
                .strip_prefix('[')
                .and_then(|g| g.rsplit_once("]:"))
                .map(|(name, _)| name)
                .with_context(|| format!("virtual server group {group:?} is not [NAME]:PORT"))?;
            vs.summary.key = format!("group {name}");
            vs.checker_name = group.to_owned();
        } else if let Some(mark) = text.strip_prefix("VS FWMARK = ") {
            let mark: u32 = mark.parse().context("fwmark")?;
            vs.summary.key = format!("fwmark {mark}");
            vs.checker_name = format!("FWM {mark}");
        } else if let Some(rest) = text.strip_prefix("VS VIP = ") {
            let (addr, port) = addr_and_port(rest, "VPORT")?;
            vs.summary.key = socket_text(addr, port);
            vs.addr_port = Some((addr, port));
        }
        Ok(())
    }

    fn vs_line(&mut self, text: &str) -> Result<()> {
        let Some(vs) = self.virtual_servers.last_mut() else {
            return Ok(());
        };
        let Some((key, value)) = text.split_once(" = ") else {
            return Ok(());
        };
        let summary = &mut vs.summary;
        match key {
            "delay_loop" => summary.delay_loop_us = decimal_seconds_us(value)?,
            "lvs_sched" => summary.sched = value.to_owned(),
            "persistence timeout" => {
                summary.persistence_timeout = Some(value.parse().context("persistence timeout")?)
            }
            "protocol" => summary.protocol = value.to_owned(),
            "quorum" => {
                // "quorum = 1, hysteresis = 0"
                let quorum = value.split(',').next().unwrap_or(value);
                summary.quorum = quorum.trim().parse().context("quorum")?;
            }
            "sorry server" | "sorry server (duplicates rs)" => {
                let (addr, port) = trio(value)?;
                summary.sorry_server = Some(socket_text(addr, port));
            }
            _ => {}
        }
        Ok(())
    }

    fn rs_line(&mut self, text: &str) -> Result<()> {
        let Some(rs) = self
            .virtual_servers
            .last_mut()
            .and_then(|vs| vs.real_servers.last_mut())
        else {
            return Ok(());
        };
        if let Some(rest) = text.strip_prefix("RIP = ") {
            // "RIP = 10.2.0.1, RPORT = 80, WEIGHT = 3 EFF WEIGHT = 3"
            let (addr, port) = addr_and_port(rest, "RPORT")?;
            rs.summary.addr = socket_text(addr, port);
            rs.addr_port = Some((addr, port));
            if let Some(weight) = rest.split(", WEIGHT = ").nth(1) {
                let weight = weight.split_whitespace().next().unwrap_or(weight);
                rs.summary.weight = weight.parse().context("weight")?;
            }
            return Ok(());
        }
        let Some((key, value)) = text.split_once(" = ") else {
            return Ok(());
        };
        match key {
            // "NAT", "DR", "TUN" or "TUN, type = IPIP|GUE, port = ...|GRE".
            "forwarding method" => {
                let method = value.split(',').next().unwrap_or(value).trim();
                rs.summary.forwarding = method.to_owned();
            }
            "initial weight" => rs.initial_weight = Some(value.parse().context("initial weight")?),
            "Retry delay" => rs.retry_delay_us = Some(decimal_seconds_us(value)?),
            _ => {}
        }
        Ok(())
    }

    fn checker_line(&mut self, indent: usize, text: &str) -> Result<()> {
        if indent == 1 {
            if let Some((vs, rs)) = text.rsplit_once(" -> ") {
                self.checkers.push(Checker {
                    vs: vs.to_owned(),
                    rs: rs.to_owned(),
                    ..Checker::default()
                });
            }
            return Ok(());
        }
        let Some(checker) = self.checkers.last_mut() else {
            return Ok(());
        };
        if indent >= 5 {
            if checker.in_connection {
                if let Some(timeout) = text.strip_prefix("Timeout = ") {
                    checker.connect_timeout_us = Some(decimal_seconds_us(timeout)?);
                }
            }
            return Ok(());
        }
        if indent != 3 {
            return Ok(());
        }
        checker.in_connection = text == "Connection";
        let Some((key, value)) = text.split_once(" = ") else {
            return Ok(());
        };
        match key {
            "Delay loop" => checker.delay_loop_us = Some(micros(value)?),
            "Retries" => checker.retry = Some(value.parse().context("retries")?),
            "Delay before retry" => checker.delay_before_retry_us = Some(micros(value)?),
            "Default delay before retry" => {
                checker.default_delay_before_retry_us = Some(micros(value)?)
            }
            // "TCP_CHECK", "HTTP_GET, http protocol 1.0", ...
            "Keepalive method" => {
                let kind = value.split(',').next().unwrap_or(value).trim();
                checker.kind = Some(kind.to_owned());
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Summary> {
        // Name each virtual server and real server as the checkers' headers do: keepalived names
        // real servers with their service's protocol ("none" for fwmark services).
        for vs in &mut self.virtual_servers {
            let proto = protocol_name(&vs.summary.protocol);
            if let Some((addr, port)) = vs.addr_port {
                vs.checker_name = format!("[{addr}]:{proto}:{port}");
            }
            for rs in &mut vs.real_servers {
                if let Some(weight) = rs.initial_weight {
                    rs.summary.weight = weight;
                }
            }
        }
        let names: Vec<(String, Vec<String>)> = self
            .virtual_servers
            .iter()
            .map(|vs| {
                let proto = protocol_name(&vs.summary.protocol);
                let rs_names = vs
                    .real_servers
                    .iter()
                    .map(|rs| match rs.addr_port {
                        Some((addr, port)) => format!("[{addr}]:{proto}:{port}"),
                        None => String::new(),
                    })
                    .collect();
                (normalize_trio(&vs.checker_name), rs_names)
            })
            .collect();

        // Checkers are queued in configuration order, so when a (VS, RS) pair of names occurs more
        // than once, the first one at or after the previous checker's position is the one meant.
        let mut position = (0usize, 0usize);
        for checker in self.checkers {
            let rs_key = normalize_trio(&checker.rs);
            let candidates: Vec<(usize, usize)> = names
                .iter()
                .enumerate()
                .filter(|(_, (vs_name, _))| *vs_name == normalize_trio(&checker.vs))
                .flat_map(|(v, (_, rs_names))| {
                    rs_names
                        .iter()
                        .enumerate()
                        .filter(|(_, name)| **name == rs_key)
                        .map(move |(r, _)| (v, r))
                })
                .collect();
            let Some(&(v, r)) = candidates
                .iter()
                .find(|c| **c >= position)
                .or_else(|| candidates.first())
            else {
                bail!(
                    "health checker {} -> {} matches no real server in the dump",
                    checker.vs,
                    checker.rs
                );
            };
            position = (v, r);
            let rs = &mut self.virtual_servers[v].real_servers[r];
            let kind = checker.kind.clone().with_context(|| {
                format!(
                    "health checker {} -> {} has no Keepalive method",
                    checker.vs, checker.rs
                )
            })?;
            // FILE_CHECK and BFD_CHECK probe nothing themselves: keepalived resolves no timing for
            // them (FILE_CHECK prints none, BFD_CHECK prints the "unset" markers), so they get 0s.
            if kind == "FILE_CHECK" || kind == "BFD_CHECK" {
                rs.summary.checkers.push(CheckerSummary {
                    kind,
                    connect_timeout_us: None,
                    retry: 0,
                    delay_before_retry_us: 0,
                    delay_loop_us: 0,
                });
                continue;
            }
            let retry = checker.retry.unwrap_or(0);
            let delay_loop_us = checker.delay_loop_us.unwrap_or(0);
            let delay_before_retry_us = match checker.delay_before_retry_us {
                Some(delay) => delay,
                // Not printed when retry is 0: rebuild keepalived's resolution.
                None if checker.retry.is_some() => {
                    rs.retry_delay_us
                        .unwrap_or(match checker.default_delay_before_retry_us {
                            Some(default) if default != 0 => default,
                            _ => delay_loop_us,
                        })
                }
                None => 0,
            };
            rs.summary.checkers.push(CheckerSummary {
                kind,
                connect_timeout_us: checker.connect_timeout_us,
                retry,
                delay_before_retry_us,
                delay_loop_us,
            });
        }

        Ok(Summary {
            vrrp_instances: self.instances,
            virtual_servers: self
                .virtual_servers
                .into_iter()
                .map(|vs| VirtualServerSummary {
                    real_servers: vs.real_servers.into_iter().map(|rs| rs.summary).collect(),
                    ..vs.summary
                })
                .collect(),
        })
    }
}

/// `Interface = eth0`, `Interface = not configured`, or for VMAC / ipvlan instances
/// `Interface = vrrp.51, vmac on eth1[, xmit base i/f]`, whose configured interface is the base.
fn configured_interface(value: &str) -> Option<String> {
    if value == "not configured" {
        return None;
    }
    let (own, rest) = value.split_once(", ").unwrap_or((value, ""));
    let base = rest
        .split_once(" on ")
        .map(|(_, base)| base.split(',').next().unwrap_or(base).trim())
        .filter(|base| !base.is_empty() && *base != "(unknown)");
    Some(base.unwrap_or(own).to_owned())
}

/// `1 sec` (VRRPv2, whole seconds) or `500 milli-sec` (VRRPv3).
fn advert_interval_us(value: &str) -> Result<u64> {
    let (number, unit) = value
        .split_once(' ')
        .with_context(|| format!("advert interval {value:?} has no unit"))?;
    let number: u64 = number.parse().context("advert interval")?;
    match unit {
        "sec" => Ok(number * 1_000_000),
        "milli-sec" => Ok(number * 1_000),
        _ => bail!("advert interval unit {unit:?} is neither sec nor milli-sec"),
    }
}

/// A VIP as dumped (`10.1.1.1/24`, `10.1.2.1`, `fd00::10/64`) as `ADDR/PREFIX`.
fn vip(text: &str) -> Result<String> {
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let addr: IpAddr = addr
        .parse()
        .with_context(|| format!("virtual IP address {addr:?}"))?;
    let prefix: u8 = match prefix {
        Some(prefix) => prefix
            .parse()
            .with_context(|| format!("virtual IP prefix {prefix:?}"))?,
        None if addr.is_ipv4() => 32,
        None => 128,
    };
    Ok(format!("{addr}/{prefix}"))
}

/// `10.0.0.1, VPORT = 80` (or `RPORT`) → address and port; anything after the port is ignored.
fn addr_and_port(text: &str, port_key: &str) -> Result<(IpAddr, u16)> {
    let separator = format!(", {port_key} = ");
    let (addr, rest) = text
        .split_once(&separator)
        .with_context(|| format!("{text:?} has no {port_key}"))?;
    let port = rest.split(',').next().unwrap_or(rest).trim();
    let addr: IpAddr = addr.parse().with_context(|| format!("address {addr:?}"))?;
    let port: u16 = port.parse().with_context(|| format!("port {port:?}"))?;
    Ok((addr, port))
}

/// keepalived's `[ADDR]:PROTO:PORT` → address and port.
fn trio(text: &str) -> Result<(IpAddr, u16)> {
    let (addr, rest) = text
        .strip_prefix('[')
        .and_then(|t| t.split_once("]:"))
        .with_context(|| format!("{text:?} is not [ADDR]:PROTO:PORT"))?;
    let port = rest.rsplit(':').next().unwrap_or(rest);
    let addr: IpAddr = addr.parse().with_context(|| format!("address {addr:?}"))?;
    let port: u16 = port.parse().with_context(|| format!("port {port:?}"))?;
    Ok((addr, port))
}

/// A checker header's half in a comparable form: addresses re-printed canonically.
fn normalize_trio(text: &str) -> String {
    match text
        .strip_prefix('[')
        .and_then(|t| t.split_once("]:"))
        .and_then(|(addr, rest)| addr.parse::<IpAddr>().ok().map(|addr| (addr, rest)))
    {
        Some((addr, rest)) => format!("[{addr}]:{rest}"),
        None => text.to_owned(),
    }
}

/// The protocol as keepalived's `[ADDR]:PROTO:PORT` names spell it.
fn protocol_name(protocol: &str) -> &'static str {
    match protocol {
        "TCP" => "tcp",
        "UDP" => "udp",
        "SCTP" => "sctp",
        "none" => "none",
        _ => "?",
    }
}

/// `IP:PORT`, or `[IPv6]:PORT`.
fn socket_text(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(addr) => format!("{addr}:{port}"),
        IpAddr::V6(addr) => format!("[{addr}]:{port}"),
    }
}

/// keepalived's `format_decimal` / `%f` of a time in seconds (`20.000000`, `1.5`) → microseconds,
/// exactly.
fn decimal_seconds_us(text: &str) -> Result<u64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        bail!("time {text:?} is not decimal seconds");
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        bail!("time {text:?} is not decimal seconds");
    }
    let whole: u64 = whole.parse().with_context(|| format!("time {text:?}"))?;
    let micros = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(6)
        .fold(0u64, |micros, digit| micros * 10 + u64::from(digit - b'0'));
    if fraction.len() > 6 && fraction[6..].bytes().any(|b| b != b'0') {
        bail!("time {text:?} is finer than a microsecond");
    }
    whole
        .checked_mul(1_000_000)
        .and_then(|us| us.checked_add(micros))
        .with_context(|| format!("time {text:?} overflows"))
}

/// `20000000 us` → 20000000.
fn micros(text: &str) -> Result<u64> {
    let number = text
        .strip_suffix(" us")
        .with_context(|| format!("time {text:?} is not in us"))?;
    number.parse().with_context(|| format!("time {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_times_exactly() {
        assert_eq!(decimal_seconds_us("20.000000").ok(), Some(20_000_000));
        assert_eq!(decimal_seconds_us("1.500000").ok(), Some(1_500_000));
        assert_eq!(decimal_seconds_us("0.25").ok(), Some(250_000));
        assert_eq!(decimal_seconds_us("3").ok(), Some(3_000_000));
        assert!(decimal_seconds_us("-1.0").is_err());
        assert!(decimal_seconds_us("1.0000001").is_err());
        assert_eq!(micros("3000000 us").ok(), Some(3_000_000));
        assert_eq!(advert_interval_us("1 sec").ok(), Some(1_000_000));
        assert_eq!(advert_interval_us("500 milli-sec").ok(), Some(500_000));
    }

    #[test]
    fn reads_vips_and_interfaces() {
        assert_eq!(
            vip("192.168.66.251").ok().as_deref(),
            Some("192.168.66.251/32")
        );
        assert_eq!(vip("10.1.3.7/16").ok().as_deref(), Some("10.1.3.7/16"));
        assert_eq!(vip("fd00:0::10/64").ok().as_deref(), Some("fd00::10/64"));
        assert_eq!(vip("2001:db8::1").ok().as_deref(), Some("2001:db8::1/128"));
        assert_eq!(configured_interface("eth0").as_deref(), Some("eth0"));
        assert_eq!(configured_interface("not configured"), None);
        assert_eq!(
            configured_interface("vrrp.51, vmac on eth1, xmit base i/f").as_deref(),
            Some("eth1")
        );
    }

    #[test]
    fn reads_keepalived_socket_forms() {
        let (addr, port) = trio("[fd00::200]:udp:53").expect("trio");
        assert_eq!(socket_text(addr, port), "[fd00::200]:53");
        let (addr, port) =
            addr_and_port("10.2.0.1, RPORT = 80, WEIGHT = 3 EFF WEIGHT = 3", "RPORT").expect("rip");
        assert_eq!(socket_text(addr, port), "10.2.0.1:80");
    }

    // Dumps captured from keepalived 2.2.7 in the IPVS VM by
    // `cargo run -p halb-ipvs-vm --example capture_oracle_fixtures`; the configurations are the seed's
    // (`../shared/seed/`) and `tests/fixtures/configs/`.
    const SEED_MASTER: &str = include_str!("../tests/fixtures/dumps/seed-master.dump");
    const SEED_BACKUP: &str = include_str!("../tests/fixtures/dumps/seed-backup.dump");
    const MIXED: &str = include_str!("../tests/fixtures/dumps/mixed.dump");
    const CHECKERS_ONLY: &str = include_str!("../tests/fixtures/dumps/checkers-only.dump");
    const VRRP_ONLY: &str = include_str!("../tests/fixtures/dumps/vrrp-only.dump");

    fn instance(
        name: &str,
        interface: &str,
        (vrid, priority, version): (u8, u8, u8),
        advert_int_us: u64,
        initial_state: &str,
        vips: &[&str],
    ) -> InstanceSummary {
        InstanceSummary {
            name: name.into(),
            interface: Some(interface.into()),
            vrid,
            priority,
            version,
            advert_int_us,
            initial_state: initial_state.into(),
            vips: vips.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    fn checker(
        kind: &str,
        connect_timeout_us: Option<u64>,
        retry: u32,
        delay_before_retry_us: u64,
        delay_loop_us: u64,
    ) -> CheckerSummary {
        CheckerSummary {
            kind: kind.into(),
            connect_timeout_us,
            retry,
            delay_before_retry_us,
            delay_loop_us,
        }
    }

    fn real_server(
        addr: &str,
        weight: i32,
        forwarding: &str,
        checkers: Vec<CheckerSummary>,
    ) -> RealServerSummary {
        RealServerSummary {
            addr: addr.into(),
            weight,
            forwarding: forwarding.into(),
            checkers,
        }
    }

    fn seed_virtual_server(port: u16) -> VirtualServerSummary {
        VirtualServerSummary {
            key: format!("192.168.66.251:{port}"),
            protocol: "TCP".into(),
            sched: "wrr".into(),
            persistence_timeout: Some(120),
            delay_loop_us: 20_000_000,
            quorum: 1,
            sorry_server: Some(format!("192.168.66.254:{port}")),
            real_servers: vec![real_server(
                &format!("192.168.66.253:{port}"),
                1,
                "DR",
                // nb_get_retry is unknown inside TCP_CHECK in 2.2.7: the retry is the default, 1.
                vec![checker(
                    "TCP_CHECK",
                    Some(5_000_000),
                    1,
                    3_000_000,
                    20_000_000,
                )],
            )],
        }
    }

    #[test]
    fn seed_master() {
        let summary = parse(SEED_MASTER).expect("parses");
        // `state MASTER` at priority 100 in a sync group: keepalived starts it as BACKUP.
        let int = instance(
            "INT",
            "eth0",
            (200, 100, 2),
            1_000_000,
            "BACKUP",
            &["192.168.66.251/32"],
        );
        assert_eq!(
            summary,
            Summary {
                vrrp_instances: vec![int],
                virtual_servers: vec![seed_virtual_server(3306), seed_virtual_server(3308)],
            }
        );
    }

    #[test]
    fn seed_backup_differs_in_priority_only() {
        let master = parse(SEED_MASTER).expect("parses");
        let mut backup = parse(SEED_BACKUP).expect("parses");
        assert_eq!(backup.vrrp_instances[0].priority, 90);
        backup.vrrp_instances[0].priority = 100;
        assert_eq!(backup, master);
    }

    #[test]
    fn mixed_instances() {
        let summary = parse(MIXED).expect("parses");
        assert_eq!(
            summary.vrrp_instances,
            [
                instance(
                    "V3_FAST",
                    "eth1",
                    (51, 150, 3),
                    500_000,
                    "BACKUP",
                    &["10.1.1.1/24", "10.1.2.1/32", "10.1.3.7/16"],
                ),
                // native_ipv6 forces version 3; the address prints canonically.
                instance(
                    "V6_NATIVE",
                    "eth2",
                    (52, 90, 3),
                    2_000_000,
                    "BACKUP",
                    &["fd00::10/64", "2001:db8::1/128"],
                ),
                // No `state`: MASTER because the priority is 255.
                instance(
                    "OWNER",
                    "eth1",
                    (53, 255, 2),
                    1_000_000,
                    "MASTER",
                    &["10.1.4.1/32"]
                ),
            ]
        );
    }

    #[test]
    fn mixed_virtual_servers() {
        let summary = parse(MIXED).expect("parses");
        let web = VirtualServerSummary {
            key: "group WEB".into(),
            protocol: "TCP".into(),
            sched: "rr".into(),
            persistence_timeout: None,
            delay_loop_us: 7_000_000,
            quorum: 1,
            sorry_server: None,
            real_servers: vec![
                // HTTP_GET accepts nb_get_retry (6); the virtual server's delay_before_retry (2 s)
                // wins over HTTP_GET's own default of 3 s.
                real_server(
                    "10.2.0.1:80",
                    3,
                    "NAT",
                    vec![checker(
                        "HTTP_GET",
                        Some(2_000_000),
                        6,
                        2_000_000,
                        7_000_000,
                    )],
                ),
                real_server(
                    "10.2.0.2:80",
                    0,
                    "NAT",
                    vec![checker("MISC_CHECK", None, 4, 2_000_000, 7_000_000)],
                ),
            ],
        };
        let fwmark = VirtualServerSummary {
            key: "fwmark 7".into(),
            // `protocol TCP` is ignored for a fwmark service.
            protocol: "none".into(),
            sched: "sh".into(),
            persistence_timeout: Some(600),
            delay_loop_us: 3_000_000,
            quorum: 2,
            sorry_server: None,
            real_servers: vec![
                // The real server's `retry 0` is rejected (range 1..); its delay_loop 11 and
                // connect_timeout 9 are inherited by the checker.
                real_server(
                    "10.3.0.1:0",
                    2,
                    "TUN",
                    vec![checker(
                        "TCP_CHECK",
                        Some(9_000_000),
                        1,
                        1_000_000,
                        11_000_000,
                    )],
                ),
                real_server(
                    "10.3.0.2:0",
                    1,
                    "DR",
                    vec![
                        checker("TCP_CHECK", Some(1_500_000), 2, 250_000, 4_000_000),
                        checker("PING_CHECK", Some(5_000_000), 1, 1_000_000, 3_000_000),
                    ],
                ),
            ],
        };
        let dns = VirtualServerSummary {
            key: "[fd00::100]:53".into(),
            protocol: "UDP".into(),
            sched: "wlc".into(),
            // `persistence_timeout` without a value: 360.
            persistence_timeout: Some(360),
            delay_loop_us: 10_000_000,
            quorum: 1,
            sorry_server: Some("[fd00::200]:53".into()),
            real_servers: vec![real_server(
                "[fd00::201]:53",
                1,
                "DR",
                vec![
                    // DNS_CHECK: 3 retries by default, and no default delay before retry, so it
                    // is the delay loop.
                    checker("DNS_CHECK", Some(5_000_000), 3, 10_000_000, 10_000_000),
                    checker("UDP_CHECK", Some(3_000_000), 1, 1_000_000, 10_000_000),
                ],
            )],
        };
        let smtp = VirtualServerSummary {
            key: "10.4.0.1:25".into(),
            protocol: "TCP".into(),
            sched: "lc".into(),
            persistence_timeout: None,
            delay_loop_us: 60_000_000,
            quorum: 1,
            sorry_server: None,
            real_servers: vec![real_server(
                "10.4.0.2:25",
                1,
                "NAT",
                vec![checker(
                    "SMTP_CHECK",
                    Some(6_000_000),
                    1,
                    1_000_000,
                    60_000_000,
                )],
            )],
        };
        assert_eq!(summary.virtual_servers, [web, fwmark, dns, smtp]);
    }

    #[test]
    fn checkers_only() {
        let summary = parse(CHECKERS_ONLY).expect("parses");
        assert!(summary.vrrp_instances.is_empty());
        let mysql = VirtualServerSummary {
            key: "10.5.0.1:3306".into(),
            protocol: "TCP".into(),
            sched: "mh".into(),
            persistence_timeout: Some(50),
            delay_loop_us: 30_000_000,
            quorum: 1,
            sorry_server: Some("10.5.0.9:3306".into()),
            real_servers: vec![
                // FILE_CHECK resolves no timing.
                real_server(
                    "10.5.0.2:3306",
                    100,
                    "DR",
                    vec![checker("FILE_CHECK", None, 0, 0, 0)],
                ),
                real_server(
                    "10.5.0.3:3306",
                    50,
                    "DR",
                    vec![checker(
                        "TCP_CHECK",
                        Some(10_000_000),
                        5,
                        1_000_000,
                        30_000_000,
                    )],
                ),
                // Retries = 0 hides the delay before retry: rebuilt from the real server's 4 s.
                real_server(
                    "10.5.0.5:3306",
                    1,
                    "DR",
                    vec![checker(
                        "TCP_CHECK",
                        Some(5_000_000),
                        0,
                        4_000_000,
                        30_000_000,
                    )],
                ),
            ],
        };
        let udp = VirtualServerSummary {
            key: "10.5.0.1:0".into(),
            protocol: "UDP".into(),
            sched: "wrr".into(),
            // Port 0 is only valid for a persistent service: keepalived makes it one (360 s).
            persistence_timeout: Some(360),
            delay_loop_us: 60_000_000,
            quorum: 1,
            sorry_server: None,
            real_servers: vec![real_server("10.5.0.4:0", 1, "DR", vec![])],
        };
        assert_eq!(summary.virtual_servers, [mysql, udp]);
    }

    #[test]
    fn vrrp_only() {
        let summary = parse(VRRP_ONLY).expect("parses");
        assert!(summary.virtual_servers.is_empty());
        assert_eq!(
            summary.vrrp_instances,
            [
                // A sync group whose members are not all address owners starts all as BACKUP,
                // even the one at priority 255.
                instance(
                    "A",
                    "eth0",
                    (1, 255, 2),
                    1_000_000,
                    "BACKUP",
                    &["192.168.77.1/24"]
                ),
                instance(
                    "B",
                    "eth1",
                    (2, 200, 2),
                    1_000_000,
                    "BACKUP",
                    &["192.168.78.1/32"]
                ),
                // Neither state nor priority: priority 100, BACKUP.
                instance(
                    "C",
                    "eth0",
                    (3, 100, 2),
                    1_000_000,
                    "BACKUP",
                    &["192.168.79.1/32"]
                ),
                // use_vmac: the instance runs on vrrp.4, configured on eth1.
                instance(
                    "D",
                    "eth1",
                    (4, 50, 2),
                    3_000_000,
                    "BACKUP",
                    &["192.168.80.1/25"]
                ),
            ]
        );
    }

    #[test]
    fn accepts_timestamped_log_lines_and_rejects_garbage() {
        let stamped: String = SEED_MASTER
            .lines()
            .map(|line| format!("Mon Nov 23 19:32:01 2026: {line}\n"))
            .collect();
        assert_eq!(parse(&stamped).ok(), parse(SEED_MASTER).ok());
        let broken = SEED_MASTER.replace("   Priority = 100", "   Priority = high");
        let error = format!("{:#}", parse(&broken).expect_err("bad priority"));
        assert!(error.contains("Priority = high"), "{error}");
    }

    #[test]
    fn a_checker_without_its_real_server_is_an_error() {
        let dump = "------< Health checkers >------\n [10.0.0.1]:tcp:80 -> [10.0.0.2]:tcp:80\n   Keepalive method = TCP_CHECK\n";
        assert!(parse(dump).is_err());
    }
}
