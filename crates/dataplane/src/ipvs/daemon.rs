//! The connection synchronisation daemon (`lvs_sync_daemon` in keepalived.conf,
//! `ipvsadm --start-daemon`): the kernel threads that send a MASTER's connection table to its
//! BACKUPs over multicast, so that a failover keeps established connections.
//!
//! `IPVS_CMD_NEW_DAEMON` needs the state, the interface and the sync id; the maximum payload,
//! group, port and TTL are optional (the kernel then sizes packets from the interface's MTU and
//! uses group 224.0.0.81, port 8848 and TTL 1). The port travels in host order, unlike every
//! other port of this interface.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::attrs::*;
use super::genl::{AttrMap, AttrWriter, CodecError};

/// Which side of the synchronisation a daemon is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SyncState {
    Master,
    Backup,
}

impl SyncState {
    pub fn number(self) -> u32 {
        match self {
            SyncState::Master => STATE_MASTER,
            SyncState::Backup => STATE_BACKUP,
        }
    }

    pub fn from_number(n: u32) -> Option<SyncState> {
        match n {
            STATE_MASTER => Some(SyncState::Master),
            STATE_BACKUP => Some(SyncState::Backup),
            _ => None,
        }
    }

    /// `master` or `backup`, as ipvsadm and keepalived spell them.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Master => "master",
            SyncState::Backup => "backup",
        }
    }
}

impl fmt::Display for SyncState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One sync daemon's settings (to start it, or as the kernel lists it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncDaemon {
    pub state: SyncState,
    /// The interface the multicast goes out of (MASTER) or is received on (BACKUP).
    pub interface: String,
    /// Tells apart several clusters on one segment; the sync protocol carries 8 bits of it.
    pub sync_id: u32,
    /// Largest UDP payload; `None`: from the interface's MTU.
    pub max_len: Option<u16>,
    /// Multicast group; `None`: the kernel's default for the family of the interface.
    pub group: Option<IpAddr>,
    /// Base UDP port; `None`: 8848.
    pub port: Option<u16>,
    /// `None`: 1.
    pub ttl: Option<u8>,
}

impl SyncDaemon {
    /// A daemon with the kernel's defaults for everything optional.
    pub fn new(state: SyncState, interface: impl Into<String>, sync_id: u32) -> SyncDaemon {
        SyncDaemon {
            state,
            interface: interface.into(),
            sync_id,
            max_len: None,
            group: None,
            port: None,
            ttl: None,
        }
    }

    /// Checks what the kernel would refuse with a bare `EINVAL`, to say why instead.
    pub fn validate(&self) -> Result<(), String> {
        if self.interface.is_empty() || self.interface.len() >= IFNAME_MAXLEN {
            return Err(format!(
                "sync daemon interface name {:?} must have 1 to {} characters",
                self.interface,
                IFNAME_MAXLEN - 1
            ));
        }
        if let Some(group) = self.group {
            if !group.is_multicast() {
                return Err(format!(
                    "sync daemon group {group} is not a multicast address"
                ));
            }
        }
        Ok(())
    }

    /// The attributes nested in `IPVS_CMD_ATTR_DAEMON` for `IPVS_CMD_NEW_DAEMON`.
    pub fn encode(&self, w: &mut AttrWriter) {
        w.put_u32(DAEMON_ATTR_STATE, self.state.number());
        w.put_str(DAEMON_ATTR_MCAST_IFN, &self.interface);
        w.put_u32(DAEMON_ATTR_SYNC_ID, self.sync_id);
        if let Some(max_len) = self.max_len {
            w.put_u16(DAEMON_ATTR_SYNC_MAXLEN, max_len);
        }
        match self.group {
            Some(IpAddr::V4(v4)) => {
                w.put(DAEMON_ATTR_MCAST_GROUP, &v4.octets());
            }
            Some(IpAddr::V6(v6)) => {
                w.put(DAEMON_ATTR_MCAST_GROUP6, &v6.octets());
            }
            None => {}
        }
        if let Some(port) = self.port {
            w.put_u16(DAEMON_ATTR_MCAST_PORT, port);
        }
        if let Some(ttl) = self.ttl {
            w.put_u8(DAEMON_ATTR_MCAST_TTL, ttl);
        }
    }

    /// The attributes nested in `IPVS_CMD_ATTR_DAEMON` for `IPVS_CMD_DEL_DAEMON`.
    pub fn encode_stop(state: SyncState, w: &mut AttrWriter) {
        w.put_u32(DAEMON_ATTR_STATE, state.number());
    }

    /// Reads one daemon of an `IPVS_CMD_GET_DAEMON` dump.
    pub fn decode(nest: &AttrMap<'_>) -> Result<SyncDaemon, CodecError> {
        let state_number = nest
            .require(DAEMON_ATTR_STATE, "the daemon's state")?
            .u32()?;
        let state = SyncState::from_number(state_number)
            .ok_or_else(|| CodecError(format!("sync daemon state {state_number}")))?;
        let group = match (
            nest.get(DAEMON_ATTR_MCAST_GROUP),
            nest.get(DAEMON_ATTR_MCAST_GROUP6),
        ) {
            (Some(v4), _) => {
                let octets: [u8; 4] = v4
                    .payload
                    .try_into()
                    .map_err(|_| CodecError("IPv4 sync group not of 4 bytes".into()))?;
                Some(IpAddr::V4(Ipv4Addr::from(octets)))
            }
            (None, Some(v6)) => {
                let octets: [u8; 16] = v6
                    .payload
                    .try_into()
                    .map_err(|_| CodecError("IPv6 sync group not of 16 bytes".into()))?;
                Some(IpAddr::V6(Ipv6Addr::from(octets)))
            }
            (None, None) => None,
        };
        Ok(SyncDaemon {
            state,
            interface: nest
                .require(DAEMON_ATTR_MCAST_IFN, "the daemon's interface")?
                .string()?,
            sync_id: nest
                .require(DAEMON_ATTR_SYNC_ID, "the daemon's sync id")?
                .u32()?,
            max_len: nest
                .get(DAEMON_ATTR_SYNC_MAXLEN)
                .map(|a| a.u16())
                .transpose()?,
            group,
            port: nest
                .get(DAEMON_ATTR_MCAST_PORT)
                .map(|a| a.u16())
                .transpose()?,
            ttl: nest
                .get(DAEMON_ATTR_MCAST_TTL)
                .map(|a| a.u8())
                .transpose()?,
        })
    }
}
