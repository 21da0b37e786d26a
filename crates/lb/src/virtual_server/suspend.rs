//! `ha_suspend`: a virtual server's checkers run only while one of its addresses is on this
//! host (keepalived's `update_checker_activity()` and `register_checkers_thread()`). On a
//! BACKUP director the VIP is absent, so its checkers rest until VRRP brings the VIP here.
//!
//! keepalived 2.2 matches a group's addresses in dead code (it returns early for every group),
//! so a group with `ha_suspend` never resumes its checkers there; halb matches every address
//! the group's ranges give, which is what that code means to do.

use std::net::IpAddr;

use super::output::Output;
use super::state::VsState;
use super::vs_event::{CheckerActivity, VsEvent};

impl VsState {
    /// An address of this host appeared (`present`) or went. Before `started`, only counts.
    pub(crate) fn local_address_changed(
        &mut self,
        ip: IpAddr,
        present: bool,
        started: bool,
        out: &mut Vec<Output>,
    ) {
        if !self.ha_suspend || !self.serves_address(ip) {
            return;
        }
        // The same address on several interfaces counts several times: the checkers rest only
        // once the last one is gone.
        if present {
            self.local_addresses = self.local_addresses.saturating_add(1);
        } else {
            self.local_addresses = self.local_addresses.saturating_sub(1);
        }
        if !started || present == self.checkers_enabled || (!present && self.local_addresses > 0) {
            return;
        }
        let activity = if present {
            CheckerActivity::Activating
        } else {
            CheckerActivity::Suspending
        };
        self.timed_checkers_event(activity, out);
        self.checkers_enabled = present;
        out.push(if present {
            Output::ResumeCheckers { vs: self.index }
        } else {
            Output::SuspendCheckers { vs: self.index }
        });
    }

    /// At start: every timed checker is activated, except those of an `ha_suspend` virtual
    /// server whose address is not here.
    pub(crate) fn start_checkers(&mut self, out: &mut Vec<Output>) {
        self.checkers_enabled = !self.ha_suspend || self.local_addresses > 0;
        let activity = if self.checkers_enabled {
            CheckerActivity::Activating
        } else {
            CheckerActivity::Deactivating
        };
        self.timed_checkers_event(activity, out);
        if !self.checkers_enabled {
            out.push(Output::SuspendCheckers { vs: self.index });
        }
    }

    /// keepalived says it once per timed checker.
    fn timed_checkers_event(&self, activity: CheckerActivity, out: &mut Vec<Output>) {
        for (n, rs) in self.real_servers.iter().enumerate() {
            for _ in rs.checkers.iter().filter(|c| c.timed) {
                out.push(Output::Event(VsEvent::CheckerActivity {
                    vs: self.vs_ref(),
                    server: self.rs_ref(n),
                    activity,
                }));
            }
        }
    }
}
