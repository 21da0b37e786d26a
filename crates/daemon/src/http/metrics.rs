//! `/metrics`: Prometheus's text format, from two typed sources. Counters of things that happen
//! (reloads, VRRP transitions, checker failures, probe durations) are counted from the event
//! bus as events arrive; levels (states, weights, connection counts, the data plane's counters)
//! are read from a fresh snapshot at each scrape and written straight out, without a registry
//! of their own, so that 10,000 real servers cost one pass over the snapshot.
//!
//! Address labels are node_exporter's IPVS collector's (`local_address`, `local_port`,
//! `local_mark`, `proto`, `remote_address`, `remote_port`); every name starts with `halb_`.

use std::collections::HashMap;
use std::fmt::Error as FmtError;
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use halb_check::{CheckerId, ProbeSample};
use halb_lb::table::ServiceKey;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::control::protocol::Snapshot;
use crate::event::{DaemonEvent, Event, EventKind, InstanceCounters, VrrpEvent};

/// The `Content-Type` of the text format (version 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

type Labels = Vec<(&'static str, String)>;

/// What is counted from the event bus since the daemon started.
#[derive(Debug)]
pub struct EventMetrics {
    registry: Registry,
    reloads: Family<Labels, Counter>,
    last_reload_ok: Gauge,
    last_reload_time: Gauge,
    transitions: Family<Labels, Counter>,
    verdicts: Family<Labels, Counter>,
    failures: Family<Labels, Counter>,
    probe_failures: Family<Labels, Counter>,
    probe_seconds: Family<Labels, Histogram>,
    /// MYSQL_CHECK's last `read_only` per checker.
    read_only: Mutex<HashMap<CheckerId, bool>>,
}

fn probe_histogram() -> Histogram {
    // 0.5 ms to about 4 s: a local TCP connect to a MySQL login over a slow link.
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

impl Default for EventMetrics {
    fn default() -> Self {
        EventMetrics::new()
    }
}

impl EventMetrics {
    pub fn new() -> EventMetrics {
        let mut registry = Registry::default();
        let reloads = Family::<Labels, Counter>::default();
        let last_reload_ok = Gauge::default();
        last_reload_ok.set(1);
        let last_reload_time = Gauge::default();
        let transitions = Family::<Labels, Counter>::default();
        let verdicts = Family::<Labels, Counter>::default();
        let failures = Family::<Labels, Counter>::default();
        let probe_failures = Family::<Labels, Counter>::default();
        let probe_seconds =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(probe_histogram);
        registry.register(
            "halb_config_reloads",
            "Reloads of the configuration, by outcome (applied, refused)",
            reloads.clone(),
        );
        registry.register(
            "halb_config_last_reload_successful",
            "Whether the last reload was applied (1 before any reload)",
            last_reload_ok.clone(),
        );
        registry.register(
            "halb_config_last_reload_timestamp_seconds",
            "When the last reload finished, in seconds since the Unix epoch (0 before any)",
            last_reload_time.clone(),
        );
        registry.register(
            "halb_vrrp_transitions",
            "VRRP state changes, by instance, new state and reason",
            transitions.clone(),
        );
        registry.register(
            "halb_checker_verdicts",
            "Verdict changes of the checkers, by checker kind and verdict (up, down)",
            verdicts.clone(),
        );
        registry.register(
            "halb_checker_failures",
            "Checker verdicts of down, by checker kind and failure kind",
            failures.clone(),
        );
        registry.register(
            "halb_checker_probe_failures",
            "Failed probes, by checker kind and failure kind",
            probe_failures.clone(),
        );
        registry.register(
            "halb_checker_duration_seconds",
            "How long each probe took, by checker kind",
            probe_seconds.clone(),
        );
        EventMetrics {
            registry,
            reloads,
            last_reload_ok,
            last_reload_time,
            transitions,
            verdicts,
            failures,
            probe_failures,
            probe_seconds,
            read_only: Mutex::new(HashMap::new()),
        }
    }

    /// Counts what `event` says.
    pub fn observe(&self, event: &Event) {
        match &event.kind {
            EventKind::Vrrp(VrrpEvent::Transition {
                instance, change, ..
            }) => {
                self.transitions
                    .get_or_create(&vec![
                        ("vrrp_instance", instance.clone()),
                        ("state", change.to.to_string()),
                        ("reason", reason_label(&change.reason).to_string()),
                    ])
                    .inc();
            }
            EventKind::Vrrp(_) | EventKind::VirtualServer(_) => {}
            EventKind::CheckerVerdict(report) => {
                let kind = report.kind.keyword().to_string();
                self.verdicts
                    .get_or_create(&vec![
                        ("checker", kind.clone()),
                        ("verdict", if report.up { "up" } else { "down" }.to_string()),
                    ])
                    .inc();
                if let Some(failure) = &report.failure {
                    self.failures
                        .get_or_create(&vec![
                            ("checker", kind.clone()),
                            ("kind", failure.kind.as_str().to_string()),
                        ])
                        .inc();
                }
            }
            EventKind::Daemon(DaemonEvent::ReloadFinished(outcome)) => {
                let outcome_label = if outcome.applied {
                    "applied"
                } else {
                    "refused"
                };
                self.reloads
                    .get_or_create(&vec![("outcome", outcome_label.to_string())])
                    .inc();
                self.last_reload_ok.set(i64::from(outcome.applied));
                let secs = event
                    .at
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                self.last_reload_time.set(secs);
            }
            EventKind::Daemon(_) => {}
        }
    }

    /// Times and counts one probe; keeps MYSQL_CHECK's `read_only`.
    pub fn observe_probe(&self, sample: &ProbeSample) {
        let kind = sample.kind.keyword().to_string();
        if let Some(failure) = sample.failure {
            self.probe_failures
                .get_or_create(&vec![
                    ("checker", kind.clone()),
                    ("kind", failure.as_str().to_string()),
                ])
                .inc();
        }
        self.probe_seconds
            .get_or_create(&vec![("checker", kind)])
            .observe(sample.duration.as_secs_f64());
        if let Some(read_only) = sample.read_only {
            self.read_only
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(sample.id, read_only);
        }
    }

    /// The whole text of a scrape.
    pub fn render(
        &self,
        snapshot: Snapshot,
        vrrp: Vec<InstanceCounters>,
    ) -> Result<String, FmtError> {
        let read_only = self
            .read_only
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut levels = Registry::default();
        levels.register_collector(Box::new(Levels {
            snapshot,
            vrrp,
            read_only,
        }));
        let mut text = String::with_capacity(64 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut text, &levels)?;
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// A short, bounded label for a transition's reason (the peer's address stays out of it).
fn reason_label(reason: &halb_vrrp::Reason) -> &'static str {
    use halb_vrrp::Reason;
    match reason {
        Reason::Startup => "startup",
        Reason::AddressOwner => "address_owner",
        Reason::MasterDown => "master_down",
        Reason::MasterReleased => "master_released",
        Reason::Preempted => "preempted",
        Reason::HandedOver => "handed_over",
        Reason::HigherPriority { .. } => "higher_priority",
        Reason::HigherAddress { .. } => "higher_address",
        Reason::InterfaceDown => "interface_down",
        Reason::InterfaceUp => "interface_up",
        Reason::TrackerDown { .. } => "tracker_down",
        Reason::TrackerUp { .. } => "tracker_up",
        Reason::SyncGroup { .. } => "sync_group",
        Reason::Shutdown => "shutdown",
    }
}

/// keepalived-exporter's numbers for `keepalived_vrrp_state`, with STOP after them.
fn state_number(state: &str) -> i64 {
    match state {
        "INIT" => 0,
        "BACKUP" => 1,
        "MASTER" => 2,
        "FAULT" => 3,
        _ => 4,
    }
}

/// The levels of one scrape, written as they are read.
#[derive(Debug)]
struct Levels {
    snapshot: Snapshot,
    vrrp: Vec<InstanceCounters>,
    read_only: HashMap<CheckerId, bool>,
}

/// node_exporter's labels for a service.
fn service_labels(key: &ServiceKey) -> Labels {
    match key {
        ServiceKey::Addr { protocol, addr } => vec![
            ("local_address", addr.ip().to_string()),
            ("local_port", addr.port().to_string()),
            ("local_mark", String::new()),
            ("proto", protocol.as_str().to_string()),
        ],
        ServiceKey::Fwmark { mark, .. } => vec![
            ("local_address", String::new()),
            ("local_port", "0".to_string()),
            ("local_mark", mark.to_string()),
            ("proto", "FWM".to_string()),
        ],
    }
}

fn with_remote(mut labels: Labels, remote: std::net::SocketAddr) -> Labels {
    labels.push(("remote_address", remote.ip().to_string()));
    labels.push(("remote_port", remote.port().to_string()));
    labels
}

/// Writes one family: its descriptor, then each `(labels, value)`.
fn family<V, I>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    series: I,
) -> Result<(), FmtError>
where
    I: IntoIterator<Item = (Labels, V)>,
    V: prometheus_client::encoding::EncodeGaugeValue
        + prometheus_client::encoding::EncodeCounterValue,
{
    let mut metric = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, value) in series {
        let mut one = metric.encode_family(&labels)?;
        match metric_type {
            MetricType::Counter => one.encode_counter::<NoLabelSet, V, u64>(&value, None)?,
            _ => one.encode_gauge(&value)?,
        }
    }
    Ok(())
}

impl Collector for Levels {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), FmtError> {
        use MetricType::{Counter as C, Gauge as G};
        let s = &self.snapshot;
        family(
            &mut e,
            "halb_build_info",
            "halb's version, always 1",
            G,
            [(vec![("version", s.version.clone())], 1u64)],
        )?;
        family(
            &mut e,
            "halb_config_loaded",
            "Whether a configuration is applied (always 1 while the daemon runs)",
            G,
            [(Labels::new(), 1u64)],
        )?;
        family(
            &mut e,
            "halb_dataplane_info",
            "The data plane in use (ipvs, proxy; none without virtual servers), always 1",
            G,
            [(
                vec![(
                    "kind",
                    if s.dataplane.is_empty() {
                        "none".to_string()
                    } else {
                        s.dataplane.clone()
                    },
                )],
                1u64,
            )],
        )?;

        // VRRP.
        let instance = |v: &crate::control::protocol::VrrpView| -> Labels {
            vec![
                ("vrrp_instance", v.name.clone()),
                ("interface", v.interface.clone()),
                ("vrid", v.vrid.to_string()),
            ]
        };
        family(
            &mut e,
            "halb_vrrp_state",
            "VRRP instance state: 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT, 4 STOP (as keepalived-exporter)",
            G,
            s.vrrp
                .iter()
                .map(|v| (instance(v), state_number(&v.state) as u64)),
        )?;
        family(
            &mut e,
            "halb_vrrp_priority",
            "Configured VRRP priority",
            G,
            s.vrrp.iter().map(|v| (instance(v), u64::from(v.priority))),
        )?;
        family(
            &mut e,
            "halb_vrrp_effective_priority",
            "VRRP priority with the trackers' weights",
            G,
            s.vrrp
                .iter()
                .map(|v| (instance(v), u64::from(v.effective_priority))),
        )?;
        let named = |name: &str| vec![("vrrp_instance", name.to_string())];
        type Field = fn(&halb_vrrp::Stats) -> u64;
        let counters: [(&str, &str, Field); 5] = [
            ("halb_vrrp_adverts_sent", "VRRP adverts sent", |s| {
                s.adverts_sent
            }),
            (
                "halb_vrrp_adverts_received",
                "VRRP adverts received that passed the checks",
                |s| s.adverts_received,
            ),
            (
                "halb_vrrp_became_master",
                "Times the instance became MASTER",
                |s| s.became_master,
            ),
            (
                "halb_vrrp_released_master",
                "Times the instance left MASTER",
                |s| s.released_master,
            ),
            (
                "halb_vrrp_priority_zero_received",
                "Adverts with priority 0 received (a master leaving)",
                |s| s.priority_zero_received,
            ),
        ];
        for (name, help, field) in counters {
            family(
                &mut e,
                name,
                help,
                C,
                self.vrrp.iter().map(|c| (named(&c.name), field(&c.stats))),
            )?;
        }
        let causes: [(&str, Field); 11] = [
            ("packet_length", |s| s.packet_length_errors),
            ("ttl", |s| s.ttl_errors),
            ("invalid_type", |s| s.invalid_type),
            ("advert_interval", |s| s.advert_interval_errors),
            ("address_list", |s| s.address_list_errors),
            ("invalid_auth_type", |s| s.invalid_auth_type),
            ("auth_type_mismatch", |s| s.auth_type_mismatch),
            ("auth_failure", |s| s.auth_failures),
            ("checksum", |s| s.checksum_errors),
            ("version", |s| s.version_errors),
            ("vrid", |s| s.vrid_errors),
        ];
        family(
            &mut e,
            "halb_vrrp_receive_errors",
            "VRRP adverts dropped, by cause",
            C,
            self.vrrp.iter().flat_map(|c| {
                causes.iter().map(move |(cause, field)| {
                    (
                        vec![
                            ("vrrp_instance", c.name.clone()),
                            ("cause", cause.to_string()),
                        ],
                        field(&c.stats),
                    )
                })
            }),
        )?;

        // Virtual servers.
        let vs = |v: &crate::control::protocol::VirtualServerView| {
            vec![("virtual_server", v.name.clone())]
        };
        family(
            &mut e,
            "halb_virtual_server_quorum_up",
            "Whether the virtual server's alive real servers reach its quorum",
            G,
            s.virtual_servers
                .iter()
                .map(|v| (vs(v), u64::from(v.quorum_up))),
        )?;
        family(
            &mut e,
            "halb_virtual_server_sorry_server_active",
            "Whether the sorry server stands in for the real servers",
            G,
            s.virtual_servers
                .iter()
                .map(|v| (vs(v), u64::from(v.sorry_server_active))),
        )?;
        type Count = fn(&halb_dataplane::Counters) -> u64;
        let totals: [(&str, &str, Count); 5] = [
            ("connections", "Connections", |c| c.conns),
            ("incoming_packets", "Packets from clients", |c| c.inpkts),
            ("outgoing_packets", "Packets to clients", |c| c.outpkts),
            ("incoming_bytes", "Bytes from clients", |c| c.inbytes),
            ("outgoing_bytes", "Bytes to clients", |c| c.outbytes),
        ];
        for (what, help, field) in totals {
            family(
                &mut e,
                &format!("halb_virtual_server_{what}"),
                &format!("{help} through the service"),
                C,
                s.services
                    .iter()
                    .map(|sv| (service_labels(&sv.key), field(&sv.counters))),
            )?;
        }

        // Real servers: health from the virtual servers, the rest from the table.
        family(
            &mut e,
            "halb_real_server_up",
            "Whether every checker of the real server passes",
            G,
            s.virtual_servers.iter().flat_map(|v| {
                v.services.iter().flat_map(move |key| {
                    let labels = service_labels(key);
                    v.real_servers
                        .iter()
                        .map(move |rs| (with_remote(labels.clone(), rs.addr), u64::from(rs.alive)))
                })
            }),
        )?;
        let dests = || {
            s.services.iter().flat_map(|sv| {
                let labels = service_labels(&sv.key);
                sv.dests
                    .iter()
                    .map(move |d| (with_remote(labels.clone(), d.addr), d))
            })
        };
        family(
            &mut e,
            "halb_real_server_weight",
            "The real server's weight in the data plane (0: no new connections)",
            G,
            dests().map(|(l, d)| (l, u64::from(d.weight))),
        )?;
        family(
            &mut e,
            "halb_real_server_connections_active",
            "Active connections to the real server",
            G,
            dests().map(|(l, d)| (l, u64::from(d.active))),
        )?;
        family(
            &mut e,
            "halb_real_server_connections_inactive",
            "Inactive connections to the real server",
            G,
            dests().map(|(l, d)| (l, u64::from(d.inactive))),
        )?;
        for (what, help, field) in totals {
            family(
                &mut e,
                &format!("halb_real_server_{what}"),
                &format!("{help} through the real server"),
                C,
                dests().map(|(l, d)| (l, field(&d.counters))),
            )?;
        }

        // Checkers.
        let checkers = || {
            s.virtual_servers.iter().flat_map(|v| {
                v.services.iter().flat_map(move |key| {
                    let labels = service_labels(key);
                    v.real_servers
                        .iter()
                        .enumerate()
                        .flat_map(move |(rs_index, rs)| {
                            let labels = with_remote(labels.clone(), rs.addr);
                            rs.checkers.iter().enumerate().map(move |(index, c)| {
                                let mut l = labels.clone();
                                l.push(("checker", c.kind.clone()));
                                l.push(("checker_index", index.to_string()));
                                (l, CheckerId::new(v.index, rs_index, index), c)
                            })
                        })
                })
            })
        };
        family(
            &mut e,
            "halb_checker_up",
            "The checker's last verdict (1 up, 0 down)",
            G,
            checkers().map(|(l, _, c)| (l, u64::from(c.up))),
        )?;
        family(
            &mut e,
            "halb_mysql_read_only",
            "MYSQL_CHECK: the server's @@global.read_only at the last probe (1: refuses writes)",
            G,
            checkers()
                .filter_map(|(l, id, _)| self.read_only.get(&id).map(|ro| (l, u64::from(*ro)))),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::control::protocol::{
        CheckerView, DestView, RealServerView, ServiceView, VirtualServerView, VrrpView,
    };
    use halb_config::model::CheckerKind;
    use halb_lb::table::ProtocolKey;

    fn snapshot() -> Snapshot {
        let key = ServiceKey::Addr {
            protocol: ProtocolKey::Tcp,
            addr: "192.168.66.251:3306".parse().unwrap(),
        };
        let rs = "192.168.66.253:3306".parse().unwrap();
        Snapshot {
            version: "9.9.9".into(),
            dataplane: "proxy".into(),
            services: vec![ServiceView {
                key,
                scheduler: "wrr".into(),
                flags: Default::default(),
                persistence: None,
                counters: halb_dataplane::Counters {
                    conns: 7,
                    ..Default::default()
                },
                rates: Default::default(),
                dests: vec![DestView {
                    addr: rs,
                    forward: "Proxy".into(),
                    weight: 3,
                    active: 2,
                    inactive: 1,
                    uthreshold: 0,
                    lthreshold: 0,
                    counters: Default::default(),
                    rates: Default::default(),
                }],
            }],
            connections: Vec::new(),
            vrrp: vec![VrrpView {
                name: "INT".into(),
                interface: "eth0".into(),
                vrid: 200,
                state: "MASTER".into(),
                priority: 100,
                effective_priority: 90,
                virtual_addresses: vec!["192.168.66.251/32".into()],
                last_master: None,
            }],
            virtual_servers: vec![VirtualServerView {
                name: "[192.168.66.251]:tcp:3306".into(),
                index: 0,
                services: vec![key],
                quorum_up: true,
                sorry_server_active: false,
                failback_held: None,
                real_servers: vec![RealServerView {
                    addr: rs,
                    alive: true,
                    weight: 3,
                    checkers: vec![CheckerView {
                        kind: "MYSQL_CHECK".into(),
                        up: true,
                        detail: String::new(),
                    }],
                }],
            }],
            ..Snapshot::default()
        }
    }

    #[test]
    fn levels_events_and_probes_in_one_scrape() {
        let metrics = EventMetrics::new();
        metrics.observe_probe(&ProbeSample {
            id: CheckerId::new(0, 0, 0),
            kind: CheckerKind::Mysql,
            duration: Duration::from_millis(3),
            failure: None,
            read_only: Some(true),
        });
        let counters = vec![InstanceCounters {
            name: "INT".into(),
            stats: halb_vrrp::Stats {
                adverts_sent: 5,
                checksum_errors: 2,
                ..Default::default()
            },
        }];
        let text = metrics.render(snapshot(), counters).unwrap();
        let remote = "local_address=\"192.168.66.251\",local_port=\"3306\",local_mark=\"\",\
                      proto=\"TCP\",remote_address=\"192.168.66.253\",remote_port=\"3306\"";
        for line in [
            "halb_build_info{version=\"9.9.9\"} 1".to_string(),
            "halb_dataplane_info{kind=\"proxy\"} 1".into(),
            "halb_vrrp_state{vrrp_instance=\"INT\",interface=\"eth0\",vrid=\"200\"} 2".into(),
            "halb_vrrp_effective_priority{vrrp_instance=\"INT\",interface=\"eth0\",vrid=\"200\"} 90"
                .into(),
            "halb_vrrp_adverts_sent_total{vrrp_instance=\"INT\"} 5".into(),
            "halb_vrrp_receive_errors_total{vrrp_instance=\"INT\",cause=\"checksum\"} 2".into(),
            "halb_virtual_server_connections_total{local_address=\"192.168.66.251\",\
             local_port=\"3306\",local_mark=\"\",proto=\"TCP\"} 7"
                .into(),
            format!("halb_real_server_up{{{remote}}} 1"),
            format!("halb_real_server_weight{{{remote}}} 3"),
            format!("halb_real_server_connections_active{{{remote}}} 2"),
            format!(
                "halb_checker_up{{{remote},checker=\"MYSQL_CHECK\",checker_index=\"0\"}} 1"
            ),
            format!(
                "halb_mysql_read_only{{{remote},checker=\"MYSQL_CHECK\",checker_index=\"0\"}} 1"
            ),
            "halb_checker_duration_seconds_count{checker=\"MYSQL_CHECK\"} 1".into(),
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
    }
}
