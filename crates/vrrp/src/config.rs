//! What one VRRP instance is configured with, already typed; and keepalived's fix-ups of
//! contradictory settings (vrrp.c `vrrp_complete_instance`), which it applies with a warning
//! rather than refusing the configuration.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use crate::packet::{
    AddressList, Auth, Centiseconds, Version, IPV4_MULTICAST_GROUP, IPV6_MULTICAST_GROUP,
};

/// keepalived's `state`: what the instance wants to be at start.
///
/// Only an address owner (priority 255) starts as MASTER at once; any other `state MASTER`
/// instance starts as BACKUP and waits for its Master_Down_Timer like the others
/// (vrrp_scheduler.c `vrrp_init_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InitialState {
    #[default]
    Backup,
    Master,
}

/// Gratuitous ARP / unsolicited NA policy (keepalived's `garp_*` keywords and their defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GarpPolicy {
    /// `garp_master_delay`: a second burst this long after becoming MASTER; zero: none.
    pub master_delay: Duration,
    /// `garp_master_repeat`: messages per address in each burst.
    pub master_repeat: u32,
    /// `garp_master_refresh`: a burst this often while MASTER; `None`: never.
    pub master_refresh: Option<Duration>,
    /// `garp_master_refresh_repeat`.
    pub master_refresh_repeat: u32,
    /// `garp_lower_prio_delay`: after a lower priority advert, a second burst this much later.
    pub lower_prio_delay: Duration,
    /// `garp_lower_prio_repeat`: messages per address after a lower priority advert; zero: none.
    pub lower_prio_repeat: u32,
}

impl Default for GarpPolicy {
    fn default() -> Self {
        // keepalived: VRRP_GARP_DELAY, VRRP_GARP_REP, VRRP_GARP_REFRESH(_REP); the lower priority
        // values default to the master ones (vrrp.c `vrrp_complete_init`).
        GarpPolicy {
            master_delay: Duration::from_secs(5),
            master_repeat: 5,
            master_refresh: None,
            master_refresh_repeat: 1,
            lower_prio_delay: Duration::from_secs(5),
            lower_prio_repeat: 5,
        }
    }
}

/// The last known result of something tracked (`track_script`, `track_interface`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrackerStatus {
    /// No result yet (a script that has not run): an unweighted tracker holds the instance in
    /// Initialize until it reports.
    #[default]
    Pending,
    Up,
    Down,
}

/// One tracked object as an instance sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerConfig {
    pub name: String,
    /// 0: unweighted, a failure puts the instance in FAULT. Positive: added to the priority
    /// while up. Negative: added (so subtracted) while down.
    pub weight: i32,
    /// keepalived's `reverse`: up counts as down and down as up.
    pub reverse: bool,
    pub initial: TrackerStatus,
}

/// One `vrrp_instance`, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    /// The instance name, for log lines: "(VI_1) Entering MASTER STATE".
    pub name: String,
    pub vrid: u8,
    pub version: Version,
    /// 1..=255; 255 makes the instance the address owner.
    pub priority: u8,
    pub initial_state: InitialState,
    /// Our advertisement interval: whole seconds for VRRPv2, centiseconds for VRRPv3.
    pub advert_interval: Duration,
    /// False for `nopreempt`.
    pub preempt: bool,
    /// `preempt_delay`: how long a lower priority master is tolerated before preempting it.
    pub preempt_delay: Duration,
    /// VRRPv2 only.
    pub auth: Auth,
    /// `virtual_ipaddress`: the addresses the adverts list.
    pub virtual_addresses: AddressList,
    /// `virtual_ipaddress_excluded`: moved with the others but not advertised.
    pub excluded_addresses: Vec<IpAddr>,
    /// Our address in adverts (`unicast_src_ip`, `mcast_src_ip` or the interface's primary
    /// address); equal priorities are broken by comparing it.
    pub source_address: IpAddr,
    /// `unicast_peer`: when not empty, adverts go to each peer rather than to the group.
    pub unicast_peers: Vec<IpAddr>,
    /// `check_unicast_src`: drop unicast adverts from addresses not in `unicast_peers`.
    pub check_unicast_source: bool,
    /// `mcast_dst_ip`; `None`: 224.0.0.18 or ff02::12.
    pub multicast_group: Option<IpAddr>,
    pub garp: GarpPolicy,
    /// `lower_prio_no_advert`: a master does not answer a lower priority advert with its own.
    pub lower_prio_no_advert: bool,
    /// `higher_prio_send_advert`: a master sends one more advert before yielding.
    pub higher_prio_send_advert: bool,
    /// `down_timer_adverts`: adverts missed before a backup takes over (RFC: 3).
    pub down_timer_adverts: u32,
    pub trackers: Vec<TrackerConfig>,
    /// Whether the instance's interface is up when the instance is created.
    pub interface_up: bool,
}

impl InstanceConfig {
    /// keepalived's defaults: VRRPv2, priority 100, BACKUP, 1 s, preempt, no authentication.
    pub fn new(
        name: impl Into<String>,
        vrid: u8,
        source_address: IpAddr,
        virtual_addresses: AddressList,
    ) -> Self {
        InstanceConfig {
            name: name.into(),
            vrid,
            version: Version::V2,
            priority: 100,
            initial_state: InitialState::Backup,
            advert_interval: Duration::from_secs(1),
            preempt: true,
            preempt_delay: Duration::ZERO,
            auth: Auth::None,
            virtual_addresses,
            excluded_addresses: Vec::new(),
            source_address,
            unicast_peers: Vec::new(),
            check_unicast_source: false,
            multicast_group: None,
            garp: GarpPolicy::default(),
            lower_prio_no_advert: false,
            higher_prio_send_advert: false,
            down_timer_adverts: 3,
            trackers: Vec::new(),
            interface_up: true,
        }
    }

    pub fn is_address_owner(&self) -> bool {
        self.priority == 255
    }

    pub fn is_unicast(&self) -> bool {
        !self.unicast_peers.is_empty()
    }

    /// Where adverts go: the multicast group, or each unicast peer.
    pub fn advert_destinations(&self) -> Vec<IpAddr> {
        if self.is_unicast() {
            return self.unicast_peers.clone();
        }
        vec![self.multicast_group.unwrap_or(match self.source_address {
            IpAddr::V4(_) => IpAddr::V4(IPV4_MULTICAST_GROUP),
            IpAddr::V6(_) => IpAddr::V6(IPV6_MULTICAST_GROUP),
        })]
    }

    /// Applies keepalived's corrections of contradictory settings, returning one warning per
    /// correction. Idempotent: a normalized configuration gives no warnings.
    pub fn normalize(&mut self) -> Vec<ConfigWarning> {
        let mut warnings = Vec::new();
        if self.priority == 0 {
            // keepalived derives an unset priority from the state; 0 is never valid here.
            self.priority = if self.initial_state == InitialState::Master {
                255
            } else {
                100
            };
            warnings.push(ConfigWarning::PriorityZero { now: self.priority });
        }
        if self.version == Version::V3 && self.auth != Auth::None {
            warnings.push(ConfigWarning::AuthWithV3);
            self.auth = Auth::None;
        }
        if self.source_address.is_ipv6() && self.auth == Auth::Ah {
            warnings.push(ConfigWarning::AhWithIpv6);
            self.auth = Auth::None;
        }
        self.normalize_interval(&mut warnings);
        if self.is_address_owner() && !self.preempt {
            warnings.push(ConfigWarning::NopreemptWithOwner);
            self.preempt = true;
        }
        if self.initial_state == InitialState::Master {
            if !self.preempt {
                warnings.push(ConfigWarning::NopreemptWithStateMaster);
                self.preempt = true;
            }
            if !self.preempt_delay.is_zero() {
                warnings.push(ConfigWarning::PreemptDelayWithStateMaster);
                self.preempt_delay = Duration::ZERO;
            }
        }
        if !self.preempt && !self.preempt_delay.is_zero() {
            warnings.push(ConfigWarning::PreemptDelayWithNopreempt);
            self.preempt_delay = Duration::ZERO;
        }
        if self.down_timer_adverts == 0 {
            warnings.push(ConfigWarning::DownTimerAdvertsZero);
            self.down_timer_adverts = 3;
        }
        warnings
    }

    fn normalize_interval(&mut self, warnings: &mut Vec<ConfigWarning>) {
        let configured = self.advert_interval;
        let fixed = match self.version {
            Version::V2 => {
                let max = Duration::from_secs(255);
                if configured.is_zero() {
                    Duration::from_secs(1)
                } else if configured > max {
                    max
                } else {
                    // Round to the nearest second, never to zero (keepalived rounds half up).
                    let secs = (configured + Duration::from_millis(500)).as_secs().max(1);
                    Duration::from_secs(secs)
                }
            }
            Version::V3 => {
                let max = Centiseconds::MAX.to_duration();
                if configured.is_zero() {
                    Duration::from_millis(10)
                } else if configured > max {
                    max
                } else {
                    let cs = ((configured + Duration::from_millis(5)).as_millis() / 10).max(1);
                    Duration::from_millis(u64::try_from(cs).unwrap_or(1) * 10)
                }
            }
        };
        if fixed != configured {
            warnings.push(ConfigWarning::AdvertInterval {
                version: self.version,
                configured,
                now: fixed,
            });
            self.advert_interval = fixed;
        }
    }

    /// The interval in the units the advert carries it in.
    pub(crate) fn advert_int_secs(&self) -> u8 {
        u8::try_from(self.advert_interval.as_secs()).unwrap_or(u8::MAX)
    }

    pub(crate) fn advert_int_centis(&self) -> Centiseconds {
        let cs = self.advert_interval.as_millis() / 10;
        Centiseconds::new(u16::try_from(cs).unwrap_or(u16::MAX)).unwrap_or(Centiseconds::MAX)
    }
}

/// A setting keepalived would have corrected, with its wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigWarning {
    PriorityZero {
        now: u8,
    },
    AuthWithV3,
    AhWithIpv6,
    AdvertInterval {
        version: Version,
        configured: Duration,
        now: Duration,
    },
    NopreemptWithOwner,
    NopreemptWithStateMaster,
    PreemptDelayWithStateMaster,
    PreemptDelayWithNopreempt,
    DownTimerAdvertsZero,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigWarning::PriorityZero { now } => {
                write!(f, "priority 0 is reserved - using {now}")
            }
            ConfigWarning::AuthWithV3 => {
                f.write_str("VRRP version 3 does not support authentication. Ignoring.")
            }
            ConfigWarning::AhWithIpv6 => {
                f.write_str("Cannot use AH authentication with IPv6. ignoring")
            }
            ConfigWarning::AdvertInterval {
                version,
                configured,
                now,
            } => write!(
                f,
                "{version} advertisement interval {:.2}s is not valid, using {:.2}s",
                configured.as_secs_f64(),
                now.as_secs_f64()
            ),
            ConfigWarning::NopreemptWithOwner => {
                f.write_str("nopreempt is incompatible with priority 255. resetting nopreempt")
            }
            ConfigWarning::NopreemptWithStateMaster => f.write_str(
                "Warning - nopreempt will not work with initial state MASTER - clearing",
            ),
            ConfigWarning::PreemptDelayWithStateMaster => f.write_str(
                "Warning - preempt delay will not work with initial state MASTER - clearing",
            ),
            ConfigWarning::PreemptDelayWithNopreempt => {
                f.write_str("preempt_delay is incompatible with nopreempt mode - resetting")
            }
            ConfigWarning::DownTimerAdvertsZero => {
                f.write_str("down_timer_adverts 0 is not valid - using 3")
            }
        }
    }
}
