//! `/metrics`: Prometheus's text format, from two typed sources. Counters of things that happen
//! (reloads, VRRP transitions, checker failures, probe durations) are counted from the event
//! bus as events arrive; levels (states, weights, connection counts, the data plane's counters)
//! are read from a fresh snapshot at each scrape, without a registry of their own.
//!
//! The levels of 10,000 real servers are about 100,000 series and 16 MB of text, nearly all of
//! it names and labels that change only with the configuration. The first scrape (and any
//! scrape after the set of series changed) writes them with prometheus-client's encoder and
//! keeps that text as a template; the scrapes after it only put the new values into the
//! template. A hash of everything the labels are made of says whether the template still
//! fits.
//!
//! Address labels are node_exporter's IPVS collector's (`local_address`, `local_port`,
//! `local_mark`, `proto`, `remote_address`, `remote_port`); every name starts with `halb_`.

use std::collections::HashMap;
use std::fmt::Error as FmtError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use halb_check::{CheckerId, ProbeSample};
use halb_lb::table::ServiceKey;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
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
    /// The length of the last scrape's text: the next one is written into a buffer that
    /// size (growing a 16 MB text by doubling copied it several times over).
    last_len: AtomicUsize,
    /// The levels' text of the last scrape, cut at its values.
    template: Mutex<Option<Template>>,
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
            last_len: AtomicUsize::new(0),
            template: Mutex::new(None),
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
        let levels = Levels {
            snapshot,
            vrrp,
            read_only,
        };
        let shape = levels.shape();
        let last = self.last_len.load(Ordering::Relaxed);
        let mut text = String::with_capacity((last + last / 16).max(64 * 1024));
        let mut template = self
            .template
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let filled = match template.as_ref() {
            Some(t) if t.shape == shape => {
                let mut values = Values(Vec::with_capacity(t.before.len()));
                levels.visit(&mut values)?;
                t.fill(&values.0, &mut text)
            }
            _ => false,
        };
        if !filled {
            let mut registry = Registry::default();
            registry.register_collector(Box::new(levels));
            let mut written = String::with_capacity(text.capacity());
            prometheus_client::encoding::prometheus_text::encode(&mut written, &registry)?;
            text.push_str(&written);
            *template = Some(Template::new(shape, written));
        }
        drop(template);
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        self.last_len.store(text.len(), Ordering::Relaxed);
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

/// node_exporter's labels of a service, formatted once per scrape and borrowed by every
/// series of the service and its real servers (a scrape of 10,000 real servers writes about
/// 100,000 series: formatting the addresses per series was most of its time).
struct ServiceLabels {
    address: String,
    port: String,
    mark: String,
    proto: &'static str,
}

impl ServiceLabels {
    fn new(key: &ServiceKey) -> ServiceLabels {
        match key {
            ServiceKey::Addr { protocol, addr } => ServiceLabels {
                address: addr.ip().to_string(),
                port: addr.port().to_string(),
                mark: String::new(),
                proto: protocol.as_str(),
            },
            ServiceKey::Fwmark { mark, .. } => ServiceLabels {
                address: String::new(),
                port: "0".to_string(),
                mark: mark.to_string(),
                proto: "FWM",
            },
        }
    }

    fn set(&self) -> [(&'static str, &str); 4] {
        [
            ("local_address", &self.address),
            ("local_port", &self.port),
            ("local_mark", &self.mark),
            ("proto", self.proto),
        ]
    }
}

/// A real server's `remote_address` and `remote_port`, formatted once per scrape.
struct RemoteLabels {
    address: String,
    port: String,
}

impl RemoteLabels {
    fn new(addr: std::net::SocketAddr) -> RemoteLabels {
        RemoteLabels {
            address: addr.ip().to_string(),
            port: addr.port().to_string(),
        }
    }

    fn set(&self) -> [(&'static str, &str); 2] {
        [
            ("remote_address", &self.address),
            ("remote_port", &self.port),
        ]
    }
}

/// Where the levels' families go: prometheus-client's encoder (the whole text), or a list of
/// values (to fill a kept template).
trait Families {
    fn family<L, I>(
        &mut self,
        name: &str,
        help: &str,
        metric_type: MetricType,
        series: I,
    ) -> Result<(), FmtError>
    where
        I: IntoIterator<Item = (L, u64)>,
        L: EncodeLabelSet;
}

/// Writes each family: its descriptor, then each `(labels, value)`.
impl Families for DescriptorEncoder<'_> {
    fn family<L, I>(
        &mut self,
        name: &str,
        help: &str,
        metric_type: MetricType,
        series: I,
    ) -> Result<(), FmtError>
    where
        I: IntoIterator<Item = (L, u64)>,
        L: EncodeLabelSet,
    {
        let mut metric = self.encode_descriptor(name, help, None, metric_type)?;
        for (labels, value) in series {
            let mut one = metric.encode_family(&labels)?;
            match metric_type {
                MetricType::Counter => one.encode_counter::<NoLabelSet, u64, u64>(&value, None)?,
                _ => one.encode_gauge(&value)?,
            }
        }
        Ok(())
    }
}

/// The values alone, in the order the encoder writes their series.
struct Values(Vec<u64>);

impl Families for Values {
    fn family<L, I>(&mut self, _: &str, _: &str, _: MetricType, series: I) -> Result<(), FmtError>
    where
        I: IntoIterator<Item = (L, u64)>,
        L: EncodeLabelSet,
    {
        self.0.extend(series.into_iter().map(|(_, value)| value));
        Ok(())
    }
}

/// The text of the levels with a hole where each value goes.
struct Template {
    /// The [`Levels::shape`] the text was written for.
    shape: u64,
    text: String,
    /// For each series: the text before its value (the descriptors before it, its name and
    /// labels and the space), as a range of `text`. Its value and a newline follow.
    before: Vec<std::ops::Range<usize>>,
    /// What follows the last value (descriptors of families without series).
    tail: std::ops::Range<usize>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("shape", &self.shape)
            .field("bytes", &self.text.len())
            .field("series", &self.before.len())
            .finish()
    }
}

impl Template {
    /// Cuts the encoder's text of the levels at each value.
    fn new(shape: u64, text: String) -> Template {
        let mut before = Vec::new();
        let (mut start, mut at) = (0, 0);
        for line in text.split_inclusive('\n') {
            if !line.starts_with('#') {
                // `name{labels} value`: label values may hold spaces, the value does not.
                if let Some(space) = line.rfind(' ') {
                    before.push(start..at + space + 1);
                    start = at + line.len();
                }
            }
            at += line.len();
        }
        Template {
            shape,
            tail: start..text.len(),
            text,
            before,
        }
    }

    /// Writes the template with `values` into `out`; false (nothing written) when the
    /// number of values is not the template's.
    fn fill(&self, values: &[u64], out: &mut String) -> bool {
        if values.len() != self.before.len() {
            return false;
        }
        let mut number = itoa::Buffer::new();
        for (range, value) in self.before.iter().zip(values) {
            out.push_str(&self.text[range.clone()]);
            out.push_str(number.format(*value));
            out.push('\n');
        }
        out.push_str(&self.text[self.tail.clone()]);
        true
    }
}

/// A real server of a virtual server's service, as the checkers see it.
struct CheckedServer<'a> {
    service: &'a ServiceLabels,
    remote: RemoteLabels,
    vs_index: usize,
    rs_index: usize,
    rs: &'a crate::control::protocol::RealServerView,
}

impl Collector for Levels {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), FmtError> {
        self.visit(&mut e)
    }
}

impl Levels {
    /// A hash of everything the levels' names and labels are made of, and of which series
    /// there are: equal shapes give equal text but for the values.
    fn shape(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let s = &self.snapshot;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&s.version, &s.dataplane).hash(&mut h);
        for v in &s.vrrp {
            (&v.name, &v.interface, v.vrid).hash(&mut h);
        }
        for c in &self.vrrp {
            c.name.hash(&mut h);
        }
        for sv in &s.services {
            sv.key.hash(&mut h);
            for d in &sv.dests {
                d.addr.hash(&mut h);
            }
            sv.dests.len().hash(&mut h);
        }
        s.services.len().hash(&mut h);
        for v in &s.virtual_servers {
            (&v.name, v.index, &v.services).hash(&mut h);
            for (rs_index, rs) in v.real_servers.iter().enumerate() {
                rs.addr.hash(&mut h);
                // The replica series are there while the state is known, the lag while known.
                rs.replica
                    .as_ref()
                    .map(|r| r.seconds_behind.is_some())
                    .hash(&mut h);
                for (index, c) in rs.checkers.iter().enumerate() {
                    c.kind.hash(&mut h);
                    let id = CheckerId::new(v.index, rs_index, index);
                    self.read_only.contains_key(&id).hash(&mut h);
                }
                rs.checkers.len().hash(&mut h);
            }
            v.real_servers.len().hash(&mut h);
        }
        s.virtual_servers.len().hash(&mut h);
        // The withdrawal reason is a label: its series changes with it.
        if let Some(b) = &s.bgp {
            for a in &b.announcements {
                (&a.prefix, &a.reason_kind).hash(&mut h);
            }
            for x in &b.sessions {
                (&x.protocol, &x.neighbor, &x.state).hash(&mut h);
            }
        }
        s.bgp.is_some().hash(&mut h);
        h.finish()
    }

    /// Hands each family of the levels to `f`, in the order of the text. A family whose
    /// series come and go (as `halb_mysql_read_only`) must have what decides them hashed in
    /// [`Levels::shape`]: otherwise a kept template may put values under other series' labels
    /// when as many series come as go.
    fn visit<F: Families>(&self, f: &mut F) -> Result<(), FmtError> {
        use MetricType::{Counter as C, Gauge as G};
        let s = &self.snapshot;
        let none: [(&str, &str); 0] = [];
        f.family(
            "halb_build_info",
            "halb's version, always 1",
            G,
            [([("version", s.version.as_str())], 1u64)],
        )?;
        f.family(
            "halb_config_loaded",
            "Whether a configuration is applied (always 1 while the daemon runs)",
            G,
            [(none, 1u64)],
        )?;
        let kind = if s.dataplane.is_empty() {
            "none"
        } else {
            s.dataplane.as_str()
        };
        f.family(
            "halb_dataplane_info",
            "The data plane in use (ipvs, proxy; none without virtual servers), always 1",
            G,
            [([("kind", kind)], 1u64)],
        )?;

        // VRRP.
        let vrids: Vec<String> = s.vrrp.iter().map(|v| v.vrid.to_string()).collect();
        let instance = |i: usize| -> [(&str, &str); 3] {
            let v = &s.vrrp[i];
            [
                ("vrrp_instance", v.name.as_str()),
                ("interface", v.interface.as_str()),
                ("vrid", vrids[i].as_str()),
            ]
        };
        f.family(
            "halb_vrrp_state",
            "VRRP instance state: 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT, 4 STOP (as keepalived-exporter)",
            G,
            s.vrrp
                .iter()
                .enumerate()
                .map(|(i, v)| (instance(i), state_number(&v.state) as u64)),
        )?;
        f.family(
            "halb_vrrp_priority",
            "Configured VRRP priority",
            G,
            s.vrrp
                .iter()
                .enumerate()
                .map(|(i, v)| (instance(i), u64::from(v.priority))),
        )?;
        f.family(
            "halb_vrrp_effective_priority",
            "VRRP priority with the trackers' weights",
            G,
            s.vrrp
                .iter()
                .enumerate()
                .map(|(i, v)| (instance(i), u64::from(v.effective_priority))),
        )?;
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
            f.family(
                name,
                help,
                C,
                self.vrrp
                    .iter()
                    .map(|c| ([("vrrp_instance", c.name.as_str())], field(&c.stats))),
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
        f.family(
            "halb_vrrp_receive_errors",
            "VRRP adverts dropped, by cause",
            C,
            self.vrrp.iter().flat_map(|c| {
                causes.iter().map(move |(cause, field)| {
                    (
                        [("vrrp_instance", c.name.as_str()), ("cause", *cause)],
                        field(&c.stats),
                    )
                })
            }),
        )?;

        // Virtual servers.
        f.family(
            "halb_virtual_server_quorum_up",
            "Whether the virtual server's alive real servers reach its quorum",
            G,
            s.virtual_servers.iter().map(|v| {
                (
                    [("virtual_server", v.name.as_str())],
                    u64::from(v.quorum_up),
                )
            }),
        )?;
        f.family(
            "halb_virtual_server_sorry_server_active",
            "Whether the sorry server stands in for the real servers",
            G,
            s.virtual_servers.iter().map(|v| {
                (
                    [("virtual_server", v.name.as_str())],
                    u64::from(v.sorry_server_active),
                )
            }),
        )?;
        // Route announcement (bgp_announce).
        let bgp = s.bgp.as_ref();
        let routes = bgp.map(|b| b.announcements.as_slice()).unwrap_or(&[]);
        let sessions = bgp.map(|b| b.sessions.as_slice()).unwrap_or(&[]);
        f.family(
            "halb_bgp_route_announced",
            "Whether the route is announced by BGP (0: withdrawn)",
            G,
            routes
                .iter()
                .map(|a| ([("prefix", a.prefix.as_str())], u64::from(a.announced))),
        )?;
        f.family(
            "halb_bgp_route_withdrawn",
            "1 for a withdrawn route, with why (waiting, quorum_lost, not_master, group_not_master, drain, shutdown)",
            G,
            routes.iter().filter_map(|a| {
                a.reason_kind
                    .as_deref()
                    .map(|r| ([("prefix", a.prefix.as_str()), ("reason", r)], 1u64))
            }),
        )?;
        f.family(
            "halb_bgp_route_since_seconds",
            "When the route was last announced or withdrawn (seconds since the Unix epoch)",
            G,
            routes
                .iter()
                .map(|a| ([("prefix", a.prefix.as_str())], a.since)),
        )?;
        f.family(
            "halb_bgp_session_established",
            "Whether BIRD's BGP session with the neighbor is Established, with BIRD's state",
            G,
            sessions.iter().map(|x| {
                (
                    [
                        ("neighbor", x.neighbor.as_str()),
                        ("protocol", x.protocol.as_str()),
                        ("state", x.state.as_str()),
                    ],
                    u64::from(x.state == "Established"),
                )
            }),
        )?;
        // The data plane's table: each service's labels, then each destination's.
        let services: Vec<ServiceLabels> = s
            .services
            .iter()
            .map(|sv| ServiceLabels::new(&sv.key))
            .collect();
        let dests: Vec<(
            &ServiceLabels,
            RemoteLabels,
            &crate::control::protocol::DestView,
        )> = s
            .services
            .iter()
            .zip(&services)
            .flat_map(|(sv, labels)| {
                sv.dests
                    .iter()
                    .map(move |d| (labels, RemoteLabels::new(d.addr), d))
            })
            .collect();
        type Count = fn(&halb_dataplane::Counters) -> u64;
        let totals: [(&str, &str, Count); 5] = [
            ("connections", "Connections", |c| c.conns),
            ("incoming_packets", "Packets from clients", |c| c.inpkts),
            ("outgoing_packets", "Packets to clients", |c| c.outpkts),
            ("incoming_bytes", "Bytes from clients", |c| c.inbytes),
            ("outgoing_bytes", "Bytes to clients", |c| c.outbytes),
        ];
        for (what, help, field) in totals {
            f.family(
                &format!("halb_virtual_server_{what}"),
                &format!("{help} through the service"),
                C,
                s.services
                    .iter()
                    .zip(&services)
                    .map(|(sv, labels)| (labels.set(), field(&sv.counters))),
            )?;
        }

        // Real servers: health from the virtual servers, the rest from the table.
        let vs_services: Vec<Vec<ServiceLabels>> = s
            .virtual_servers
            .iter()
            .map(|v| v.services.iter().map(ServiceLabels::new).collect())
            .collect();
        let checked: Vec<CheckedServer> = s
            .virtual_servers
            .iter()
            .zip(&vs_services)
            .flat_map(|(v, labels)| {
                labels.iter().flat_map(move |service| {
                    v.real_servers
                        .iter()
                        .enumerate()
                        .map(move |(rs_index, rs)| CheckedServer {
                            service,
                            remote: RemoteLabels::new(rs.addr),
                            vs_index: v.index,
                            rs_index,
                            rs,
                        })
                })
            })
            .collect();
        f.family(
            "halb_real_server_up",
            "Whether every checker of the real server passes",
            G,
            checked
                .iter()
                .map(|c| ((c.service.set(), c.remote.set()), u64::from(c.rs.alive))),
        )?;
        // A mysql_writer's servers: their replication, as the catch-up reads it.
        let replicas = || {
            checked
                .iter()
                .filter_map(|c| Some(((c.service.set(), c.remote.set()), c.rs.replica.as_ref()?)))
        };
        f.family(
            "halb_mysql_replica_io_running",
            "A mysql_writer's real server: its replication IO thread is connected to its source",
            G,
            replicas().map(|(l, r)| (l, u64::from(r.io_running))),
        )?;
        f.family(
            "halb_mysql_replica_sql_running",
            "A mysql_writer's real server: its replication SQL thread applies what it fetched",
            G,
            replicas().map(|(l, r)| (l, u64::from(r.sql_running))),
        )?;
        f.family(
            "halb_mysql_replica_seconds_behind",
            "A mysql_writer's real server: Seconds_Behind_Master (absent while unknown)",
            G,
            replicas().filter_map(|(l, r)| Some((l, r.seconds_behind?))),
        )?;
        let dest_series = |value: fn(&crate::control::protocol::DestView) -> u64| {
            dests
                .iter()
                .map(move |(service, remote, d)| ((service.set(), remote.set()), value(d)))
        };
        f.family(
            "halb_real_server_weight",
            "The real server's weight in the data plane (0: no new connections)",
            G,
            dest_series(|d| u64::from(d.weight)),
        )?;
        f.family(
            "halb_real_server_connections_active",
            "Active connections to the real server",
            G,
            dest_series(|d| u64::from(d.active)),
        )?;
        f.family(
            "halb_real_server_connections_inactive",
            "Inactive connections to the real server",
            G,
            dest_series(|d| u64::from(d.inactive)),
        )?;
        for (what, help, field) in totals {
            f.family(
                &format!("halb_real_server_{what}"),
                &format!("{help} through the real server"),
                C,
                dests.iter().map(|(service, remote, d)| {
                    ((service.set(), remote.set()), field(&d.counters))
                }),
            )?;
        }

        // Checkers.
        let indices: Vec<String> = (0..checked
            .iter()
            .map(|c| c.rs.checkers.len())
            .max()
            .unwrap_or(0))
            .map(|i| i.to_string())
            .collect();
        let checkers = || {
            checked.iter().flat_map(|c| {
                c.rs.checkers.iter().enumerate().map(|(index, view)| {
                    let labels = (
                        (c.service.set(), c.remote.set()),
                        [
                            ("checker", view.kind.as_str()),
                            ("checker_index", indices[index].as_str()),
                        ],
                    );
                    (labels, CheckerId::new(c.vs_index, c.rs_index, index), view)
                })
            })
        };
        f.family(
            "halb_checker_up",
            "The checker's last verdict (1 up, 0 down)",
            G,
            checkers().map(|(l, _, c)| (l, u64::from(c.up))),
        )?;
        f.family(
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
                    replica: Some(halb_check::mysql::replica::ReplicaState {
                        source: "192.168.66.254:3306".into(),
                        io_running: true,
                        sql_running: false,
                        seconds_behind: None,
                        last_error: "stopped".into(),
                        using_gtid: "Slave_Pos".into(),
                    }),
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
            format!("halb_mysql_replica_io_running{{{remote}}} 1"),
            format!("halb_mysql_replica_sql_running{{{remote}}} 0"),
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
    }

    #[test]
    fn a_kept_template_writes_what_a_fresh_encoding_writes() {
        let metrics = EventMetrics::new();
        let first = metrics.render(snapshot(), Vec::new()).unwrap();
        // New values only: the template is filled.
        let mut changed = snapshot();
        changed.services[0].counters.conns = 12_345;
        changed.services[0].dests[0].active = 77;
        changed.virtual_servers[0].real_servers[0].alive = false;
        changed.vrrp[0].state = "BACKUP".into();
        let filled = metrics.render(changed.clone(), Vec::new()).unwrap();
        assert_ne!(filled, first);
        assert_eq!(
            filled,
            EventMetrics::new()
                .render(changed.clone(), Vec::new())
                .unwrap()
        );
        assert!(filled.contains(
            "halb_vrrp_state{vrrp_instance=\"INT\",interface=\"eth0\",vrid=\"200\"} 1\n"
        ));
        // Another real server: another shape, written afresh.
        let mut grown = changed;
        let mut extra = grown.services[0].dests[0].clone();
        extra.addr = "192.168.66.254:3306".parse().unwrap();
        grown.services[0].dests.push(extra);
        let text = metrics.render(grown.clone(), Vec::new()).unwrap();
        assert!(text.contains("remote_address=\"192.168.66.254\""), "{text}");
        assert_eq!(
            text,
            EventMetrics::new()
                .render(grown.clone(), Vec::new())
                .unwrap()
        );
        // A replica's lag known: its series is added where the encoder puts it.
        let mut moved = grown.clone();
        let rs = &mut moved.virtual_servers[0].real_servers[0];
        if let Some(r) = rs.replica.as_mut() {
            r.seconds_behind = Some(4);
        }
        let text = metrics.render(moved.clone(), Vec::new()).unwrap();
        assert_eq!(text, EventMetrics::new().render(moved, Vec::new()).unwrap());
        // A read_only learnt: one more series.
        let probe = ProbeSample {
            id: CheckerId::new(0, 0, 0),
            kind: CheckerKind::Mysql,
            duration: Duration::from_millis(3),
            failure: None,
            read_only: Some(false),
        };
        metrics.observe_probe(&probe);
        let text = metrics.render(grown.clone(), Vec::new()).unwrap();
        let fresh = EventMetrics::new();
        fresh.observe_probe(&probe);
        assert_eq!(text, fresh.render(grown, Vec::new()).unwrap());
        assert!(text.contains("halb_mysql_read_only{"), "{text}");
    }
}
