//! The typed, validated configuration: what halb runs.
//!
//! Defaults are keepalived's. Spans are not part of the model (two reads of the same meaning
//! compare equal wherever the text was); diagnostics are produced while reading. The types live
//! beside their readers (`sections::{vrrp, lvs, checker}::model`); this module gathers them.

use crate::setting::Setting;
use serde::{Deserialize, Serialize};

pub use crate::sections::bfd::BfdInstance;
pub use crate::sections::bgp::{AnnouncedRoute, BgpAnnounce, BgpNeighbor, BirdControl};
pub use crate::sections::checker::model::{
    BfdCheck, Checker, CheckerCommon, CheckerKind, DnsCheck, DnsType, FileCheck, HexBytes,
    HttpCheck, HttpProtocol, MiscCheck, MysqlCheck, PingCheck, SmtpCheck, TcpCheck, UdpCheck, Url,
    UrlRegex, DEFAULT_MYSQL_QUERY, DEFAULT_SMTP_HELO, DEFAULT_STATUS_CODES, REGEX_OPTIONS,
};
pub use crate::sections::global_defs::{
    GlobalDefs, LvsSyncDaemon, LvsTimeouts, Scheduling, SmtpServer,
};
pub use crate::sections::lvs::model::{
    CheckerTiming, ConnectionFencing, Failback, FailbackLimit, Forwarding, GroupEntry, IpFamily,
    LvsConfig, PersistenceGranularity, Protocol, RealServer, SchedFlags, Scheduler, SorryServer,
    Tunnel, TunnelChecksum, TunnelType, VirtualServer, VirtualServerGroup, VirtualServerKey,
    DEFAULT_CONNECT_TIMEOUT_US, DEFAULT_DELAY_LOOP_US, DEFAULT_PERSISTENCE_TIMEOUT,
};
/// A script to run (notify scripts, `vrrp_script`, `MISC_CHECK`, …): the command split with
/// keepalived's script quoting, and the user and group to run it as.
pub use crate::sections::script::Script;
pub use crate::sections::vrrp::model::{
    host_prefix, AuthType, Authentication, Broadcast, NotifyScripts, SyncGroup, TrackFile,
    TrackFileInit, TrackFileRef, TrackInterface, TrackScript, UnicastPeer, UseVmac, VirtualAddress,
    VrrpConfig, VrrpInstance, VrrpScript, VrrpState, DEFAULT_ADVERT_INT_US,
    DEFAULT_DOWN_TIMER_ADVERTS, DEFAULT_PRIORITY, DEFAULT_SCRIPT_INTERVAL_US, OWNER_PRIORITY,
};

/// A whole keepalived.conf.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Config {
    pub global: GlobalDefs,
    pub vrrp: VrrpConfig,
    pub lvs: LvsConfig,
    /// Top-level keywords known but not modelled (for example `linkbeat_use_polling`), kept
    /// for the round trip; `bfd_instance` blocks too, which [`Config::bfd`] also reads.
    pub other: Vec<Setting>,
    /// The `bfd_instance`s keepalived would run.
    #[serde(default)]
    pub bfd: Vec<BfdInstance>,
    /// halb's `bgp_announce`: routes announced by BGP through BIRD.
    #[serde(default)]
    pub bgp: Option<BgpAnnounce>,
}
