//! The codec against packets written by hand from the RFC layouts (checksums computed
//! independently), every decode error, and property tests: round trips, and `decode` never
//! panicking on any input.

use std::net::{Ipv4Addr, Ipv6Addr};

use halb_vrrp::packet::{
    decode, decode_ipv4, encode, encode_ipv4, peek_vrid, AddressList, AddressListError, Advert,
    Auth, Centiseconds, DecodeError, Endpoints, PacketContext, Version, VersionFields,
    IPV4_MULTICAST_GROUP, IPV6_MULTICAST_GROUP,
};
use proptest::prelude::*;

const LVS_DIRECTOR: Ipv4Addr = Ipv4Addr::new(192, 168, 66, 10);
const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 66, 251);

/// keepalived's advert for the seed's instance: VRRPv2, VRID 200, priority 100, `auth_type
/// PASS`, `auth_pass lvs50tes`, `advert_int 1`, `virtual_ipaddress { 192.168.66.251 }`.
const KEEPALIVED_V2: [u8; 20] = [
    0x21, 0xc8, 0x64, 0x01, // version 2, type 1; VRID 200; priority 100; 1 address
    0x01, 0x01, 0xff, 0xfd, // auth PASS; 1 s; checksum
    0xc0, 0xa8, 0x42, 0xfb, // 192.168.66.251
    b'l', b'v', b's', b'5', b'0', b't', b'e', b's',
];

/// The same with keepalived's IPv4 header: TOS 0xc0, TTL 255, protocol 112, to 224.0.0.18.
const KEEPALIVED_V2_IP_HEADER: [u8; 20] = [
    0x45, 0xc0, 0x00, 0x28, 0x00, 0x00, 0x00, 0x00, 0xff, 0x70, 0xd7, 0xe0, 192, 168, 66, 10, 224,
    0, 0, 18,
];

/// VRRPv3 over IPv4: VRID 51, priority 150, 100 cs, 192.168.66.251; the checksum covers the
/// pseudo-header 192.168.66.10 → 224.0.0.18.
const V3_IPV4: [u8; 12] = [
    0x31, 0x33, 0x96, 0x01, 0x00, 0x64, 0x51, 0x81, 0xc0, 0xa8, 0x42, 0xfb,
];

/// VRRPv3 over IPv6: VRID 1, priority 100, 100 cs, fe80::1 and 2001:db8::1, from fe80::a to
/// ff02::12.
const V3_IPV6: [u8; 40] = [
    0x31, 0x01, 0x64, 0x02, 0x00, 0x64, 0x40, 0x24, //
    0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, //
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
];

fn multicast_v4() -> PacketContext {
    PacketContext {
        endpoints: Endpoints::V4 {
            src: LVS_DIRECTOR,
            dst: IPV4_MULTICAST_GROUP,
        },
        ttl: Some(255),
    }
}

fn multicast_v6() -> PacketContext {
    PacketContext {
        endpoints: Endpoints::V6 {
            src: "fe80::a".parse().unwrap(),
            dst: IPV6_MULTICAST_GROUP,
        },
        ttl: Some(255),
    }
}

fn keepalived_advert() -> Advert {
    Advert {
        vrid: 200,
        priority: 100,
        fields: VersionFields::V2 {
            auth: Auth::pass("lvs50tes"),
            advert_int_secs: 1,
        },
        addresses: AddressList::ipv4([VIP]).unwrap(),
    }
}

fn v3_ipv4_advert() -> Advert {
    Advert {
        vrid: 51,
        priority: 150,
        fields: VersionFields::V3 {
            max_advert_int: Centiseconds::new(100).unwrap(),
        },
        addresses: AddressList::ipv4([VIP]).unwrap(),
    }
}

/// Rewrites the checksum of a VRRPv2-over-IPv4 message after a test changed a field.
fn fix_v2_checksum(msg: &mut [u8]) {
    msg[6] = 0;
    msg[7] = 0;
    let mut sum: u32 = msg
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let csum = !(sum as u16);
    msg[6..8].copy_from_slice(&csum.to_be_bytes());
}

#[test]
fn decodes_keepalived_v2_pass_advert() {
    let advert = decode(&KEEPALIVED_V2, &multicast_v4()).unwrap();
    assert_eq!(advert, keepalived_advert());
    assert_eq!(advert.version(), Version::V2);
    assert_eq!(advert.interval(), std::time::Duration::from_secs(1));
    assert_eq!(advert.auth(), Auth::Pass(*b"lvs50tes"));
}

#[test]
fn encodes_keepalived_v2_pass_advert_byte_for_byte() {
    let endpoints = Endpoints::V4 {
        src: LVS_DIRECTOR,
        dst: IPV4_MULTICAST_GROUP,
    };
    assert_eq!(encode(&keepalived_advert(), &endpoints), KEEPALIVED_V2);
    // VRRPv2's checksum does not cover the IP addresses: any destination gives the same bytes.
    let unicast = Endpoints::V4 {
        src: LVS_DIRECTOR,
        dst: Ipv4Addr::new(192, 168, 66, 11),
    };
    assert_eq!(encode(&keepalived_advert(), &unicast), KEEPALIVED_V2);
}

#[test]
fn encodes_and_decodes_the_ipv4_header_as_keepalived_builds_it() {
    let packet = encode_ipv4(
        &keepalived_advert(),
        LVS_DIRECTOR,
        IPV4_MULTICAST_GROUP,
        255,
    );
    assert_eq!(&packet[..20], &KEEPALIVED_V2_IP_HEADER);
    assert_eq!(&packet[20..], &KEEPALIVED_V2);

    let received = decode_ipv4(&packet, true).unwrap();
    assert_eq!(received.src, LVS_DIRECTOR);
    assert_eq!(received.dst, IPV4_MULTICAST_GROUP);
    assert_eq!(received.ttl, 255);
    assert_eq!(received.advert, keepalived_advert());
}

#[test]
fn decode_ipv4_checks_ttl_only_when_asked() {
    let packet = encode_ipv4(
        &keepalived_advert(),
        LVS_DIRECTOR,
        Ipv4Addr::new(192, 168, 66, 11),
        64,
    );
    assert_eq!(
        decode_ipv4(&packet, true),
        Err(DecodeError::BadTtl { ttl: 64 })
    );
    assert_eq!(
        decode_ipv4(&packet, false).unwrap().advert,
        keepalived_advert()
    );
}

#[test]
fn decode_ipv4_rejects_bad_ip_headers() {
    let mut packet = encode_ipv4(
        &keepalived_advert(),
        LVS_DIRECTOR,
        IPV4_MULTICAST_GROUP,
        255,
    );
    packet.push(0);
    assert_eq!(
        decode_ipv4(&packet, true),
        Err(DecodeError::IpLengthMismatch {
            total_len: 40,
            len: 41
        })
    );
    packet.pop();
    packet[9] = 51;
    let err = decode_ipv4(&packet, true).unwrap_err();
    assert_eq!(err, DecodeError::NotVrrp { protocol: 51 });
    assert_eq!(
        err.to_string(),
        "IPsec AH authenticated VRRP is not supported"
    );
    packet[0] = 0x65;
    assert_eq!(
        decode_ipv4(&packet, true),
        Err(DecodeError::BadIpv4Header {
            version: 6,
            header_len: 20
        })
    );
    assert_eq!(
        decode_ipv4(&packet[..19], true),
        Err(DecodeError::TooShort { len: 19 })
    );
}

#[test]
fn v3_ipv4_fixture_round_trips() {
    assert_eq!(decode(&V3_IPV4, &multicast_v4()).unwrap(), v3_ipv4_advert());
    let endpoints = Endpoints::V4 {
        src: LVS_DIRECTOR,
        dst: IPV4_MULTICAST_GROUP,
    };
    assert_eq!(encode(&v3_ipv4_advert(), &endpoints), V3_IPV4);
}

#[test]
fn v3_checksum_covers_the_destination() {
    // Sent to a unicast peer, the same advert has another checksum (computed independently).
    let unicast = Endpoints::V4 {
        src: LVS_DIRECTOR,
        dst: Ipv4Addr::new(192, 168, 66, 11),
    };
    let bytes = encode(&v3_ipv4_advert(), &unicast);
    assert_eq!(&bytes[6..8], &[0x2e, 0xe0]);
    // …so a multicast context rejects it, naming both values.
    assert_eq!(
        decode(&bytes, &multicast_v4()),
        Err(DecodeError::BadChecksum {
            expected: 0x5181,
            got: 0x2ee0
        })
    );
}

#[test]
fn v3_ipv6_fixture_round_trips() {
    let advert = decode(&V3_IPV6, &multicast_v6()).unwrap();
    assert_eq!(advert.vrid, 1);
    assert_eq!(advert.priority, 100);
    assert_eq!(advert.interval(), std::time::Duration::from_secs(1));
    let expected: Vec<std::net::IpAddr> =
        vec!["fe80::1".parse().unwrap(), "2001:db8::1".parse().unwrap()];
    assert_eq!(advert.addresses.iter().collect::<Vec<_>>(), expected);
    assert!(advert.addresses.is_ipv6());
    assert_eq!(encode(&advert, &multicast_v6().endpoints), V3_IPV6);
}

#[test]
fn v3_reserved_bits_are_ignored_on_receive() {
    // RFC 5798 §5.2.5: set the 4 reserved bits and fix the checksum by hand: the sum grows by
    // 0xf000 (0xae7e + 0xf000 folds to 0x9e7f), so the checksum becomes !0x9e7f = 0x6180.
    let mut bytes = V3_IPV4;
    bytes[4] = 0xf0;
    bytes[6..8].copy_from_slice(&0x6180u16.to_be_bytes());
    let advert = decode(&bytes, &multicast_v4()).unwrap();
    assert_eq!(
        advert.fields,
        VersionFields::V3 {
            max_advert_int: Centiseconds::new(100).unwrap()
        }
    );
}

#[test]
fn too_short() {
    let err = decode(&KEEPALIVED_V2[..7], &multicast_v4()).unwrap_err();
    assert_eq!(err, DecodeError::TooShort { len: 7 });
    assert_eq!(
        decode(&[], &multicast_v4()),
        Err(DecodeError::TooShort { len: 0 })
    );
}

#[test]
fn ttl_must_be_255_unless_unchecked() {
    let mut ctx = multicast_v4();
    ctx.ttl = Some(254);
    let err = decode(&KEEPALIVED_V2, &ctx).unwrap_err();
    assert_eq!(err, DecodeError::BadTtl { ttl: 254 });
    assert_eq!(
        err.to_string(),
        "invalid TTL/HL. Received 254 and expect 255"
    );
    ctx.ttl = None;
    assert!(decode(&KEEPALIVED_V2, &ctx).is_ok());
}

#[test]
fn bad_version_and_type() {
    let mut bytes = KEEPALIVED_V2;
    bytes[0] = 0x41;
    assert_eq!(
        decode(&bytes, &multicast_v4()),
        Err(DecodeError::BadVersion { version: 4 })
    );
    bytes[0] = 0x22;
    let err = decode(&bytes, &multicast_v4()).unwrap_err();
    assert_eq!(err, DecodeError::BadType { packet_type: 2 });
    assert_eq!(err.to_string(), "Invalid packet type. 2 and expect 1");
}

#[test]
fn length_must_match_the_address_count() {
    let mut long = KEEPALIVED_V2.to_vec();
    long.push(0);
    let err = decode(&long, &multicast_v4()).unwrap_err();
    assert_eq!(
        err,
        DecodeError::AddressCountMismatch {
            count: 1,
            expected_len: 20,
            len: 21
        }
    );
    assert_eq!(
        err.to_string(),
        "vrrp packet too long, length 21 and expect 20 for 1 address(es)"
    );

    let mut two = KEEPALIVED_V2;
    two[3] = 2;
    let err = decode(&two, &multicast_v4()).unwrap_err();
    assert_eq!(
        err,
        DecodeError::AddressCountMismatch {
            count: 2,
            expected_len: 24,
            len: 20
        }
    );
    assert!(err.to_string().starts_with("vrrp packet too short"));

    // The same bytes read as IPv6 cannot hold even one 16-byte address and the header.
    assert!(matches!(
        decode(&KEEPALIVED_V2, &multicast_v6()),
        Err(DecodeError::AddressCountMismatch {
            count: 1,
            expected_len: 24,
            len: 20
        })
    ));
}

#[test]
fn bad_checksum_names_expected_and_received() {
    let mut bytes = KEEPALIVED_V2;
    bytes[7] ^= 0x01;
    let err = decode(&bytes, &multicast_v4()).unwrap_err();
    assert_eq!(
        err,
        DecodeError::BadChecksum {
            expected: 0xfffd,
            got: 0xfffc
        }
    );
    assert_eq!(
        err.to_string(),
        "Invalid VRRP checksum: packet has 0xfffc, content sums to 0xfffd"
    );
    // A changed password is caught too: the auth data is inside the VRRPv2 checksum.
    let mut bytes = KEEPALIVED_V2;
    bytes[19] = b'x';
    assert!(matches!(
        decode(&bytes, &multicast_v4()),
        Err(DecodeError::BadChecksum { .. })
    ));
}

#[test]
fn invalid_auth_type() {
    let mut bytes = KEEPALIVED_V2;
    bytes[4] = 3;
    fix_v2_checksum(&mut bytes);
    let err = decode(&bytes, &multicast_v4()).unwrap_err();
    assert_eq!(err, DecodeError::InvalidAuthType { auth_type: 3 });
    assert_eq!(err.to_string(), "Invalid auth type: 3");
}

#[test]
fn ah_and_none_auth_types() {
    let mut bytes = KEEPALIVED_V2;
    bytes[4] = 2;
    fix_v2_checksum(&mut bytes);
    assert_eq!(decode(&bytes, &multicast_v4()).unwrap().auth(), Auth::Ah);
    let mut bytes = KEEPALIVED_V2;
    bytes[4] = 0;
    fix_v2_checksum(&mut bytes);
    assert_eq!(decode(&bytes, &multicast_v4()).unwrap().auth(), Auth::None);
}

#[test]
fn v2_over_ipv6_has_no_auth_data() {
    let advert = Advert {
        vrid: 7,
        priority: 100,
        fields: VersionFields::V2 {
            auth: Auth::None,
            advert_int_secs: 1,
        },
        addresses: AddressList::ipv6(["fe80::1".parse::<Ipv6Addr>().unwrap()]).unwrap(),
    };
    let bytes = encode(&advert, &multicast_v6().endpoints);
    assert_eq!(bytes.len(), 8 + 16);
    assert_eq!(decode(&bytes, &multicast_v6()).unwrap(), advert);

    let pass = Advert {
        fields: VersionFields::V2 {
            auth: Auth::pass("secret"),
            advert_int_secs: 1,
        },
        ..advert
    };
    let bytes = encode(&pass, &multicast_v6().endpoints);
    assert_eq!(
        decode(&bytes, &multicast_v6()),
        Err(DecodeError::AuthOverIpv6 { auth_type: 1 })
    );
}

#[test]
fn auth_pass_is_truncated_and_padded_like_keepalived() {
    assert_eq!(Auth::pass("lvs50test-too-long"), Auth::Pass(*b"lvs50tes"));
    assert_eq!(Auth::pass("ab"), Auth::Pass([b'a', b'b', 0, 0, 0, 0, 0, 0]));
    assert_eq!(format!("{:?}", Auth::pass("secret")), "Pass(..)");
}

#[test]
fn address_lists_hold_one_family_and_at_most_255() {
    let many = (0..=255u8).map(|i| Ipv4Addr::new(10, 0, 0, i));
    assert_eq!(
        AddressList::ipv4(many).unwrap_err(),
        AddressListError::TooMany { count: 256 }
    );
    let mixed = ["10.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
    assert_eq!(
        AddressList::from_ips(&mixed).unwrap_err(),
        AddressListError::MixedFamilies
    );
    assert!(AddressList::ipv4((0..255u8).map(|i| Ipv4Addr::new(10, 0, 0, i))).is_ok());
}

#[test]
fn centiseconds_fit_in_12_bits() {
    assert_eq!(Centiseconds::new(4095), Some(Centiseconds::MAX));
    assert_eq!(Centiseconds::new(4096), None);
    assert_eq!(
        Centiseconds::from_duration(std::time::Duration::from_millis(100)).map(Centiseconds::get),
        Some(10)
    );
    assert_eq!(
        Centiseconds::from_duration(std::time::Duration::from_millis(105)),
        None
    );
    assert_eq!(
        Centiseconds::from_duration(std::time::Duration::from_secs(41)),
        None
    );
}

#[test]
fn peek_vrid_reads_the_second_byte() {
    assert_eq!(peek_vrid(&KEEPALIVED_V2), Some(200));
    assert_eq!(peek_vrid(&[0x21]), None);
}

// ----- properties -----

fn ipv4_list() -> impl Strategy<Value = AddressList> {
    prop::collection::vec(any::<[u8; 4]>().prop_map(Ipv4Addr::from), 0..=255)
        .prop_map(|v| AddressList::ipv4(v).unwrap())
}

fn ipv6_list() -> impl Strategy<Value = AddressList> {
    prop::collection::vec(any::<[u8; 16]>().prop_map(Ipv6Addr::from), 0..=255)
        .prop_map(|v| AddressList::ipv6(v).unwrap())
}

fn auth() -> impl Strategy<Value = Auth> {
    prop_oneof![
        Just(Auth::None),
        Just(Auth::Ah),
        any::<[u8; 8]>().prop_map(Auth::Pass)
    ]
}

fn v3_fields() -> impl Strategy<Value = VersionFields> {
    (0u16..=4095).prop_map(|cs| VersionFields::V3 {
        max_advert_int: Centiseconds::new(cs).unwrap(),
    })
}

/// An advert with endpoints of its family. VRRPv2 over IPv6 carries no auth data, so only
/// `Auth::None` round-trips there.
fn advert_and_endpoints() -> impl Strategy<Value = (Advert, Endpoints)> {
    let v4 = (
        any::<u8>(),
        any::<u8>(),
        prop_oneof![
            (auth(), any::<u8>()).prop_map(|(auth, secs)| VersionFields::V2 {
                auth,
                advert_int_secs: secs
            }),
            v3_fields()
        ],
        ipv4_list(),
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
    )
        .prop_map(|(vrid, priority, fields, addresses, src, dst)| {
            let endpoints = Endpoints::V4 {
                src: src.into(),
                dst: dst.into(),
            };
            (
                Advert {
                    vrid,
                    priority,
                    fields,
                    addresses,
                },
                endpoints,
            )
        });
    let v6 = (
        any::<u8>(),
        any::<u8>(),
        prop_oneof![
            any::<u8>().prop_map(|secs| VersionFields::V2 {
                auth: Auth::None,
                advert_int_secs: secs
            }),
            v3_fields()
        ],
        ipv6_list(),
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
    )
        .prop_map(|(vrid, priority, fields, addresses, src, dst)| {
            let endpoints = Endpoints::V6 {
                src: src.into(),
                dst: dst.into(),
            };
            (
                Advert {
                    vrid,
                    priority,
                    fields,
                    addresses,
                },
                endpoints,
            )
        });
    prop_oneof![v4, v6]
}

fn any_endpoints() -> impl Strategy<Value = Endpoints> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<[u8; 4]>()).prop_map(|(s, d)| Endpoints::V4 {
            src: s.into(),
            dst: d.into()
        }),
        (any::<[u8; 16]>(), any::<[u8; 16]>()).prop_map(|(s, d)| Endpoints::V6 {
            src: s.into(),
            dst: d.into()
        }),
    ]
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity((advert, endpoints) in advert_and_endpoints()) {
        let bytes = encode(&advert, &endpoints);
        let ctx = PacketContext { endpoints, ttl: Some(255) };
        prop_assert_eq!(decode(&bytes, &ctx), Ok(advert));
    }

    #[test]
    fn decode_then_encode_is_identity((advert, endpoints) in advert_and_endpoints()) {
        // Whatever decodes re-encodes to the same bytes (no information is lost or invented).
        let bytes = encode(&advert, &endpoints);
        let ctx = PacketContext { endpoints, ttl: None };
        let decoded = decode(&bytes, &ctx).unwrap();
        prop_assert_eq!(encode(&decoded, &endpoints), bytes);
    }

    #[test]
    fn ipv4_packets_round_trip((advert, endpoints) in advert_and_endpoints()) {
        if let Endpoints::V4 { src, dst } = endpoints {
            let packet = encode_ipv4(&advert, src, dst, 255);
            let received = decode_ipv4(&packet, true).unwrap();
            prop_assert_eq!(received.advert, advert);
            prop_assert_eq!((received.src, received.dst, received.ttl), (src, dst, 255));
        }
    }

    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600), endpoints in any_endpoints(), ttl in any::<Option<u8>>()) {
        let _ = decode(&bytes, &PacketContext { endpoints, ttl });
        let _ = decode_ipv4(&bytes, ttl.is_some());
        let _ = peek_vrid(&bytes);
    }

    #[test]
    fn decode_never_panics_on_plausible_headers(
        version in 0u8..16, count in any::<u8>(), auth_type in any::<u8>(),
        tail in prop::collection::vec(any::<u8>(), 0..64), endpoints in any_endpoints(),
    ) {
        // Random bytes rarely get past the version nibble; these headers reach the deeper checks.
        let mut bytes = vec![version << 4 | 1, 1, 100, count, auth_type, 1, 0, 0];
        bytes.extend(tail);
        let _ = decode(&bytes, &PacketContext { endpoints, ttl: None });
    }

    #[test]
    fn any_single_byte_change_is_caught(index in 0usize..20, xor in 1u8..=255) {
        // A one's complement sum changes whenever a single byte does, so every corruption of
        // the keepalived advert is rejected (by the checksum or an earlier header check).
        let mut bytes = KEEPALIVED_V2;
        bytes[index] ^= xor;
        prop_assert!(decode(&bytes, &multicast_v4()).is_err());
    }
}
