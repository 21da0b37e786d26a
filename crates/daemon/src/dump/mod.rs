//! keepalived's state dumps, so that tooling written for keepalived keeps working: SIGUSR1
//! writes the data dump (`keepalived.data`), SIGUSR2 the VRRP statistics (`keepalived.stats`)
//! and keepalived's JSON signal (`SIGRTMIN+2`) the JSON dump (`keepalived.json`), in keepalived
//! 2.2.7's layout (vrrp_print.c, vrrp_data.c, vrrp_json.c) for the parts halb has.
//!
//! The renderers are pure: the VRRP shell gathers a [`DumpInput`] and [`write`] turns it into
//! a file. keepalived 2.2.7 has no keyword for these paths; it writes them in `$TMPDIR` when
//! that is an absolute path, else in `/tmp` ([`dump_dir`]).

mod data;
mod json;
mod stats;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use halb_config::sections::global_defs::GlobalDefs;
use halb_vrrp::packet::Auth;
use halb_vrrp::{GarpPolicy, State, Stats};

pub use data::render_data;
pub use json::render_json;
pub use stats::render_stats;

/// Which dump a signal asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpKind {
    /// SIGUSR1: `keepalived.data`.
    Data,
    /// SIGUSR2: `keepalived.stats`.
    Stats,
    /// `SIGRTMIN+2` (`keepalived --signum=JSON`): `keepalived.json`.
    Json,
}

impl DumpKind {
    /// keepalived's file name.
    pub fn file_name(self) -> &'static str {
        match self {
            DumpKind::Data => "keepalived.data",
            DumpKind::Stats => "keepalived.stats",
            DumpKind::Json => "keepalived.json",
        }
    }

    /// keepalived's log line (main.c / vrrp_daemon.c), without the process id.
    pub fn log_line(self) -> &'static str {
        match self {
            DumpKind::Data => "Printing VRRP data on signal",
            DumpKind::Stats => "Printing VRRP stats on signal",
            DumpKind::Json => "Printing VRRP as json on signal",
        }
    }
}

/// keepalived's `tmp_dir`: `$TMPDIR` when it is an absolute path, else `/tmp` (utils.c
/// `set_tmp_dir`).
pub fn dump_dir(tmpdir: Option<&std::ffi::OsStr>) -> PathBuf {
    match tmpdir {
        Some(dir) if Path::new(dir).is_absolute() => PathBuf::from(dir),
        _ => PathBuf::from("/tmp"),
    }
}

/// Everything the three dumps show.
#[derive(Debug, Clone)]
pub struct DumpInput {
    pub global: GlobalDefs,
    /// `router_id`, or the host name keepalived falls back to.
    pub router_id: String,
    pub instances: Vec<InstanceDump>,
    pub sync_groups: Vec<SyncGroupDump>,
}

/// One VRRP instance as the dumps show it.
#[derive(Debug, Clone)]
pub struct InstanceDump {
    pub name: String,
    /// 2 or 3.
    pub version: u8,
    pub sync_group: Option<String>,
    pub state: State,
    /// What the instance is heading for; the state itself once it has settled.
    pub wantstate: State,
    /// The master last heard (address, priority), shown for a BACKUP.
    pub master: Option<(IpAddr, u8)>,
    pub master_adver_int: Duration,
    pub last_transition: SystemTime,
    /// When the instance's next timer fires; `None`: no timer.
    pub read_timeout: Option<SystemTime>,
    pub master_down_timer: Duration,
    pub interface: String,
    pub source_address: IpAddr,
    /// `None` for a unicast instance.
    pub multicast_group: Option<IpAddr>,
    pub unicast_peers: Vec<IpAddr>,
    pub check_unicast_source: bool,
    pub garp: GarpPolicy,
    pub down_timer_adverts: u32,
    pub lower_prio_no_advert: bool,
    pub higher_prio_send_advert: bool,
    pub vrid: u8,
    pub priority: u8,
    pub effective_priority: u8,
    pub advert_interval: Duration,
    pub preempt: bool,
    pub preempt_delay: Duration,
    pub auth: Auth,
    /// keepalived's text for each address (`format_ipaddress`), see [`format_vip`].
    pub vips: Vec<String>,
    pub excluded_vips: Vec<String>,
    /// Whether the addresses are on the interface now (MASTER).
    pub vips_set: bool,
    pub stats: Stats,
}

/// One `vrrp_sync_group`.
#[derive(Debug, Clone)]
pub struct SyncGroupDump {
    pub name: String,
    pub state: State,
    pub members: Vec<String>,
    pub members_fault: usize,
    pub members_init: usize,
}

/// keepalived's text for a virtual address (vrrp_ipaddress.c `format_ipaddress`): the prefix
/// only when it is not a host address, then `dev`, `scope`, `label`, and `set` while it is on
/// the interface.
pub fn format_vip(vip: &halb_sys::VirtualAddress, interface: &str, set: bool) -> String {
    let mut out = vip.address.to_string();
    let full = if vip.address.is_ipv4() { 32 } else { 128 };
    if vip.prefix_len != full {
        out.push_str(&format!("/{}", vip.prefix_len));
    }
    out.push_str(&format!(" dev {interface}"));
    out.push_str(&format!(" scope {}", scope_name(vip.scope.unwrap_or(0))));
    if let Some(label) = &vip.label {
        out.push_str(&format!(" label {label}"));
    }
    if let Some(peer) = vip.peer {
        out.push_str(&format!(" peer {peer}/{}", vip.prefix_len));
    }
    if vip.address.is_ipv6() {
        match vip.preferred_lifetime {
            Some(0) => out.push_str(" deprecated"),
            None => out.push_str(" preferred_lft forever"),
            Some(n) => out.push_str(&format!(" preferred_lft {n}")),
        }
    }
    if set {
        out.push_str(" set");
    }
    out
}

/// iproute2's names for `RT_SCOPE_*` (rt_names.c), as keepalived prints them.
fn scope_name(scope: u8) -> String {
    match scope {
        0 => "global".into(),
        200 => "site".into(),
        253 => "link".into(),
        254 => "host".into(),
        255 => "nowhere".into(),
        n => n.to_string(),
    }
}

/// keepalived's numbers for states (vrrp.h `VRRP_STATE_*`), used by the JSON dump.
fn state_number(state: State) -> u8 {
    match state {
        State::Initialize => 0,
        State::Backup => 1,
        State::Master => 2,
        State::Fault => 3,
        // VRRP_STATE_DELETED; keepalived's STOP is not a state an instance dumps.
        State::Stopped => 97,
    }
}

/// Writes the dump `kind` of `input` into `dir`, mode 0600 as keepalived's `fopen_safe` does;
/// returns the path written.
pub fn write(dir: &Path, kind: DumpKind, input: &DumpInput) -> anyhow::Result<PathBuf> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let text = match kind {
        DumpKind::Data => render_data(input),
        DumpKind::Stats => render_stats(input),
        DumpKind::Json => render_json(input),
    };
    let path = dir.join(kind.file_name());
    // Written beside the target and renamed into place: a reader never sees half a dump,
    // and a symbolic link planted at the path in a world-writable /tmp is replaced, not
    // followed.
    let staged = dir.join(format!(".{}.{}", kind.file_name(), std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&staged)
        .with_context(|| format!("creating {}", staged.display()))?;
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", staged.display()))
        .and_then(|()| {
            std::fs::rename(&staged, &path)
                .with_context(|| format!("moving {} to {}", staged.display(), path.display()))
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&staged);
    }
    written.map(|()| path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_dir_is_tmpdir_only_when_absolute() {
        assert_eq!(dump_dir(None), PathBuf::from("/tmp"));
        assert_eq!(dump_dir(Some("relative".as_ref())), PathBuf::from("/tmp"));
        assert_eq!(
            dump_dir(Some("/var/tmp".as_ref())),
            PathBuf::from("/var/tmp")
        );
    }

    fn seed_instance() -> InstanceDump {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_651_710);
        InstanceDump {
            name: "INT".into(),
            version: 2,
            sync_group: Some("VG1".into()),
            state: State::Master,
            wantstate: State::Master,
            master: None,
            master_adver_int: Duration::from_secs(1),
            last_transition: now,
            read_timeout: Some(now + Duration::from_secs(1)),
            master_down_timer: Duration::from_micros(3_609_375),
            interface: "eth0".into(),
            source_address: "192.168.66.250".parse().unwrap(),
            multicast_group: Some("224.0.0.18".parse().unwrap()),
            unicast_peers: Vec::new(),
            check_unicast_source: false,
            garp: GarpPolicy::default(),
            down_timer_adverts: 3,
            lower_prio_no_advert: false,
            higher_prio_send_advert: false,
            vrid: 200,
            priority: 100,
            effective_priority: 100,
            advert_interval: Duration::from_secs(1),
            preempt: true,
            preempt_delay: Duration::ZERO,
            auth: Auth::pass("lvs50test"),
            vips: vec!["192.168.66.251 dev eth0 scope global set".into()],
            excluded_vips: Vec::new(),
            vips_set: true,
            stats: Stats {
                adverts_sent: 2,
                became_master: 1,
                ..Stats::default()
            },
        }
    }

    fn seed_input() -> DumpInput {
        DumpInput {
            global: GlobalDefs::default(),
            router_id: "lvs50".into(),
            instances: vec![seed_instance()],
            sync_groups: vec![SyncGroupDump {
                name: "VG1".into(),
                state: State::Master,
                members: vec!["INT".into()],
                members_fault: 0,
                members_init: 0,
            }],
        }
    }

    /// keepalived 2.2.7's `keepalived.stats` for the seed's master, byte for byte.
    #[test]
    fn stats_are_keepalived_s_layout() {
        let expected = "VRRP Instance: INT\n  Advertisements:\n    Received: 0\n    Sent: 2\n  \
            Became master: 1\n  Released master: 0\n  Packet Errors:\n    Length: 0\n    TTL: 0\n    \
            Invalid Type: 0\n    Advertisement Interval: 0\n    Address List: 0\n  \
            Authentication Errors:\n    Invalid Type: 0\n    Type Mismatch: 0\n    Failure: 0\n  \
            Priority Zero:\n    Received: 0\n    Sent: 0\n";
        assert_eq!(render_stats(&seed_input()), expected);
    }

    /// keepalived 2.2.7's `keepalived.json` for the seed's master, less the keys halb does not
    /// have (`accept`).
    #[test]
    fn json_is_keepalived_s_layout() {
        let expected = r#"[{"data":{"iname":"INT","dont_track_primary":0,"skip_check_adv_addr":0,"strict_mode":0,"vmac_ifname":"","ifp_ifname":"eth0","master_priority":0,"last_transition":1796651710.000000,"garp_delay":5,"garp_refresh":0,"garp_rep":5,"garp_refresh_rep":1,"garp_lower_prio_delay":5,"garp_lower_prio_rep":5,"lower_prio_no_advert":0,"higher_prio_send_advert":0,"vrid":200,"base_priority":100,"effective_priority":100,"vipset":true,"promote_secondaries":false,"adver_int":1,"master_adver_int":1,"nopreempt":false,"preempt_delay":0,"state":2,"wantstate":2,"version":2,"smtp_alert":false,"notify_deleted":false,"vips":["192.168.66.251 dev eth0 scope global set"],"auth_type":1,"auth_data":"lvs50tes"},"stats":{"advert_rcvd":0,"advert_sent":2,"become_master":1,"release_master":0,"packet_len_err":0,"advert_interval_err":0,"ip_ttl_err":0,"invalid_type_rcvd":0,"addr_list_err":0,"invalid_authtype":0,"authtype_mismatch":0,"auth_failure":0,"pri_zero_rcvd":0,"pri_zero_sent":0}}]"#;
        assert_eq!(render_json(&seed_input()), expected);
    }

    #[test]
    fn data_has_keepalived_s_sections_and_instance_lines() {
        let text = render_data(&seed_input());
        for line in [
            "------< Global definitions >------\n Router ID = lvs50\n",
            "------< VRRP Topology >------\n VRRP Instance = INT\n   VRRP Version = 2\n   Sync group = VG1\n   State = MASTER\n   Flags: none\n   Wantstate = MASTER\n",
            "   Master down timer = 3609375 usecs\n   Interface = eth0\n   Using src_ip = 192.168.66.250\n   Multicast address 224.0.0.18\n",
            "   Authentication type = SIMPLE_PASSWORD\n   Password = lvs50tes\n   Virtual IP (1):\n     192.168.66.251 dev eth0 scope global set\n",
            "------< VRRP Sync groups >------\n VRRP Sync Group = VG1, MASTER\n   Num member fault 0, num member init 0\n   VRRP member instances :\n     INT\n",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
    }

    #[test]
    fn vips_print_as_keepalived_does() {
        let host = halb_sys::VirtualAddress::new("192.168.66.251".parse().unwrap(), 32);
        assert_eq!(
            format_vip(&host, "eth0", true),
            "192.168.66.251 dev eth0 scope global set"
        );
        let net = halb_sys::VirtualAddress::new("10.0.0.1".parse().unwrap(), 24);
        assert_eq!(
            format_vip(&net, "eth1", false),
            "10.0.0.1/24 dev eth1 scope global"
        );
    }
}
