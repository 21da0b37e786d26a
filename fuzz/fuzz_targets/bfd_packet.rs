//! BFD control packets from the wire: the decoder and a session receiving them. Nothing may
//! panic; every packet that decodes encodes back to the same packet; a session fed anything
//! keeps its timers and counters consistent.
#![no_main]

use halb_bfd::packet::{decode, encode};
use halb_bfd::{Session, SessionConfig};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = decode(data) else {
        return;
    };
    assert_eq!(decode(&encode(&packet)).as_ref(), Ok(&packet), "round trip");

    let now = Instant::now();
    let mut session = Session::new(SessionConfig::new(7).with_seed(1), now);
    let _ = session.handle_packet(now + Duration::from_millis(1), &packet);
    while session.poll_transmit().is_some() {}
    while session.poll_event().is_some() {}
    for _ in 0..4 {
        if let Some(t) = session.poll_timeout() {
            session.handle_timeout(t);
        }
    }
    let _ = session.handle_packet(now + Duration::from_secs(1), &packet);
});
