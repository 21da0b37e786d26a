//! The one-line summary systemd shows for the unit (`STATUS=`, the "Status:" line of
//! `systemctl status`): each VRRP instance's state and how many virtual servers have their
//! quorum, kept up to date from the event bus.

use halb_config::model::Config;
use halb_lb::virtual_server::VsEvent;
use halb_vrrp::State;

use crate::event::{EventKind, ReloadOutcome, VrrpEvent};

/// What the summary is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    /// Every configured instance, in the file's order, with its last state.
    instances: Vec<(String, State)>,
    /// Per virtual server (its index in the file): whether its alive real servers reach
    /// the quorum. A virtual server starts up: the core reports a quorum missing at start.
    virtual_servers: Vec<bool>,
    /// The last reload was refused: the running configuration is not the file's.
    reload_refused: bool,
}

/// keepalived's words, in the order the summary lists them.
const ORDER: [(State, &str); 5] = [
    (State::Master, "MASTER"),
    (State::Backup, "BACKUP"),
    (State::Fault, "FAULT"),
    (State::Initialize, "INIT"),
    (State::Stopped, "STOP"),
];

impl ServiceStatus {
    pub fn new(config: &Config) -> ServiceStatus {
        ServiceStatus {
            instances: config
                .vrrp
                .instances
                .iter()
                .map(|i| (i.name.clone(), State::Initialize))
                .collect(),
            virtual_servers: vec![true; config.lvs.virtual_servers.len()],
            reload_refused: false,
        }
    }

    /// Takes a VRRP or virtual-server event into account; others change nothing.
    pub fn apply(&mut self, event: &EventKind) {
        match event {
            EventKind::Vrrp(VrrpEvent::Transition {
                instance, change, ..
            }) => match self.instances.iter_mut().find(|(name, _)| name == instance) {
                Some((_, state)) => *state = change.to,
                None => self.instances.push((instance.clone(), change.to)),
            },
            EventKind::VirtualServer(VsEvent::QuorumLost { vs, .. }) => {
                self.set_vs(vs.index, false)
            }
            EventKind::VirtualServer(VsEvent::QuorumGained { vs, .. }) => {
                self.set_vs(vs.index, true)
            }
            _ => {}
        }
    }

    fn set_vs(&mut self, index: usize, up: bool) {
        if index >= self.virtual_servers.len() {
            self.virtual_servers.resize(index + 1, true);
        }
        self.virtual_servers[index] = up;
    }

    /// A reload applied `config`: its instances and virtual servers from now on; those kept
    /// keep their state (instances by name, virtual servers by place in the file).
    pub fn reconfigure(&mut self, config: &Config) {
        let old = std::mem::take(&mut self.instances);
        self.instances = config
            .vrrp
            .instances
            .iter()
            .map(|i| {
                let state = old
                    .iter()
                    .find(|(name, _)| *name == i.name)
                    .map_or(State::Initialize, |(_, s)| *s);
                (i.name.clone(), state)
            })
            .collect();
        self.virtual_servers
            .resize(config.lvs.virtual_servers.len(), true);
    }

    /// A reload ended.
    pub fn reloaded(&mut self, outcome: &ReloadOutcome) {
        self.reload_refused = !outcome.applied;
    }

    /// "MASTER on VI_1, 2/2 virtual servers up".
    pub fn line(&self) -> String {
        let mut parts = Vec::new();
        for (state, word) in ORDER {
            let names: Vec<&str> = self
                .instances
                .iter()
                .filter(|(_, s)| *s == state)
                .map(|(n, _)| n.as_str())
                .collect();
            if !names.is_empty() {
                parts.push(format!("{word} on {}", names.join(" ")));
            }
        }
        if self.instances.is_empty() {
            parts.push("no VRRP instance".to_string());
        }
        let total = self.virtual_servers.len();
        if total == 0 {
            parts.push("no virtual server".to_string());
        } else {
            let up = self.virtual_servers.iter().filter(|&&u| u).count();
            let noun = if total == 1 {
                "virtual server"
            } else {
                "virtual servers"
            };
            parts.push(format!("{up}/{total} {noun} up"));
        }
        if self.reload_refused {
            parts.push("last reload refused".to_string());
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use halb_lb::virtual_server::VsRef;
    use halb_vrrp::{Reason, StateChange};

    fn config(text: &str) -> Config {
        let loaded = halb_config::load_str("t.conf", text, &halb_config::LoadOptions::default());
        assert!(!loaded.diagnostics.has_errors(), "{text}");
        loaded.config
    }

    const SEED_LIKE: &str = "vrrp_instance VI_1 {\n state MASTER\n interface eth0\n virtual_router_id 51\n priority 100\n virtual_ipaddress {\n 192.168.66.251\n }\n}\nvirtual_server 192.168.66.251 3306 {\n real_server 192.168.66.253 3306 {\n }\n}\nvirtual_server 192.168.66.251 3308 {\n real_server 192.168.66.253 3308 {\n }\n}\n";

    fn transition(instance: &str, to: State) -> EventKind {
        EventKind::Vrrp(VrrpEvent::Transition {
            instance: instance.to_string(),
            change: StateChange {
                from: State::Initialize,
                to,
                reason: Reason::Startup,
            },
            priority: 100,
        })
    }

    fn quorum(index: usize, gained: bool) -> EventKind {
        let vs = VsRef {
            index,
            name: format!("[192.168.66.251]:tcp:{}", 3306 + index),
        };
        EventKind::VirtualServer(if gained {
            VsEvent::QuorumGained {
                vs,
                quorum: 1,
                hysteresis: 0,
                threshold: 1,
                alive_weight: 1,
            }
        } else {
            VsEvent::QuorumLost {
                vs,
                quorum: 1,
                hysteresis: 0,
                threshold: 1,
                alive_weight: 0,
                at_start: false,
            }
        })
    }

    #[test]
    fn the_seeds_director_as_it_starts_and_serves() {
        let mut s = ServiceStatus::new(&config(SEED_LIKE));
        assert_eq!(s.line(), "INIT on VI_1, 2/2 virtual servers up");
        s.apply(&transition("VI_1", State::Backup));
        s.apply(&transition("VI_1", State::Master));
        assert_eq!(s.line(), "MASTER on VI_1, 2/2 virtual servers up");
        s.apply(&quorum(1, false));
        assert_eq!(s.line(), "MASTER on VI_1, 1/2 virtual servers up");
        s.apply(&quorum(1, true));
        assert_eq!(s.line(), "MASTER on VI_1, 2/2 virtual servers up");
    }

    #[test]
    fn instances_are_grouped_by_state_and_refused_reloads_shown() {
        let mut s = ServiceStatus::new(&Config::default());
        assert_eq!(s.line(), "no VRRP instance, no virtual server");
        s.apply(&transition("VI_1", State::Master));
        s.apply(&transition("VI_2", State::Backup));
        s.apply(&transition("VI_3", State::Master));
        assert_eq!(
            s.line(),
            "MASTER on VI_1 VI_3, BACKUP on VI_2, no virtual server"
        );
        s.reloaded(&ReloadOutcome {
            applied: false,
            details: vec!["a.conf:1:1: error".to_string()],
        });
        assert!(s.line().ends_with(", last reload refused"), "{}", s.line());
        s.reloaded(&ReloadOutcome {
            applied: true,
            details: Vec::new(),
        });
        assert!(!s.line().contains("refused"));
    }

    #[test]
    fn a_reload_keeps_the_states_of_what_stays() {
        let mut s = ServiceStatus::new(&config(SEED_LIKE));
        s.apply(&transition("VI_1", State::Master));
        s.apply(&quorum(0, false));
        let one_vs = SEED_LIKE
            .split("virtual_server 192.168.66.251 3308")
            .next()
            .unwrap();
        s.reconfigure(&config(one_vs));
        assert_eq!(s.line(), "MASTER on VI_1, 0/1 virtual server up");
        s.reconfigure(&config(SEED_LIKE));
        assert_eq!(s.line(), "MASTER on VI_1, 1/2 virtual servers up");
    }
}
