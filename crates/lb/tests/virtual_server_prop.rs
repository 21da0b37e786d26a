//! For random virtual servers and random sequences of verdicts, the table always equals a
//! plain recomputation from which checkers are up, the weights they ask for, and keepalived's
//! quorum rule with hysteresis.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use halb_config::model::{
    Checker, CheckerCommon, Forwarding, LvsConfig, MiscCheck, Protocol, RealServer, Scheduler,
    Script, SorryServer, TcpCheck, VirtualServer, VirtualServerKey,
};
use halb_lb::table::{Destination, ProtocolKey, Service, ServiceKey, Table};
use halb_lb::virtual_server::{CheckerId, ConnectionDrops, Output, VirtualServers};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct CheckerSpec {
    alpha: bool,
    dynamic: bool,
}

#[derive(Debug, Clone)]
struct ServerSpec {
    weight: u32,
    inhibit: bool,
    checkers: Vec<CheckerSpec>,
}

#[derive(Debug, Clone)]
struct VsSpec {
    servers: Vec<ServerSpec>,
    /// Fractions of the total weight, turned into valid quorum / hysteresis below.
    quorum_pick: u32,
    hysteresis_pick: u32,
    sorry: Option<bool>,
    nat: bool,
}

#[derive(Debug, Clone)]
struct Verdict {
    rs: usize,
    checker: usize,
    up: bool,
    weight: Option<u32>,
}

fn checker_spec() -> impl Strategy<Value = CheckerSpec> {
    (any::<bool>(), any::<bool>()).prop_map(|(alpha, dynamic)| CheckerSpec { alpha, dynamic })
}

fn server_spec() -> impl Strategy<Value = ServerSpec> {
    (
        0u32..5,
        any::<bool>(),
        prop::collection::vec(checker_spec(), 0..3),
    )
        .prop_map(|(weight, inhibit, checkers)| ServerSpec {
            weight,
            inhibit,
            checkers,
        })
}

fn vs_spec() -> impl Strategy<Value = VsSpec> {
    (
        prop::collection::vec(server_spec(), 1..5),
        any::<u32>(),
        any::<u32>(),
        prop::option::of(any::<bool>()),
        any::<bool>(),
    )
        .prop_map(
            |(servers, quorum_pick, hysteresis_pick, sorry, nat)| VsSpec {
                servers,
                quorum_pick,
                hysteresis_pick,
                sorry,
                nat,
            },
        )
}

fn verdicts() -> impl Strategy<Value = Vec<Verdict>> {
    prop::collection::vec(
        (
            0usize..5,
            0usize..3,
            any::<bool>(),
            prop::option::of(0u32..8),
        )
            .prop_map(|(rs, checker, up, weight)| Verdict {
                rs,
                checker,
                up,
                weight,
            }),
        0..60,
    )
}

const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

fn rs_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1 + i as u8))
}

const SORRY_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);

impl VsSpec {
    fn total_weight(&self) -> u32 {
        self.servers.iter().map(|s| s.weight).sum()
    }

    /// keepalived's limits: 1 ≤ quorum ≤ total weight (when that is ≥ 1), hysteresis < quorum.
    fn quorum(&self) -> u32 {
        let max = self.total_weight().max(1);
        1 + self.quorum_pick % max
    }

    fn hysteresis(&self) -> u32 {
        self.hysteresis_pick % self.quorum()
    }

    fn config(&self) -> LvsConfig {
        let mut vs = VirtualServer::new(VirtualServerKey::Addr {
            ip: IpAddr::V4(VIP),
            port: 80,
        });
        vs.protocol = Some(Protocol::Tcp);
        vs.sched = Scheduler::Wrr;
        vs.forwarding = if self.nat {
            Forwarding::Nat
        } else {
            Forwarding::Dr
        };
        vs.quorum = self.quorum();
        vs.hysteresis = self.hysteresis();
        vs.sorry_server = self.sorry.map(|inhibit| SorryServer {
            ip: IpAddr::V4(SORRY_IP),
            port: 8080,
            inhibit,
            lvs_method: None,
        });
        for (i, s) in self.servers.iter().enumerate() {
            let mut rs = RealServer::new(rs_ip(i), 8080);
            rs.weight = s.weight;
            rs.inhibit_on_failure = Some(s.inhibit);
            rs.checkers = s
                .checkers
                .iter()
                .map(|c| {
                    let common = CheckerCommon {
                        alpha: Some(c.alpha),
                        ..CheckerCommon::default()
                    };
                    if c.dynamic {
                        Checker::Misc(MiscCheck {
                            common,
                            misc_path: Script {
                                argv: vec!["/bin/true".into()],
                                user: None,
                                group: None,
                            },
                            misc_timeout_us: None,
                            misc_dynamic: true,
                        })
                    } else {
                        Checker::Tcp(TcpCheck { common })
                    }
                })
                .collect();
            vs.real_servers.push(rs);
        }
        LvsConfig {
            groups: Vec::new(),
            virtual_servers: vec![vs],
        }
    }
}

/// The recomputation: checker states and weights, and the quorum flag with hysteresis.
struct Model {
    spec: VsSpec,
    /// (up, what the checker adds to the configured weight)
    checkers: Vec<Vec<(bool, i64)>>,
    quorum_up: bool,
}

impl Model {
    fn new(spec: &VsSpec) -> Model {
        let checkers = spec
            .servers
            .iter()
            .map(|s| s.checkers.iter().map(|c| (!c.alpha, 0)).collect())
            .collect();
        let mut m = Model {
            spec: spec.clone(),
            checkers,
            quorum_up: false,
        };
        m.quorum_up = m.alive_weight() >= i64::from(spec.quorum() + spec.hysteresis());
        m
    }

    fn alive(&self, rs: usize) -> bool {
        self.checkers[rs].iter().all(|c| c.0)
    }

    fn weight(&self, rs: usize) -> u32 {
        let w = i64::from(self.spec.servers[rs].weight)
            + self.checkers[rs].iter().map(|c| c.1).sum::<i64>();
        w.clamp(0, i64::from(i32::MAX)) as u32
    }

    fn alive_weight(&self) -> i64 {
        (0..self.spec.servers.len())
            .filter(|&i| self.alive(i))
            .map(|i| i64::from(self.weight(i)))
            .sum()
    }

    fn sorry_active(&self) -> bool {
        self.spec.sorry.is_some() && !self.quorum_up
    }

    fn apply(&mut self, v: &Verdict) {
        let Some(c) = self
            .checkers
            .get_mut(v.rs)
            .and_then(|cs| cs.get_mut(v.checker))
        else {
            return;
        };
        c.0 = v.up;
        if !v.up {
            c.1 = 0;
        } else if let Some(w) = v.weight {
            c.1 = i64::from(w) - i64::from(self.spec.servers[v.rs].weight);
        }
        let sum = self.alive_weight();
        let (q, h) = (
            i64::from(self.spec.quorum()),
            i64::from(self.spec.hysteresis()),
        );
        if !self.quorum_up && sum >= q + h {
            self.quorum_up = true;
        } else if self.quorum_up && sum < q - h {
            self.quorum_up = false;
        }
    }

    fn table(&self) -> Table {
        let key = ServiceKey::Addr {
            protocol: ProtocolKey::Tcp,
            addr: SocketAddr::new(IpAddr::V4(VIP), 80),
        };
        let forwarding = if self.spec.nat {
            Forwarding::Nat
        } else {
            Forwarding::Dr
        };
        let port = if self.spec.nat { 8080 } else { 80 };
        let dest = |ip: IpAddr, weight: u32| Destination {
            addr: SocketAddr::new(ip, port),
            weight,
            forwarding,
            uthreshold: 0,
            lthreshold: 0,
        };
        let mut service = Service {
            key,
            scheduler: Scheduler::Wrr,
            flags: Default::default(),
            persistence: None,
            persistence_engine: None,
            fallback: self.spec.sorry.map(|_| dest(IpAddr::V4(SORRY_IP), 1)),
            destinations: Default::default(),
        };
        for (i, s) in self.spec.servers.iter().enumerate() {
            let weight = if self.alive(i) && !self.sorry_active() {
                Some(self.weight(i))
            } else if s.inhibit {
                Some(0)
            } else {
                None
            };
            if let Some(w) = weight {
                service
                    .destinations
                    .insert(dest(rs_ip(i), w).addr, dest(rs_ip(i), w));
            }
        }
        let sorry_weight = match self.spec.sorry {
            Some(_) if self.sorry_active() => Some(1),
            Some(true) => Some(0),
            _ => None,
        };
        if let Some(w) = sorry_weight {
            let d = dest(IpAddr::V4(SORRY_IP), w);
            service.destinations.insert(d.addr, d);
        }
        let mut table = Table::default();
        table.services.insert(key, service);
        table
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_table_follows_the_alive_set_and_quorum(spec in vs_spec(), events in verdicts()) {
        let mut vss = VirtualServers::new(&spec.config());
        // Only the handback's drops, whose timing this property pins down.
        vss.set_connection_drops(0, ConnectionDrops { on_sorry_handback: true, on_real_server_removal: false });
        let mut model = Model::new(&spec);
        let _ = vss.start();
        let mut held = vss.table();
        prop_assert_eq!(&held, &model.table(), "at start");
        for v in &events {
            let sorry_was = model.sorry_active();
            let out = vss.handle_check(CheckerId { vs: 0, rs: v.rs, checker: v.checker }, v.up, v.weight);
            model.apply(v);
            let table = vss.table();
            prop_assert_eq!(&table, &model.table(), "after {:?}", v);
            prop_assert_eq!(vss.quorum_up(0), Some(model.quorum_up));
            for rs in 0..spec.servers.len() {
                prop_assert_eq!(vss.real_server_alive(0, rs), Some(model.alive(rs)));
            }
            // The data plane reaches the new table by applying the diff.
            let changes = held.diff(&table);
            held.apply(&changes);
            prop_assert_eq!(&held, &table);
            // The sorry server's connections are dropped exactly when it hands back.
            let drops = out.iter().filter(|o| matches!(o, Output::DropConnections { .. })).count();
            let handback = sorry_was && !model.sorry_active();
            prop_assert_eq!(drops, usize::from(handback));
        }
        let _ = vss.shutdown();
        prop_assert_eq!(vss.table(), Table::default());
    }
}
