//! What the instance tracks: its interface and tracked objects, which move its priority or
//! put it in FAULT (vrrp_track.c, vrrp_scheduler.c `try_up_instance`).

use std::time::Instant;

use super::{Instance, Want};
use crate::config::{TrackerConfig, TrackerStatus};
use crate::events::{Action, Reason, State};

/// One tracked object: how it counts, and its last result.
#[derive(Debug, Clone)]
pub(super) struct Tracker {
    name: String,
    weight: i32,
    reverse: bool,
    status: TrackerStatus,
}

impl Tracker {
    pub(super) fn new(config: &TrackerConfig) -> Tracker {
        Tracker {
            name: config.name.clone(),
            weight: config.weight,
            reverse: config.reverse,
            status: config.initial,
        }
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// A reload keeps the last result of a tracker it still tracks.
    pub(super) fn keep_status_of(&mut self, old: &Tracker) {
        self.status = old.status;
    }

    /// Whether it holds the instance in FAULT or Initialize (an unweighted tracker not up).
    pub(super) fn blocks(&self) -> bool {
        self.weight == 0 && self.effective() != TrackerStatus::Up
    }

    /// `reverse` swaps up and down; pending stays pending.
    fn effective(&self) -> TrackerStatus {
        match (self.status, self.reverse) {
            (TrackerStatus::Up, true) => TrackerStatus::Down,
            (TrackerStatus::Down, true) => TrackerStatus::Up,
            (status, _) => status,
        }
    }

    /// What a weighted tracker adds to the priority (vrrp_track.c
    /// `process_script_update_priority`): a positive weight while up, a negative one while down.
    fn priority_delta(&self) -> i64 {
        let weight = i64::from(self.weight);
        match self.effective() {
            TrackerStatus::Up if weight > 0 => weight,
            TrackerStatus::Down if weight < 0 => weight,
            _ => 0,
        }
    }
}

/// What keeps an instance from running, before and after a change, to see which way it went.
#[derive(Debug, Clone, Copy)]
pub(super) struct Blocking {
    faulted: bool,
    pending: bool,
}

impl Instance {
    /// Whether an unweighted tracker has not reported yet.
    pub(crate) fn is_pending(&self) -> bool {
        self.trackers
            .iter()
            .any(|t| t.weight == 0 && t.status == TrackerStatus::Pending)
    }

    /// The interface went down (FAULT) or came back (BACKUP, or MASTER for an owner that never
    /// faulted since it started).
    pub fn set_interface_up(&mut self, now: Instant, up: bool) {
        if self.state == State::Stopped || self.interface_up == up {
            return;
        }
        let before = self.blocking();
        self.interface_up = up;
        let reason = if up {
            Reason::InterfaceUp
        } else {
            Reason::InterfaceDown
        };
        self.react_to_blocking(now, before, reason);
    }

    /// A tracker's new result. Weighted trackers move the priority; unweighted ones put the
    /// instance in FAULT while down. Returns false for an unknown tracker name.
    pub fn set_tracker_status(&mut self, now: Instant, name: &str, status: TrackerStatus) -> bool {
        let Some(index) = self.trackers.iter().position(|t| t.name == name) else {
            return false;
        };
        if self.state == State::Stopped || self.trackers[index].status == status {
            return true;
        }
        let before = self.blocking();
        self.trackers[index].status = status;
        self.update_priority(now);
        let reason = self.tracker_reason(index);
        self.react_to_blocking(now, before, reason);
        true
    }

    /// Changes a tracker's weight (a reload, or a `track_file` whose value moved). A weight of
    /// 0 makes it unweighted. Returns false for an unknown tracker name.
    pub fn set_track_weight(&mut self, now: Instant, name: &str, weight: i32) -> bool {
        let Some(index) = self.trackers.iter().position(|t| t.name == name) else {
            return false;
        };
        if self.state == State::Stopped || self.trackers[index].weight == weight {
            return true;
        }
        let before = self.blocking();
        self.trackers[index].weight = weight;
        self.update_priority(now);
        let reason = self.tracker_reason(index);
        self.react_to_blocking(now, before, reason);
        true
    }

    /// Sets a tracker's weight and result at once (a `track_file` whose value moved: its
    /// product becomes the weight, FAULT an unweighted tracker that is down), so that the
    /// instance never passes through a state in between. Returns false for an unknown name.
    pub fn set_tracker(
        &mut self,
        now: Instant,
        name: &str,
        weight: i32,
        status: TrackerStatus,
    ) -> bool {
        let Some(index) = self.trackers.iter().position(|t| t.name == name) else {
            return false;
        };
        let t = &self.trackers[index];
        if self.state == State::Stopped || (t.weight == weight && t.status == status) {
            return true;
        }
        let before = self.blocking();
        self.trackers[index].weight = weight;
        self.trackers[index].status = status;
        self.update_priority(now);
        let reason = self.tracker_reason(index);
        self.react_to_blocking(now, before, reason);
        true
    }

    /// vrrp_track.c `down_instance`.
    pub(super) fn down_instance(&mut self, now: Instant, reason: Reason) {
        self.want = Want::Fault;
        match self.state {
            State::Master => self.leave_master(now, State::Fault, reason),
            State::Backup | State::Initialize => self.enter_fault(reason),
            State::Fault | State::Stopped => {}
        }
    }

    /// vrrp_scheduler.c `try_up_instance`: an address owner that wanted MASTER (and never went
    /// down since) takes over at once; anyone else starts as BACKUP with a full
    /// Master_Down_Interval. In a sync group the coordinator brings the members up together.
    pub(super) fn try_up(&mut self, now: Instant, reason: Reason) {
        if !(self.want == Want::Master && self.config.is_address_owner()) {
            self.want = Want::Backup;
        }
        if self.sync.is_some() {
            return;
        }
        if self.config.is_unicast() {
            // Refresh the master's ARP cache so that its unicast adverts reach us before our
            // timer runs out.
            self.actions.push_back(Action::SendGratuitousArp {
                addresses: vec![self.config.source_address],
                repeat: 1,
            });
        }
        if self.want == Want::Master {
            self.goto_master(now, Reason::AddressOwner);
        } else {
            let down = self.master_down_interval();
            self.enter_backup(now, reason, down);
        }
    }

    pub(super) fn react_to_blocking(&mut self, now: Instant, before: Blocking, reason: Reason) {
        let after = self.blocking();
        if after.faulted && !before.faulted {
            self.down_instance(now, reason);
        } else if !after.faulted && !after.pending && (before.faulted || before.pending) {
            self.try_up(now, reason);
        }
    }

    // ----- priority -----

    pub(super) fn computed_priority(&self) -> u8 {
        if self.base_priority == 255 {
            // vrrp_track.c `vrrp_set_effective_priority`: the owner's priority never moves.
            return 255;
        }
        let total = i64::from(self.base_priority)
            + self
                .trackers
                .iter()
                .map(Tracker::priority_delta)
                .sum::<i64>();
        u8::try_from(total.clamp(1, 254)).unwrap_or(1)
    }

    pub(super) fn update_priority(&mut self, now: Instant) {
        let new = self.computed_priority();
        let old = self.effective_priority;
        if new == old {
            return;
        }
        let old_skew = self.skew_time();
        self.effective_priority = new;
        self.actions
            .push_back(Action::PriorityChange { from: old, to: new });
        // A backup's running timer moves with its skew (vrrp_track.c
        // `vrrp_set_effective_priority` shifts `sands`); moved into the past, it is due now.
        if self.state == State::Backup {
            let new_skew = self.skew_time();
            self.deadline = self.deadline.map(|at| {
                let moved = if new_skew >= old_skew {
                    at + (new_skew - old_skew)
                } else {
                    at.checked_sub(old_skew - new_skew).unwrap_or(at)
                };
                moved.max(now)
            });
        }
    }

    // ----- faults -----

    pub(super) fn blocking(&self) -> Blocking {
        Blocking {
            faulted: self.is_faulted(),
            pending: self.is_pending(),
        }
    }

    pub(super) fn fault_reason(&self) -> Option<Reason> {
        if !self.interface_up {
            return Some(Reason::InterfaceDown);
        }
        self.trackers
            .iter()
            .find(|t| t.weight == 0 && t.effective() == TrackerStatus::Down)
            .map(|t| Reason::TrackerDown {
                name: t.name.clone(),
            })
    }

    pub(super) fn tracker_reason(&self, index: usize) -> Reason {
        let tracker = &self.trackers[index];
        match tracker.effective() {
            TrackerStatus::Down => Reason::TrackerDown {
                name: tracker.name.clone(),
            },
            TrackerStatus::Up | TrackerStatus::Pending => Reason::TrackerUp {
                name: tracker.name.clone(),
            },
        }
    }
}
