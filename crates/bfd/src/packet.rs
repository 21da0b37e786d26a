//! The BFD control packet (RFC 5880 §4.1), with the checks of §6.8.6 that need no session.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       My Discriminator                        |
//! |                      Your Discriminator                       |
//! |                    Desired Min TX Interval                    |
//! |                   Required Min RX Interval                    |
//! |                 Required Min Echo RX Interval                 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Auth Type   |   Auth Len    |    Authentication Data...     |  (if A)
//! ```
//!
//! [`decode`] is total: any byte string gives a [`ControlPacket`] or a [`DecodeError`] naming
//! the field that was wrong, never a panic. Intervals are in microseconds, as on the wire.

use std::fmt;

/// The only protocol version (RFC 5880 §4.1).
pub const VERSION: u8 = 1;
/// The mandatory part of a control packet.
pub const HEADER_LEN: usize = 24;
/// The UDP port control packets go to (RFC 5881 §4).
pub const CONTROL_PORT: u16 = 3784;
/// The TTL single-hop packets are sent with, and the only one accepted (RFC 5881 §5, GTSM).
pub const CONTROL_TTL: u8 = 255;
/// The range source ports come from (RFC 5881 §4).
pub const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

/// Session state, as carried in the Sta field (RFC 5880 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    AdminDown,
    Down,
    Init,
    Up,
}

impl State {
    fn from_bits(bits: u8) -> State {
        match bits & 3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    fn bits(self) -> u8 {
        match self {
            State::AdminDown => 0,
            State::Down => 1,
            State::Init => 2,
            State::Up => 3,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // keepalived's BFD_STATE_STR words.
        f.write_str(match self {
            State::AdminDown => "AdminDown",
            State::Down => "Down",
            State::Init => "Init",
            State::Up => "Up",
        })
    }
}

/// The diagnostic code (RFC 5880 §4.1): why the sender's session last left Up. Values above 8
/// are reserved and kept as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Diag(pub u8);

impl Diag {
    pub const NONE: Diag = Diag(0);
    pub const DETECTION_TIME_EXPIRED: Diag = Diag(1);
    pub const ECHO_FAILED: Diag = Diag(2);
    pub const NEIGHBOR_SIGNALED_DOWN: Diag = Diag(3);
    pub const FORWARDING_PLANE_RESET: Diag = Diag(4);
    pub const PATH_DOWN: Diag = Diag(5);
    pub const CONCATENATED_PATH_DOWN: Diag = Diag(6);
    pub const ADMINISTRATIVELY_DOWN: Diag = Diag(7);
    pub const REVERSE_CONCATENATED_PATH_DOWN: Diag = Diag(8);
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // keepalived's BFD_DIAG_STR words.
        let text = match self.0 {
            0 => "No Diagnostic",
            1 => "Control Detection Time Expired",
            2 => "Echo Function Failed",
            3 => "Neighbor Signaled Session Down",
            4 => "Forwarding Plane Reset",
            5 => "Path Down",
            6 => "Concatenated Path Down",
            7 => "Administratively Down",
            8 => "Reverse Concatenated Path Down",
            n => return write!(f, "Reserved ({n})"),
        };
        f.write_str(text)
    }
}

/// The authentication section (RFC 5880 §4.2–4.4), parsed for its shape only: halb, like
/// keepalived, configures no authentication, so a session drops any packet that has one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AuthSection {
    /// 1 simple password, 2 keyed MD5, 3 meticulous keyed MD5, 4 keyed SHA1, 5 meticulous SHA1.
    pub auth_type: u8,
    /// Everything after Auth Type and Auth Len.
    pub data: Vec<u8>,
}

/// One decoded control packet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ControlPacket {
    pub diag: Diag,
    pub state: State,
    pub poll: bool,
    pub final_: bool,
    pub control_plane_independent: bool,
    pub demand: bool,
    pub detect_mult: u8,
    pub my_discriminator: u32,
    pub your_discriminator: u32,
    pub desired_min_tx_us: u32,
    pub required_min_rx_us: u32,
    pub required_min_echo_rx_us: u32,
    pub auth: Option<AuthSection>,
}

/// Why bytes are not a control packet halb accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the mandatory header.
    TooShort { len: usize },
    /// The Length field is below the minimum (24, or 26 with authentication).
    LengthTooSmall { length: u8 },
    /// The Length field is greater than the datagram.
    LengthBeyondPayload { length: u8, payload: usize },
    /// The version is not 1.
    Version { version: u8 },
    /// Detect Mult is zero.
    ZeroDetectMult,
    /// The Multipoint bit is set.
    Multipoint,
    /// My Discriminator is zero.
    ZeroMyDiscriminator,
    /// Your Discriminator is zero while the state is Init or Up.
    ZeroYourDiscriminator { state: State },
    /// Poll and Final both set (keepalived's additional check).
    PollAndFinal,
    /// The authentication section is malformed for its type.
    Auth { auth_type: u8, auth_len: u8 },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooShort { len } => {
                write!(
                    f,
                    "packet of {len} bytes is shorter than the {HEADER_LEN} byte header"
                )
            }
            DecodeError::LengthTooSmall { length } => {
                write!(f, "length field {length} is below the minimum")
            }
            DecodeError::LengthBeyondPayload { length, payload } => {
                write!(
                    f,
                    "length field {length} exceeds the {payload} byte payload"
                )
            }
            DecodeError::Version { version } => write!(f, "unsupported version {version}"),
            DecodeError::ZeroDetectMult => f.write_str("detection multiplier is zero"),
            DecodeError::Multipoint => f.write_str("multipoint flag is set"),
            DecodeError::ZeroMyDiscriminator => f.write_str("my discriminator is zero"),
            DecodeError::ZeroYourDiscriminator { state } => {
                write!(f, "your discriminator is zero in state {state}")
            }
            DecodeError::PollAndFinal => f.write_str("both poll and final flags are set"),
            DecodeError::Auth {
                auth_type,
                auth_len,
            } => {
                write!(
                    f,
                    "authentication type {auth_type} with length {auth_len} is malformed"
                )
            }
        }
    }
}

impl std::error::Error for DecodeError {}

const FLAG_POLL: u8 = 0x20;
const FLAG_FINAL: u8 = 0x10;
const FLAG_CPI: u8 = 0x08;
const FLAG_AUTH: u8 = 0x04;
const FLAG_DEMAND: u8 = 0x02;
const FLAG_MULTIPOINT: u8 = 0x01;

fn be32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(word)
}

/// Decodes one UDP payload. Bytes past the Length field are ignored (RFC 5880 §6.8.6).
pub fn decode(bytes: &[u8]) -> Result<ControlPacket, DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::TooShort { len: bytes.len() });
    }
    let version = bytes[0] >> 5;
    if version != VERSION {
        return Err(DecodeError::Version { version });
    }
    let flags = bytes[1];
    let has_auth = flags & FLAG_AUTH != 0;
    let length = bytes[3];
    let minimum = if has_auth { HEADER_LEN + 2 } else { HEADER_LEN };
    if usize::from(length) < minimum {
        return Err(DecodeError::LengthTooSmall { length });
    }
    if usize::from(length) > bytes.len() {
        return Err(DecodeError::LengthBeyondPayload {
            length,
            payload: bytes.len(),
        });
    }
    let state = State::from_bits(flags >> 6);
    let packet = ControlPacket {
        diag: Diag(bytes[0] & 0x1f),
        state,
        poll: flags & FLAG_POLL != 0,
        final_: flags & FLAG_FINAL != 0,
        control_plane_independent: flags & FLAG_CPI != 0,
        demand: flags & FLAG_DEMAND != 0,
        detect_mult: bytes[2],
        my_discriminator: be32(bytes, 4),
        your_discriminator: be32(bytes, 8),
        desired_min_tx_us: be32(bytes, 12),
        required_min_rx_us: be32(bytes, 16),
        required_min_echo_rx_us: be32(bytes, 20),
        auth: if has_auth {
            Some(decode_auth(&bytes[HEADER_LEN..usize::from(length)])?)
        } else {
            None
        },
    };
    if packet.detect_mult == 0 {
        return Err(DecodeError::ZeroDetectMult);
    }
    if flags & FLAG_MULTIPOINT != 0 {
        return Err(DecodeError::Multipoint);
    }
    if packet.my_discriminator == 0 {
        return Err(DecodeError::ZeroMyDiscriminator);
    }
    if packet.your_discriminator == 0 && matches!(state, State::Init | State::Up) {
        return Err(DecodeError::ZeroYourDiscriminator { state });
    }
    if packet.poll && packet.final_ {
        return Err(DecodeError::PollAndFinal);
    }
    Ok(packet)
}

/// The section's length must match its type (RFC 5880 §4.2–4.4) and lie within the packet.
fn decode_auth(section: &[u8]) -> Result<AuthSection, DecodeError> {
    let auth_type = section[0];
    let auth_len = section[1];
    let fits = usize::from(auth_len) <= section.len();
    let shaped = match auth_type {
        // Type, length, key ID and a password of 1 to 16 bytes.
        1 => (4..=19).contains(&auth_len),
        // Type, length, key ID, reserved, sequence number and a 16 byte digest.
        2 | 3 => auth_len == 24,
        // The same with a 20 byte hash.
        4 | 5 => auth_len == 28,
        _ => auth_len >= 2,
    };
    if !fits || !shaped {
        return Err(DecodeError::Auth {
            auth_type,
            auth_len,
        });
    }
    Ok(AuthSection {
        auth_type,
        data: section[2..usize::from(auth_len)].to_vec(),
    })
}

/// Encodes a packet; the Length field is computed.
pub fn encode(packet: &ControlPacket) -> Vec<u8> {
    let auth_len = packet.auth.as_ref().map_or(0, |a| 2 + a.data.len());
    let mut out = Vec::with_capacity(HEADER_LEN + auth_len);
    out.push((VERSION << 5) | (packet.diag.0 & 0x1f));
    let mut flags = packet.state.bits() << 6;
    for (set, bit) in [
        (packet.poll, FLAG_POLL),
        (packet.final_, FLAG_FINAL),
        (packet.control_plane_independent, FLAG_CPI),
        (packet.auth.is_some(), FLAG_AUTH),
        (packet.demand, FLAG_DEMAND),
    ] {
        if set {
            flags |= bit;
        }
    }
    out.push(flags);
    out.push(packet.detect_mult);
    out.push(u8::try_from(HEADER_LEN + auth_len).unwrap_or(u8::MAX));
    for word in [
        packet.my_discriminator,
        packet.your_discriminator,
        packet.desired_min_tx_us,
        packet.required_min_rx_us,
        packet.required_min_echo_rx_us,
    ] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    if let Some(auth) = &packet.auth {
        out.push(auth.auth_type);
        out.push(u8::try_from(2 + auth.data.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(&auth.data);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A first packet to a new neighbour, laid out by hand from RFC 5880 §4.1: diag 0, Down,
    /// mult 5, my 0x2a6f0b1c, your 0, tx 1 s (the slow rate while not Up), rx 10 ms, echo 0.
    const BIRD_DOWN: [u8; 24] = [
        0x20, 0x40, 0x05, 0x18, 0x2a, 0x6f, 0x0b, 0x1c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0f, 0x42,
        0x40, 0x00, 0x00, 0x27, 0x10, 0x00, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn decodes_a_down_packet() {
        let p = decode(&BIRD_DOWN).unwrap();
        assert_eq!(p.state, State::Down);
        assert_eq!(p.diag, Diag::NONE);
        assert_eq!(p.detect_mult, 5);
        assert_eq!(p.my_discriminator, 0x2a6f_0b1c);
        assert_eq!(p.your_discriminator, 0);
        assert_eq!(p.desired_min_tx_us, 1_000_000);
        assert_eq!(p.required_min_rx_us, 10_000);
        assert!(!p.poll && !p.final_ && p.auth.is_none());
        assert_eq!(encode(&p), BIRD_DOWN);
    }

    #[test]
    fn encodes_flags_and_state_bits() {
        let p = ControlPacket {
            diag: Diag::DETECTION_TIME_EXPIRED,
            state: State::Up,
            poll: true,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: 3,
            my_discriminator: 1,
            your_discriminator: 2,
            desired_min_tx_us: 50_000,
            required_min_rx_us: 50_000,
            required_min_echo_rx_us: 0,
            auth: None,
        };
        let bytes = encode(&p);
        assert_eq!(&bytes[..4], &[0x21, 0xe0, 3, 24]);
        assert_eq!(&bytes[12..16], &50_000u32.to_be_bytes());
        assert_eq!(decode(&bytes).unwrap(), p);
    }

    #[test]
    fn first_checks_of_6_8_6() {
        let good = BIRD_DOWN;
        let mut b = good;
        b[0] = 0x40;
        assert_eq!(decode(&b), Err(DecodeError::Version { version: 2 }));
        assert_eq!(decode(&good[..23]), Err(DecodeError::TooShort { len: 23 }));
        let mut b = good;
        b[3] = 23;
        assert_eq!(decode(&b), Err(DecodeError::LengthTooSmall { length: 23 }));
        let mut b = good;
        b[3] = 30;
        assert!(matches!(
            decode(&b),
            Err(DecodeError::LengthBeyondPayload { .. })
        ));
        let mut b = good;
        b[2] = 0;
        assert_eq!(decode(&b), Err(DecodeError::ZeroDetectMult));
        let mut b = good;
        b[1] |= FLAG_MULTIPOINT;
        assert_eq!(decode(&b), Err(DecodeError::Multipoint));
        let mut b = good;
        b[4..8].fill(0);
        assert_eq!(decode(&b), Err(DecodeError::ZeroMyDiscriminator));
        let mut b = good;
        b[1] = 0xc0; // Up with Your Discriminator 0
        assert_eq!(
            decode(&b),
            Err(DecodeError::ZeroYourDiscriminator { state: State::Up })
        );
        let mut b = good;
        b[1] |= FLAG_POLL | FLAG_FINAL;
        assert_eq!(decode(&b), Err(DecodeError::PollAndFinal));
        // Trailing bytes beyond Length are ignored.
        let mut long = good.to_vec();
        long.extend_from_slice(&[0xff; 8]);
        assert_eq!(decode(&long).unwrap(), decode(&good).unwrap());
    }

    #[test]
    fn auth_sections() {
        let mut simple = BIRD_DOWN.to_vec();
        simple[1] |= FLAG_AUTH;
        simple.extend_from_slice(&[1, 7, 1, b's', b'e', b'c', b'r']);
        simple[3] = 31;
        let p = decode(&simple).unwrap();
        assert_eq!(
            p.auth,
            Some(AuthSection {
                auth_type: 1,
                data: vec![1, b's', b'e', b'c', b'r']
            })
        );
        assert_eq!(encode(&p), simple);
        // Keyed MD5 must be 24 bytes long.
        let mut md5 = BIRD_DOWN.to_vec();
        md5[1] |= FLAG_AUTH;
        md5.extend_from_slice(&[2, 20]);
        md5.extend_from_slice(&[0; 18]);
        md5[3] = 44;
        assert_eq!(
            decode(&md5),
            Err(DecodeError::Auth {
                auth_type: 2,
                auth_len: 20
            })
        );
        // The A bit with no room for the section.
        let mut bare = BIRD_DOWN;
        bare[1] |= FLAG_AUTH;
        assert_eq!(
            decode(&bare),
            Err(DecodeError::LengthTooSmall { length: 24 })
        );
    }

    proptest::proptest! {
        #[test]
        fn decode_is_total_and_round_trips(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            if let Ok(p) = decode(&bytes) {
                proptest::prop_assert_eq!(decode(&encode(&p)), Ok(p));
            }
        }
    }
}
