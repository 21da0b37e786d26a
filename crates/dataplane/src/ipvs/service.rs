//! A virtual service in IPVS's terms: the attributes nested in `IPVS_CMD_ATTR_SERVICE`, to and
//! from halb's [`ServiceSettings`].
//!
//! The kernel's choices that shape the encoding (`ip_vs_genl_parse_service`,
//! `ip_vs_add_service`):
//! - a service is identified by its family with either a firewall mark, or a protocol, an
//!   address and a port (network order); add and edit need the scheduler, the flags (with a
//!   mask), the persistence timeout and the netmask as well;
//! - the netmask of an IPv4 service is a netmask in network order, that of an IPv6 service a
//!   prefix length from 1 to 128 in host order, which the kernel checks on every IPv6 service,
//!   persistent or not: so a service without persistence still carries /32 or /128.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use halb_lb::table::{
    Persistence, PersistenceGranularity, ProtocolKey, SchedFlags, Scheduler, ServiceKey,
    ServiceSettings,
};

use super::attrs::*;
use super::genl::{AttrMap, AttrWriter, CodecError};
use super::stats::{self, KernelStats};

/// What identifies a service to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceId {
    Addr {
        protocol: u16,
        addr: IpAddr,
        port: u16,
    },
    Fwmark {
        mark: u32,
        inet6: bool,
    },
}

impl ServiceId {
    pub fn from_key(key: &ServiceKey) -> ServiceId {
        match *key {
            ServiceKey::Addr { protocol, addr } => ServiceId::Addr {
                protocol: protocol_number(protocol),
                addr: addr.ip(),
                port: addr.port(),
            },
            ServiceKey::Fwmark { mark, inet6 } => ServiceId::Fwmark { mark, inet6 },
        }
    }

    /// halb's key, when halb knows the protocol.
    pub fn key(&self) -> Option<ServiceKey> {
        match *self {
            ServiceId::Addr {
                protocol,
                addr,
                port,
            } => Some(ServiceKey::Addr {
                protocol: protocol_key(protocol)?,
                addr: SocketAddr::new(addr, port),
            }),
            ServiceId::Fwmark { mark, inet6 } => Some(ServiceKey::Fwmark { mark, inet6 }),
        }
    }

    pub fn family(&self) -> u16 {
        let inet6 = match self {
            ServiceId::Addr { addr, .. } => addr.is_ipv6(),
            ServiceId::Fwmark { inet6, .. } => *inet6,
        };
        if inet6 {
            AF_INET6
        } else {
            AF_INET
        }
    }

    /// The identifying attributes: enough for deleting the service and for naming it in
    /// destination commands and dumps.
    pub fn encode(&self, w: &mut AttrWriter) {
        w.put_u16(SVC_ATTR_AF, self.family());
        match *self {
            ServiceId::Addr {
                protocol,
                addr,
                port,
            } => {
                w.put_u16(SVC_ATTR_PROTOCOL, protocol);
                w.put(SVC_ATTR_ADDR, &addr_bytes(addr));
                w.put_be16(SVC_ATTR_PORT, port);
            }
            ServiceId::Fwmark { mark, .. } => {
                w.put_u32(SVC_ATTR_FWMARK, mark);
            }
        }
    }
}

impl std::fmt::Display for ServiceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.key() {
            Some(key) => write!(f, "{key}"),
            None => match self {
                ServiceId::Addr {
                    protocol,
                    addr,
                    port,
                } => write!(f, "protocol {protocol}  {}", SocketAddr::new(*addr, *port)),
                ServiceId::Fwmark { mark, .. } => write!(f, "FWM  {mark}"),
            },
        }
    }
}

/// A service's settings as the kernel holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAttrs {
    pub id: ServiceId,
    pub scheduler: String,
    /// The persistence engine (`sip`); halb sets none and leaves one it finds alone.
    pub pe_name: Option<String>,
    /// `IP_VS_SVC_F_*` under [`SVC_F_USER_MASK`] (the kernel's own `HASHED` is dropped).
    pub flags: u32,
    pub timeout_s: u32,
    /// IPv4: the netmask as a number (`0xffff_ff00` for /24); IPv6: the prefix length.
    pub netmask: u32,
}

impl ServiceAttrs {
    /// The kernel's form of `settings`; refuses what IPVS cannot hold.
    pub fn from_settings(settings: &ServiceSettings) -> Result<ServiceAttrs, String> {
        let id = ServiceId::from_key(&settings.key);
        let inet6 = id.family() == AF_INET6;
        let mut flags = 0;
        if settings.flags.ops {
            flags |= SVC_F_ONEPACKET;
        }
        if settings.flags.flag_1 {
            flags |= SVC_F_SCHED1;
        }
        if settings.flags.flag_2 {
            flags |= SVC_F_SCHED2;
        }
        if settings.flags.flag_3 {
            flags |= SVC_F_SCHED3;
        }
        let mut timeout_s = 0;
        let mut netmask = if inet6 { 128 } else { u32::MAX };
        if let Some(p) = settings.persistence {
            flags |= SVC_F_PERSISTENT;
            timeout_s = p.timeout_s;
            netmask = match (p.granularity, inet6) {
                (None, _) => netmask,
                (Some(PersistenceGranularity::Netmask(mask)), false) => u32::from(mask),
                (Some(PersistenceGranularity::Prefix(len)), false) if len <= 32 => {
                    prefix_to_mask(len)
                }
                (Some(PersistenceGranularity::Prefix(len)), true) if (1..=128).contains(&len) => {
                    u32::from(len)
                }
                (Some(PersistenceGranularity::Netmask(mask)), true) => {
                    return Err(format!(
                        "service {}: persistence granularity {mask} is an IPv4 netmask; an IPv6 service takes a prefix length",
                        settings.key
                    ))
                }
                (Some(PersistenceGranularity::Prefix(len)), _) => {
                    return Err(format!(
                        "service {}: persistence prefix length {len} is out of range",
                        settings.key
                    ))
                }
            };
        }
        Ok(ServiceAttrs {
            id,
            scheduler: settings.scheduler.as_str().to_string(),
            pe_name: settings.persistence_engine.clone(),
            flags,
            timeout_s,
            netmask,
        })
    }

    /// halb's form, when halb knows the protocol and the scheduler.
    pub fn settings(&self) -> Option<ServiceSettings> {
        let key = self.id.key()?;
        let scheduler = Scheduler::from_name(&self.scheduler)?;
        let inet6 = self.id.family() == AF_INET6;
        let persistence = (self.flags & SVC_F_PERSISTENT != 0).then(|| Persistence {
            timeout_s: self.timeout_s,
            granularity: match inet6 {
                false if self.netmask == u32::MAX => None,
                false => Some(PersistenceGranularity::Netmask(Ipv4Addr::from(
                    self.netmask,
                ))),
                true if self.netmask >= 128 => None,
                true => Some(PersistenceGranularity::Prefix(self.netmask as u8)),
            },
        });
        Some(ServiceSettings {
            key,
            scheduler,
            flags: SchedFlags {
                ops: self.flags & SVC_F_ONEPACKET != 0,
                flag_1: self.flags & SVC_F_SCHED1 != 0,
                flag_2: self.flags & SVC_F_SCHED2 != 0,
                flag_3: self.flags & SVC_F_SCHED3 != 0,
            },
            persistence,
            persistence_engine: self.pe_name.clone(),
            fallback: None,
        })
    }

    /// Whether the kernel would behave the same with `self` as with `other`: the timeout and
    /// netmask only count on a persistent service.
    pub fn same_settings(&self, other: &ServiceAttrs) -> bool {
        let persistent = self.flags & SVC_F_PERSISTENT != 0;
        self.id == other.id
            && self.scheduler == other.scheduler
            && self.pe_name == other.pe_name
            && self.flags == other.flags
            && (!persistent || (self.timeout_s == other.timeout_s && self.netmask == other.netmask))
    }

    /// Every attribute of `IPVS_CMD_NEW_SERVICE` / `IPVS_CMD_SET_SERVICE`.
    pub fn encode(&self, w: &mut AttrWriter) {
        self.id.encode(w);
        w.put_str(SVC_ATTR_SCHED_NAME, &self.scheduler);
        if let Some(pe) = &self.pe_name {
            w.put_str(SVC_ATTR_PE_NAME, pe);
        }
        // The mask says which flags this message sets: all of them, so that a flag dropped
        // from the configuration is cleared.
        let mut flags = [0u8; 8];
        flags[..4].copy_from_slice(&self.flags.to_ne_bytes());
        flags[4..].copy_from_slice(&u32::MAX.to_ne_bytes());
        w.put(SVC_ATTR_FLAGS, &flags);
        w.put_u32(SVC_ATTR_TIMEOUT, self.timeout_s);
        let netmask = if self.id.family() == AF_INET6 {
            self.netmask.to_ne_bytes()
        } else {
            self.netmask.to_be_bytes()
        };
        w.put(SVC_ATTR_NETMASK, &netmask);
    }

    /// Checks what the kernel would refuse with a bare `EINVAL`, to say why instead.
    pub fn validate(&self) -> Result<(), String> {
        if self.scheduler.is_empty() || self.scheduler.len() >= SCHEDNAME_MAXLEN {
            return Err(format!(
                "service {}: scheduler name {:?} must have 1 to {} characters",
                self.id,
                self.scheduler,
                SCHEDNAME_MAXLEN - 1
            ));
        }
        if let ServiceId::Fwmark { mark: 0, .. } = self.id {
            return Err("firewall mark 0 cannot name a service".into());
        }
        Ok(())
    }
}

/// One service as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelService {
    pub attrs: ServiceAttrs,
    pub stats: KernelStats,
}

impl KernelService {
    /// Reads the attributes nested in `IPVS_CMD_ATTR_SERVICE`.
    pub fn decode(nest: &AttrMap<'_>) -> Result<KernelService, CodecError> {
        let af = nest.require(SVC_ATTR_AF, "the service's family")?.u16()?;
        let inet6 = match af {
            AF_INET => false,
            AF_INET6 => true,
            other => return Err(CodecError(format!("service of address family {other}"))),
        };
        let id = match nest.get(SVC_ATTR_FWMARK) {
            Some(mark) if mark.u32()? != 0 => ServiceId::Fwmark {
                mark: mark.u32()?,
                inet6,
            },
            _ => ServiceId::Addr {
                protocol: nest
                    .require(SVC_ATTR_PROTOCOL, "the service's protocol")?
                    .u16()?,
                addr: decode_addr(
                    nest.require(SVC_ATTR_ADDR, "the service's address")?
                        .payload,
                    inet6,
                )?,
                port: nest.require(SVC_ATTR_PORT, "the service's port")?.be16()?,
            },
        };
        let flags = match nest.get(SVC_ATTR_FLAGS) {
            Some(f) if f.payload.len() >= 4 => {
                u32::from_ne_bytes([f.payload[0], f.payload[1], f.payload[2], f.payload[3]])
            }
            Some(_) => return Err(CodecError("service flags shorter than 4 bytes".into())),
            None => 0,
        };
        let netmask = match nest.get(SVC_ATTR_NETMASK) {
            None => {
                if inet6 {
                    128
                } else {
                    u32::MAX
                }
            }
            Some(m) => {
                let raw = m.u32()?;
                if inet6 {
                    raw
                } else {
                    u32::from_be(raw)
                }
            }
        };
        let attrs = ServiceAttrs {
            id,
            scheduler: nest
                .get(SVC_ATTR_SCHED_NAME)
                .map(|a| a.string())
                .transpose()?
                .unwrap_or_default(),
            pe_name: nest
                .get(SVC_ATTR_PE_NAME)
                .map(|a| a.string())
                .transpose()?
                .filter(|s| !s.is_empty()),
            flags: flags & SVC_F_USER_MASK,
            timeout_s: nest
                .get(SVC_ATTR_TIMEOUT)
                .map(|a| a.u32())
                .transpose()?
                .unwrap_or(0),
            netmask,
        };
        Ok(KernelService {
            attrs,
            stats: stats::decode(nest, SVC_ATTR_STATS64, SVC_ATTR_STATS)?,
        })
    }
}

pub fn protocol_number(protocol: ProtocolKey) -> u16 {
    match protocol {
        ProtocolKey::Tcp => IPPROTO_TCP,
        ProtocolKey::Udp => IPPROTO_UDP,
        ProtocolKey::Sctp => IPPROTO_SCTP,
    }
}

pub fn protocol_key(number: u16) -> Option<ProtocolKey> {
    match number {
        IPPROTO_TCP => Some(ProtocolKey::Tcp),
        IPPROTO_UDP => Some(ProtocolKey::Udp),
        IPPROTO_SCTP => Some(ProtocolKey::Sctp),
        _ => None,
    }
}

/// `union nf_inet_addr`: 16 bytes, an IPv4 address in the first 4.
pub fn addr_bytes(addr: IpAddr) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    match addr {
        IpAddr::V4(v4) => bytes[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => bytes = v6.octets(),
    }
    bytes
}

pub fn decode_addr(payload: &[u8], inet6: bool) -> Result<IpAddr, CodecError> {
    if inet6 {
        let bytes: [u8; 16] = payload
            .get(..16)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| CodecError(format!("IPv6 address of {} bytes", payload.len())))?;
        Ok(IpAddr::V6(Ipv6Addr::from(bytes)))
    } else {
        let bytes: [u8; 4] = payload
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| CodecError(format!("IPv4 address of {} bytes", payload.len())))?;
        Ok(IpAddr::V4(Ipv4Addr::from(bytes)))
    }
}

/// `/len` as an IPv4 netmask number.
fn prefix_to_mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}
