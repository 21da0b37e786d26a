//! `vrrp_sync_group`: instances that change state together, as keepalived's vrrp_sync.c moves
//! them.
//!
//! - One member FAULT → every member FAULT (`vrrp_sync_fault`); back to BACKUP together when
//!   the last member's own fault clears.
//! - A member whose Master_Down_Timer expires becomes MASTER only when every member wants
//!   MASTER (`vrrp_sync_can_goto_master`): the group prefers BACKUP to thrashing. Then every
//!   member becomes MASTER (`vrrp_sync_master`).
//! - A MASTER member that yields to a better master takes the others to BACKUP
//!   (`vrrp_sync_backup`).
//!
//! The coordinator owns no instance: the I/O shell calls [`SyncGroup::synchronize`] with the
//! members after handing any of them an input, and before polling their actions.

use std::time::Instant;

use crate::events::State;
use crate::instance::{Instance, Want};

/// The coordinator of one sync group.
#[derive(Debug, Clone)]
pub struct SyncGroup {
    name: String,
    state: State,
}

impl SyncGroup {
    /// Forms the group from freshly created instances (before any other input), giving it
    /// keepalived's initial state: FAULT if a member is, Initialize while a member waits for a
    /// tracker, MASTER if every member is an address owner that wants it, BACKUP otherwise.
    /// Members that want MASTER in a BACKUP group get a Master_Down_Timer of one interval and
    /// the smallest skew, as in keepalived.
    pub fn new(name: impl Into<String>, now: Instant, members: &mut [&mut Instance]) -> SyncGroup {
        let name = name.into();
        let state = if members.iter().any(|m| m.is_faulted()) {
            State::Fault
        } else if members.iter().any(|m| m.is_pending()) {
            State::Initialize
        } else if !members.is_empty()
            && members
                .iter()
                .all(|m| m.want() == Want::Master && m.config().is_address_owner())
        {
            State::Master
        } else {
            State::Backup
        };
        for member in members.iter_mut() {
            member.join_sync_group(now, &name, state);
        }
        SyncGroup { name, state }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The group's state: the state its members are moving to together.
    pub fn state(&self) -> State {
        self.state
    }

    /// Moves the members together after any of them changed. `members` are the same instances,
    /// in the same order, as given to [`SyncGroup::new`].
    pub fn synchronize(&mut self, now: Instant, members: &mut [&mut Instance]) {
        // Each pass may move members, which can enable the next rule; three passes cover the
        // longest chain (fault cleared → BACKUP → MASTER requested), one more proves it settled.
        for _ in 0..4 {
            if !self.step(now, members) {
                break;
            }
        }
        for member in members.iter_mut() {
            member.set_group_is_master(self.state == State::Master);
        }
    }

    /// One rule application; true if the group state moved.
    fn step(&mut self, now: Instant, members: &mut [&mut Instance]) -> bool {
        // Requests must be taken from every member, not only up to the first.
        let mut requested = false;
        for member in members.iter_mut() {
            requested |= member.take_master_request();
        }
        let live = || {
            members
                .iter()
                .map(|m| &**m)
                .filter(|m| m.state() != State::Stopped)
        };
        let any_faulted = live().any(Instance::is_faulted);
        let any_pending = live().any(Instance::is_pending);
        let any_master = live().any(|m| m.state() == State::Master);
        let any_backup = live().any(|m| m.state() == State::Backup);
        let all_want_master = live().all(|m| m.want() == Want::Master);
        let live_mut = members.iter_mut().filter(|m| m.state() != State::Stopped);

        let next = if any_faulted {
            if self.state == State::Fault {
                return false;
            }
            for member in live_mut {
                if member.state() != State::Fault {
                    member.sync_goto_fault(now);
                }
            }
            State::Fault
        } else if matches!(self.state, State::Fault | State::Initialize) {
            if any_pending {
                return false;
            }
            for member in live_mut {
                member.sync_leave_fault(now);
            }
            State::Backup
        } else if self.state != State::Master {
            if !(any_master || (requested && all_want_master)) {
                return false;
            }
            for member in live_mut {
                member.sync_goto_master(now);
            }
            State::Master
        } else {
            if !any_backup {
                return false;
            }
            for member in live_mut {
                member.sync_goto_backup(now);
            }
            State::Backup
        };
        self.state = next;
        true
    }
}
