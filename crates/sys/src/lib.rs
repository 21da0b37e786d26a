//! The thin I/O layer under halb's sans-IO cores: what the VRRP shell needs to carry out
//! [`halb_vrrp::Action`]s on a real Linux host.
//!
//! | action / need | here |
//! |---|---|
//! | `SendAdvert { advert, src, dst }`, received adverts | [`VrrpSocket`] |
//! | `AddVips`, `RemoveVips`, start-up cleanup | [`Netlink::add_address`], [`Netlink::remove_addresses`], [`Netlink::remove_leftover_vips`] |
//! | `SendGratuitousArp` | [`Announcer`] |
//! | whole Ethernet frames in and out (DR_PATH_CHECK) | [`PacketSocket`] |
//! | notify scripts, `vrrp_script`, MISC_CHECK | [`script`] |
//! | interface down / up → FAULT and back | [`LinkWatcher`], [`Netlink::link`] |
//! | `arp_ignore` / `arp_announce` for real servers | [`sysctl`] |
//! | tests and `halb lab` in network namespaces | [`netns`] |
//!
//! Everything acts on the network namespace of the calling thread at the time a socket or
//! netlink connection is opened. The async parts need a tokio runtime with I/O enabled.
//!
//! ```no_run
//! # async fn shell() -> halb_sys::Result<()> {
//! use halb_sys::{IpFamily, Netlink, VirtualAddress, VrrpSocket};
//!
//! let socket = VrrpSocket::open("eth0", IpFamily::V4, &[IpFamily::V4.vrrp_group()])?;
//! let packet = socket.recv().await?;
//! // instance.handle_packet(now, &packet.message, &packet.context())
//!
//! let netlink = Netlink::connect()?;
//! let vip = VirtualAddress::new("192.168.66.251".parse().unwrap(), 24);
//! netlink.add_address("eth0", &vip).await?;
//! # Ok(()) }
//! ```

pub mod addresses;
pub mod arp;
pub mod bfd_socket;
mod error;
pub mod link;
mod netlink;
pub mod netns;
pub mod packet_socket;
pub mod script;
pub mod sysctl;
pub mod vrrp_socket;

pub use addresses::{Added, Broadcast, ExtraFlags, InterfaceAddress, VirtualAddress};
pub use arp::Announcer;
pub use error::{Error, Result};
pub use link::{interface_index, Link, LinkEvent, LinkWatcher, MacAddr};
pub use netlink::Netlink;
pub use packet_socket::PacketSocket;
pub use vrrp_socket::{IpFamily, ReceivedPacket, VrrpSocket};
