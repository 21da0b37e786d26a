//! IPVS's global settings: the connection timeouts (`IPVS_CMD_SET_CONFIG` /
//! `IPVS_CMD_GET_CONFIG`, keepalived's `lvs_timeouts`) and the version
//! (`IPVS_CMD_GET_INFO`).

use serde::{Deserialize, Serialize};

use super::attrs::*;
use super::genl::{AttrMap, AttrWriter, CodecError};

/// The timeouts of IPVS connection entries, in seconds (`ipvsadm -L --timeout`). In a request,
/// 0 leaves that timeout as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    /// Established TCP connections.
    pub tcp_s: u32,
    /// TCP connections after the client's FIN.
    pub tcp_fin_s: u32,
    /// UDP "connections".
    pub udp_s: u32,
}

impl Timeouts {
    /// The kernel keeps them as `int` seconds and refuses negative ones.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("tcp", self.tcp_s),
            ("tcpfin", self.tcp_fin_s),
            ("udp", self.udp_s),
        ] {
            if value > i32::MAX as u32 {
                return Err(format!(
                    "IPVS {name} timeout {value} s is over {}",
                    i32::MAX
                ));
            }
        }
        Ok(())
    }

    /// The attributes of `IPVS_CMD_SET_CONFIG`; the zero ones are left out.
    pub fn encode(&self, w: &mut AttrWriter) {
        if self.tcp_s != 0 {
            w.put_u32(CMD_ATTR_TIMEOUT_TCP, self.tcp_s);
        }
        if self.tcp_fin_s != 0 {
            w.put_u32(CMD_ATTR_TIMEOUT_TCP_FIN, self.tcp_fin_s);
        }
        if self.udp_s != 0 {
            w.put_u32(CMD_ATTR_TIMEOUT_UDP, self.udp_s);
        }
    }

    /// Reads `IPVS_CMD_GET_CONFIG`'s answer (a kernel without TCP or UDP support leaves those
    /// out: 0).
    pub fn decode(top: &AttrMap<'_>) -> Result<Timeouts, CodecError> {
        let get = |kind| -> Result<u32, CodecError> {
            Ok(top.get(kind).map(|a| a.u32()).transpose()?.unwrap_or(0))
        };
        Ok(Timeouts {
            tcp_s: get(CMD_ATTR_TIMEOUT_TCP)?,
            tcp_fin_s: get(CMD_ATTR_TIMEOUT_TCP_FIN)?,
            udp_s: get(CMD_ATTR_TIMEOUT_UDP)?,
        })
    }
}

/// `IPVS_CMD_GET_INFO`'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpvsInfo {
    /// `IP_VS_VERSION_CODE`: 0x010201 for 1.2.1.
    pub version: u32,
    /// Entries of the connection hash table (`ip_vs_conn_tab_bits`).
    pub conn_tab_size: u32,
}

impl IpvsInfo {
    pub fn decode(top: &AttrMap<'_>) -> Result<IpvsInfo, CodecError> {
        Ok(IpvsInfo {
            version: top.require(INFO_ATTR_VERSION, "IPVS's version")?.u32()?,
            conn_tab_size: top
                .require(INFO_ATTR_CONN_TAB_SIZE, "the connection table size")?
                .u32()?,
        })
    }

    /// `1.2.1`, as ipvsadm prints it.
    pub fn version_string(&self) -> String {
        format!(
            "{}.{}.{}",
            (self.version >> 16) & 0xff,
            (self.version >> 8) & 0xff,
            self.version & 0xff
        )
    }
}
