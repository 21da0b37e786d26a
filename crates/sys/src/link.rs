//! Interfaces: index, MAC address and up state, and a watcher that reports when an interface
//! goes down or comes back, so that a VRRP instance can enter FAULT and leave it.
//!
//! "Up" is keepalived's `IF_ISUP`: administratively up (`IFF_UP`) *and* running (`IFF_RUNNING`,
//! the operational state: a carrier, or for a veth, a peer that is up too). An interface that is
//! up but has lost its carrier cannot carry adverts, so it counts as down.

use std::collections::HashMap;

use futures::channel::mpsc::UnboundedReceiver;
use futures::{StreamExt, TryStreamExt};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::MulticastGroup;

use crate::error::{Error, IoContext, Result};
use crate::netlink::{netlink_error, to_io, Netlink};

/// An Ethernet (MAC) address.
pub type MacAddr = [u8; 6];

/// One interface as the kernel reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub index: u32,
    /// `None` for interfaces without a 6-byte hardware address (loopback has 00:00:…, which is
    /// reported; a tunnel has none).
    pub mac: Option<MacAddr>,
    /// `IFF_UP`: set with `ip link set … up`.
    pub admin_up: bool,
    /// `IFF_RUNNING`: the operational state is up.
    pub running: bool,
}

impl Link {
    /// keepalived's notion of up: both administratively up and running.
    pub fn is_up(&self) -> bool {
        self.admin_up && self.running
    }

    fn from_message(message: &LinkMessage) -> Link {
        let mut name = String::new();
        let mut mac = None;
        for attribute in &message.attributes {
            match attribute {
                LinkAttribute::IfName(n) => name.clone_from(n),
                LinkAttribute::Address(bytes) => mac = <MacAddr>::try_from(bytes.as_slice()).ok(),
                _ => {}
            }
        }
        let flags = message.header.flags;
        Link {
            name,
            index: message.header.index,
            mac,
            admin_up: flags.contains(LinkFlags::Up),
            running: flags.contains(LinkFlags::Running),
        }
    }
}

/// The index of `interface` in the calling thread's network namespace, without netlink
/// (`if_nametoindex(3)`), for code that is not async.
pub fn interface_index(interface: &str) -> Result<u32> {
    match nix::net::if_::if_nametoindex(interface) {
        Ok(index) => Ok(index),
        Err(nix::errno::Errno::ENODEV) => Err(Error::NoSuchInterface {
            interface: interface.to_string(),
        }),
        Err(e) => Err(e).context(|| format!("looking up the index of interface {interface}")),
    }
}

impl Netlink {
    /// The interface called `name`.
    pub async fn link(&self, name: &str) -> Result<Link> {
        let request = self.handle().link().get().match_name(name).execute();
        let no_such_interface = || Error::NoSuchInterface {
            interface: name.to_string(),
        };
        match first(request).await.map_err(to_io) {
            Ok(Some(message)) => Ok(Link::from_message(&message)),
            // The kernel answers ENODEV for an unknown name; an empty answer means the same.
            Ok(None) => Err(no_such_interface()),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Err(no_such_interface()),
            Err(e) => Err(Error::io(format!("looking up interface {name}"), e)),
        }
    }

    /// Every interface in the namespace.
    pub async fn links(&self) -> Result<Vec<Link>> {
        self.handle()
            .link()
            .get()
            .execute()
            .map_ok(|message| Link::from_message(&message))
            .try_collect()
            .await
            .map_err(|e| netlink_error("listing interfaces", e))
    }
}

async fn first<S, T, E>(stream: S) -> Result<Option<T>, E>
where
    S: futures::Stream<Item = Result<T, E>>,
{
    let mut stream = std::pin::pin!(stream);
    stream.next().await.transpose()
}

/// An interface went down or came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEvent {
    pub interface: String,
    pub index: u32,
    /// [`Link::is_up`] after the change; `false` also when the interface was deleted.
    pub up: bool,
}

type Notifications = UnboundedReceiver<(
    NetlinkMessage<RouteNetlinkMessage>,
    rtnetlink::sys::SocketAddr,
)>;

/// Follows `RTNLGRP_LINK` and reports each change of [`Link::is_up`].
///
/// The kernel sends `RTM_NEWLINK` for many reasons (statistics, MTU, a peer's change); the
/// watcher keeps the last state of every interface and reports only real transitions.
pub struct LinkWatcher {
    notifications: Notifications,
    known: HashMap<u32, Link>,
    // Keeps the connection's requests alive for as long as the watcher exists.
    _netlink: Netlink,
}

impl LinkWatcher {
    /// Subscribes, then reads the current state of every interface (in that order, so that no
    /// change between the two is lost). Must run inside a tokio runtime.
    pub async fn start() -> Result<LinkWatcher> {
        let (connection, handle, notifications) =
            rtnetlink::new_multicast_connection(&[MulticastGroup::Link])
                .context(|| "subscribing to link notifications (RTNLGRP_LINK)".into())?;
        tokio::spawn(connection);
        let netlink = Netlink::from_handle(handle);
        let known = netlink
            .links()
            .await?
            .into_iter()
            .map(|link| (link.index, link))
            .collect();
        Ok(LinkWatcher {
            notifications,
            known,
            _netlink: netlink,
        })
    }

    /// The last state seen of the interface called `name`.
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.known.values().find(|link| link.name == name)
    }

    /// The next transition; `None` when the netlink socket has closed (the caller should
    /// start a new watcher).
    pub async fn next(&mut self) -> Option<LinkEvent> {
        while let Some((message, _)) = self.notifications.next().await {
            if let Some(event) = self.apply(message) {
                return Some(event);
            }
        }
        None
    }

    fn apply(&mut self, message: NetlinkMessage<RouteNetlinkMessage>) -> Option<LinkEvent> {
        match message.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(message)) => {
                let link = Link::from_message(&message);
                // An interface we did not know counts as down: a new interface that comes up
                // is reported, one that is created down is not.
                let was_up = self.known.get(&link.index).is_some_and(Link::is_up);
                let event = (was_up != link.is_up()).then(|| LinkEvent {
                    interface: link.name.clone(),
                    index: link.index,
                    up: link.is_up(),
                });
                self.known.insert(link.index, link);
                event
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(message)) => {
                let removed = self.known.remove(&message.header.index)?;
                Some(LinkEvent {
                    interface: removed.name,
                    index: removed.index,
                    up: false,
                })
            }
            _ => None,
        }
    }
}
