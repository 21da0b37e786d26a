//! In-memory fakes of the host, and only of the host: a LAN that carries VRRP adverts between
//! daemons in one process, hosts whose interfaces and addresses are maps, and a data plane
//! that holds the table it is given. Everything above them is the daemon's real wiring.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use halb_config::model::Config;
use halb_config::{load_str, LoadOptions};
use halb_daemon::host::{Addresses, Announce, VrrpSocketIo, VrrpSockets};
use halb_daemon::vrrp_map::{HostView, LinkView};
use halb_daemon::{Event, EventBus};
use halb_dataplane::{ApplyError, ConnectionEntry, Dataplane, ServiceStats};
use halb_lb::table::{Change, ServiceKey, Table};
use halb_sys::{IpFamily, LinkEvent, ReceivedPacket, VirtualAddress};
use halb_vrrp::packet::{self, Advert, Endpoints};
use tokio::sync::{broadcast, mpsc, oneshot};

/// A keepalived.conf read as `halb run` reads it, with `eth0` and `lo` as the interfaces.
pub fn config(text: &str) -> Config {
    let loaded = load_str(
        "keepalived.conf",
        text,
        &LoadOptions {
            interfaces: Some(vec!["lo".into(), "eth0".into()]),
            ..LoadOptions::default()
        },
    );
    assert!(
        !loaded.diagnostics.has_errors(),
        "configuration errors: {:#?}",
        loaded.diagnostics
    );
    loaded.config
}

/// One member of the LAN: a socket of a host on an interface.
struct Port {
    host: usize,
    interface: String,
    family: IpFamily,
    groups: Vec<IpAddr>,
    addresses: Arc<Mutex<BTreeMap<String, LinkView>>>,
    tx: mpsc::UnboundedSender<ReceivedPacket>,
}

/// A broadcast domain per interface name: what one host sends on `eth0` reaches every other
/// host's `eth0` socket that joined the group (or owns the unicast destination).
#[derive(Default)]
pub struct Lan {
    ports: Mutex<Vec<Port>>,
    /// Hosts whose packets no longer leave (a director that hangs without a word).
    silenced: Mutex<BTreeSet<usize>>,
}

impl Lan {
    pub fn new() -> Arc<Lan> {
        Arc::new(Lan::default())
    }

    /// From now on, nothing `host` sends reaches anyone.
    pub fn silence(&self, host: usize) {
        self.silenced.lock().unwrap().insert(host);
    }

    fn deliver(&self, from: usize, interface: &str, message: Vec<u8>, endpoints: Endpoints) {
        if self.silenced.lock().unwrap().contains(&from) {
            return;
        }
        let dst = endpoints.dst();
        for port in self.ports.lock().unwrap().iter() {
            if port.host == from || port.interface != interface || port.family != IpFamily::of(dst)
            {
                continue;
            }
            let for_it = if dst.is_multicast() {
                port.groups.contains(&dst)
            } else {
                port.addresses
                    .lock()
                    .unwrap()
                    .get(interface)
                    .is_some_and(|l| l.addresses.contains(&dst))
            };
            if for_it {
                let _ = port.tx.send(ReceivedPacket {
                    message: message.clone(),
                    endpoints,
                    ttl: 255,
                    interface_index: 2,
                });
            }
        }
    }
}

/// A host with interfaces `lo` and `eth0` (up, with `address`/24), on `lan`.
pub struct FakeHost {
    id: usize,
    lan: Arc<Lan>,
    links: Arc<Mutex<BTreeMap<String, LinkView>>>,
    link_events: Mutex<Vec<mpsc::UnboundedSender<LinkEvent>>>,
}

impl FakeHost {
    pub fn new(lan: &Arc<Lan>, id: usize, address: &str) -> Arc<FakeHost> {
        let links = [("lo", "127.0.0.1"), ("eth0", address)]
            .into_iter()
            .map(|(name, address)| {
                let link = LinkView {
                    up: true,
                    addresses: vec![address.parse().expect("a test address")],
                };
                (name.to_string(), link)
            })
            .collect();
        Arc::new(FakeHost {
            id,
            lan: Arc::clone(lan),
            links: Arc::new(Mutex::new(links)),
            link_events: Mutex::new(Vec::new()),
        })
    }

    /// Whether `address` is on one of the host's interfaces now.
    pub fn has_address(&self, address: &str) -> bool {
        let address: IpAddr = address.parse().unwrap();
        self.links
            .lock()
            .unwrap()
            .values()
            .any(|l| l.addresses.contains(&address))
    }
}

struct Silent;

impl Announce for Silent {
    fn announce(&self, _address: IpAddr) -> Result<()> {
        Ok(())
    }
}

impl Addresses for FakeHost {
    async fn host_view(&self) -> Result<HostView> {
        Ok(HostView {
            links: self.links.lock().unwrap().clone(),
            ..HostView::default()
        })
    }

    async fn add_address(&self, interface: &str, vip: &VirtualAddress) -> Result<()> {
        let mut links = self.links.lock().unwrap();
        let link = links
            .get_mut(interface)
            .ok_or_else(|| anyhow::anyhow!("no interface {interface}"))?;
        if !link.addresses.contains(&vip.address) {
            link.addresses.push(vip.address);
        }
        Ok(())
    }

    async fn remove_addresses(&self, interface: &str, addresses: &[IpAddr]) -> Result<()> {
        if let Some(link) = self.links.lock().unwrap().get_mut(interface) {
            link.addresses.retain(|a| !addresses.contains(a));
        }
        Ok(())
    }

    async fn remove_leftover_vips(
        &self,
        interface: &str,
        vips: &[VirtualAddress],
    ) -> Result<Vec<IpAddr>> {
        let mut links = self.links.lock().unwrap();
        let Some(link) = links.get_mut(interface) else {
            return Ok(Vec::new());
        };
        let found: Vec<IpAddr> = vips
            .iter()
            .map(|v| v.address)
            .filter(|a| link.addresses.contains(a))
            .collect();
        link.addresses.retain(|a| !found.contains(a));
        Ok(found)
    }

    async fn announcer(&self, _interface: &str) -> Result<Arc<dyn Announce>> {
        Ok(Arc::new(Silent))
    }

    async fn link_events(&self) -> Result<mpsc::UnboundedReceiver<LinkEvent>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.link_events.lock().unwrap().push(tx);
        Ok(rx)
    }
}

/// A socket on the in-memory LAN.
pub struct FakeSocket {
    host: usize,
    interface: String,
    lan: Arc<Lan>,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<ReceivedPacket>>,
}

impl VrrpSockets for FakeHost {
    type Socket = FakeSocket;

    fn open(&self, interface: &str, family: IpFamily, groups: &[IpAddr]) -> Result<FakeSocket> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lan.ports.lock().unwrap().push(Port {
            host: self.id,
            interface: interface.to_string(),
            family,
            groups: groups.to_vec(),
            addresses: Arc::clone(&self.links),
            tx,
        });
        Ok(FakeSocket {
            host: self.id,
            interface: interface.to_string(),
            lan: Arc::clone(&self.lan),
            rx: tokio::sync::Mutex::new(rx),
        })
    }
}

impl VrrpSocketIo for FakeSocket {
    fn interface(&self) -> &str {
        &self.interface
    }

    async fn send_advert(&self, advert: &Advert, src: IpAddr, dst: IpAddr) -> Result<()> {
        let endpoints = Endpoints::new(src, dst)
            .ok_or_else(|| anyhow::anyhow!("{src} → {dst}: families differ"))?;
        self.lan.deliver(
            self.host,
            &self.interface,
            packet::encode(advert, &endpoints),
            endpoints,
        );
        Ok(())
    }

    async fn recv(&self) -> Result<ReceivedPacket> {
        match self.rx.lock().await.recv().await {
            Some(packet) => Ok(packet),
            // The LAN is gone with the test.
            None => std::future::pending().await,
        }
    }
}

/// What the fake data plane was asked to do.
#[derive(Debug, Default)]
pub struct Applied {
    pub table: Table,
    /// Every change applied, in order.
    pub changes: Vec<Change>,
    pub drops: Vec<(ServiceKey, SocketAddr)>,
}

/// A data plane that holds the table it is given and counts one connection closed per drop.
#[derive(Debug, Clone, Default)]
pub struct MemoryDataplane {
    pub applied: Arc<Mutex<Applied>>,
}

impl Dataplane for MemoryDataplane {
    fn apply(&mut self, changes: &[Change]) -> Result<(), ApplyError> {
        let mut applied = self.applied.lock().unwrap();
        applied.table.apply(changes);
        applied.changes.extend_from_slice(changes);
        Ok(())
    }

    fn stats(&self) -> Vec<ServiceStats> {
        Vec::new()
    }

    fn connections(&self) -> Vec<ConnectionEntry> {
        Vec::new()
    }

    fn drop_connections(&mut self, service: &ServiceKey, dest: SocketAddr) -> usize {
        self.applied.lock().unwrap().drops.push((*service, dest));
        1
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

/// A daemon running on a fake host; dropping it does not stop it, [`Running::stop`] does.
pub struct Running {
    pub events: broadcast::Receiver<Event>,
    /// The daemon's control socket.
    pub socket: std::path::PathBuf,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<()>>,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Stops the daemon and waits for it to clean up.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("the daemon's task")
            .expect("the daemon ran");
    }

    /// Asks for a reload on the control socket, as `halb reload` does, and returns its outcome.
    pub async fn reload(&self) -> halb_daemon::control::protocol::ReloadAnswer {
        self.request(r#"{"reload":true}"#).await
    }

    /// What `halb status --json` shows.
    pub async fn status(&self) -> halb_daemon::control::protocol::Snapshot {
        self.request("{}").await
    }

    async fn request<T: serde::de::DeserializeOwned>(&self, line: &str) -> T {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let mut stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .expect("connect to the control socket");
        stream
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("send the request");
        let mut answer = String::new();
        tokio::io::BufReader::new(stream)
            .read_line(&mut answer)
            .await
            .expect("read the answer");
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"))
    }

    /// The next event `pick` accepts, within `within` (of the test's clock).
    pub async fn wait_for<T>(
        &mut self,
        within: Duration,
        what: &str,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        let events = &mut self.events;
        let found = async {
            loop {
                match events.recv().await {
                    Ok(event) => {
                        if let Some(t) = pick(&event) {
                            return t;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => {
                        panic!("the daemon stopped before {what}")
                    }
                }
            }
        };
        match tokio::time::timeout(within, found).await {
            Ok(t) => t,
            Err(_) => panic!("no {what} within {within:?}"),
        }
    }
}

/// Starts the daemon's real wiring for `config` on `host`, with `dataplane` as its data plane.
pub fn start(config: Config, host: Arc<FakeHost>, dataplane: Option<MemoryDataplane>) -> Running {
    start_with(config, None, host, dataplane)
}

/// [`start`] for the configuration in `file`, which reloads read again (with `eth0` and `lo`
/// as the interfaces).
pub fn start_from_file(
    file: &std::path::Path,
    host: Arc<FakeHost>,
    dataplane: Option<MemoryDataplane>,
) -> Running {
    let file = file.to_path_buf();
    let read = move || {
        let loaded = halb_config::load(
            &file,
            &LoadOptions {
                interfaces: Some(vec!["lo".into(), "eth0".into()]),
                ..LoadOptions::default()
            },
        );
        let diagnostics = loaded
            .diagnostics
            .render(
                &loaded.sources,
                halb_config::diagnostic::Format::Short,
                false,
            )
            .lines()
            .map(str::to_string)
            .collect();
        halb_daemon::Reread {
            config: (!loaded.diagnostics.has_errors()).then_some(loaded.config),
            diagnostics,
        }
    };
    let first = read().config.expect("the first file is good");
    start_with(
        first,
        Some(halb_daemon::ConfigReader(Arc::new(read))),
        host,
        dataplane,
    )
}

fn start_with(
    config: Config,
    reload: Option<halb_daemon::ConfigReader>,
    host: Arc<FakeHost>,
    dataplane: Option<MemoryDataplane>,
) -> Running {
    let dir = tempfile::tempdir().expect("a directory for the control socket");
    let socket = dir.path().join("halb.sock");
    let options = halb_daemon::Options {
        control_socket: socket.clone(),
        dataplane: halb_daemon::DataplaneChoice::Proxy,
        passive: false,
        dr_path_checks: false,
        handover: Default::default(),
        dumps: halb_daemon::DumpRequests::new(dir.path().to_path_buf()),
        reload,
        http_listen: None,
        successor: None,
    };
    let bus = EventBus::new();
    let events = bus.subscribe();
    let (stop, stopped) = oneshot::channel::<()>();
    let stop_signal = async move {
        let _ = stopped.await;
    };
    let task = tokio::spawn(async move {
        let dataplane = dataplane.map(|d| Box::new(d) as Box<dyn Dataplane>);
        halb_daemon::run_on(&config, &options, host, dataplane, bus, stop_signal).await
    });
    Running {
        events,
        socket,
        stop,
        task,
        _dir: dir,
    }
}

/// Waits until `check` holds, polling every 50 ms, for at most `within`.
pub async fn eventually<F: Future<Output = bool>>(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
