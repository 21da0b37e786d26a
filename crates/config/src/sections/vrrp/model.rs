//! Model types of the VRRP part: `vrrp_sync_group`, `vrrp_instance`, `vrrp_script`, `track_file`.
//!
//! Values are what keepalived runs after reading: its defaults where nothing was written, and its
//! corrections where a value was rejected (a rejected value is reported and left out). Settings
//! that keepalived takes from `global_defs` when an instance does not set them are `Option`s here
//! (`None` = the global value), so that the model says what the file says.

use crate::read::US_PER_SEC;
use crate::sections::global_defs::GlobalDefs;
use crate::sections::script::Script;
use crate::setting::Setting;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};

/// Everything of the VRRP part of a configuration, in file order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct VrrpConfig {
    pub sync_groups: Vec<SyncGroup>,
    pub instances: Vec<VrrpInstance>,
    pub scripts: Vec<VrrpScript>,
    pub track_files: Vec<TrackFile>,
    /// Other top-level VRRP keywords keepalived knows (`track_group`, `linkbeat_interfaces`,
    /// `interface_up_down_delays`), kept as written.
    pub other: Vec<Setting>,
    /// What reading keeps for the checks that need the whole file (sync group members named
    /// before their instance, unused scripts, settings that depend on `global_defs`) and for
    /// the fold of a 1.x `lvs_sync_daemon_interface` into `global_defs`. Emptied when reading
    /// ends (`fold_into_global`); not part of the model: never serialized, ignored by `==`.
    #[serde(skip)]
    #[doc(hidden)]
    pub pending: super::pending::Pending,
}

impl VrrpConfig {
    pub fn instance(&self, name: &str) -> Option<&VrrpInstance> {
        self.instances.iter().find(|i| i.name == name)
    }

    /// The first `vrrp_script` of that name (keepalived resolves names to the first).
    pub fn script(&self, name: &str) -> Option<&VrrpScript> {
        self.scripts.iter().find(|s| s.name == name)
    }

    pub fn track_file(&self, name: &str) -> Option<&TrackFile> {
        self.track_files.iter().find(|f| f.name == name)
    }

    /// The sync group an instance belongs to, if any.
    pub fn sync_group_of(&self, instance: &str) -> Option<&SyncGroup> {
        self.sync_groups
            .iter()
            .find(|g| g.group.iter().any(|n| n == instance))
    }

    /// The state an instance starts in, after keepalived's adjustments of the configured one:
    /// a MASTER that is not the address owner with AH authentication waits as BACKUP (it
    /// needs an advert for the AH sequence number), and in a sync group the MASTER members
    /// start as BACKUP unless every member is an address owner wanting MASTER
    /// (`vrrp.c: vrrp_complete_init`).
    pub fn start_state(&self, instance: &VrrpInstance) -> VrrpState {
        let wants = |i: &VrrpInstance| {
            let ah = i
                .authentication
                .as_ref()
                .is_some_and(|a| a.auth_type == AuthType::Ah);
            if i.state == VrrpState::Master && ah && i.priority != OWNER_PRIORITY {
                VrrpState::Backup
            } else {
                i.state
            }
        };
        let own = wants(instance);
        if own != VrrpState::Master {
            return own;
        }
        let Some(group) = self.sync_group_of(&instance.name) else {
            return own;
        };
        let has_backup = self
            .instances
            .iter()
            .filter(|i| group.group.contains(&i.name))
            .any(|m| wants(m) == VrrpState::Backup || m.priority != OWNER_PRIORITY);
        if has_backup {
            VrrpState::Backup
        } else {
            own
        }
    }
}

/// `state MASTER|BACKUP`: the state an instance starts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum VrrpState {
    Master,
    #[default]
    Backup,
}

impl VrrpState {
    pub fn as_str(self) -> &'static str {
        match self {
            VrrpState::Master => "MASTER",
            VrrpState::Backup => "BACKUP",
        }
    }
}

/// keepalived's default priority (RFC 5798 section 5.2.4).
pub const DEFAULT_PRIORITY: u8 = 100;
/// The priority of the address owner.
pub const OWNER_PRIORITY: u8 = 255;
/// keepalived's default advertisement interval.
pub const DEFAULT_ADVERT_INT_US: u64 = US_PER_SEC;
/// keepalived's default number of advert intervals before a backup takes over (the "3" of
/// RFC 5798's Master_Down_Interval).
pub const DEFAULT_DOWN_TIMER_ADVERTS: u32 = 3;
/// keepalived's default `vrrp_script` interval.
pub const DEFAULT_SCRIPT_INTERVAL_US: u64 = US_PER_SEC;

/// One `vrrp_instance NAME { ... }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VrrpInstance {
    pub name: String,
    /// The initial state. keepalived derives it from the priority when `state` is not given
    /// (255 = MASTER), and clears MASTER with AH authentication unless the priority is 255.
    pub state: VrrpState,
    /// `None` when the instance has no interface (unicast with `unicast_src_ip` only). Kept
    /// when the interface does not exist on the checked host (that is reported).
    pub interface: Option<String>,
    /// 1–255; 0 when missing (reported: keepalived then refuses the configuration).
    pub virtual_router_id: u8,
    /// 1–255. Without `priority`, keepalived uses 255 for `state MASTER` and 100 otherwise.
    pub priority: u8,
    /// The interval as written (default 1 s); see [`VrrpInstance::effective_advert_int_us`].
    pub advert_int_us: u64,
    /// `version 2|3`; `None` = `global_defs` `vrrp_version` (3 for an IPv6 instance).
    pub version: Option<u8>,
    /// `native_ipv6`: an IPv6 instance even without IPv6 addresses.
    pub native_ipv6: bool,
    pub nopreempt: bool,
    pub preempt_delay_us: u64,
    /// `None` when there is none, or when keepalived ignores it (VRRPv3, strict mode, no
    /// password, AH with IPv6).
    pub authentication: Option<Authentication>,
    pub virtual_ipaddress: Vec<VirtualAddress>,
    pub virtual_ipaddress_excluded: Vec<VirtualAddress>,
    /// The lines of `virtual_routes { }`, as written.
    pub virtual_routes: Vec<Setting>,
    /// The lines of `virtual_rules { }`, as written.
    pub virtual_rules: Vec<Setting>,
    pub track_interface: Vec<TrackInterface>,
    pub track_script: Vec<TrackScript>,
    pub track_file: Vec<TrackFileRef>,
    pub dont_track_primary: bool,
    /// `mcast_src_ip`: the source address of adverts (same field as `unicast_src_ip` in
    /// keepalived; the engine uses `unicast_src_ip` first).
    pub mcast_src_ip: Option<IpAddr>,
    pub unicast_src_ip: Option<IpAddr>,
    /// `mcast_dst_ip`; `None` = the global `vrrp_mcast_group4/6`.
    pub mcast_dst_ip: Option<IpAddr>,
    pub unicast_peer: Vec<UnicastPeer>,
    /// `unicast_ttl` (only with unicast peers).
    pub unicast_ttl: Option<u8>,
    /// The `garp_*` settings; `None` = the global `vrrp_garp_*` value.
    pub garp_master_delay_us: Option<u64>,
    pub garp_master_repeat: Option<u32>,
    pub garp_master_refresh_us: Option<u64>,
    pub garp_master_refresh_repeat: Option<u32>,
    pub garp_lower_prio_delay_us: Option<u64>,
    pub garp_lower_prio_repeat: Option<u32>,
    pub notify: NotifyScripts,
    /// `smtp_alert [BOOL]`; `None` = the global `smtp_alert_vrrp` / `smtp_alert`.
    pub smtp_alert: Option<bool>,
    pub use_vmac: Option<UseVmac>,
    pub vmac_xmit_base: bool,
    /// `skip_check_adv_addr` of the instance (the global one applies as well).
    pub skip_check_adv_addr: bool,
    /// `strict_mode [BOOL]`; `None` = the global `vrrp_strict`.
    pub strict_mode: Option<bool>,
    /// `accept` / `no_accept`; `None` = keepalived's default (accept unless strict mode).
    pub accept: Option<bool>,
    /// `check_unicast_src`: drop adverts whose source is not a `unicast_peer` (the global
    /// `vrrp_check_unicast_src` turns it on for every instance).
    pub check_unicast_src: bool,
    /// `lower_prio_no_advert [BOOL]`; `None` = the global `vrrp_lower_prio_no_advert`.
    pub lower_prio_no_advert: Option<bool>,
    /// `higher_prio_send_advert [BOOL]`; `None` = the global `vrrp_higher_prio_send_advert`.
    pub higher_prio_send_advert: Option<bool>,
    /// `down_timer_adverts N` (1–100); `None` = the global `vrrp_down_timer_adverts`.
    pub down_timer_adverts: Option<u32>,
    /// Other instance keywords keepalived knows (for example `track_process`, `use_ipvlan`,
    /// `promote_secondaries`), kept as written.
    pub other: Vec<Setting>,
}

impl VrrpInstance {
    /// An instance with keepalived's defaults.
    pub fn new(name: impl Into<String>) -> Self {
        VrrpInstance {
            name: name.into(),
            state: VrrpState::Backup,
            interface: None,
            virtual_router_id: 0,
            priority: DEFAULT_PRIORITY,
            advert_int_us: DEFAULT_ADVERT_INT_US,
            version: None,
            native_ipv6: false,
            nopreempt: false,
            preempt_delay_us: 0,
            authentication: None,
            virtual_ipaddress: Vec::new(),
            virtual_ipaddress_excluded: Vec::new(),
            virtual_routes: Vec::new(),
            virtual_rules: Vec::new(),
            track_interface: Vec::new(),
            track_script: Vec::new(),
            track_file: Vec::new(),
            dont_track_primary: false,
            mcast_src_ip: None,
            unicast_src_ip: None,
            mcast_dst_ip: None,
            unicast_peer: Vec::new(),
            unicast_ttl: None,
            garp_master_delay_us: None,
            garp_master_repeat: None,
            garp_master_refresh_us: None,
            garp_master_refresh_repeat: None,
            garp_lower_prio_delay_us: None,
            garp_lower_prio_repeat: None,
            notify: NotifyScripts::default(),
            smtp_alert: None,
            use_vmac: None,
            vmac_xmit_base: false,
            skip_check_adv_addr: false,
            strict_mode: None,
            accept: None,
            check_unicast_src: false,
            lower_prio_no_advert: None,
            higher_prio_send_advert: None,
            down_timer_adverts: None,
            other: Vec::new(),
        }
    }

    /// True for an IPv6 instance. keepalived takes the family from the first address it reads
    /// and rejects addresses of the other family, so any one of them tells.
    pub fn is_ipv6(&self) -> bool {
        self.native_ipv6
            || self
                .virtual_ipaddress
                .iter()
                .map(|a| a.address)
                .chain(self.mcast_src_ip)
                .chain(self.unicast_src_ip)
                .chain(self.mcast_dst_ip)
                .chain(self.unicast_peer.iter().map(|p| p.address))
                .any(|a| a.is_ipv6())
    }

    /// True when the instance sends adverts by unicast.
    pub fn is_unicast(&self) -> bool {
        !self.unicast_peer.is_empty()
    }

    /// The VRRP version: the instance's, 3 for IPv6, else the global default.
    pub fn effective_version(&self, global_default: u8) -> u8 {
        match self.version {
            Some(v) => v,
            None if self.is_ipv6() => 3,
            None => global_default,
        }
    }

    /// Strict mode: the instance's `strict_mode`, else the global `vrrp_strict`.
    pub fn effective_strict_mode(&self, global: &GlobalDefs) -> bool {
        self.strict_mode.unwrap_or(global.vrrp_strict)
    }

    /// Whether adverts from addresses other than the unicast peers are dropped.
    pub fn effective_check_unicast_src(&self, global: &GlobalDefs) -> bool {
        self.check_unicast_src || global.vrrp_check_unicast_src
    }

    /// Whether a master stays silent on receiving an advert of lower priority: the instance's
    /// value, else on in strict mode, else the global one (`vrrp_complete_instance`).
    pub fn effective_lower_prio_no_advert(&self, global: &GlobalDefs) -> bool {
        self.lower_prio_no_advert
            .unwrap_or(self.effective_strict_mode(global) || global.vrrp_lower_prio_no_advert)
    }

    /// Whether a master answers an advert of higher priority with one of its own: the
    /// instance's value, else off in strict mode, else the global one.
    pub fn effective_higher_prio_send_advert(&self, global: &GlobalDefs) -> bool {
        self.higher_prio_send_advert
            .unwrap_or(!self.effective_strict_mode(global) && global.vrrp_higher_prio_send_advert)
    }

    /// How many advert intervals a backup waits for the master: the instance's value, else
    /// keepalived's default in strict mode (which allows no other), else the global one.
    pub fn effective_down_timer_adverts(&self, global: &GlobalDefs) -> u32 {
        match self.down_timer_adverts {
            Some(n) => n,
            None if self.effective_strict_mode(global) => DEFAULT_DOWN_TIMER_ADVERTS,
            None => global.vrrp_down_timer_adverts,
        }
    }

    /// The advertisement interval keepalived uses: whole seconds for VRRPv2 (rounded, at most
    /// 255 s), centiseconds for VRRPv3 (rounded, at most 40.95 s).
    pub fn effective_advert_int_us(&self, version: u8) -> u64 {
        let unit = if version == 2 {
            US_PER_SEC
        } else {
            US_PER_SEC / 100
        };
        let max = if version == 2 {
            255 * unit
        } else {
            4095 * unit
        };
        let v = self.advert_int_us;
        if v >= max + unit {
            max
        } else {
            (((v + unit / 2) / unit) * unit).clamp(unit, max)
        }
    }
}

/// `authentication { auth_type PASS|AH  auth_pass SECRET }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authentication {
    pub auth_type: AuthType,
    /// At most 8 bytes (keepalived truncates longer ones).
    pub auth_pass: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AuthType {
    Pass,
    Ah,
}

impl AuthType {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::Pass => "PASS",
            AuthType::Ah => "AH",
        }
    }
}

/// One line of `virtual_ipaddress` / `virtual_ipaddress_excluded`:
/// `ADDR[/PREFIX] [dev IF] [brd ADDR|+|-] [scope SCOPE] [label LABEL] [peer ADDR] [OPTIONS]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualAddress {
    pub address: IpAddr,
    /// Default /32 or /128 (also with a `peer`).
    pub prefix: u8,
    pub dev: Option<String>,
    /// IPv4 only.
    pub label: Option<String>,
    /// IPv4 only: a scope name (`host`, `link`, `site`, `global`, `nowhere`) or number.
    pub scope: Option<String>,
    /// IPv4 only.
    pub broadcast: Option<Broadcast>,
    pub peer: Option<IpAddr>,
    /// The other options as written: `home`, `-nodad`, `mngtmpaddr`, `noprefixroute`,
    /// `autojoin`, `no_track`, `use_vmac`, `preferred_lft VALUE`.
    pub options: Vec<String>,
}

impl VirtualAddress {
    pub fn new(address: IpAddr) -> Self {
        VirtualAddress {
            address,
            prefix: host_prefix(address),
            dev: None,
            label: None,
            scope: None,
            broadcast: None,
            peer: None,
            options: Vec::new(),
        }
    }
}

/// 32 for IPv4, 128 for IPv6.
pub fn host_prefix(a: IpAddr) -> u8 {
    if a.is_ipv4() {
        32
    } else {
        128
    }
}

/// `brd ADDR`, `brd +` (host bits set) or `brd -` (host bits clear).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Broadcast {
    Plus,
    Minus,
    Address(Ipv4Addr),
}

/// One line of `unicast_peer { ADDR [min_ttl N] [max_ttl N] }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnicastPeer {
    pub address: IpAddr,
    pub min_ttl: Option<u8>,
    pub max_ttl: Option<u8>,
}

/// One line of `track_interface { IF [weight W [reverse]] }`; weight 0 = fault when down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInterface {
    pub name: String,
    /// -253..=253.
    pub weight: i32,
    pub reverse: bool,
}

/// One line of `track_script { NAME [weight W [reverse|noreverse]] }`. `None` values are the
/// `vrrp_script`'s own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackScript {
    pub name: String,
    pub weight: Option<i32>,
    pub reverse: Option<bool>,
}

/// One line of `track_file { NAME [weight W [reverse|noreverse]] }`. `None` values are the
/// `track_file`'s own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackFileRef {
    pub name: String,
    pub weight: Option<i32>,
    pub reverse: Option<bool>,
}

/// `use_vmac [IFNAME] [MAC]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UseVmac {
    pub interface: Option<String>,
    /// As written, for example `02:00:5e:00:01:` (the VRID completes it) or a full address.
    pub mac: Option<String>,
}

/// `notify`, `notify_master`, `notify_backup`, `notify_fault`, `notify_stop`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyScripts {
    /// Run on every change with `GROUP|INSTANCE NAME STATE PRIORITY` appended.
    pub notify: Option<Script>,
    pub master: Option<Script>,
    pub backup: Option<Script>,
    pub fault: Option<Script>,
    pub stop: Option<Script>,
}

impl NotifyScripts {
    /// The slot of a notify keyword.
    pub fn slot(&mut self, keyword: &str) -> Option<&mut Option<Script>> {
        match keyword {
            "notify" => Some(&mut self.notify),
            "notify_master" => Some(&mut self.master),
            "notify_backup" => Some(&mut self.backup),
            "notify_fault" => Some(&mut self.fault),
            "notify_stop" => Some(&mut self.stop),
            _ => None,
        }
    }

    /// The scripts with their keywords, in writing order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Script)> {
        [
            ("notify", &self.notify),
            ("notify_master", &self.master),
            ("notify_backup", &self.backup),
            ("notify_fault", &self.fault),
            ("notify_stop", &self.stop),
        ]
        .into_iter()
        .filter_map(|(k, s)| s.as_ref().map(|s| (k, s)))
    }
}

/// `vrrp_sync_group NAME { group { INSTANCE... } ... }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncGroup {
    pub name: String,
    /// The member instances that exist and belong to no earlier group.
    pub group: Vec<String>,
    pub notify: NotifyScripts,
    pub track_interface: Vec<TrackInterface>,
    pub track_script: Vec<TrackScript>,
    pub track_file: Vec<TrackFileRef>,
    /// `sync_group_tracking_weight` (or the deprecated `global_tracking`).
    pub sync_group_tracking_weight: bool,
    pub smtp_alert: Option<bool>,
    /// Other keywords keepalived knows (`track_process`, `track_bfd`,
    /// `notify_priority_changes`), kept as written.
    pub other: Vec<Setting>,
}

impl SyncGroup {
    pub fn new(name: impl Into<String>) -> Self {
        SyncGroup {
            name: name.into(),
            group: Vec::new(),
            notify: NotifyScripts::default(),
            track_interface: Vec::new(),
            track_script: Vec::new(),
            track_file: Vec::new(),
            sync_group_tracking_weight: false,
            smtp_alert: None,
            other: Vec::new(),
        }
    }
}

/// `vrrp_script NAME { ... }`: a check whose result changes the priority or faults instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpScript {
    pub name: String,
    /// `script`; its `user`/`group` come from the `user` keyword.
    pub script: Script,
    pub interval_us: u64,
    /// `None` = the interval.
    pub timeout_us: Option<u64>,
    /// -253..=253; 0 = fault on failure.
    pub weight: i32,
    pub weight_reverse: bool,
    pub rise: u32,
    pub fall: u32,
    /// `init_fail`: start in the failed state.
    pub init_fail: bool,
}

impl VrrpScript {
    pub fn new(name: impl Into<String>) -> Self {
        VrrpScript {
            name: name.into(),
            script: Script {
                argv: Vec::new(),
                user: None,
                group: None,
            },
            interval_us: DEFAULT_SCRIPT_INTERVAL_US,
            timeout_us: None,
            weight: 0,
            weight_reverse: false,
            rise: 1,
            fall: 1,
            init_fail: false,
        }
    }
}

/// `track_file NAME { file PATH  weight W [reverse]  init_file [VALUE] [overwrite] }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackFile {
    pub name: String,
    pub file: String,
    /// -254..=254, default 1.
    pub weight: i32,
    pub weight_reverse: bool,
    pub init_file: Option<TrackFileInit>,
}

/// `init_file [VALUE] [overwrite]`: create the file with VALUE (default 0) at start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackFileInit {
    pub value: i32,
    pub overwrite: bool,
}
