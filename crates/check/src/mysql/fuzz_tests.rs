//! Garbage in, no panic out: random and mutated bytes through every parser and through the
//! session in each of its phases.

use super::fixtures::*;
use super::handshake::{AuthSwitch, Greeting};
use super::packet::{OkPacket, Packet, PacketReader, ServerError};
use super::response::QueryResponse;
use super::session::{Action, Session, Settings};

/// xorshift64*: reproducible without a seed file, and enough to scatter bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// `base` with a few bytes changed, cut or added.
    fn mutate(&mut self, base: &[u8]) -> Vec<u8> {
        let mut v = base.to_vec();
        for _ in 0..1 + self.below(4) {
            match self.below(4) {
                0 if !v.is_empty() => {
                    let i = self.below(v.len());
                    v[i] = self.next() as u8;
                }
                1 if !v.is_empty() => v.truncate(self.below(v.len())),
                2 => {
                    let i = self.below(v.len() + 1);
                    v.insert(i, self.next() as u8);
                }
                _ => {
                    // Interesting first bytes: OK, EOF/switch, ERR, NULL, AuthMoreData.
                    let marks = [0x00, 0xfe, 0xff, 0xfb, 0x01, 0xfc, 0xfd];
                    if let Some(first) = v.first_mut() {
                        *first = marks[self.below(marks.len())];
                    }
                }
            }
        }
        v
    }
}

fn settings() -> Settings {
    Settings {
        user: "mon".to_string(),
        password: "secret".to_string(),
        database: Some("db".to_string()),
        query: "SELECT 1".to_string(),
    }
}

fn packet(seq: u8, payload: Vec<u8>) -> Packet {
    Packet {
        first_seq: seq,
        last_seq: seq,
        payload,
    }
}

#[test]
fn parsers_survive_random_bytes() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let bytes = rng.bytes(80);
        let _ = Greeting::parse(&bytes);
        let _ = AuthSwitch::parse(&bytes);
        let _ = ServerError::parse(&bytes);
        let _ = OkPacket::parse(&bytes);
        let mut r = QueryResponse::new();
        for _ in 0..6 {
            let _ = r.handle(&rng.bytes(24));
        }
        let mut reader = PacketReader::with_limit(1 << 16);
        reader.push(&bytes);
        while let Ok(Some(_)) = reader.next_packet() {}
    }
}

#[test]
fn parsers_survive_mutated_recordings() {
    let mut rng = Rng(42);
    let recordings: Vec<&[u8]> = vec![
        GREETING,
        SWITCH_TO_ED25519,
        SWITCH_TO_NATIVE,
        LOGIN_OK,
        ACCESS_DENIED,
        HOST_BLOCKED,
        READ_ONLY_OFF[1],
        READ_ONLY_OFF[4],
    ];
    for _ in 0..20_000 {
        let base = recordings[rng.below(recordings.len())];
        let bytes = rng.mutate(base);
        let _ = Greeting::parse(&bytes);
        let _ = AuthSwitch::parse(&bytes);
        let _ = ServerError::parse(&bytes);
        let _ = OkPacket::parse(&bytes);
    }
}

/// A session brought to `phase` (0 greeting, 1 login, 2 query, 3 read_only) with valid packets,
/// and the sequence id it expects next.
fn session_in(phase: usize) -> (Session, u8) {
    let mut s = Session::new(settings());
    if phase == 0 {
        return (s, 0);
    }
    s.handle(packet(0, GREETING.to_vec())).unwrap();
    if phase == 1 {
        return (s, 2);
    }
    s.handle(packet(2, LOGIN_OK.to_vec())).unwrap();
    if phase == 2 {
        return (s, 1);
    }
    s.handle(packet(1, LOGIN_OK.to_vec())).unwrap();
    (s, 1)
}

#[test]
fn session_survives_garbage_in_every_phase() {
    let mut rng = Rng(7);
    let recordings: Vec<&[u8]> = vec![
        GREETING,
        SWITCH_TO_ED25519,
        SWITCH_TO_NATIVE,
        LOGIN_OK,
        ACCESS_DENIED,
        READ_ONLY_OFF[0],
        READ_ONLY_OFF[1],
        READ_ONLY_OFF[2],
        READ_ONLY_OFF[3],
        b"\x01\x04",
        b"\x01\x03",
        b"\x01-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n",
    ];
    for round in 0..4_000 {
        let (mut s, mut seq) = session_in(round % 4);
        for _ in 0..12 {
            let payload = if rng.below(3) == 0 {
                rng.bytes(40)
            } else {
                let base = recordings[rng.below(recordings.len())];
                rng.mutate(base)
            };
            // Mostly the right sequence id, so the garbage reaches the parsers.
            let this_seq = if rng.below(8) == 0 {
                rng.next() as u8
            } else {
                seq
            };
            match s.handle(packet(this_seq, payload)) {
                Ok(Action::Send(bytes)) => {
                    let mut r = PacketReader::new();
                    r.push(&bytes);
                    let mut last = 0;
                    while let Ok(Some(p)) = r.next_packet() {
                        last = p.last_seq;
                    }
                    seq = last.wrapping_add(1);
                }
                Ok(Action::Wait) => seq = this_seq.wrapping_add(1),
                Ok(Action::Done(_) | Action::Quit) | Err(_) => break,
            }
        }
    }
}
