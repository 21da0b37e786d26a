//! What a checker verdict, a weight change or shutdown does to a virtual server: keepalived's
//! `update_svr_checker_state()`, `perform_svr_state()`, `update_quorum_state()`,
//! `perform_quorum_state()`, `update_svr_wgt()` and `clear_service_vs()`, with their log lines.
//!
//! The table is not changed here: it is derived from the state ([`super::VirtualServers::table`]),
//! so these functions only move the state and say what changed and what keepalived would run.

use halb_config::names::CheckerId;

use super::output::{Output, ScriptReason};
use super::state::VsState;
use super::vs_event::VsEvent;

impl VsState {
    /// A checker's verdict (`update_svr_checker_state()`); `weight` is what a `misc_dynamic`
    /// checker's exit status asks for.
    pub(crate) fn handle_verdict(
        &mut self,
        rs: usize,
        checker: usize,
        up: bool,
        weight: Option<u32>,
        out: &mut Vec<Output>,
    ) {
        // keepalived's MISC_CHECK changes the weight before it reports the verdict; a failure
        // takes the checker's share back silently (the server is leaving the pool anyway).
        if up {
            if let Some(w) = weight {
                let configured = i64::from(self.real_servers[rs].weight);
                let delta = i64::from(w) - configured;
                let c = &mut self.real_servers[rs].checkers[checker];
                if delta != c.weight_delta {
                    let old_delta = std::mem::replace(&mut c.weight_delta, delta);
                    let effective = self.real_servers[rs].effective_weight - old_delta + delta;
                    self.update_weight(rs, effective, out);
                }
            }
        } else {
            let server = &mut self.real_servers[rs];
            let delta = std::mem::take(&mut server.checkers[checker].weight_delta);
            server.effective_weight -= delta;
        }

        let c = &self.real_servers[rs].checkers[checker];
        if c.up == up {
            // The first verdict of an alpha checker that fails is still news: keepalived runs
            // the real server's notify_down for it.
            if !c.has_run {
                let notify = c.alpha || !up;
                self.real_servers[rs].checkers[checker].has_run = true;
                if notify {
                    self.rs_notifies(rs, false, out);
                }
            }
            return;
        }
        let failed = self.real_servers[rs].failed_checkers();
        if up {
            // This checker is one of the failed ones: the server comes up if it was the last.
            if failed <= 1 {
                self.set_rs_alive(rs, true, checker, out);
            }
        } else if failed == 0 {
            self.set_rs_alive(rs, false, checker, out);
        }
        let c = &mut self.real_servers[rs].checkers[checker];
        c.has_run = true;
        c.up = up;
    }

    /// `perform_svr_state()`: the real server goes up or down, because of `checker`'s verdict.
    fn set_rs_alive(&mut self, rs: usize, alive: bool, checker: usize, out: &mut Vec<Output>) {
        let server = &self.real_servers[rs];
        if server.alive == alive {
            return;
        }
        let (vs, server_ref, inhibit) = (self.vs_ref(), self.rs_ref(rs), server.inhibit);
        let cause = CheckerId::new(self.index, rs, checker);
        out.push(Output::Event(if alive {
            VsEvent::RealServerUp {
                vs,
                rs,
                server: server_ref,
                inhibit,
                cause,
            }
        } else {
            VsEvent::RealServerDown {
                vs,
                rs,
                server: server_ref,
                inhibit,
                cause,
            }
        }));
        if !alive && self.in_pool(server) && self.drops.on_real_server_removal {
            self.drop_rs_connections(rs, out);
        }
        self.real_servers[rs].alive = alive;
        self.rs_notifies(rs, false, out);
        self.update_quorum_state(false, out);
    }

    /// `update_svr_wgt()`: a dynamic checker changed the real server's effective weight.
    pub(crate) fn update_weight(&mut self, rs: usize, effective: i64, out: &mut Vec<Output>) {
        let server = &mut self.real_servers[rs];
        let old = server.real_weight();
        server.effective_weight = effective;
        let new = server.real_weight();
        if new == old {
            return;
        }
        // At weight 0 a server takes no new connection; its old ones are fenced like those of
        // a server that left.
        if new == 0 && self.in_pool(&self.real_servers[rs]) && self.drops.on_real_server_removal {
            self.drop_rs_connections(rs, out);
        }
        out.push(Output::Event(VsEvent::WeightChanged {
            vs: self.vs_ref(),
            rs,
            server: self.rs_ref(rs),
            from: old,
            to: new,
            alive: self.real_servers[rs].alive,
        }));
        self.update_quorum_state(false, out);
    }

    /// `update_quorum_state()`: gains or loses quorum from the alive servers' weight, with
    /// hysteresis, and brings the sorry server in or out. `init`: the first evaluation at
    /// start, which also brings in the sorry server when quorum is not there.
    pub(crate) fn update_quorum_state(&mut self, init: bool, out: &mut Vec<Output>) {
        let weight_sum = self.alive_weight();
        let quorum = i64::from(self.quorum);
        let hysteresis = i64::from(self.hysteresis);
        let threshold = if self.quorum_up {
            quorum - hysteresis
        } else {
            quorum + hysteresis
        };
        if !self.quorum_up && weight_sum >= threshold {
            self.quorum_up = true;
            out.push(Output::Event(VsEvent::QuorumGained {
                vs: self.vs_ref(),
                quorum: self.quorum,
                hysteresis: self.hysteresis,
                threshold,
                alive_weight: weight_sum,
            }));
            if let Some(sorry) = self.sorry.as_ref().filter(|s| s.active) {
                out.push(Output::Event(VsEvent::SorryServerOut {
                    vs: self.vs_ref(),
                    server: self.server_ref(sorry.ip, sorry.port),
                    inhibit: sorry.inhibit,
                }));
                let handback = self.drops.on_sorry_handback;
                if let Some(sorry) = self.sorry.as_mut() {
                    sorry.active = false;
                }
                out.push(Output::Event(VsEvent::AliveServersIn { vs: self.vs_ref() }));
                if handback {
                    self.drop_sorry_connections(out);
                }
            }
            self.vs_notifies(false, out);
        } else if (self.quorum_up && (weight_sum == 0 || weight_sum < threshold))
            || (init && !self.quorum_up && self.sorry.as_ref().is_some_and(|s| !s.active))
        {
            self.quorum_up = false;
            out.push(Output::Event(VsEvent::QuorumLost {
                vs: self.vs_ref(),
                quorum: self.quorum,
                hysteresis: self.hysteresis,
                threshold,
                alive_weight: weight_sum,
                at_start: init,
            }));
            if let Some(sorry) = self.sorry.as_ref().filter(|s| !s.active) {
                out.push(Output::Event(VsEvent::SorryServerIn {
                    vs: self.vs_ref(),
                    server: self.server_ref(sorry.ip, sorry.port),
                    inhibit: sorry.inhibit,
                }));
                out.push(Output::Event(VsEvent::AliveServersOut {
                    vs: self.vs_ref(),
                }));
                if self.drops.on_real_server_removal {
                    for rs in 0..self.real_servers.len() {
                        if self.real_servers[rs].alive {
                            self.drop_rs_connections(rs, out);
                        }
                    }
                }
                if let Some(sorry) = self.sorry.as_mut() {
                    sorry.active = true;
                }
            }
            self.vs_notifies(false, out);
        }
    }

    /// `do_rs_notifies()`: the real server's notify_up or notify_down, by its current state.
    fn rs_notifies(&self, rs: usize, at_shutdown: bool, out: &mut Vec<Output>) {
        let server = &self.real_servers[rs];
        let (script, reason) = if server.alive {
            (
                &server.notify_up,
                ScriptReason::RealServerUp { vs: self.index, rs },
            )
        } else {
            (
                &server.notify_down,
                ScriptReason::RealServerDown { vs: self.index, rs },
            )
        };
        if let Some(script) = script {
            out.push(Output::RunScript {
                script: script.clone(),
                reason,
                at_shutdown,
            });
        }
    }

    /// `do_vs_notifies()`: quorum_up or quorum_down, by the current quorum state. Stopping,
    /// keepalived runs them only in omega mode.
    fn vs_notifies(&self, at_shutdown: bool, out: &mut Vec<Output>) {
        if at_shutdown && !self.omega {
            return;
        }
        let (script, reason) = if self.quorum_up {
            (
                &self.quorum_up_script,
                ScriptReason::QuorumUp { vs: self.index },
            )
        } else {
            (
                &self.quorum_down_script,
                ScriptReason::QuorumDown { vs: self.index },
            )
        };
        if let Some(script) = script {
            out.push(Output::RunScript {
                script: script.clone(),
                reason,
                at_shutdown,
            });
        }
    }

    fn drop_rs_connections(&self, rs: usize, out: &mut Vec<Output>) {
        let server = &self.real_servers[rs];
        for service in &self.services {
            out.push(Output::DropConnections {
                service: service.key,
                dest: Self::dest_addr(service, server.ip, server.port, &server.forwarding),
            });
        }
    }

    fn drop_sorry_connections(&self, out: &mut Vec<Output>) {
        let Some(sorry) = &self.sorry else { return };
        for service in &self.services {
            out.push(Output::DropConnections {
                service: service.key,
                dest: Self::dest_addr(service, sorry.ip, sorry.port, &sorry.forwarding),
            });
        }
    }

    /// `clear_service_vs(vs, stopping)`: every destination leaves, alive servers go down; in
    /// omega mode with their notify_down and the virtual server's quorum_down.
    pub(crate) fn shut_down(&mut self, out: &mut Vec<Output>) {
        // Whether keepalived holds each server in IPVS is decided before the sorry server goes:
        // a server the sorry server replaced is out of IPVS, and gets no notify_down.
        let set: Vec<bool> = self.real_servers.iter().map(|rs| self.rs_set(rs)).collect();
        if let Some(sorry) = self.sorry.as_mut() {
            sorry.active = false;
        }
        for (rs, was_set) in set.into_iter().enumerate() {
            let server = &self.real_servers[rs];
            out.push(Output::Event(VsEvent::ServiceShutdown {
                vs: self.vs_ref(),
                server: self.rs_ref(rs),
                inhibited: server.inhibit && !server.alive,
            }));
            if !was_set || !server.alive {
                continue;
            }
            self.real_servers[rs].alive = false;
            if self.omega {
                self.rs_notifies(rs, true, out);
            }
        }
        self.quorum_up = false;
        self.vs_notifies(true, out);
    }
}
