//! The VRRP advertisement codec: VRRPv2 (RFC 3768 §5) and VRRPv3 (RFC 5798 §5), over IPv4 and IPv6.
//!
//! [`decode`] and [`encode`] work on the VRRP message (what follows the IP header). The IP
//! addresses and TTL/hop limit come from the socket, in a [`PacketContext`], because VRRPv3's
//! checksum covers the IP pseudo-header and RFC 3768 §7.1 / RFC 5798 §7.1 require TTL 255.
//! [`decode_ipv4`] and [`encode_ipv4`] add the IPv4 header for raw sockets that carry it, as
//! keepalived's do.
//!
//! `decode` is total: any byte string gives either an [`Advert`] or a [`DecodeError`] that says
//! precisely what was wrong, never a panic.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Type  | Virtual Rtr ID|   Priority    | Count IP Addrs|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! v2: | Auth Type   |   Adver Int   |          Checksum             |
//! v3: |(rsvd)|  Max Adver Int (cs)  |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 IP addresses (4 or 16 bytes each)              |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! v2 over IPv4 only: Authentication Data (8 bytes)
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::checksum::{ipv4_pseudo_header, ipv6_pseudo_header, Sum};

/// IP protocol number / IPv6 next header of VRRP (RFC 3768 §5.2.4, RFC 5798 §5.1.1.4).
pub const VRRP_PROTOCOL: u8 = 112;
/// IP protocol number of IPsec AH, which keepalived's `auth_type AH` wraps VRRPv2 in.
pub const AH_PROTOCOL: u8 = 51;
/// The only TTL / hop limit a multicast advert may arrive with (RFC 3768 §7.1, RFC 5798 §7.1).
pub const VRRP_TTL: u8 = 255;
/// The IPv4 multicast group adverts go to (RFC 3768 §5.2.2).
pub const IPV4_MULTICAST_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The IPv6 multicast group adverts go to (RFC 5798 §5.1.2.2).
pub const IPV6_MULTICAST_GROUP: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// The one VRRP packet type (RFC 3768 §5.3.2).
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// Count IP Addrs is one byte wide.
pub const MAX_ADDRESSES: usize = 255;

const HEADER_LEN: usize = 8;
const AUTH_DATA_LEN: usize = 8;
const IPV4_HEADER_LEN: usize = 20;
/// keepalived sends with TOS "internetwork control" (vrrp.c `vrrp_build_ip4`).
const IPV4_TOS_NETWORK_CONTROL: u8 = 0xc0;

/// The protocol version, without the fields that differ between versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// RFC 3768.
    V2,
    /// RFC 5798.
    V3,
}

impl Version {
    /// The number in the version nibble.
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VRRPv{}", self.number())
    }
}

/// VRRPv2 authentication (RFC 3768 §5.3.6; RFC 5798 removed it).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Auth {
    /// Type 0: no authentication; the data field is zero on send and ignored on receive.
    None,
    /// Type 1: a clear-text password of up to 8 bytes, zero padded.
    Pass([u8; AUTH_DATA_LEN]),
    /// Type 2: IPsec AH. The VRRP message only carries the type; the AH header around it is
    /// outside this codec.
    Ah,
}

impl Auth {
    /// A PASS password as keepalived's `auth_pass` stores it: at most 8 bytes, zero padded.
    pub fn pass(password: &str) -> Auth {
        let mut data = [0; AUTH_DATA_LEN];
        for (slot, byte) in data.iter_mut().zip(password.bytes()) {
            *slot = byte;
        }
        Auth::Pass(data)
    }

    /// The Auth Type field.
    pub fn auth_type(&self) -> u8 {
        match self {
            Auth::None => 0,
            Auth::Pass(_) => 1,
            Auth::Ah => 2,
        }
    }
}

impl fmt::Debug for Auth {
    // A password has no business in debug logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Pass(_) => f.write_str("Pass(..)"),
            Auth::Ah => f.write_str("Ah"),
        }
    }
}

/// VRRPv3's 12-bit Max Advertise Interval, in centiseconds (0..=4095).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Centiseconds(u16);

impl Centiseconds {
    /// The largest value the field holds: 40.95 s.
    pub const MAX: Centiseconds = Centiseconds(0x0fff);

    /// `None` when `cs` does not fit in 12 bits.
    pub fn new(cs: u16) -> Option<Centiseconds> {
        (cs <= Self::MAX.0).then_some(Centiseconds(cs))
    }

    /// The exact interval, or `None` when it is not a whole number of centiseconds or too long.
    pub fn from_duration(interval: Duration) -> Option<Centiseconds> {
        let cs = interval.as_millis() / 10;
        if Duration::from_millis(u64::try_from(cs).ok()? * 10) != interval {
            return None;
        }
        Centiseconds::new(u16::try_from(cs).ok()?)
    }

    pub fn get(self) -> u16 {
        self.0
    }

    pub fn to_duration(self) -> Duration {
        Duration::from_millis(u64::from(self.0) * 10)
    }
}

/// The fields whose meaning depends on the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VersionFields {
    /// RFC 3768: the advertisement interval in whole seconds, and authentication.
    V2 { auth: Auth, advert_int_secs: u8 },
    /// RFC 5798: the sender's advertisement interval in centiseconds.
    V3 { max_advert_int: Centiseconds },
}

/// The addresses an advert lists: one family, at most 255 of them (the count is one byte).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AddressList(Addresses);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Addresses {
    V4(Vec<Ipv4Addr>),
    V6(Vec<Ipv6Addr>),
}

/// Why a list of addresses cannot go into an advert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressListError {
    /// More than [`MAX_ADDRESSES`].
    TooMany { count: usize },
    /// IPv4 and IPv6 together: an advert carries one family.
    MixedFamilies,
}

impl fmt::Display for AddressListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressListError::TooMany { count } => {
                write!(
                    f,
                    "{count} addresses do not fit in one advert (at most {MAX_ADDRESSES})"
                )
            }
            AddressListError::MixedFamilies => {
                f.write_str("an advert carries addresses of one family, not IPv4 and IPv6 together")
            }
        }
    }
}

impl std::error::Error for AddressListError {}

impl AddressList {
    pub fn ipv4(
        addrs: impl IntoIterator<Item = Ipv4Addr>,
    ) -> Result<AddressList, AddressListError> {
        let addrs: Vec<_> = addrs.into_iter().collect();
        check_count(addrs.len())?;
        Ok(AddressList(Addresses::V4(addrs)))
    }

    pub fn ipv6(
        addrs: impl IntoIterator<Item = Ipv6Addr>,
    ) -> Result<AddressList, AddressListError> {
        let addrs: Vec<_> = addrs.into_iter().collect();
        check_count(addrs.len())?;
        Ok(AddressList(Addresses::V6(addrs)))
    }

    /// From addresses of one family; an empty input gives an empty IPv4 list.
    pub fn from_ips(addrs: &[IpAddr]) -> Result<AddressList, AddressListError> {
        if addrs.iter().all(IpAddr::is_ipv4) {
            AddressList::ipv4(addrs.iter().filter_map(|a| match a {
                IpAddr::V4(a) => Some(*a),
                IpAddr::V6(_) => None,
            }))
        } else if addrs.iter().all(IpAddr::is_ipv6) {
            AddressList::ipv6(addrs.iter().filter_map(|a| match a {
                IpAddr::V6(a) => Some(*a),
                IpAddr::V4(_) => None,
            }))
        } else {
            Err(AddressListError::MixedFamilies)
        }
    }

    /// An empty list of the family of `like`.
    pub fn empty_like(like: IpAddr) -> AddressList {
        match like {
            IpAddr::V4(_) => AddressList(Addresses::V4(Vec::new())),
            IpAddr::V6(_) => AddressList(Addresses::V6(Vec::new())),
        }
    }

    pub fn len(&self) -> usize {
        match &self.0 {
            Addresses::V4(a) => a.len(),
            Addresses::V6(a) => a.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_ipv6(&self) -> bool {
        matches!(self.0, Addresses::V6(_))
    }

    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let (v4, v6) = match &self.0 {
            Addresses::V4(a) => (a.as_slice(), [].as_slice()),
            Addresses::V6(a) => ([].as_slice(), a.as_slice()),
        };
        v4.iter()
            .copied()
            .map(IpAddr::V4)
            .chain(v6.iter().copied().map(IpAddr::V6))
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        match (&self.0, addr) {
            (Addresses::V4(list), IpAddr::V4(a)) => list.contains(&a),
            (Addresses::V6(list), IpAddr::V6(a)) => list.contains(&a),
            _ => false,
        }
    }

    fn count_byte(&self) -> u8 {
        // The constructors keep the length at or below 255.
        u8::try_from(self.len()).unwrap_or(u8::MAX)
    }
}

fn check_count(count: usize) -> Result<(), AddressListError> {
    if count > MAX_ADDRESSES {
        Err(AddressListError::TooMany { count })
    } else {
        Ok(())
    }
}

/// One VRRP advertisement, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Advert {
    pub vrid: u8,
    /// 255: the address owner; 0: the master is leaving (RFC 3768 §5.3.4).
    pub priority: u8,
    pub fields: VersionFields,
    pub addresses: AddressList,
}

impl Advert {
    pub fn version(&self) -> Version {
        match self.fields {
            VersionFields::V2 { .. } => Version::V2,
            VersionFields::V3 { .. } => Version::V3,
        }
    }

    /// The advertisement interval the sender announces.
    pub fn interval(&self) -> Duration {
        match self.fields {
            VersionFields::V2 {
                advert_int_secs, ..
            } => Duration::from_secs(advert_int_secs.into()),
            VersionFields::V3 { max_advert_int } => max_advert_int.to_duration(),
        }
    }

    /// The authentication a VRRPv2 advert carries; VRRPv3 has none.
    pub fn auth(&self) -> Auth {
        match self.fields {
            VersionFields::V2 { auth, .. } => auth,
            VersionFields::V3 { .. } => Auth::None,
        }
    }
}

/// The IP source and destination of a packet: the VRRPv3 checksum covers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoints {
    V4 { src: Ipv4Addr, dst: Ipv4Addr },
    V6 { src: Ipv6Addr, dst: Ipv6Addr },
}

impl Endpoints {
    /// `None` when the two addresses are of different families.
    pub fn new(src: IpAddr, dst: IpAddr) -> Option<Endpoints> {
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => Some(Endpoints::V4 { src, dst }),
            (IpAddr::V6(src), IpAddr::V6(dst)) => Some(Endpoints::V6 { src, dst }),
            _ => None,
        }
    }

    pub fn src(&self) -> IpAddr {
        match *self {
            Endpoints::V4 { src, .. } => src.into(),
            Endpoints::V6 { src, .. } => src.into(),
        }
    }

    pub fn dst(&self) -> IpAddr {
        match *self {
            Endpoints::V4 { dst, .. } => dst.into(),
            Endpoints::V6 { dst, .. } => dst.into(),
        }
    }

    /// Whether the packet went to a multicast group (rather than to a unicast peer).
    pub fn is_multicast(&self) -> bool {
        self.dst().is_multicast()
    }

    fn address_len(&self) -> usize {
        match self {
            Endpoints::V4 { .. } => 4,
            Endpoints::V6 { .. } => 16,
        }
    }

    fn pseudo_header(&self, vrrp_len: usize) -> Sum {
        match *self {
            // The length was checked against the count byte, so it is at most 8 + 255 * 16 + 8.
            Endpoints::V4 { src, dst } => {
                ipv4_pseudo_header(src, dst, u16::try_from(vrrp_len).unwrap_or(u16::MAX))
            }
            Endpoints::V6 { src, dst } => {
                ipv6_pseudo_header(src, dst, u32::try_from(vrrp_len).unwrap_or(u32::MAX))
            }
        }
    }
}

/// What the socket knows about a received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketContext {
    pub endpoints: Endpoints,
    /// The received TTL / hop limit, to be checked against 255; `None` skips the check, as
    /// keepalived does for unicast instances (a unicast advert may cross routers) and when the
    /// socket did not report it.
    pub ttl: Option<u8>,
}

/// What was wrong with a received packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the 8-byte VRRP header.
    TooShort { len: usize },
    /// A multicast advert whose TTL / hop limit is not 255: it crossed a router.
    BadTtl { ttl: u8 },
    /// Neither 2 nor 3.
    BadVersion { version: u8 },
    /// Not 1 (ADVERTISEMENT).
    BadType { packet_type: u8 },
    /// The length does not match what Count IP Addrs announces.
    AddressCountMismatch {
        count: u8,
        expected_len: usize,
        len: usize,
    },
    /// A VRRPv2 Auth Type other than 0, 1 and 2.
    InvalidAuthType { auth_type: u8 },
    /// VRRPv2 over IPv6 has no room for authentication data.
    AuthOverIpv6 { auth_type: u8 },
    /// The checksum field differs from the checksum of the message.
    BadChecksum { expected: u16, got: u16 },
    /// [`decode_ipv4`]: not an IPv4 header, or a header length under 20 bytes.
    BadIpv4Header { version: u8, header_len: usize },
    /// [`decode_ipv4`]: the IPv4 total length differs from what was received.
    IpLengthMismatch { total_len: usize, len: usize },
    /// [`decode_ipv4`]: the IPv4 protocol is not VRRP (112); AH (51) is not supported.
    NotVrrp { protocol: u8 },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooShort { len } => {
                write!(f, "VRRP packet too short - {len} bytes, the header alone is {HEADER_LEN}")
            }
            DecodeError::BadTtl { ttl } => {
                write!(f, "invalid TTL/HL. Received {ttl} and expect {VRRP_TTL}")
            }
            DecodeError::BadVersion { version } => write!(f, "unknown VRRP version {version}"),
            DecodeError::BadType { packet_type } => write!(
                f,
                "Invalid packet type. {packet_type} and expect {TYPE_ADVERTISEMENT}"
            ),
            DecodeError::AddressCountMismatch { count, expected_len, len } => write!(
                f,
                "vrrp packet too {}, length {len} and expect {expected_len} for {count} address(es)",
                if len > expected_len { "long" } else { "short" }
            ),
            DecodeError::InvalidAuthType { auth_type } => write!(f, "Invalid auth type: {auth_type}"),
            DecodeError::AuthOverIpv6 { auth_type } => {
                write!(f, "auth type {auth_type} over IPv6: VRRPv2 over IPv6 carries no auth data")
            }
            DecodeError::BadChecksum { expected, got } => write!(
                f,
                "Invalid VRRP checksum: packet has 0x{got:04x}, content sums to 0x{expected:04x}"
            ),
            DecodeError::BadIpv4Header { version, header_len } => write!(
                f,
                "not an IPv4 packet (version {version}, header length {header_len})"
            ),
            DecodeError::IpLengthMismatch { total_len, len } => write!(
                f,
                "ip_tot_len mismatch against received length. {total_len} and received {len}"
            ),
            DecodeError::NotVrrp { protocol } if *protocol == AH_PROTOCOL => {
                f.write_str("IPsec AH authenticated VRRP is not supported")
            }
            DecodeError::NotVrrp { protocol } => write!(f, "IP protocol {protocol} is not VRRP"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// The VRID of a packet that may not decode, to find the instance to charge an error to.
pub fn peek_vrid(vrrp_message: &[u8]) -> Option<u8> {
    vrrp_message.get(1).copied()
}

/// Decodes a VRRP message (the IP payload).
pub fn decode(bytes: &[u8], ctx: &PacketContext) -> Result<Advert, DecodeError> {
    let Some(&[vers_type, vrid, priority, count, field_a, field_b, csum_hi, csum_lo]) =
        bytes.first_chunk::<HEADER_LEN>()
    else {
        return Err(DecodeError::TooShort { len: bytes.len() });
    };
    if let Some(ttl) = ctx.ttl {
        if ttl != VRRP_TTL {
            return Err(DecodeError::BadTtl { ttl });
        }
    }
    let version = match vers_type >> 4 {
        2 => Version::V2,
        3 => Version::V3,
        version => return Err(DecodeError::BadVersion { version }),
    };
    let packet_type = vers_type & 0x0f;
    if packet_type != TYPE_ADVERTISEMENT {
        return Err(DecodeError::BadType { packet_type });
    }

    let ipv4 = matches!(ctx.endpoints, Endpoints::V4 { .. });
    let auth_len = if version == Version::V2 && ipv4 {
        AUTH_DATA_LEN
    } else {
        0
    };
    let addresses_len = usize::from(count) * ctx.endpoints.address_len();
    let expected_len = HEADER_LEN + addresses_len + auth_len;
    if bytes.len() != expected_len {
        return Err(DecodeError::AddressCountMismatch {
            count,
            expected_len,
            len: bytes.len(),
        });
    }

    let got = u16::from_be_bytes([csum_hi, csum_lo]);
    let expected = message_checksum(bytes, version, &ctx.endpoints);
    if expected != got {
        return Err(DecodeError::BadChecksum { expected, got });
    }

    let address_bytes = &bytes[HEADER_LEN..HEADER_LEN + addresses_len];
    let fields = match version {
        Version::V2 => {
            let auth = match (field_a, ipv4) {
                (0, _) => Auth::None,
                (1 | 2, false) => return Err(DecodeError::AuthOverIpv6 { auth_type: field_a }),
                (1, true) => {
                    let mut data = [0; AUTH_DATA_LEN];
                    data.copy_from_slice(&bytes[HEADER_LEN + addresses_len..]);
                    Auth::Pass(data)
                }
                (2, true) => Auth::Ah,
                (auth_type, _) => return Err(DecodeError::InvalidAuthType { auth_type }),
            };
            VersionFields::V2 {
                auth,
                advert_int_secs: field_b,
            }
        }
        // RFC 5798 §5.2.5: the 4 reserved bits are ignored on receive.
        Version::V3 => VersionFields::V3 {
            max_advert_int: Centiseconds(
                u16::from_be_bytes([field_a, field_b]) & Centiseconds::MAX.0,
            ),
        },
    };

    let addresses = if ipv4 {
        Addresses::V4(
            address_bytes
                .chunks_exact(4)
                .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
                .collect(),
        )
    } else {
        Addresses::V6(
            address_bytes
                .chunks_exact(16)
                .filter_map(|c| <[u8; 16]>::try_from(c).ok().map(Ipv6Addr::from))
                .collect(),
        )
    };

    Ok(Advert {
        vrid,
        priority,
        fields,
        addresses: AddressList(addresses),
    })
}

/// The checksum `bytes` should carry, computed as if its checksum field were zero.
fn message_checksum(bytes: &[u8], version: Version, endpoints: &Endpoints) -> u16 {
    let start = match (version, endpoints) {
        // RFC 3768 §5.3.8: the VRRP message alone.
        (Version::V2, Endpoints::V4 { .. }) => Sum::default(),
        // RFC 5798 §5.2.8; keepalived's VRRPv2 over IPv6 gets the same from the kernel.
        _ => endpoints.pseudo_header(bytes.len()),
    };
    let header = bytes.get(..6).unwrap_or_default();
    let rest = bytes.get(HEADER_LEN..).unwrap_or_default();
    start.add(header).add(rest).finish()
}

/// Encodes an advert as the VRRP message for `endpoints` (whose family should be the one of
/// the advert's addresses: the shell takes both from the same instance).
pub fn encode(advert: &Advert, endpoints: &Endpoints) -> Vec<u8> {
    let ipv4 = matches!(endpoints, Endpoints::V4 { .. });
    let (field_a, field_b, auth_data) = match advert.fields {
        VersionFields::V2 {
            auth,
            advert_int_secs,
        } => {
            let data = match auth {
                Auth::Pass(data) => data,
                Auth::None | Auth::Ah => [0; AUTH_DATA_LEN],
            };
            (auth.auth_type(), advert_int_secs, ipv4.then_some(data))
        }
        VersionFields::V3 { max_advert_int } => {
            let [a, b] = max_advert_int.get().to_be_bytes();
            (a, b, None)
        }
    };
    let mut out = Vec::with_capacity(HEADER_LEN + advert.addresses.len() * 16 + AUTH_DATA_LEN);
    out.extend_from_slice(&[
        advert.version().number() << 4 | TYPE_ADVERTISEMENT,
        advert.vrid,
        advert.priority,
        advert.addresses.count_byte(),
        field_a,
        field_b,
        0,
        0,
    ]);
    match &advert.addresses.0 {
        Addresses::V4(list) => list.iter().for_each(|a| out.extend_from_slice(&a.octets())),
        Addresses::V6(list) => list.iter().for_each(|a| out.extend_from_slice(&a.octets())),
    }
    if let Some(data) = auth_data {
        out.extend_from_slice(&data);
    }
    let csum = message_checksum(&out, advert.version(), endpoints).to_be_bytes();
    out[6..8].copy_from_slice(&csum);
    out
}

/// An advert received with its IPv4 header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedIpv4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub advert: Advert,
}

/// Decodes an IPv4 packet carrying VRRP, as a raw `IPPROTO_VRRP` socket delivers it.
///
/// `check_ttl` is false for unicast instances (keepalived's `vrrp_check_packet`).
pub fn decode_ipv4(packet: &[u8], check_ttl: bool) -> Result<ReceivedIpv4, DecodeError> {
    let Some(header) = packet.first_chunk::<IPV4_HEADER_LEN>() else {
        return Err(DecodeError::TooShort { len: packet.len() });
    };
    let version = header[0] >> 4;
    let header_len = usize::from(header[0] & 0x0f) * 4;
    if version != 4 || header_len < IPV4_HEADER_LEN {
        return Err(DecodeError::BadIpv4Header {
            version,
            header_len,
        });
    }
    let total_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if total_len != packet.len() {
        return Err(DecodeError::IpLengthMismatch {
            total_len,
            len: packet.len(),
        });
    }
    let protocol = header[9];
    if protocol != VRRP_PROTOCOL {
        return Err(DecodeError::NotVrrp { protocol });
    }
    let ttl = header[8];
    let src = Ipv4Addr::new(header[12], header[13], header[14], header[15]);
    let dst = Ipv4Addr::new(header[16], header[17], header[18], header[19]);
    let payload = packet
        .get(header_len..)
        .ok_or(DecodeError::TooShort { len: 0 })?;
    let ctx = PacketContext {
        endpoints: Endpoints::V4 { src, dst },
        ttl: check_ttl.then_some(ttl),
    };
    let advert = decode(payload, &ctx)?;
    Ok(ReceivedIpv4 {
        src,
        dst,
        ttl,
        advert,
    })
}

/// Encodes an advert with an IPv4 header, as keepalived builds it for its `IP_HDRINCL` socket:
/// TOS 0xc0, no fragmentation fields, IP identification left to the caller (0 lets the kernel
/// fill it in).
pub fn encode_ipv4(advert: &Advert, src: Ipv4Addr, dst: Ipv4Addr, ttl: u8) -> Vec<u8> {
    let message = encode(advert, &Endpoints::V4 { src, dst });
    let total_len = u16::try_from(IPV4_HEADER_LEN + message.len()).unwrap_or(u16::MAX);
    let [len_hi, len_lo] = total_len.to_be_bytes();
    let mut out = Vec::with_capacity(usize::from(total_len));
    out.extend_from_slice(&[
        0x45,
        IPV4_TOS_NETWORK_CONTROL,
        len_hi,
        len_lo,
        0,
        0,
        0,
        0,
        ttl,
        VRRP_PROTOCOL,
        0,
        0,
    ]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    let csum = Sum::default().add(&out).finish().to_be_bytes();
    out[10..12].copy_from_slice(&csum);
    out.extend_from_slice(&message);
    out
}
