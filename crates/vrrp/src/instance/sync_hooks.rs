//! The hooks the sync group coordinator (crate::sync_group) moves members with
//! (vrrp_sync.c).

use std::time::Instant;

use super::{Instance, Want};
use crate::events::{Reason, State};
use crate::timers;

#[derive(Debug, Clone)]
pub(super) struct SyncMembership {
    pub(super) group: String,
    /// While the group is MASTER, a member whose timer expires may become MASTER by itself
    /// (vrrp_sync.c `vrrp_sync_can_goto_master`).
    pub(super) group_is_master: bool,
    /// Set when the Master_Down_Timer expired but the group held us in BACKUP.
    pub(super) master_request: bool,
}

impl Instance {
    pub(crate) fn want(&self) -> Want {
        self.want
    }

    /// Joins a sync group right after `new`, redoing the start-up decision with the group's
    /// state as keepalived's `vrrp_init_state` does.
    pub(crate) fn join_sync_group(&mut self, now: Instant, group: &str, group_state: State) {
        self.sync = Some(SyncMembership {
            group: group.to_owned(),
            group_is_master: group_state == State::Master,
            master_request: false,
        });
        let reason = Reason::SyncGroup {
            group: group.to_owned(),
        };
        match group_state {
            State::Master | State::Stopped => {}
            State::Fault => {
                if self.state != State::Fault {
                    self.deadline = None;
                    self.enter_fault(reason);
                }
            }
            State::Initialize => {
                if self.state == State::Backup {
                    self.transition(State::Initialize, reason);
                }
                self.deadline = None;
            }
            State::Backup => {
                if self.want == Want::Master
                    && matches!(self.state, State::Initialize | State::Backup)
                    && !self.is_pending()
                {
                    // "We need to allow one adver_int to pass to ensure there is no other master"
                    let down = self.master_adver_int
                        + timers::min_skew_time(self.config.version, self.master_adver_int);
                    self.enter_backup(now, Reason::Startup, down);
                }
            }
        }
    }

    pub(crate) fn set_group_is_master(&mut self, group_is_master: bool) {
        if let Some(sync) = &mut self.sync {
            sync.group_is_master = group_is_master;
        }
    }

    pub(crate) fn take_master_request(&mut self) -> bool {
        self.sync
            .as_mut()
            .is_some_and(|s| std::mem::take(&mut s.master_request))
    }

    fn group_reason(&self) -> Reason {
        Reason::SyncGroup {
            group: self
                .sync
                .as_ref()
                .map(|s| s.group.clone())
                .unwrap_or_default(),
        }
    }

    /// vrrp_sync.c `vrrp_sync_master`.
    pub(crate) fn sync_goto_master(&mut self, now: Instant) {
        if matches!(self.state, State::Backup | State::Initialize) {
            let reason = self.group_reason();
            self.become_master(now, reason);
        }
    }

    /// vrrp_sync.c `vrrp_sync_backup`.
    pub(crate) fn sync_goto_backup(&mut self, now: Instant) {
        let reason = self.group_reason();
        self.want = Want::Backup;
        match self.state {
            State::Master => self.leave_master(now, State::Backup, reason),
            State::Fault | State::Initialize => {
                let down = self.master_down_interval();
                self.enter_backup(now, reason, down);
            }
            State::Backup | State::Stopped => {}
        }
    }

    /// vrrp_sync.c `vrrp_sync_fault`.
    pub(crate) fn sync_goto_fault(&mut self, now: Instant) {
        let reason = self.group_reason();
        self.down_instance(now, reason);
    }

    /// The group's last fault cleared: back to BACKUP, quickly for a member that wants MASTER.
    pub(crate) fn sync_leave_fault(&mut self, now: Instant) {
        if !matches!(self.state, State::Fault | State::Initialize)
            || self.is_faulted()
            || self.is_pending()
        {
            return;
        }
        let reason = self.group_reason();
        let down = if self.want == Want::Master {
            self.master_adver_int
                + timers::min_skew_time(self.config.version, self.master_adver_int)
        } else {
            self.want = Want::Backup;
            self.master_down_interval()
        };
        self.enter_backup(now, reason, down);
    }
}
