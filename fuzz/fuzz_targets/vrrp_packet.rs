//! VRRP packets from the wire: the decoder (with and without the IPv4 header keepalived's raw
//! sockets carry) and an instance receiving them. Nothing may panic; every advert that decodes
//! encodes back to an advert that decodes to the same thing; every dropped packet is counted.
#![no_main]

use halb_vrrp::packet::{decode, decode_ipv4, encode, AddressList, Endpoints, PacketContext};
use halb_vrrp::{Instance, InstanceConfig};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let ttl = if selector & 1 == 0 { Some(255) } else { Some(selector) };
    let endpoints = if selector & 2 == 0 {
        Endpoints::V4 {
            src: Ipv4Addr::new(192, 168, 66, 12),
            dst: Ipv4Addr::new(224, 0, 0, 18),
        }
    } else {
        Endpoints::V6 {
            src: Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 12),
            dst: Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12),
        }
    };
    let ctx = PacketContext { endpoints, ttl };
    if let Ok(advert) = decode(bytes, &ctx) {
        let again = decode(&encode(&advert, &ctx.endpoints), &ctx);
        assert_eq!(again.as_ref().ok(), Some(&advert), "encode/decode round trip");
    }
    let _ = decode_ipv4(bytes, selector & 4 == 0);

    // An instance receiving the bytes: dropped packets are counted, never a panic.
    let now = Instant::now();
    let vips = AddressList::ipv4([Ipv4Addr::new(192, 168, 66, 251)]).expect("one address");
    let config = InstanceConfig::new("FUZZ", 200, IpAddr::V4(Ipv4Addr::new(192, 168, 66, 6)), vips);
    let mut instance = Instance::new(config, now);
    let _ = instance.handle_packet(now + Duration::from_millis(10), bytes, &ctx);
    while instance.poll_action().is_some() {}
    if let Some(t) = instance.poll_timeout() {
        instance.handle_timeout(t);
    }
});
