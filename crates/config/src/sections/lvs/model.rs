//! Model types of the LVS part: `virtual_server_group`, `virtual_server`, `real_server`,
//! `sorry_server`; the health checkers are in [`crate::sections::checker::model`].
//!
//! Values are the ones keepalived 2.2 runs with after reading and validating: defaults filled in,
//! fix-ups applied (a missing `protocol` becomes UDP, a DR real server's port becomes the
//! virtual server's, …). Settings that keepalived inherits from the virtual server at run time
//! (checker timings, `alpha`, `inhibit_on_failure`) stay `None` where the file does not set them,
//! and the `effective_*` methods resolve them the way keepalived does.

use crate::read::secs;
use crate::setting::Setting;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};

use crate::sections::checker::model::{Checker, CheckerKind, MysqlCheck};
use crate::sections::script::Script;

/// The LVS sections of a configuration, in file order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LvsConfig {
    pub groups: Vec<VirtualServerGroup>,
    pub virtual_servers: Vec<VirtualServer>,
}

impl LvsConfig {
    /// The `virtual_server_group` of that name.
    pub fn group(&self, name: &str) -> Option<&VirtualServerGroup> {
        self.groups.iter().find(|g| g.name == name)
    }
}

/// `virtual_server_group NAME { … }`: services that share one set of real servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualServerGroup {
    pub name: String,
    /// Never empty: keepalived removes a group without entries.
    pub entries: Vec<GroupEntry>,
}

impl VirtualServerGroup {
    pub fn has_addresses(&self) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(e, GroupEntry::Range { .. }))
    }

    /// Whether an address of the family, or a fwmark given that family, is in the group.
    pub fn has_family(&self, f: IpFamily) -> bool {
        self.entries.iter().any(|e| match e {
            GroupEntry::Range { first, .. } => IpFamily::of(first) == f,
            GroupEntry::Fwmark { family, .. } => *family == Some(f),
        })
    }

    pub fn has_fwmarks(&self) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(e, GroupEntry::Fwmark { .. }))
    }
}

/// One line of a `virtual_server_group`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupEntry {
    /// `IP [PORT]`, `IP-LAST [PORT]` (last byte, or last 16-bit group for IPv6),
    /// `IP-IP [PORT]` or `IP/PREFIX [PORT]`: the addresses `first..=last` (one family; `first ==
    /// last` for a single address). Port 0: no port (a persistent service).
    Range {
        first: IpAddr,
        last: IpAddr,
        port: u16,
    },
    /// `fwmark N [inet|inet6]`.
    Fwmark { mark: u32, family: Option<IpFamily> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IpFamily {
    Inet,
    Inet6,
}

impl IpFamily {
    pub fn of(ip: &IpAddr) -> IpFamily {
        if ip.is_ipv4() {
            IpFamily::Inet
        } else {
            IpFamily::Inet6
        }
    }

    /// The `ip_family` keyword's value.
    pub fn as_str(self) -> &'static str {
        match self {
            IpFamily::Inet => "inet",
            IpFamily::Inet6 => "inet6",
        }
    }
}

/// What a `virtual_server` line names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VirtualServerKey {
    /// `virtual_server IP [PORT]`; port 0 when none (persistent services only).
    Addr { ip: IpAddr, port: u16 },
    /// `virtual_server fwmark N` (N ≥ 1).
    Fwmark(u32),
    /// `virtual_server group NAME`.
    Group(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

/// The IPVS schedulers keepalived accepts (`lb_algo` / `lvs_sched`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Scheduler {
    Rr,
    Wrr,
    Lc,
    /// keepalived's default when no scheduler is set (with a warning).
    #[default]
    Wlc,
    Lblc,
    Lblcr,
    Dh,
    Sh,
    Sed,
    Nq,
    Fo,
    Ovf,
    Mh,
    Twos,
}

impl Scheduler {
    pub const ALL: [Scheduler; 14] = [
        Scheduler::Rr,
        Scheduler::Wrr,
        Scheduler::Lc,
        Scheduler::Wlc,
        Scheduler::Lblc,
        Scheduler::Lblcr,
        Scheduler::Dh,
        Scheduler::Sh,
        Scheduler::Sed,
        Scheduler::Nq,
        Scheduler::Fo,
        Scheduler::Ovf,
        Scheduler::Mh,
        Scheduler::Twos,
    ];

    /// The IPVS name (`ipvsadm -s NAME`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scheduler::Rr => "rr",
            Scheduler::Wrr => "wrr",
            Scheduler::Lc => "lc",
            Scheduler::Wlc => "wlc",
            Scheduler::Lblc => "lblc",
            Scheduler::Lblcr => "lblcr",
            Scheduler::Dh => "dh",
            Scheduler::Sh => "sh",
            Scheduler::Sed => "sed",
            Scheduler::Nq => "nq",
            Scheduler::Fo => "fo",
            Scheduler::Ovf => "ovf",
            Scheduler::Mh => "mh",
            Scheduler::Twos => "twos",
        }
    }

    pub fn from_name(name: &str) -> Option<Scheduler> {
        Scheduler::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// All the names, for messages.
    pub fn names() -> String {
        Scheduler::ALL.map(Scheduler::as_str).join(" ")
    }
}

/// IPVS service flags set by `ops`, `flag-1`..`flag-3`, `sh-fallback`/`mh-fallback` (= flag-1)
/// and `sh-port`/`mh-port` (= flag-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SchedFlags {
    /// One-packet scheduling (UDP only; keepalived clears it on TCP/SCTP services).
    pub ops: bool,
    /// IP_VS_SVC_F_SCHED1: `sh-fallback` / `mh-fallback`.
    pub flag_1: bool,
    /// IP_VS_SVC_F_SCHED2: `sh-port` / `mh-port`.
    pub flag_2: bool,
    /// IP_VS_SVC_F_SCHED3.
    pub flag_3: bool,
}

/// How IPVS forwards to a real server (`lb_kind` / `lvs_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Forwarding {
    /// keepalived's default when none is set (with a warning).
    #[default]
    Nat,
    Dr,
    Tun(Tunnel),
}

impl Forwarding {
    /// `NAT`, `DR` or `TUN`.
    pub fn name(&self) -> &'static str {
        match self {
            Forwarding::Nat => "NAT",
            Forwarding::Dr => "DR",
            Forwarding::Tun(_) => "TUN",
        }
    }
}

/// `TUN [type ipip|gue|gre] [port N] [nocsum|csum|remcsum]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tunnel {
    pub tunnel_type: TunnelType,
    /// Always `NoCsum` for IPIP; never `RemCsum` for GRE.
    pub checksum: TunnelChecksum,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TunnelType {
    #[default]
    Ipip,
    Gue {
        port: u16,
    },
    Gre,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TunnelChecksum {
    #[default]
    NoCsum,
    Csum,
    RemCsum,
}

/// `persistence_granularity`: a netmask for IPv4 services, a prefix length for IPv6 ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PersistenceGranularity {
    Netmask(Ipv4Addr),
    Prefix(u8),
}

/// keepalived's default persistence timeout in seconds (a bare `persistence_timeout`, a
/// `persistence_granularity` alone, or a service without a port).
pub const DEFAULT_PERSISTENCE_TIMEOUT: u32 = 360;

/// One `virtual_server` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VirtualServer {
    pub key: VirtualServerKey,
    /// The address family keepalived settled on (from the address, `ip_family`, the real or
    /// sorry servers, or the group); `None` for a group it could not tell.
    pub ip_family: Option<IpFamily>,
    /// `None` for firewall-mark services (keepalived ignores a protocol there).
    pub protocol: Option<Protocol>,
    pub sched: Scheduler,
    pub sched_flags: SchedFlags,
    /// The default forwarding method of the real servers and the sorry server.
    pub forwarding: Forwarding,
    pub persistence_engine: Option<String>,
    /// Seconds; `None` when the service is not persistent.
    pub persistence_timeout: Option<u32>,
    pub persistence_granularity: Option<PersistenceGranularity>,
    /// Default 60 s.
    pub delay_loop_us: u64,
    /// Default 5 s.
    pub connect_timeout_us: u64,
    pub retry: Option<u32>,
    pub delay_before_retry_us: Option<u64>,
    pub warmup_us: Option<u64>,
    pub inhibit_on_failure: bool,
    pub alpha: bool,
    pub omega: bool,
    /// Default 1; never more than the sum of the real servers' weights.
    pub quorum: u32,
    /// Always less than `quorum`.
    pub hysteresis: u32,
    pub quorum_up: Option<Script>,
    pub quorum_down: Option<Script>,
    pub ha_suspend: bool,
    pub virtualhost: Option<String>,
    /// `None`: the global `smtp_alert_checker` / `smtp_alert` decides (default off).
    pub smtp_alert: Option<bool>,
    /// The weight of real servers that set none (default 1).
    pub weight: u32,
    pub sorry_server: Option<SorryServer>,
    /// Never empty: keepalived ignores a virtual server without real servers.
    pub real_servers: Vec<RealServer>,
    /// halb's `connection_fencing`; `None` when the file does not say (see
    /// [`VirtualServer::connection_fencing`] for the default).
    pub connection_fencing: Option<ConnectionFencing>,
    /// halb's `mysql_writer`: a write service of a MySQL pair, which keeps exactly one writable
    /// server (server fencing). Only set with a MYSQL_CHECK to log in with
    /// ([`VirtualServer::writer_check`]).
    pub mysql_writer: bool,
    /// halb's `failback`: whether a returning real server takes the traffic back from the
    /// sorry server by itself (default) or only on `halb failback`.
    pub failback: Failback,
    /// halb's `failback_limit N T`: no automatic failback after N switches within T seconds.
    pub failback_limit: Option<FailbackLimit>,
    /// Keywords kept as written (`snmp_name`).
    pub other: Vec<Setting>,
}

/// What happens to the connections a director carries to a server its traffic moves away
/// from (a real server out while still answering, the sorry server in or back, a weight set
/// to 0): halb's `connection_fencing` keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectionFencing {
    /// End them at once: the proxy closes them, IPVS forgets them (the client's next packet
    /// is answered with a reset). For stateful services such as a database writer, where a
    /// client left on the old server keeps writing there.
    Close,
    /// Leave them to finish on their own, as keepalived does: for stateless services, where
    /// a request in flight should complete.
    Drain,
}

/// When a real server that returns takes the traffic back from the sorry server: halb's
/// `failback` keyword. For a MySQL writer the catch-up rule applies either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Failback {
    /// As soon as its checkers pass (keepalived's behaviour).
    #[default]
    Automatic,
    /// Only when an operator asks (`halb failback VS` over the control socket): the sorry
    /// server stays meanwhile. For a master-master pair, where a handback is a second switch
    /// of the writer.
    Manual,
}

impl Failback {
    pub fn as_str(self) -> &'static str {
        match self {
            Failback::Automatic => "automatic",
            Failback::Manual => "manual",
        }
    }
}

/// halb's `failback_limit N T`: after `switches` switches between the real servers and the
/// sorry server within `within_secs` seconds, the automatic failback stops until the window
/// has moved on (a flapping server keeps the sorry server); `halb failback` still works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailbackLimit {
    pub switches: u32,
    pub within_secs: u64,
}

impl ConnectionFencing {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionFencing::Close => "close",
            ConnectionFencing::Drain => "drain",
        }
    }
}

impl VirtualServer {
    /// The MYSQL_CHECK whose user server fencing logs in as: the first one of the real servers.
    pub fn writer_check(&self) -> Option<&MysqlCheck> {
        self.real_servers
            .iter()
            .flat_map(|rs| &rs.checkers)
            .find_map(|c| match c {
                Checker::Mysql(m) => Some(m),
                _ => None,
            })
    }

    /// The connection fencing in force: as written, else `drain` when every checker of every
    /// real server is HTTP_GET or SSL_GET (a web service, whose requests in flight should
    /// finish), else `close`.
    pub fn connection_fencing(&self) -> ConnectionFencing {
        if let Some(f) = self.connection_fencing {
            return f;
        }
        // DR_PATH_CHECK (which halb may add by itself) and FILE_CHECK say nothing of the
        // service's kind.
        let mut checkers = self
            .real_servers
            .iter()
            .flat_map(|rs| &rs.checkers)
            .filter(|c| !matches!(c.kind(), CheckerKind::DrPath | CheckerKind::File))
            .peekable();
        let web_only = checkers.peek().is_some()
            && checkers.all(|c| matches!(c.kind(), CheckerKind::HttpGet | CheckerKind::SslGet));
        if web_only {
            ConnectionFencing::Drain
        } else {
            ConnectionFencing::Close
        }
    }

    /// A virtual server with keepalived's defaults.
    pub fn new(key: VirtualServerKey) -> Self {
        let ip_family = match &key {
            VirtualServerKey::Addr { ip, .. } => Some(IpFamily::of(ip)),
            _ => None,
        };
        VirtualServer {
            key,
            ip_family,
            protocol: None,
            sched: Scheduler::default(),
            sched_flags: SchedFlags::default(),
            forwarding: Forwarding::default(),
            persistence_engine: None,
            persistence_timeout: None,
            persistence_granularity: None,
            delay_loop_us: DEFAULT_DELAY_LOOP_US,
            connect_timeout_us: DEFAULT_CONNECT_TIMEOUT_US,
            retry: None,
            delay_before_retry_us: None,
            warmup_us: None,
            inhibit_on_failure: false,
            alpha: false,
            omega: false,
            quorum: 1,
            hysteresis: 0,
            quorum_up: None,
            quorum_down: None,
            ha_suspend: false,
            virtualhost: None,
            smtp_alert: None,
            weight: 1,
            sorry_server: None,
            real_servers: Vec::new(),
            connection_fencing: None,
            mysql_writer: false,
            failback: Failback::Automatic,
            failback_limit: None,
            other: Vec::new(),
        }
    }
}

/// keepalived's `delay_loop` default.
pub const DEFAULT_DELAY_LOOP_US: u64 = secs(60);
/// keepalived's `connect_timeout` default.
pub const DEFAULT_CONNECT_TIMEOUT_US: u64 = secs(5);

/// `sorry_server IP [PORT]` with `sorry_server_inhibit` and `sorry_server_lvs_method`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SorryServer {
    pub ip: IpAddr,
    /// 0 when none was given and keepalived did not set it (NAT, or a firewall-mark service).
    pub port: u16,
    pub inhibit: bool,
    /// `None`: the virtual server's forwarding.
    pub lvs_method: Option<Forwarding>,
}

impl SorryServer {
    pub fn forwarding<'a>(&'a self, vs: &'a VirtualServer) -> &'a Forwarding {
        self.lvs_method.as_ref().unwrap_or(&vs.forwarding)
    }
}

/// One `real_server` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RealServer {
    pub ip: IpAddr,
    /// As IPVS gets it: 0 only where keepalived leaves it so (firewall-mark services with DR/TUN,
    /// and group services).
    pub port: u16,
    /// The real server's own `weight`, else the virtual server's.
    pub weight: u32,
    /// `None`: the virtual server's forwarding.
    pub lvs_method: Option<Forwarding>,
    /// 0: no limit.
    pub uthreshold: u32,
    pub lthreshold: u32,
    pub inhibit_on_failure: Option<bool>,
    pub notify_up: Option<Script>,
    pub notify_down: Option<Script>,
    pub alpha: Option<bool>,
    pub retry: Option<u32>,
    pub delay_before_retry_us: Option<u64>,
    pub warmup_us: Option<u64>,
    pub connect_timeout_us: Option<u64>,
    pub delay_loop_us: Option<u64>,
    /// `None`: the global `smtp_alert_checker` / `smtp_alert` decides (default on).
    pub smtp_alert: Option<bool>,
    pub virtualhost: Option<String>,
    pub checkers: Vec<Checker>,
    /// Keywords kept as written (`snmp_name`).
    pub other: Vec<Setting>,
}

impl RealServer {
    /// A real server with keepalived's defaults.
    pub fn new(ip: IpAddr, port: u16) -> Self {
        RealServer {
            ip,
            port,
            weight: 1,
            lvs_method: None,
            uthreshold: 0,
            lthreshold: 0,
            inhibit_on_failure: None,
            notify_up: None,
            notify_down: None,
            alpha: None,
            retry: None,
            delay_before_retry_us: None,
            warmup_us: None,
            connect_timeout_us: None,
            delay_loop_us: None,
            smtp_alert: None,
            virtualhost: None,
            checkers: Vec::new(),
            other: Vec::new(),
        }
    }

    pub fn forwarding<'a>(&'a self, vs: &'a VirtualServer) -> &'a Forwarding {
        self.lvs_method.as_ref().unwrap_or(&vs.forwarding)
    }

    pub fn effective_inhibit_on_failure(&self, vs: &VirtualServer) -> bool {
        self.inhibit_on_failure.unwrap_or(vs.inhibit_on_failure)
    }

    pub fn effective_alpha(&self, vs: &VirtualServer) -> bool {
        self.alpha.unwrap_or(vs.alpha)
    }

    /// A checker's `alpha`: its own, else the real server's, else the virtual server's.
    pub fn effective_checker_alpha(&self, vs: &VirtualServer, checker: &Checker) -> bool {
        checker.alpha().unwrap_or_else(|| self.effective_alpha(vs))
    }

    /// The timings a checker of this real server runs with, resolved as keepalived's
    /// `validate_check_config()` does: the checker's own value, else the real server's, else the
    /// virtual server's, else the checker kind's default (`retry`, `delay_before_retry`) or its
    /// `delay_loop` (`warmup`, and `delay_before_retry` for DNS_CHECK). `None` for FILE_CHECK
    /// and BFD_CHECK, which keepalived does not run on a timer.
    pub fn effective_checker_timing(
        &self,
        vs: &VirtualServer,
        checker: &Checker,
    ) -> Option<CheckerTiming> {
        let common = checker.common()?;
        let connect_timeout_us = checker.has_connection().then(|| {
            common
                .connect_timeout_us
                .or(self.connect_timeout_us)
                .unwrap_or(vs.connect_timeout_us)
        });
        let delay_loop_us = common
            .delay_loop_us
            .or(self.delay_loop_us)
            .unwrap_or(vs.delay_loop_us);
        let retry = common
            .retry
            .or(self.retry)
            .or(vs.retry)
            .unwrap_or_else(|| checker.default_retry());
        let warmup_us = common
            .warmup_us
            .or(self.warmup_us)
            .or(vs.warmup_us)
            .unwrap_or(delay_loop_us);
        let delay_before_retry_us = common
            .delay_before_retry_us
            .or(self.delay_before_retry_us)
            .or(vs.delay_before_retry_us)
            .or_else(|| checker.default_delay_before_retry_us())
            .unwrap_or(delay_loop_us);
        Some(CheckerTiming {
            connect_timeout_us,
            retry,
            delay_before_retry_us,
            delay_loop_us,
            warmup_us,
        })
    }
}

/// A checker's timings after inheritance (see [`RealServer::effective_checker_timing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckerTiming {
    /// `None` for checkers without a connection (MISC_CHECK).
    pub connect_timeout_us: Option<u64>,
    /// Failed attempts tolerated before the checker reports failure.
    pub retry: u32,
    pub delay_before_retry_us: u64,
    pub delay_loop_us: u64,
    /// The upper bound of the random delay before the first check.
    pub warmup_us: u64,
}
