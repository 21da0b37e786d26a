//! The numbers of the kernel's IPVS generic netlink interface, from its uapi header
//! `include/uapi/linux/ip_vs.h`, and the attribute types the kernel's policies give them
//! (`net/netfilter/ipvs/ip_vs_ctl.c`).
//!
//! Byte order is the trap of this interface: ports (service, destination, tunnel) and the IPv4
//! persistence netmask travel in network order, everything else in the host's order. The
//! encoders in [`super::service`], [`super::dest`] and [`super::daemon`] say which is which.

/// The family's name for the generic netlink controller.
pub const GENL_NAME: &str = "IPVS";
/// The family's version; the kernel does not check it, ipvsadm and keepalived send 1.
pub const GENL_VERSION: u8 = 1;

// Commands (`IPVS_CMD_*`).
pub const CMD_NEW_SERVICE: u8 = 1;
pub const CMD_SET_SERVICE: u8 = 2;
pub const CMD_DEL_SERVICE: u8 = 3;
pub const CMD_GET_SERVICE: u8 = 4;
pub const CMD_NEW_DEST: u8 = 5;
pub const CMD_SET_DEST: u8 = 6;
pub const CMD_DEL_DEST: u8 = 7;
pub const CMD_GET_DEST: u8 = 8;
pub const CMD_NEW_DAEMON: u8 = 9;
pub const CMD_DEL_DAEMON: u8 = 10;
pub const CMD_GET_DAEMON: u8 = 11;
pub const CMD_SET_CONFIG: u8 = 12;
pub const CMD_GET_CONFIG: u8 = 13;
pub const CMD_SET_INFO: u8 = 14;
pub const CMD_GET_INFO: u8 = 15;
pub const CMD_ZERO: u8 = 16;
pub const CMD_FLUSH: u8 = 17;

/// A command's name, for error messages.
pub fn command_name(cmd: u8) -> &'static str {
    match cmd {
        CMD_NEW_SERVICE => "IPVS_CMD_NEW_SERVICE",
        CMD_SET_SERVICE => "IPVS_CMD_SET_SERVICE",
        CMD_DEL_SERVICE => "IPVS_CMD_DEL_SERVICE",
        CMD_GET_SERVICE => "IPVS_CMD_GET_SERVICE",
        CMD_NEW_DEST => "IPVS_CMD_NEW_DEST",
        CMD_SET_DEST => "IPVS_CMD_SET_DEST",
        CMD_DEL_DEST => "IPVS_CMD_DEL_DEST",
        CMD_GET_DEST => "IPVS_CMD_GET_DEST",
        CMD_NEW_DAEMON => "IPVS_CMD_NEW_DAEMON",
        CMD_DEL_DAEMON => "IPVS_CMD_DEL_DAEMON",
        CMD_GET_DAEMON => "IPVS_CMD_GET_DAEMON",
        CMD_SET_CONFIG => "IPVS_CMD_SET_CONFIG",
        CMD_GET_CONFIG => "IPVS_CMD_GET_CONFIG",
        CMD_SET_INFO => "IPVS_CMD_SET_INFO",
        CMD_GET_INFO => "IPVS_CMD_GET_INFO",
        CMD_ZERO => "IPVS_CMD_ZERO",
        CMD_FLUSH => "IPVS_CMD_FLUSH",
        _ => "IPVS_CMD_?",
    }
}

// First-level attributes (`IPVS_CMD_ATTR_*`).
/// Nested service attributes.
pub const CMD_ATTR_SERVICE: u16 = 1;
/// Nested destination attributes.
pub const CMD_ATTR_DEST: u16 = 2;
/// Nested sync daemon attributes.
pub const CMD_ATTR_DAEMON: u16 = 3;
/// u32 seconds.
pub const CMD_ATTR_TIMEOUT_TCP: u16 = 4;
/// u32 seconds.
pub const CMD_ATTR_TIMEOUT_TCP_FIN: u16 = 5;
/// u32 seconds.
pub const CMD_ATTR_TIMEOUT_UDP: u16 = 6;

// Service attributes (`IPVS_SVC_ATTR_*`), nested in `CMD_ATTR_SERVICE`.
/// u16 address family (`AF_INET`, `AF_INET6`).
pub const SVC_ATTR_AF: u16 = 1;
/// u16 IP protocol number.
pub const SVC_ATTR_PROTOCOL: u16 = 2;
/// Binary, up to 16 bytes (`union nf_inet_addr`); the kernel answers with all 16.
pub const SVC_ATTR_ADDR: u16 = 3;
/// u16 in network order.
pub const SVC_ATTR_PORT: u16 = 4;
/// u32 firewall mark.
pub const SVC_ATTR_FWMARK: u16 = 5;
/// NUL-terminated string, at most 15 characters.
pub const SVC_ATTR_SCHED_NAME: u16 = 6;
/// `struct ip_vs_flags { u32 flags; u32 mask; }`.
pub const SVC_ATTR_FLAGS: u16 = 7;
/// u32 persistence timeout in seconds.
pub const SVC_ATTR_TIMEOUT: u16 = 8;
/// u32: an IPv4 netmask in network order, or an IPv6 prefix length (1..=128) in host order.
pub const SVC_ATTR_NETMASK: u16 = 9;
/// Nested 32-bit statistics.
pub const SVC_ATTR_STATS: u16 = 10;
/// NUL-terminated persistence engine name (`sip`).
pub const SVC_ATTR_PE_NAME: u16 = 11;
/// Nested 64-bit statistics (kernel 4.1 and later).
pub const SVC_ATTR_STATS64: u16 = 12;

// Destination attributes (`IPVS_DEST_ATTR_*`), nested in `CMD_ATTR_DEST`.
/// Binary, up to 16 bytes.
pub const DEST_ATTR_ADDR: u16 = 1;
/// u16 in network order.
pub const DEST_ATTR_PORT: u16 = 2;
/// u32 `IP_VS_CONN_F_*` forwarding method.
pub const DEST_ATTR_FWD_METHOD: u16 = 3;
/// u32 (the kernel's `int`; negative is refused).
pub const DEST_ATTR_WEIGHT: u16 = 4;
/// u32 upper connection threshold.
pub const DEST_ATTR_U_THRESH: u16 = 5;
/// u32 lower connection threshold.
pub const DEST_ATTR_L_THRESH: u16 = 6;
/// u32 (read only).
pub const DEST_ATTR_ACTIVE_CONNS: u16 = 7;
/// u32 (read only).
pub const DEST_ATTR_INACT_CONNS: u16 = 8;
/// u32 (read only).
pub const DEST_ATTR_PERSIST_CONNS: u16 = 9;
/// Nested 32-bit statistics (read only).
pub const DEST_ATTR_STATS: u16 = 10;
/// u16 address family of the destination, when it differs from the service's (tunnels).
pub const DEST_ATTR_ADDR_FAMILY: u16 = 11;
/// Nested 64-bit statistics (read only).
pub const DEST_ATTR_STATS64: u16 = 12;
/// u8 `IP_VS_CONN_F_TUNNEL_TYPE_*`.
pub const DEST_ATTR_TUN_TYPE: u16 = 13;
/// u16 in network order (GUE's destination port).
pub const DEST_ATTR_TUN_PORT: u16 = 14;
/// u16 `IP_VS_TUNNEL_ENCAP_FLAG_*`.
pub const DEST_ATTR_TUN_FLAGS: u16 = 15;

// Sync daemon attributes (`IPVS_DAEMON_ATTR_*`), nested in `CMD_ATTR_DAEMON`.
/// u32 `IP_VS_STATE_MASTER` or `IP_VS_STATE_BACKUP`.
pub const DAEMON_ATTR_STATE: u16 = 1;
/// NUL-terminated interface name.
pub const DAEMON_ATTR_MCAST_IFN: u16 = 2;
/// u32 sync id (0..=255 on the wire of the sync protocol).
pub const DAEMON_ATTR_SYNC_ID: u16 = 3;
/// u16 maximum UDP payload size.
pub const DAEMON_ATTR_SYNC_MAXLEN: u16 = 4;
/// 4 bytes, IPv4 multicast group in network order.
pub const DAEMON_ATTR_MCAST_GROUP: u16 = 5;
/// 16 bytes, IPv6 multicast group.
pub const DAEMON_ATTR_MCAST_GROUP6: u16 = 6;
/// u16 base port in host order (the kernel converts it when it binds).
pub const DAEMON_ATTR_MCAST_PORT: u16 = 7;
/// u8 multicast TTL.
pub const DAEMON_ATTR_MCAST_TTL: u16 = 8;

// Statistics attributes (`IPVS_STATS_ATTR_*`), nested in the `*_STATS` and `*_STATS64`
// attributes. In `*_STATS64` every one is a u64; in `*_STATS` the bytes are u64 and the rest u32.
pub const STATS_ATTR_CONNS: u16 = 1;
pub const STATS_ATTR_INPKTS: u16 = 2;
pub const STATS_ATTR_OUTPKTS: u16 = 3;
pub const STATS_ATTR_INBYTES: u16 = 4;
pub const STATS_ATTR_OUTBYTES: u16 = 5;
pub const STATS_ATTR_CPS: u16 = 6;
pub const STATS_ATTR_INPPS: u16 = 7;
pub const STATS_ATTR_OUTPPS: u16 = 8;
pub const STATS_ATTR_INBPS: u16 = 9;
pub const STATS_ATTR_OUTBPS: u16 = 10;
/// Alignment padding before 64-bit values; carries nothing.
pub const STATS_ATTR_PAD: u16 = 11;

// `IPVS_CMD_GET_INFO`'s answer.
/// u32 `IP_VS_VERSION_CODE` (0x010201 is 1.2.1).
pub const INFO_ATTR_VERSION: u16 = 1;
/// u32 size of the connection hash table.
pub const INFO_ATTR_CONN_TAB_SIZE: u16 = 2;

// Service flags (`IP_VS_SVC_F_*`).
pub const SVC_F_PERSISTENT: u32 = 0x0001;
/// Set by the kernel on every listed service; never part of what userspace asks for.
pub const SVC_F_HASHED: u32 = 0x0002;
pub const SVC_F_ONEPACKET: u32 = 0x0004;
/// `sh-fallback` / `mh-fallback`.
pub const SVC_F_SCHED1: u32 = 0x0008;
/// `sh-port` / `mh-port`.
pub const SVC_F_SCHED2: u32 = 0x0010;
pub const SVC_F_SCHED3: u32 = 0x0020;
/// The flags a user sets; the others are the kernel's own.
pub const SVC_F_USER_MASK: u32 =
    SVC_F_PERSISTENT | SVC_F_ONEPACKET | SVC_F_SCHED1 | SVC_F_SCHED2 | SVC_F_SCHED3;

// Forwarding methods (`IP_VS_CONN_F_*` under `IP_VS_CONN_F_FWD_MASK`).
pub const CONN_F_FWD_MASK: u32 = 0x0007;
pub const CONN_F_MASQ: u32 = 0x0000;
pub const CONN_F_LOCALNODE: u32 = 0x0001;
pub const CONN_F_TUNNEL: u32 = 0x0002;
pub const CONN_F_DROUTE: u32 = 0x0003;
pub const CONN_F_BYPASS: u32 = 0x0004;

// Tunnel types (`IP_VS_CONN_F_TUNNEL_TYPE_*`).
pub const TUNNEL_TYPE_IPIP: u8 = 0;
pub const TUNNEL_TYPE_GUE: u8 = 1;
pub const TUNNEL_TYPE_GRE: u8 = 2;

// Tunnel encapsulation flags (`IP_VS_TUNNEL_ENCAP_FLAG_*`).
pub const TUNNEL_ENCAP_FLAG_NOCSUM: u16 = 0;
pub const TUNNEL_ENCAP_FLAG_CSUM: u16 = 1 << 0;
pub const TUNNEL_ENCAP_FLAG_REMCSUM: u16 = 1 << 1;

// Sync daemon states (`IP_VS_STATE_*`).
pub const STATE_MASTER: u32 = 0x0001;
pub const STATE_BACKUP: u32 = 0x0002;

/// `IP_VS_SCHEDNAME_MAXLEN`, with the terminating NUL.
pub const SCHEDNAME_MAXLEN: usize = 16;
/// `IP_VS_IFNAME_MAXLEN`, with the terminating NUL.
pub const IFNAME_MAXLEN: usize = 16;

// Address families and IP protocols, as the kernel numbers them.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const IPPROTO_TCP: u16 = 6;
pub const IPPROTO_UDP: u16 = 17;
pub const IPPROTO_SCTP: u16 = 132;
