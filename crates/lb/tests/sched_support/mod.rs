//! What the scheduler tests share: destinations, flows, a fixed clock and seeded randomness,
//! so that every run sees the same cases.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::Instant;

use halb_lb::sched::{DestLoad, Flow, Schedule};
use proptest::test_runner::{Config, RngSeed};

/// Property tests with a fixed seed and no regression files: the same cases every run.
pub fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x05ee_d1b5),
        failure_persistence: None,
        ..Config::default()
    }
}

/// One instant for the whole test binary; tests add durations to it.
pub fn t0() -> Instant {
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

/// Destination `i` of a test service: 10.0.0.(i+1):3306.
pub fn addr(i: usize) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250) as u8 + 1)),
        3306,
    )
}

pub fn dest(i: usize, weight: u32) -> DestLoad {
    DestLoad {
        addr: addr(i),
        weight,
        active: 0,
        inactive: 0,
        overloaded: false,
    }
}

/// Destinations 0.. with these weights, idle.
pub fn dests(weights: &[u32]) -> Vec<DestLoad> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| dest(i, w))
        .collect()
}

pub const VIP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 66, 251)), 3306);

pub fn flow_from(client: SocketAddr) -> Flow {
    Flow { client, local: VIP }
}

/// A client address from an index: distinct for distinct indexes, spread over 172.16/12.
pub fn client(i: u32) -> SocketAddr {
    let host = 0xac10_0000 | (i.wrapping_mul(2_654_435_761) >> 12);
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(host)), 1024 + (i % 50_000) as u16)
}

/// SplitMix64: the seeded source of randomness handed to `pick`.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
}

/// A pick with no randomness (schedulers that draw none).
pub fn pick(s: &mut dyn Schedule, now: Instant, flow: &Flow, dests: &[DestLoad]) -> Option<usize> {
    let mut no_random = || 0;
    s.pick(now, flow, dests, &mut no_random)
}

/// A pick with a seeded source.
pub fn pick_seeded(
    s: &mut dyn Schedule,
    now: Instant,
    flow: &Flow,
    dests: &[DestLoad],
    rng: &mut Rng,
) -> Option<usize> {
    let mut random = || rng.next_u32();
    s.pick(now, flow, dests, &mut random)
}
