//! One VRRP instance (`vrrp_instance`): the RFC 3768 / RFC 5798 state machine as keepalived 2.2
//! runs it, sans-IO. Inputs are adverts, timeouts, interface and tracker changes, each with the
//! current time; outputs are [`Action`]s polled with [`Instance::poll_action`] and the next
//! deadline from [`Instance::poll_timeout`].
//!
//! Where keepalived and the RFCs differ, keepalived wins (halb must interoperate with it); the
//! comments name the keepalived function each rule comes from.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::{ConfigWarning, InitialState, InstanceConfig};
use crate::events::{Action, Reason, State, StateChange};
use crate::packet::{Advert, Version, VersionFields};
use crate::stats::Stats;
use crate::timers;

mod receive;
mod reconfigure;
mod sync_hooks;
mod tracking;

pub use reconfigure::AddressChanges;
use sync_hooks::SyncMembership;
use tracking::Tracker;

/// What the instance would be if it were alone (keepalived's `wantstate`): a sync group holds
/// a member that wants MASTER in BACKUP until every member wants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    Backup,
    Master,
    Fault,
}

/// One VRRP instance.
#[derive(Debug)]
pub struct Instance {
    config: InstanceConfig,
    config_warnings: Vec<ConfigWarning>,
    state: State,
    want: Want,
    base_priority: u8,
    effective_priority: u8,
    /// Our interval as a backup uses it: VRRPv3 backups adopt the master's.
    master_adver_int: Duration,
    /// keepalived's `sands`: Master_Down_Timer in BACKUP, the next advert in MASTER, the
    /// takeover instant of an address owner in Initialize.
    deadline: Option<Instant>,
    /// keepalived's `preempt_time`: until then a lower priority master is tolerated.
    preempt_until: Option<Instant>,
    garp_master_delay_at: Option<Instant>,
    garp_lower_prio_at: Option<Instant>,
    garp_refresh_at: Option<Instant>,
    vips_set: bool,
    interface_up: bool,
    trackers: Vec<Tracker>,
    sync: Option<SyncMembership>,
    /// Why the next move to MASTER will happen (RFC 5798 MIB `vrrpv3StatisticsMasterReason`).
    next_master_reason: Reason,
    /// The last master heard (address, priority), for status pages.
    last_master: Option<(IpAddr, u8)>,
    stats: Stats,
    actions: VecDeque<Action>,
}

impl Instance {
    /// Creates the instance and starts it as keepalived's `vrrp_init_state` does: FAULT when
    /// the interface or an unweighted tracker is down, Initialize while an unweighted tracker
    /// has not reported, MASTER at once (the first timeout, due `now`) for an address owner
    /// with `state MASTER`, BACKUP otherwise.
    pub fn new(mut config: InstanceConfig, now: Instant) -> Instance {
        let config_warnings = config.normalize();
        let trackers = config.trackers.iter().map(Tracker::new).collect();
        let want = match config.initial_state {
            InitialState::Master => Want::Master,
            InitialState::Backup => Want::Backup,
        };
        let mut instance = Instance {
            state: State::Initialize,
            want,
            base_priority: config.priority,
            effective_priority: config.priority,
            master_adver_int: config.advert_interval,
            deadline: None,
            preempt_until: None,
            garp_master_delay_at: None,
            garp_lower_prio_at: None,
            garp_refresh_at: None,
            vips_set: false,
            interface_up: config.interface_up,
            trackers,
            sync: None,
            next_master_reason: Reason::MasterDown,
            last_master: None,
            stats: Stats::default(),
            actions: VecDeque::new(),
            config,
            config_warnings,
        };
        instance.effective_priority = instance.computed_priority();
        instance.start(now);
        instance
    }

    fn start(&mut self, now: Instant) {
        if let Some(reason) = self.fault_reason() {
            self.want = Want::Fault;
            self.enter_fault(reason);
        } else if self.is_pending() {
            // keepalived shows FAULT here without notifying; halb says what it is.
        } else if self.want == Want::Master && self.config.is_address_owner() {
            // keepalived sets a 1 µs Master_Down_Timer so that the owner takes over through the
            // usual path (and the sync group check); a deadline of `now` is the same.
            self.next_master_reason = Reason::AddressOwner;
            self.deadline = Some(now);
        } else {
            let down = self.master_down_interval();
            self.enter_backup(now, Reason::Startup, down);
        }
    }

    // ----- queries -----

    pub fn state(&self) -> State {
        self.state
    }

    pub fn effective_priority(&self) -> u8 {
        self.effective_priority
    }

    pub fn base_priority(&self) -> u8 {
        self.base_priority
    }

    pub fn config(&self) -> &InstanceConfig {
        &self.config
    }

    /// What `InstanceConfig::normalize` corrected when the instance was created.
    pub fn config_warnings(&self) -> &[ConfigWarning] {
        &self.config_warnings
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The interval a backup is timing the master with (VRRPv3: the master's).
    pub fn master_adver_int(&self) -> Duration {
        self.master_adver_int
    }

    /// The last master heard: its address and priority.
    pub fn last_master(&self) -> Option<(IpAddr, u8)> {
        self.last_master
    }

    /// Whether the instance's own interface or trackers put it in FAULT (not its sync group).
    pub fn is_faulted(&self) -> bool {
        self.fault_reason().is_some()
    }

    /// Skew_Time with the current priority and interval.
    pub fn skew_time(&self) -> Duration {
        timers::skew_time(
            self.config.version,
            self.effective_priority,
            self.master_adver_int,
        )
    }

    /// Master_Down_Interval with the current priority and interval.
    pub fn master_down_interval(&self) -> Duration {
        timers::master_down_interval(
            self.config.version,
            self.effective_priority,
            self.master_adver_int,
            self.config.down_timer_adverts,
        )
    }

    // ----- polling -----

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The earliest instant [`Instance::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.deadline,
            self.garp_master_delay_at,
            self.garp_lower_prio_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ----- inputs -----

    /// Runs whatever timers are due at `now`; calling it early does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Stopped {
            return;
        }
        if take_due(&mut self.garp_master_delay_at, now) && self.vips_set {
            // vrrp_scheduler.c `vrrp_gratuitous_arp_thread`: the second burst.
            self.push_garp(self.config.garp.master_repeat);
        }
        if take_due(&mut self.garp_lower_prio_at, now) && self.vips_set {
            self.push_garp(self.config.garp.lower_prio_repeat);
        }
        if !take_due(&mut self.deadline, now) {
            return;
        }
        match self.state {
            State::Initialize | State::Backup => {
                // vrrp_scheduler.c `vrrp_dispatcher_read_timeout` → `vrrp_goto_master`.
                let reason = self.next_master_reason.clone();
                self.want = Want::Master;
                self.goto_master(now, reason);
            }
            State::Master => self.master_tx(now),
            State::Fault | State::Stopped => {}
        }
    }

    /// Takes over the MASTER role of the previous process on this host (an upgrade of the
    /// daemon): the addresses are already here and peers see this host as master already, so
    /// the instance advertises at once, with no Master_Down_Interval as BACKUP first and no
    /// gratuitous ARPs. Does nothing unless the instance is BACKUP (a fault or a pending
    /// tracker wins).
    pub fn resume_master(&mut self, now: Instant) {
        if self.state != State::Backup {
            return;
        }
        self.want = Want::Master;
        self.master_adver_int = self.config.advert_interval;
        self.send_advert(self.effective_priority);
        self.transition(State::Master, Reason::HandedOver);
        self.stats.became_master += 1;
        self.add_vips();
        self.garp_refresh_at = self.config.garp.master_refresh.map(|every| now + every);
        self.deadline = Some(now + self.config.advert_interval);
    }

    /// Stops the instance; a MASTER first sends a priority 0 advert so that a backup takes over
    /// after Skew_Time rather than Master_Down_Interval, and removes its addresses
    /// (vrrp.c `restore_vrrp_interfaces`).
    pub fn shutdown(&mut self, _now: Instant) {
        if self.state == State::Stopped {
            return;
        }
        if self.state == State::Master {
            self.send_advert(0);
            self.remove_vips();
        }
        self.transition(State::Stopped, Reason::Shutdown);
        self.deadline = None;
        self.garp_master_delay_at = None;
        self.garp_lower_prio_at = None;
        self.garp_refresh_at = None;
        self.preempt_until = None;
    }

    // ----- transitions -----

    /// vrrp.c `vrrp_state_goto_master`, with the sync group gate.
    fn goto_master(&mut self, now: Instant, reason: Reason) {
        if let Some(sync) = &mut self.sync {
            if !sync.group_is_master {
                // vrrp_sync.c `vrrp_sync_can_goto_master` said no: stay BACKUP, wanting MASTER,
                // and give the other members a Master_Down_Interval to want it too.
                sync.master_request = true;
                self.deadline = Some(now + self.master_down_interval());
                if self.state == State::Initialize {
                    self.transition(State::Backup, Reason::Startup);
                }
                return;
            }
        }
        self.become_master(now, reason);
    }

    /// vrrp.c `vrrp_state_master_tx` for the first advert and `vrrp_state_become_master`.
    fn become_master(&mut self, now: Instant, reason: Reason) {
        self.want = Want::Master;
        // RFC 5798 §6.4.3: a master advertises its own interval.
        self.master_adver_int = self.config.advert_interval;
        // The advert goes first so that the old master drops the addresses before our GARPs.
        self.send_advert(self.effective_priority);
        self.transition(State::Master, reason);
        self.stats.became_master += 1;
        self.add_vips();
        let garp = self.config.garp.clone();
        self.push_garp(garp.master_repeat);
        self.garp_refresh_at = garp.master_refresh.map(|every| now + every);
        self.garp_master_delay_at = (!garp.master_delay.is_zero()).then(|| now + garp.master_delay);
        self.deadline = Some(now + self.config.advert_interval);
    }

    /// vrrp.c `vrrp_state_master_tx` once MASTER: the periodic advert, and the GARP refresh,
    /// which keepalived checks only when it sends an advert.
    fn master_tx(&mut self, now: Instant) {
        self.send_advert(self.effective_priority);
        if let (Some(at), Some(every)) = (self.garp_refresh_at, self.config.garp.master_refresh) {
            if now >= at {
                self.push_garp(self.config.garp.master_refresh_repeat);
                self.garp_refresh_at = Some(now + every);
            }
        }
        self.deadline = Some(now + self.config.advert_interval);
    }

    /// vrrp.c `vrrp_state_leave_master`: to BACKUP (a better master) or FAULT (which sends a
    /// priority 0 advert so that a backup takes over at once).
    fn leave_master(&mut self, now: Instant, to: State, reason: Reason) {
        if to == State::Fault {
            self.send_advert(0);
        }
        self.remove_vips();
        self.transition(to, reason);
        self.stats.released_master += 1;
        if to == State::Backup {
            self.preempt_until = None;
            self.deadline = Some(now + self.master_down_interval());
        } else {
            self.deadline = None;
        }
    }

    /// vrrp.c `vrrp_state_leave_fault` towards BACKUP, with the Master_Down_Timer to use.
    fn enter_backup(&mut self, now: Instant, reason: Reason, master_down: Duration) {
        self.master_adver_int = self.config.advert_interval;
        self.preempt_until = None;
        self.next_master_reason = Reason::MasterDown;
        if self.state != State::Backup {
            self.transition(State::Backup, reason);
        }
        self.deadline = Some(now + master_down);
    }

    fn enter_fault(&mut self, reason: Reason) {
        if self.state != State::Fault {
            self.transition(State::Fault, reason);
        }
        self.deadline = None;
    }

    // ----- outputs -----

    fn transition(&mut self, to: State, reason: Reason) {
        let from = self.state;
        self.state = to;
        self.actions
            .push_back(Action::StateChange(StateChange { from, to, reason }));
    }

    fn build_advert(&self, priority: u8) -> Advert {
        let fields = match self.config.version {
            Version::V2 => VersionFields::V2 {
                auth: self.config.auth,
                advert_int_secs: self.config.advert_int_secs(),
            },
            Version::V3 => VersionFields::V3 {
                max_advert_int: self.config.advert_int_centis(),
            },
        };
        Advert {
            vrid: self.config.vrid,
            priority,
            fields,
            addresses: self.config.virtual_addresses.clone(),
        }
    }

    fn send_advert(&mut self, priority: u8) {
        let advert = self.build_advert(priority);
        let src = self.config.source_address;
        for dst in self.config.advert_destinations() {
            self.actions.push_back(Action::SendAdvert {
                advert: advert.clone(),
                src,
                dst,
            });
        }
        self.stats.adverts_sent += 1;
        if priority == 0 {
            self.stats.priority_zero_sent += 1;
        }
    }

    fn all_addresses(&self) -> Vec<IpAddr> {
        self.config
            .virtual_addresses
            .iter()
            .chain(self.config.excluded_addresses.iter().copied())
            .collect()
    }

    fn add_vips(&mut self) {
        self.vips_set = true;
        self.actions.push_back(Action::AddVips {
            addresses: self.all_addresses(),
        });
    }

    fn remove_vips(&mut self) {
        self.garp_master_delay_at = None;
        self.garp_lower_prio_at = None;
        self.garp_refresh_at = None;
        if self.vips_set {
            self.vips_set = false;
            self.actions.push_back(Action::RemoveVips {
                addresses: self.all_addresses(),
            });
        }
    }

    fn push_garp(&mut self, repeat: u32) {
        let addresses = self.all_addresses();
        if repeat > 0 && !addresses.is_empty() {
            self.actions
                .push_back(Action::SendGratuitousArp { addresses, repeat });
        }
    }
}

/// Takes the deadline if it is due.
fn take_due(deadline: &mut Option<Instant>, now: Instant) -> bool {
    if deadline.is_some_and(|at| at <= now) {
        *deadline = None;
        true
    } else {
        false
    }
}
