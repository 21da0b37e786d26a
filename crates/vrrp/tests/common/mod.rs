//! A tiny deterministic network in virtual time: nodes (each with its instances and, maybe, a
//! sync group), adverts encoded to bytes and delivered after a fixed latency, links that can
//! be cut and healed, nodes that crash and restart.

#![allow(dead_code)] // each test file uses a different part of the harness

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use halb_vrrp::packet::{encode, AddressList, Endpoints, PacketContext};
use halb_vrrp::{Action, Dropped, Instance, InstanceConfig, State, SyncGroup};

pub const LATENCY: Duration = Duration::from_millis(1);
pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 66, 251);

pub fn addr(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 168, 66, last))
}

pub fn us(micros: u64) -> Duration {
    Duration::from_micros(micros)
}

/// keepalived's defaults for the seed's VIP, with the given source address and priority.
pub fn config(name: &str, vrid: u8, source: IpAddr, priority: u8) -> InstanceConfig {
    let mut config = InstanceConfig::new(name, vrid, source, AddressList::ipv4([VIP]).unwrap());
    config.priority = priority;
    config
}

#[derive(Debug, Clone)]
pub struct Event {
    pub at: Duration,
    pub node: usize,
    pub instance: usize,
    pub action: Action,
}

#[derive(Debug, Clone)]
pub struct DropEvent {
    pub at: Duration,
    pub node: usize,
    pub instance: usize,
    pub reason: Dropped,
}

struct InFlight {
    at: Instant,
    seq: u64,
    to: usize,
    bytes: Vec<u8>,
    ctx: PacketContext,
}

pub struct Node {
    pub addr: IpAddr,
    pub instances: Vec<Instance>,
    pub group: Option<SyncGroup>,
    /// A crashed node neither runs timers nor receives: it is gone without a word.
    pub alive: bool,
    /// A node whose link is down sends and receives nothing.
    pub link_up: bool,
}

pub struct Net {
    pub start: Instant,
    pub now: Instant,
    pub nodes: Vec<Node>,
    in_flight: Vec<InFlight>,
    seq: u64,
    cut: HashSet<(usize, usize)>,
    pub events: Vec<Event>,
    pub drops: Vec<DropEvent>,
}

impl Net {
    pub fn new() -> Net {
        let start = Instant::now();
        Net {
            start,
            now: start,
            nodes: Vec::new(),
            in_flight: Vec::new(),
            seq: 0,
            cut: HashSet::new(),
            events: Vec::new(),
            drops: Vec::new(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Adds a node whose instances start now.
    pub fn add_node(&mut self, addr: IpAddr, configs: Vec<InstanceConfig>) -> usize {
        let instances = configs
            .into_iter()
            .map(|c| Instance::new(c, self.now))
            .collect();
        self.nodes.push(Node {
            addr,
            instances,
            group: None,
            alive: true,
            link_up: true,
        });
        let node = self.nodes.len() - 1;
        self.flush(node);
        node
    }

    /// Puts all the node's instances in one sync group (right after `add_node`).
    pub fn group(&mut self, node: usize, name: &str) {
        let now = self.now;
        let n = &mut self.nodes[node];
        let mut members: Vec<&mut Instance> = n.instances.iter_mut().collect();
        n.group = Some(SyncGroup::new(name, now, &mut members));
        self.flush(node);
    }

    pub fn instance(&self, node: usize, instance: usize) -> &Instance {
        &self.nodes[node].instances[instance]
    }

    pub fn state(&self, node: usize) -> State {
        self.nodes[node].instances[0].state()
    }

    pub fn states(&self) -> Vec<State> {
        self.nodes.iter().map(|n| n.instances[0].state()).collect()
    }

    /// Does something to one instance now, then lets its group react and collects the actions.
    pub fn with<R>(
        &mut self,
        node: usize,
        instance: usize,
        f: impl FnOnce(&mut Instance, Instant) -> R,
    ) -> R {
        let now = self.now;
        let r = f(&mut self.nodes[node].instances[instance], now);
        self.sync(node);
        self.flush(node);
        r
    }

    pub fn shutdown(&mut self, node: usize) {
        let now = self.now;
        for instance in &mut self.nodes[node].instances {
            instance.shutdown(now);
        }
        self.flush(node);
        self.nodes[node].alive = false;
    }

    pub fn crash(&mut self, node: usize) {
        self.nodes[node].alive = false;
    }

    /// A crashed node comes back with fresh instances (and group, if `group` is given).
    pub fn restart(&mut self, node: usize, configs: Vec<InstanceConfig>, group: Option<&str>) {
        let now = self.now;
        let n = &mut self.nodes[node];
        n.instances = configs.into_iter().map(|c| Instance::new(c, now)).collect();
        n.group = None;
        n.alive = true;
        if let Some(name) = group {
            self.group(node, name);
        }
        self.flush(node);
    }

    /// The link between two nodes stops carrying packets (both ways).
    pub fn partition(&mut self, a: usize, b: usize) {
        self.cut.insert((a.min(b), a.max(b)));
    }

    pub fn heal(&mut self, a: usize, b: usize) {
        self.cut.remove(&(a.min(b), a.max(b)));
    }

    /// The node's interface goes down or up: the instances are told, the link follows.
    pub fn set_link(&mut self, node: usize, up: bool) {
        self.nodes[node].link_up = up;
        let now = self.now;
        for instance in &mut self.nodes[node].instances {
            instance.set_interface_up(now, up);
        }
        self.sync(node);
        self.flush(node);
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until_instant(until);
    }

    /// Runs until `at` after the start.
    pub fn run_until(&mut self, at: Duration) {
        let until = self.start + at;
        self.run_until_instant(until);
    }

    fn run_until_instant(&mut self, until: Instant) {
        loop {
            let next_packet = self.in_flight.iter().map(|p| p.at).min();
            let next_timer = self
                .nodes
                .iter()
                .filter(|n| n.alive)
                .flat_map(|n| n.instances.iter().filter_map(Instance::poll_timeout))
                .min();
            let next = [next_packet, next_timer].into_iter().flatten().min();
            let Some(next) = next.filter(|t| *t <= until) else {
                self.now = until;
                return;
            };
            self.now = self.now.max(next);
            self.deliver_due();
            self.run_due_timers();
        }
    }

    fn deliver_due(&mut self) {
        let now = self.now;
        let mut due: Vec<InFlight> = Vec::new();
        let mut i = 0;
        while i < self.in_flight.len() {
            if self.in_flight[i].at <= now {
                due.push(self.in_flight.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|p| (p.at, p.seq));
        for packet in due {
            let node = packet.to;
            if !self.nodes[node].alive || !self.nodes[node].link_up {
                continue;
            }
            let vrid = packet.bytes.get(1).copied();
            for k in 0..self.nodes[node].instances.len() {
                // keepalived hands a packet to the instance with its VRID only.
                if Some(self.nodes[node].instances[k].config().vrid) != vrid {
                    continue;
                }
                let result =
                    self.nodes[node].instances[k].handle_packet(now, &packet.bytes, &packet.ctx);
                if let Err(reason) = result {
                    self.drops.push(DropEvent {
                        at: now - self.start,
                        node,
                        instance: k,
                        reason,
                    });
                }
                self.sync(node);
                self.flush(node);
            }
        }
    }

    fn run_due_timers(&mut self) {
        let now = self.now;
        for node in 0..self.nodes.len() {
            if !self.nodes[node].alive {
                continue;
            }
            for k in 0..self.nodes[node].instances.len() {
                if self.nodes[node].instances[k]
                    .poll_timeout()
                    .is_some_and(|t| t <= now)
                {
                    self.nodes[node].instances[k].handle_timeout(now);
                    self.sync(node);
                    self.flush(node);
                }
            }
        }
    }

    fn sync(&mut self, node: usize) {
        let now = self.now;
        let n = &mut self.nodes[node];
        if let Some(group) = &mut n.group {
            let mut members: Vec<&mut Instance> = n.instances.iter_mut().collect();
            group.synchronize(now, &mut members);
        }
    }

    /// Collects every action of the node's instances, routing adverts.
    fn flush(&mut self, node: usize) {
        let at = self.now - self.start;
        for k in 0..self.nodes[node].instances.len() {
            while let Some(action) = self.nodes[node].instances[k].poll_action() {
                if let Action::SendAdvert { advert, src, dst } = &action {
                    let endpoints = Endpoints::new(*src, *dst).expect("one family");
                    let bytes = encode(advert, &endpoints);
                    self.route(node, bytes, endpoints);
                }
                self.events.push(Event {
                    at,
                    node,
                    instance: k,
                    action,
                });
            }
        }
    }

    fn route(&mut self, from: usize, bytes: Vec<u8>, endpoints: Endpoints) {
        if !self.nodes[from].link_up {
            return;
        }
        let ctx = PacketContext {
            endpoints,
            ttl: Some(255),
        };
        for to in 0..self.nodes.len() {
            if to == from || self.cut.contains(&(from.min(to), from.max(to))) {
                continue;
            }
            if !endpoints.is_multicast() && self.nodes[to].addr != endpoints.dst() {
                continue;
            }
            self.seq += 1;
            self.in_flight.push(InFlight {
                at: self.now + LATENCY,
                seq: self.seq,
                to,
                bytes: bytes.clone(),
                ctx,
            });
        }
    }

    // ----- reading the log -----

    /// (when, from, to) of every state change of one instance.
    pub fn transitions(&self, node: usize, instance: usize) -> Vec<(Duration, State, State)> {
        self.events
            .iter()
            .filter(|e| e.node == node && e.instance == instance)
            .filter_map(|e| match &e.action {
                Action::StateChange(c) => Some((e.at, c.from, c.to)),
                _ => None,
            })
            .collect()
    }

    pub fn actions(&self, node: usize, instance: usize) -> Vec<(Duration, Action)> {
        self.events
            .iter()
            .filter(|e| e.node == node && e.instance == instance)
            .map(|e| (e.at, e.action.clone()))
            .collect()
    }

    /// Times at which the instance sent adverts, with their priority.
    pub fn adverts_sent(&self, node: usize, instance: usize) -> Vec<(Duration, u8)> {
        self.actions(node, instance)
            .into_iter()
            .filter_map(|(at, a)| match a {
                Action::SendAdvert { advert, .. } => Some((at, advert.priority)),
                _ => None,
            })
            .collect()
    }

    pub fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&n| {
                self.nodes[n].alive
                    && self.nodes[n]
                        .instances
                        .iter()
                        .any(|i| i.state() == State::Master)
            })
            .collect()
    }
}
