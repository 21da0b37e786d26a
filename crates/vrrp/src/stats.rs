//! Per-instance counters, as keepalived keeps them (vrrp.h `vrrp_stats`, printed by
//! `keepalived --signum=STATS`), plus the RFC MIB counters keepalived keeps only for SNMP.

/// Counters of one instance since it was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Adverts that passed the checks (keepalived `advert_rcvd`).
    pub adverts_received: u64,
    /// Adverts sent, counting once per advert whatever the number of unicast peers.
    pub adverts_sent: u64,
    pub became_master: u64,
    pub released_master: u64,
    pub priority_zero_received: u64,
    pub priority_zero_sent: u64,
    /// Wrong length for the address count, or shorter than a header.
    pub packet_length_errors: u64,
    pub ttl_errors: u64,
    pub invalid_type: u64,
    /// VRRPv2 interval differing from ours (keepalived logs these without counting them).
    pub advert_interval_errors: u64,
    /// Address count or addresses differing from ours, or the wrong kind of destination.
    pub address_list_errors: u64,
    pub invalid_auth_type: u64,
    pub auth_type_mismatch: u64,
    pub auth_failures: u64,
    pub checksum_errors: u64,
    pub version_errors: u64,
    /// Adverts for another VRID handed to this instance.
    pub vrid_errors: u64,
}
