//! A destination (real server) in IPVS's terms: the attributes nested in `IPVS_CMD_ATTR_DEST`,
//! to and from halb's [`Destination`].
//!
//! The kernel's choices that shape the encoding (`ip_vs_genl_parse_dest`, `ip_vs_add_dest`):
//! - a destination is identified by address and port (network order) within its service; add
//!   and edit also need the forwarding method, the weight and both thresholds;
//! - its family defaults to the service's; another family is allowed for tunnels only;
//! - the tunnel attributes (type, GUE port in network order, checksum flags) are optional, and
//!   a GUE tunnel without a port is refused.

use std::net::{IpAddr, SocketAddr};

use halb_config::model::{Tunnel, TunnelChecksum, TunnelType};
use halb_lb::table::{Destination, Forwarding};

use super::attrs::*;
use super::genl::{AttrMap, AttrWriter, CodecError};
use super::service::{addr_bytes, decode_addr};
use super::stats::{self, KernelStats};

/// A destination's settings as the kernel holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestAttrs {
    pub addr: SocketAddr,
    /// `IP_VS_CONN_F_MASQ`, `_TUNNEL`, `_DROUTE` (or `_LOCALNODE` / `_BYPASS`, which only the
    /// kernel sets up).
    pub fwd_method: u32,
    pub weight: u32,
    pub u_threshold: u32,
    pub l_threshold: u32,
    pub tun_type: u8,
    /// GUE's destination port; 0 for the other tunnel types.
    pub tun_port: u16,
    pub tun_flags: u16,
}

impl DestAttrs {
    /// The kernel's form of `dest`; refuses what IPVS cannot hold.
    pub fn from_destination(dest: &Destination) -> Result<DestAttrs, String> {
        let weight = i32::try_from(dest.weight).map(|w| w as u32).map_err(|_| {
            format!(
                "destination {}: weight {} is over {}",
                dest.addr,
                dest.weight,
                i32::MAX
            )
        })?;
        let (fwd_method, tun_type, tun_port, tun_flags) = match dest.forwarding {
            Forwarding::Nat => (CONN_F_MASQ, 0, 0, 0),
            Forwarding::Dr => (CONN_F_DROUTE, 0, 0, 0),
            Forwarding::Tun(tunnel) => {
                let (tun_type, tun_port) = match tunnel.tunnel_type {
                    TunnelType::Ipip => (TUNNEL_TYPE_IPIP, 0),
                    TunnelType::Gue { port: 0 } => {
                        return Err(format!(
                            "destination {}: a GUE tunnel needs a port",
                            dest.addr
                        ))
                    }
                    TunnelType::Gue { port } => (TUNNEL_TYPE_GUE, port),
                    TunnelType::Gre => (TUNNEL_TYPE_GRE, 0),
                };
                let flags = match tunnel.checksum {
                    TunnelChecksum::NoCsum => TUNNEL_ENCAP_FLAG_NOCSUM,
                    TunnelChecksum::Csum => TUNNEL_ENCAP_FLAG_CSUM,
                    TunnelChecksum::RemCsum => TUNNEL_ENCAP_FLAG_REMCSUM,
                };
                (CONN_F_TUNNEL, tun_type, tun_port, flags)
            }
        };
        Ok(DestAttrs {
            addr: dest.addr,
            fwd_method,
            weight,
            u_threshold: dest.uthreshold,
            l_threshold: dest.lthreshold,
            tun_type,
            tun_port,
            tun_flags,
        })
    }

    /// halb's form, when the forwarding method is one halb sets.
    pub fn destination(&self) -> Option<Destination> {
        let forwarding = match self.fwd_method {
            CONN_F_MASQ => Forwarding::Nat,
            CONN_F_DROUTE => Forwarding::Dr,
            CONN_F_TUNNEL => Forwarding::Tun(Tunnel {
                tunnel_type: match self.tun_type {
                    TUNNEL_TYPE_IPIP => TunnelType::Ipip,
                    TUNNEL_TYPE_GUE => TunnelType::Gue {
                        port: self.tun_port,
                    },
                    TUNNEL_TYPE_GRE => TunnelType::Gre,
                    _ => return None,
                },
                checksum: match self.tun_flags {
                    TUNNEL_ENCAP_FLAG_NOCSUM => TunnelChecksum::NoCsum,
                    TUNNEL_ENCAP_FLAG_CSUM => TunnelChecksum::Csum,
                    TUNNEL_ENCAP_FLAG_REMCSUM => TunnelChecksum::RemCsum,
                    _ => return None,
                },
            }),
            _ => return None,
        };
        Some(Destination {
            addr: self.addr,
            weight: self.weight,
            forwarding,
            uthreshold: self.u_threshold,
            lthreshold: self.l_threshold,
        })
    }

    /// Whether the kernel would forward the same with `self` as with `other`: the tunnel
    /// attributes only count for tunnels.
    pub fn same_settings(&self, other: &DestAttrs) -> bool {
        let tunnel = self.fwd_method == CONN_F_TUNNEL;
        self.addr == other.addr
            && self.fwd_method == other.fwd_method
            && self.weight == other.weight
            && self.u_threshold == other.u_threshold
            && self.l_threshold == other.l_threshold
            && (!tunnel
                || (self.tun_type == other.tun_type
                    && self.tun_port == other.tun_port
                    && self.tun_flags == other.tun_flags))
    }

    /// The identifying attributes (family, address, port): enough for `IPVS_CMD_DEL_DEST`.
    pub fn encode_id(addr: SocketAddr, w: &mut AttrWriter) {
        w.put_u16(
            DEST_ATTR_ADDR_FAMILY,
            if addr.is_ipv6() { AF_INET6 } else { AF_INET },
        );
        w.put(DEST_ATTR_ADDR, &addr_bytes(addr.ip()));
        w.put_be16(DEST_ATTR_PORT, addr.port());
    }

    /// Every attribute of `IPVS_CMD_NEW_DEST` / `IPVS_CMD_SET_DEST`.
    pub fn encode(&self, w: &mut AttrWriter) {
        DestAttrs::encode_id(self.addr, w);
        w.put_u32(DEST_ATTR_FWD_METHOD, self.fwd_method);
        w.put_u32(DEST_ATTR_WEIGHT, self.weight);
        w.put_u32(DEST_ATTR_U_THRESH, self.u_threshold);
        w.put_u32(DEST_ATTR_L_THRESH, self.l_threshold);
        // Kernels before 5.2 do not know these and ignore them; they matter only for tunnels.
        if self.fwd_method == CONN_F_TUNNEL {
            w.put_u8(DEST_ATTR_TUN_TYPE, self.tun_type);
            w.put_be16(DEST_ATTR_TUN_PORT, self.tun_port);
            w.put_u16(DEST_ATTR_TUN_FLAGS, self.tun_flags);
        }
    }
}

/// One destination as the kernel lists it, with its connection counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelDest {
    pub attrs: DestAttrs,
    /// ActiveConn: established connections.
    pub active: u32,
    /// InActConn: connections in any other state.
    pub inactive: u32,
    /// PersistConn: persistence templates pointing here.
    pub persistent: u32,
    pub stats: KernelStats,
}

impl KernelDest {
    /// Reads the attributes nested in `IPVS_CMD_ATTR_DEST`; `service_inet6` is the family the
    /// kernel means when it leaves the destination's out (kernels before 3.18).
    pub fn decode(nest: &AttrMap<'_>, service_inet6: bool) -> Result<KernelDest, CodecError> {
        let inet6 = match nest
            .get(DEST_ATTR_ADDR_FAMILY)
            .map(|a| a.u16())
            .transpose()?
        {
            Some(AF_INET6) => true,
            Some(AF_INET) => false,
            Some(other) => {
                return Err(CodecError(format!("destination of address family {other}")))
            }
            None => service_inet6,
        };
        let ip: IpAddr = decode_addr(
            nest.require(DEST_ATTR_ADDR, "the destination's address")?
                .payload,
            inet6,
        )?;
        let port = nest
            .require(DEST_ATTR_PORT, "the destination's port")?
            .be16()?;
        let u32_or_zero = |kind: u16| -> Result<u32, CodecError> {
            Ok(nest.get(kind).map(|a| a.u32()).transpose()?.unwrap_or(0))
        };
        let attrs = DestAttrs {
            addr: SocketAddr::new(ip, port),
            fwd_method: u32_or_zero(DEST_ATTR_FWD_METHOD)? & CONN_F_FWD_MASK,
            weight: u32_or_zero(DEST_ATTR_WEIGHT)?,
            u_threshold: u32_or_zero(DEST_ATTR_U_THRESH)?,
            l_threshold: u32_or_zero(DEST_ATTR_L_THRESH)?,
            tun_type: nest
                .get(DEST_ATTR_TUN_TYPE)
                .map(|a| a.u8())
                .transpose()?
                .unwrap_or(0),
            tun_port: nest
                .get(DEST_ATTR_TUN_PORT)
                .map(|a| a.be16())
                .transpose()?
                .unwrap_or(0),
            tun_flags: nest
                .get(DEST_ATTR_TUN_FLAGS)
                .map(|a| a.u16())
                .transpose()?
                .unwrap_or(0),
        };
        Ok(KernelDest {
            attrs,
            active: u32_or_zero(DEST_ATTR_ACTIVE_CONNS)?,
            inactive: u32_or_zero(DEST_ATTR_INACT_CONNS)?,
            persistent: u32_or_zero(DEST_ATTR_PERSIST_CONNS)?,
            stats: stats::decode(nest, DEST_ATTR_STATS64, DEST_ATTR_STATS)?,
        })
    }
}
