//! Virtual addresses on an interface, over rtnetlink: add and remove them with keepalived's
//! `virtual_ipaddress` options, list what an interface has, and clear what a killed
//! predecessor left behind.
//!
//! Adding and removing are idempotent, because a VRRP shell re-applies its desired state after
//! restarts and races: adding an address that is there (`EEXIST`) and removing one that is not
//! are both fine.
//!
//! keepalived's choices that halb keeps (vrrp_ipaddress.c `netlink_ipaddress`):
//! - IPv6 addresses skip Duplicate Address Detection (`nodad`): VRRP is the arbiter, and an
//!   address stuck in `dadfailed` after a short split brain would never serve again.
//! - An IPv6 /128 is added with preferred lifetime 0 (deprecated), so that the kernel does not
//!   pick the VIP as the source of the director's own connections (health checks).
//! - No broadcast address unless `brd` asks for one.
//!
//! What halb adds: a VIP can carry a finite valid lifetime, which its holder renews with
//! [`Netlink::refresh_address`] (`RTM_NEWADDR` with `NLM_F_REPLACE`: the kernel only resets the
//! lifetimes, the address never leaves, nothing is announced). The kernel removes an address
//! whose lifetime ran out by itself, so a VIP whose daemon was killed does not stay behind.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use netlink_packet_core::{
    NetlinkMessage, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope, CacheInfo,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{Error, Result};
use crate::netlink::{to_io, Netlink};

/// `brd` of a `virtual_ipaddress` entry (IPv4 only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broadcast {
    Address(Ipv4Addr),
    /// `brd +`: the prefix with all host bits set.
    HostBitsSet,
    /// `brd -`: the prefix with all host bits clear.
    HostBitsClear,
}

/// Address flags that keepalived passes through from a `virtual_ipaddress` line (`home`,
/// `mngtmpaddr`, `noprefixroute`, `autojoin`), plus DAD, which it turns off for IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExtraFlags {
    /// IPv6: `IFA_F_NODAD`. [`VirtualAddress::new`] sets it for IPv6, as keepalived does;
    /// keepalived's `-nodad` clears it.
    pub no_dad: bool,
    pub home: bool,
    pub manage_temp_addr: bool,
    pub no_prefix_route: bool,
    pub autojoin: bool,
}

impl ExtraFlags {
    fn bits(self) -> AddressFlags {
        let mut flags = AddressFlags::empty();
        flags.set(AddressFlags::Nodad, self.no_dad);
        flags.set(AddressFlags::Homeaddress, self.home);
        flags.set(AddressFlags::Managetempaddr, self.manage_temp_addr);
        flags.set(AddressFlags::Noprefixroute, self.no_prefix_route);
        flags.set(AddressFlags::Mcautojoin, self.autojoin);
        flags
    }
}

/// One `virtual_ipaddress` entry, as the kernel is to get it. The interface (`dev`) is the
/// argument of [`Netlink::add_address`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualAddress {
    pub address: IpAddr,
    pub prefix_len: u8,
    /// `peer`: the other end of a point-to-point address.
    pub peer: Option<IpAddr>,
    /// IPv4 only.
    pub broadcast: Option<Broadcast>,
    /// IPv4 only: `RT_SCOPE_*` (see [`parse_scope`]); `None` is global (0). The kernel
    /// refuses (`EINVAL`, "ipv4: Invalid scope value") an address that would become a
    /// secondary of a primary with another scope, so a scoped VIP needs its own subnet.
    pub scope: Option<u8>,
    /// IPv4 only: `label`, what `ifconfig` shows as an alias name (`eth0:vip`). The kernel
    /// takes any label of up to 15 bytes; `ip` alone insists that it start with the
    /// interface name.
    pub label: Option<String>,
    pub flags: ExtraFlags,
    /// Seconds; `None`: forever (or the valid lifetime, when that is finite).
    /// [`VirtualAddress::new`] sets 0 for an IPv6 /128.
    pub preferred_lifetime: Option<u32>,
    /// Seconds until the kernel removes the address unless it is refreshed; `None`: forever.
    /// At least 1 (the kernel refuses 0).
    pub valid_lifetime: Option<u32>,
}

impl VirtualAddress {
    /// `address/prefix_len` with keepalived's defaults for everything else.
    pub fn new(address: IpAddr, prefix_len: u8) -> VirtualAddress {
        let ipv6 = address.is_ipv6();
        VirtualAddress {
            address,
            prefix_len,
            peer: None,
            broadcast: None,
            scope: None,
            label: None,
            flags: ExtraFlags {
                no_dad: ipv6,
                ..ExtraFlags::default()
            },
            preferred_lifetime: (ipv6 && prefix_len == 128).then_some(0),
            valid_lifetime: None,
        }
    }

    /// `address` alone: /32 or /128, as keepalived reads an address without a prefix.
    pub fn host(address: IpAddr) -> VirtualAddress {
        VirtualAddress::new(address, if address.is_ipv4() { 32 } else { 128 })
    }

    /// The netlink message for `RTM_NEWADDR` on the interface with index `index`.
    fn to_message(&self, index: u32) -> Result<AddressMessage, String> {
        let max_prefix = if self.address.is_ipv4() { 32 } else { 128 };
        if self.prefix_len > max_prefix {
            return Err(format!(
                "prefix length {} is over {max_prefix}",
                self.prefix_len
            ));
        }
        let mut message = AddressMessage::default();
        message.header.index = index;
        message.header.prefix_len = self.prefix_len;
        message.header.family = family_of(self.address);
        let flags = self.flags.bits();
        // The header holds the low 8 bits; newer flags only fit in IFA_FLAGS, which the
        // kernel prefers when present.
        message.header.flags = AddressHeaderFlags::from_bits_retain(flags.bits() as u8);
        message.attributes.push(AddressAttribute::Flags(flags));
        message
            .attributes
            .push(AddressAttribute::Local(self.address));
        let peer = self.peer.unwrap_or(self.address);
        if peer.is_ipv4() != self.address.is_ipv4() {
            return Err(format!("peer {peer} is not of the address's family"));
        }
        message.attributes.push(AddressAttribute::Address(peer));
        match self.address {
            IpAddr::V4(v4) => {
                message.header.scope = AddressScope::from(self.scope.unwrap_or(0));
                if let Some(broadcast) = self.broadcast {
                    let mask = u32::MAX
                        .checked_shl(32 - u32::from(self.prefix_len))
                        .unwrap_or(0);
                    let brd = match broadcast {
                        Broadcast::Address(brd) => brd,
                        Broadcast::HostBitsSet => Ipv4Addr::from(u32::from(v4) | !mask),
                        Broadcast::HostBitsClear => Ipv4Addr::from(u32::from(v4) & mask),
                    };
                    message.attributes.push(AddressAttribute::Broadcast(brd));
                }
                if let Some(label) = &self.label {
                    // IFNAMSIZ, with the terminating NUL.
                    if label.len() > 15 {
                        return Err(format!("label {label} is longer than 15 bytes"));
                    }
                    message
                        .attributes
                        .push(AddressAttribute::Label(label.clone()));
                }
            }
            IpAddr::V6(_) => {
                if self.broadcast.is_some() || self.label.is_some() || self.scope.is_some() {
                    return Err("IPv6 addresses take no brd, label or scope".into());
                }
            }
        }
        if let Some((preferred, valid)) = self.lifetimes()? {
            let mut cache = CacheInfo::default();
            cache.ifa_preferred = preferred;
            cache.ifa_valid = valid;
            message.attributes.push(AddressAttribute::CacheInfo(cache));
        }
        Ok(message)
    }
}

impl VirtualAddress {
    /// `IFA_CACHEINFO`'s (preferred, valid) in seconds, `u32::MAX` meaning forever; `None`
    /// when both are forever (the kernel's default without the attribute). The kernel
    /// refuses a preferred lifetime over the valid one, so a finite valid lifetime caps it.
    fn lifetimes(&self) -> Result<Option<(u32, u32)>, String> {
        const FOREVER: u32 = u32::MAX;
        match (self.preferred_lifetime, self.valid_lifetime) {
            (None, None) => Ok(None),
            (Some(preferred), None) => Ok(Some((preferred, FOREVER))),
            (_, Some(0)) => Err("a valid lifetime of 0 seconds".into()),
            (preferred, Some(valid)) => Ok(Some((preferred.unwrap_or(valid).min(valid), valid))),
        }
    }
}

impl fmt::Display for VirtualAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)?;
        if let Some(label) = &self.label {
            write!(f, " label {label}")?;
        }
        Ok(())
    }
}

fn family_of(address: IpAddr) -> AddressFamily {
    match address {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// A scope name as `ip` and keepalived know them without `/etc/iproute2/rt_scopes`, or a
/// number (decimal, `0x` hex or `0` octal, as `strtoul(…, 0)` reads it).
pub fn parse_scope(text: &str) -> Option<u8> {
    match text {
        "global" | "universe" => Some(0),
        "site" => Some(200),
        "link" => Some(253),
        "host" => Some(254),
        "nowhere" => Some(255),
        _ => {
            let (digits, radix) =
                if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
                    (hex, 16)
                } else if text.len() > 1 && text.starts_with('0') {
                    (&text[1..], 8)
                } else {
                    (text, 10)
                };
            u8::from_str_radix(digits, radix).ok()
        }
    }
}

/// Whether [`Netlink::add_address`] added the address or found it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    Added,
    AlreadyPresent,
}

/// An address as the kernel lists it on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub address: IpAddr,
    pub prefix_len: u8,
    /// The other end, when it differs from the address (point-to-point).
    pub peer: Option<IpAddr>,
    pub broadcast: Option<Ipv4Addr>,
    pub label: Option<String>,
    pub scope: u8,
    /// `IFA_F_*` bits.
    pub flags: u32,
    /// The preferred lifetime left, in seconds; `None`: forever.
    pub preferred_lifetime: Option<u32>,
    /// The valid lifetime left, in seconds; `None`: forever.
    pub valid_lifetime: Option<u32>,
    message: AddressMessage,
}

impl InterfaceAddress {
    fn from_message(message: AddressMessage) -> Option<InterfaceAddress> {
        let mut local = None;
        let mut address = None;
        let mut broadcast = None;
        let mut label = None;
        let mut flags = u32::from(message.header.flags.bits());
        let mut preferred_lifetime = None;
        let mut valid_lifetime = None;
        for attribute in &message.attributes {
            match attribute {
                AddressAttribute::Local(a) => local = Some(*a),
                AddressAttribute::Address(a) => address = Some(*a),
                AddressAttribute::Broadcast(b) => broadcast = Some(*b),
                AddressAttribute::Label(l) => label = Some(l.clone()),
                AddressAttribute::Flags(f) => flags = f.bits(),
                AddressAttribute::CacheInfo(c) => {
                    preferred_lifetime = (c.ifa_preferred != u32::MAX).then_some(c.ifa_preferred);
                    valid_lifetime = (c.ifa_valid != u32::MAX).then_some(c.ifa_valid);
                }
                _ => {}
            }
        }
        // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on point-to-point
        // links and the same address otherwise. IPv6 sends IFA_LOCAL only with a peer.
        let own = local.or(address)?;
        let peer = address.filter(|a| *a != own);
        Some(InterfaceAddress {
            address: own,
            prefix_len: message.header.prefix_len,
            peer,
            broadcast,
            label,
            scope: u8::from(message.header.scope),
            flags,
            preferred_lifetime,
            valid_lifetime,
            message,
        })
    }

    /// A `RTM_DELADDR` that matches exactly this address (the kernel matches IPv6 addresses
    /// by prefix length too, so the configured prefix is not enough).
    fn delete_message(&self) -> AddressMessage {
        let mut message = AddressMessage::default();
        message.header = self.message.header.clone();
        message.header.flags = AddressHeaderFlags::empty();
        message.attributes = self
            .message
            .attributes
            .iter()
            .filter(|a| {
                matches!(
                    a,
                    AddressAttribute::Local(_)
                        | AddressAttribute::Address(_)
                        | AddressAttribute::Label(_)
                )
            })
            .cloned()
            .collect();
        message
    }
}

impl Netlink {
    /// Adds `vip` to `interface`; already having it is fine.
    pub async fn add_address(&self, interface: &str, vip: &VirtualAddress) -> Result<Added> {
        let context = || format!("adding address {vip} to interface {interface}");
        let index = self.link(interface).await?.index;
        let message = vip
            .to_message(index)
            .map_err(|reason| Error::invalid(context(), reason))?;
        let mut request = NetlinkMessage::from(RouteNetlinkMessage::NewAddress(message));
        request.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        match self.acknowledged(request).await {
            Ok(()) => Ok(Added::Added),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(Added::AlreadyPresent),
            Err(e) => Err(Error::io(context(), e)),
        }
    }

    /// Puts `vip` on `interface` again with fresh lifetimes (`NLM_F_REPLACE`): an address that
    /// is there keeps its place, routes and neighbours and only gets its lifetimes reset, so
    /// nothing flaps and nothing needs announcing; one that went missing is added back.
    pub async fn refresh_address(&self, interface: &str, vip: &VirtualAddress) -> Result<()> {
        let context = || format!("refreshing address {vip} on interface {interface}");
        let index = self.link(interface).await?.index;
        let message = vip
            .to_message(index)
            .map_err(|reason| Error::invalid(context(), reason))?;
        let mut request = NetlinkMessage::from(RouteNetlinkMessage::NewAddress(message));
        request.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
        self.acknowledged(request)
            .await
            .map_err(|e| Error::io(context(), e))
    }

    /// The addresses on `interface`, in the kernel's order (primary before secondary).
    pub async fn addresses(&self, interface: &str) -> Result<Vec<InterfaceAddress>> {
        let index = self.link(interface).await?.index;
        let messages: Vec<AddressMessage> = self
            .handle()
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|e| {
                Error::io(
                    format!("listing addresses of interface {interface}"),
                    to_io(e),
                )
            })?;
        Ok(messages
            .into_iter()
            .filter_map(InterfaceAddress::from_message)
            .collect())
    }

    /// Removes `address` from `interface` whatever its prefix length; returns whether it was
    /// there.
    pub async fn remove_address(&self, interface: &str, address: IpAddr) -> Result<bool> {
        Ok(!self
            .remove_addresses(interface, &[address])
            .await?
            .is_empty())
    }

    /// Removes those of `addresses` that `interface` has, with one listing for all of them;
    /// returns the ones removed. Addresses that disappear meanwhile count as not there.
    pub async fn remove_addresses(
        &self,
        interface: &str,
        addresses: &[IpAddr],
    ) -> Result<Vec<IpAddr>> {
        let mut removed = Vec::new();
        for present in self.addresses(interface).await? {
            if !addresses.contains(&present.address) {
                continue;
            }
            let request =
                NetlinkMessage::from(RouteNetlinkMessage::DelAddress(present.delete_message()));
            let mut request = request;
            request.header.flags = NLM_F_REQUEST | NLM_F_ACK;
            match self.acknowledged(request).await {
                Ok(()) => removed.push(present.address),
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EADDRNOTAVAIL)) => {}
                Err(e) => {
                    return Err(Error::io(
                        format!(
                            "removing address {}/{} from interface {interface}",
                            present.address, present.prefix_len
                        ),
                        e,
                    ))
                }
            }
        }
        Ok(removed)
    }

    /// At start-up, removes the virtual addresses that a predecessor killed without cleaning
    /// up left on `interface` (keepalived does the same before its first state), so that a
    /// BACKUP does not answer for a VIP it does not own. Returns the ones it found.
    pub async fn remove_leftover_vips(
        &self,
        interface: &str,
        vips: &[VirtualAddress],
    ) -> Result<Vec<IpAddr>> {
        let addresses: Vec<IpAddr> = vips.iter().map(|vip| vip.address).collect();
        self.remove_addresses(interface, &addresses).await
    }

    /// Sends a request that expects only an acknowledgement.
    async fn acknowledged(
        &self,
        request: NetlinkMessage<RouteNetlinkMessage>,
    ) -> std::io::Result<()> {
        let mut handle = self.handle().clone();
        let mut responses = handle.request(request).map_err(to_io)?;
        while let Some(message) = futures::StreamExt::next(&mut responses).await {
            if let netlink_packet_core::NetlinkPayload::Error(error) = message.payload {
                if error.code.is_some() {
                    return Err(error.to_io());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_as_ip_reads_them() {
        assert_eq!(parse_scope("link"), Some(253));
        assert_eq!(parse_scope("host"), Some(254));
        assert_eq!(parse_scope("0xfe"), Some(254));
        assert_eq!(parse_scope("0376"), Some(254));
        assert_eq!(parse_scope("0"), Some(0));
        assert_eq!(parse_scope("256"), None);
        assert_eq!(parse_scope("galaxy"), None);
    }

    fn broadcast_of(message: &AddressMessage) -> Option<Ipv4Addr> {
        message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Broadcast(b) => Some(*b),
            _ => None,
        })
    }

    #[test]
    fn broadcast_plus_and_minus() {
        let mut vip = VirtualAddress::new(IpAddr::V4(Ipv4Addr::new(192, 168, 66, 251)), 24);
        assert_eq!(broadcast_of(&vip.to_message(1).unwrap()), None);
        vip.broadcast = Some(Broadcast::HostBitsSet);
        assert_eq!(
            broadcast_of(&vip.to_message(1).unwrap()),
            Some(Ipv4Addr::new(192, 168, 66, 255))
        );
        vip.broadcast = Some(Broadcast::HostBitsClear);
        assert_eq!(
            broadcast_of(&vip.to_message(1).unwrap()),
            Some(Ipv4Addr::new(192, 168, 66, 0))
        );
        vip.prefix_len = 0;
        vip.broadcast = Some(Broadcast::HostBitsSet);
        assert_eq!(
            broadcast_of(&vip.to_message(1).unwrap()),
            Some(Ipv4Addr::BROADCAST)
        );
    }

    #[test]
    fn ipv6_defaults_follow_keepalived() {
        let vip = VirtualAddress::host("fd66::251".parse().unwrap());
        assert!(vip.flags.no_dad);
        assert_eq!(vip.preferred_lifetime, Some(0));
        let vip = VirtualAddress::new("fd66::251".parse().unwrap(), 64);
        assert_eq!(vip.preferred_lifetime, None);
        let mut bad = vip.clone();
        bad.label = Some("eth0:v6".into());
        assert!(bad.to_message(1).is_err());
    }

    fn cache_info_of(message: &AddressMessage) -> Option<(u32, u32)> {
        message.attributes.iter().find_map(|a| match a {
            AddressAttribute::CacheInfo(c) => Some((c.ifa_preferred, c.ifa_valid)),
            _ => None,
        })
    }

    #[test]
    fn a_finite_valid_lifetime_caps_the_preferred_one() {
        let mut vip = VirtualAddress::new(IpAddr::V4(Ipv4Addr::new(192, 168, 66, 251)), 32);
        assert_eq!(cache_info_of(&vip.to_message(1).unwrap()), None);
        vip.valid_lifetime = Some(3);
        assert_eq!(cache_info_of(&vip.to_message(1).unwrap()), Some((3, 3)));
        vip.preferred_lifetime = Some(10);
        assert_eq!(cache_info_of(&vip.to_message(1).unwrap()), Some((3, 3)));
        vip.valid_lifetime = Some(0);
        assert!(vip.to_message(1).is_err());
        // keepalived's deprecated IPv6 /128 stays deprecated, and now also expires.
        let mut vip6 = VirtualAddress::host("fd66::251".parse().unwrap());
        assert_eq!(
            cache_info_of(&vip6.to_message(1).unwrap()),
            Some((0, u32::MAX))
        );
        vip6.valid_lifetime = Some(3);
        assert_eq!(cache_info_of(&vip6.to_message(1).unwrap()), Some((0, 3)));
    }

    #[test]
    fn rejects_impossible_prefixes_and_long_labels() {
        let mut vip = VirtualAddress::new(IpAddr::V4(Ipv4Addr::new(192, 168, 66, 251)), 33);
        assert!(vip.to_message(1).is_err());
        vip.prefix_len = 24;
        vip.label = Some("a-label-too-long".into());
        assert!(vip.to_message(1).is_err());
    }
}
