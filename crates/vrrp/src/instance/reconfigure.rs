//! A reload: the same instance (the shell matched it on VRID, family, interface and source)
//! with a new configuration. As keepalived's `reload_config` / `clear_diff_vrrp` do, the state,
//! its timers and the statistics are kept: a MASTER stays MASTER without a priority 0 advert,
//! and only what changed is acted on — removed addresses leave the interface, added ones are set
//! and announced, a new priority or tracker moves the effective priority.

use std::net::IpAddr;
use std::time::Instant;

use super::tracking::Tracker;
use super::Instance;
use crate::config::{ConfigWarning, InstanceConfig};
use crate::events::{Action, Reason, State};

/// What a reload changed in one instance's addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressChanges {
    pub added: Vec<IpAddr>,
    pub removed: Vec<IpAddr>,
}

impl Instance {
    /// Takes `config` in place of the current configuration, keeping the state, timers,
    /// statistics and the results of trackers that are still tracked (by name). While the
    /// addresses are set (MASTER), removed ones are taken off with [`Action::RemoveVips`] and
    /// added ones set with [`Action::AddVips`] and announced; nothing is said about the others.
    /// Returns the address changes and keepalived's corrections of the new configuration.
    pub fn reconfigure(
        &mut self,
        now: Instant,
        mut config: InstanceConfig,
    ) -> (AddressChanges, Vec<ConfigWarning>) {
        let warnings = config.normalize();
        if self.state == State::Stopped {
            self.config = config;
            return (AddressChanges::default(), warnings);
        }
        let old = self.all_addresses();
        let trackers: Vec<Tracker> = config
            .trackers
            .iter()
            .map(|t| {
                let mut tracker = Tracker::new(t);
                if let Some(kept) = self.trackers.iter().find(|o| o.name() == t.name) {
                    tracker.keep_status_of(kept);
                }
                tracker
            })
            .collect();
        let before = self.blocking();
        self.config = config;
        self.config_warnings = warnings.clone();
        self.trackers = trackers;
        self.base_priority = self.config.priority;
        let new = self.all_addresses();
        let changes = AddressChanges {
            added: new.iter().filter(|a| !old.contains(a)).copied().collect(),
            removed: old.iter().filter(|a| !new.contains(a)).copied().collect(),
        };
        if self.vips_set {
            if !changes.removed.is_empty() {
                self.actions.push_back(Action::RemoveVips {
                    addresses: changes.removed.clone(),
                });
            }
            if !changes.added.is_empty() {
                self.actions.push_back(Action::AddVips {
                    addresses: changes.added.clone(),
                });
                let repeat = self.config.garp.master_repeat;
                if repeat > 0 {
                    self.actions.push_back(Action::SendGratuitousArp {
                        addresses: changes.added.clone(),
                        repeat,
                    });
                }
            }
        }
        if self.state == State::Master {
            // The next advert goes out at the new interval; a backup adopts it from there.
            self.master_adver_int = self.config.advert_interval;
            if let Some(at) = self.deadline {
                self.deadline = Some(at.min(now + self.config.advert_interval));
            }
        }
        self.update_priority(now);
        // A tracker the new file added may already be down (or pending): it moves the
        // instance as its own change would.
        let reason = self
            .trackers
            .iter()
            .position(Tracker::blocks)
            .map_or(Reason::Startup, |i| self.tracker_reason(i));
        self.react_to_blocking(now, before, reason);
        (changes, warnings)
    }
}
