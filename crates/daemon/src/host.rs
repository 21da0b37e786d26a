//! The host behind narrow traits, so that the daemon's wiring runs in-process on fakes:
//! [`Addresses`] (interfaces, addresses, link changes and gratuitous ARP: rtnetlink and packet
//! sockets on a real host) and [`VrrpSockets`] (raw VRRP sockets). The data plane is
//! `halb_dataplane::Dataplane`. The clock is tokio's: the cores get
//! `tokio::time::Instant::now()`, which a test pauses and advances.
//!
//! [`SystemHost`] is the real host.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use halb_sys::{
    Announcer, IpFamily, LinkEvent, LinkWatcher, Netlink, ReceivedPacket, VirtualAddress,
};
use halb_vrrp::Advert;
use tokio::sync::mpsc;
use tracing::{error, warn};

use crate::vrrp_map::{HostView, LinkView};

/// Now, by the daemon's clock (tokio's, which tests pause).
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The host's interfaces and addresses.
pub trait Addresses: Send + Sync + 'static {
    /// Every interface with its state and addresses.
    fn host_view(&self) -> impl Future<Output = Result<HostView>> + Send;

    /// Puts `vip` on `interface`.
    fn add_address(
        &self,
        interface: &str,
        vip: &VirtualAddress,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Puts `vip` on `interface` again with fresh lifetimes, without taking it off meanwhile
    /// (adds it when it went missing).
    fn refresh_address(
        &self,
        interface: &str,
        vip: &VirtualAddress,
    ) -> impl Future<Output = Result<()>> + Send {
        self.add_address(interface, vip)
    }

    /// Takes `addresses` off `interface` (those not there are fine).
    fn remove_addresses(
        &self,
        interface: &str,
        addresses: &[IpAddr],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Takes off `interface` the `vips` a previous run left there; returns those it found.
    fn remove_leftover_vips(
        &self,
        interface: &str,
        vips: &[VirtualAddress],
    ) -> impl Future<Output = Result<Vec<IpAddr>>> + Send;

    /// Says on `interface` that `address` is here now (gratuitous ARP, unsolicited NA). Opened
    /// once per interface, before the first announcement.
    fn announcer(&self, interface: &str) -> impl Future<Output = Result<Arc<dyn Announce>>> + Send;

    /// Interfaces going down and coming back, from now on.
    fn link_events(
        &self,
    ) -> impl Future<Output = Result<mpsc::UnboundedReceiver<LinkEvent>>> + Send;

    /// This host, reached through connections that the runtime this is called on drives (a
    /// part on a thread of its own must not wait for a busy runtime to reach the kernel).
    fn on_this_runtime(host: &Arc<Self>) -> Result<Arc<Self>>
    where
        Self: Sized,
    {
        Ok(Arc::clone(host))
    }
}

/// Announces addresses on one interface.
pub trait Announce: Send + Sync + 'static {
    fn announce(&self, address: IpAddr) -> Result<()>;
}

/// Raw VRRP sockets: one per interface and family.
pub trait VrrpSockets: Send + Sync + 'static {
    type Socket: VrrpSocketIo;

    /// A socket on `interface` for `family`, joined to the multicast `groups`.
    fn open(&self, interface: &str, family: IpFamily, groups: &[IpAddr]) -> Result<Self::Socket>;
}

/// One raw VRRP socket.
pub trait VrrpSocketIo: Send + Sync + 'static {
    fn interface(&self) -> &str;

    /// Encodes `advert` for `src` → `dst` and sends it.
    fn send_advert(
        &self,
        advert: &Advert,
        src: IpAddr,
        dst: IpAddr,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The next packet that arrives for a joined group or for us.
    fn recv(&self) -> impl Future<Output = Result<ReceivedPacket>> + Send;
}

/// The real host: rtnetlink, packet sockets and raw IP sockets.
#[derive(Clone)]
pub struct SystemHost {
    netlink: Arc<Netlink>,
    /// The VRRP part and the virtual servers share the rtnetlink socket, and the kernel runs
    /// one dump at a time per socket (a second one meanwhile fails with EBUSY): requests take
    /// turns.
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl SystemHost {
    pub fn connect() -> Result<SystemHost> {
        Ok(SystemHost {
            netlink: Arc::new(Netlink::connect().context("connecting to rtnetlink")?),
            turn: Arc::new(tokio::sync::Mutex::new(())),
        })
    }
}

impl Addresses for SystemHost {
    async fn host_view(&self) -> Result<HostView> {
        let _turn = self.turn.lock().await;
        let mut links = BTreeMap::new();
        for link in self
            .netlink
            .links()
            .await
            .context("listing the interfaces")?
        {
            let addresses = self
                .netlink
                .addresses(&link.name)
                .await
                .with_context(|| format!("listing the addresses of {}", link.name))?
                .into_iter()
                .map(|a| a.address)
                .collect();
            links.insert(
                link.name.clone(),
                LinkView {
                    up: link.is_up(),
                    addresses,
                },
            );
        }
        Ok(HostView {
            links,
            ..HostView::default()
        })
    }

    async fn add_address(&self, interface: &str, vip: &VirtualAddress) -> Result<()> {
        let _turn = self.turn.lock().await;
        if self.netlink.add_address(interface, vip).await? == halb_sys::Added::AlreadyPresent {
            // Perhaps with a lifetime close to its end (a predecessor's lease): renew it.
            self.netlink.refresh_address(interface, vip).await?;
        }
        Ok(())
    }

    async fn refresh_address(&self, interface: &str, vip: &VirtualAddress) -> Result<()> {
        let _turn = self.turn.lock().await;
        self.netlink.refresh_address(interface, vip).await?;
        Ok(())
    }

    async fn remove_addresses(&self, interface: &str, addresses: &[IpAddr]) -> Result<()> {
        let _turn = self.turn.lock().await;
        self.netlink.remove_addresses(interface, addresses).await?;
        Ok(())
    }

    async fn remove_leftover_vips(
        &self,
        interface: &str,
        vips: &[VirtualAddress],
    ) -> Result<Vec<IpAddr>> {
        let _turn = self.turn.lock().await;
        Ok(self.netlink.remove_leftover_vips(interface, vips).await?)
    }

    async fn announcer(&self, interface: &str) -> Result<Arc<dyn Announce>> {
        let _turn = self.turn.lock().await;
        let link = self
            .netlink
            .link(interface)
            .await
            .with_context(|| format!("reading interface {interface}"))?;
        Ok(Arc::new(Announcer::open(&link)?))
    }

    async fn link_events(&self) -> Result<mpsc::UnboundedReceiver<LinkEvent>> {
        let mut watcher = LinkWatcher::start().await.context("watching link state")?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match watcher.next().await {
                    Some(event) => {
                        if tx.send(event).is_err() {
                            return;
                        }
                    }
                    None => {
                        warn!("the link watcher stopped; restarting it");
                        match LinkWatcher::start().await {
                            Ok(w) => watcher = w,
                            Err(e) => {
                                error!("{e:#}");
                                return;
                            }
                        }
                    }
                }
            }
        });
        Ok(rx)
    }

    /// A new rtnetlink socket, driven by this runtime. Its own socket, so its dumps never
    /// meet the other parts' (one dump at a time per socket).
    fn on_this_runtime(_host: &Arc<Self>) -> Result<Arc<Self>> {
        Ok(Arc::new(SystemHost::connect()?))
    }
}

impl Announce for Announcer {
    fn announce(&self, address: IpAddr) -> Result<()> {
        Ok(Announcer::announce(self, address, false)?)
    }
}

impl VrrpSockets for SystemHost {
    type Socket = halb_sys::VrrpSocket;

    fn open(&self, interface: &str, family: IpFamily, groups: &[IpAddr]) -> Result<Self::Socket> {
        Ok(halb_sys::VrrpSocket::open(interface, family, groups)?)
    }
}

impl VrrpSocketIo for halb_sys::VrrpSocket {
    fn interface(&self) -> &str {
        halb_sys::VrrpSocket::interface(self)
    }

    async fn send_advert(&self, advert: &Advert, src: IpAddr, dst: IpAddr) -> Result<()> {
        Ok(halb_sys::VrrpSocket::send_advert(self, advert, src, dst).await?)
    }

    async fn recv(&self) -> Result<ReceivedPacket> {
        Ok(halb_sys::VrrpSocket::recv(self).await?)
    }
}
