//! lblc and lblcr: one server (or a set) per address reached, the kernel's rule for giving
//! way, and the expiry of their tables with time as an input.

mod sched_support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use halb_lb::sched::{DestLoad, Flow, Lblc, Lblcr, Schedule};
use proptest::prelude::*;
use sched_support::*;

fn to(host: u8) -> Flow {
    Flow {
        client: client(u32::from(host)),
        local: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 9, 8, host)), 80),
    }
}

fn ip(host: u8) -> IpAddr {
    to(host).local.ip()
}

const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn lblc_sticks_until_the_server_is_busier_than_its_weight_and_another_is_half_idle() {
    let mut d = dests(&[10, 10]);
    let mut s = Lblc::new();
    assert_eq!(pick(&mut s, t0(), &to(1), &d), Some(0));
    // Busier than B, but not past its weight: wlc would say B, lblc keeps A.
    d[0].active = 10;
    assert_eq!(pick(&mut s, t0(), &to(1), &d), Some(0));
    // Past its weight, but B is not under half of its own: still A.
    d[0].active = 11;
    d[1].active = 5;
    assert_eq!(pick(&mut s, t0(), &to(1), &d), Some(0));
    // B under half: the address moves to the least loaded, and stays there.
    d[1].active = 4;
    assert_eq!(pick(&mut s, t0(), &to(1), &d), Some(1));
    assert_eq!(s.cached(ip(1)), Some(d[1].addr));
    d[0].active = 0;
    assert_eq!(pick(&mut s, t0(), &to(1), &d), Some(1));
    // Other addresses are scheduled by weighted least connection.
    assert_eq!(pick(&mut s, t0(), &to(2), &d), Some(0));
}

#[test]
fn lblc_moves_an_address_off_a_quiescent_or_removed_server() {
    let mut d = dests(&[1, 1, 1]);
    let mut s = Lblc::new();
    assert_eq!(pick(&mut s, t0(), &to(1), &d), Some(0));
    d[0].weight = 0;
    assert_eq!(pick(&mut s, t0(), &to(1), &d), Some(1));
    let rest = vec![d[0], d[2]];
    assert_eq!(pick(&mut s, t0(), &to(1), &rest), Some(1));
    assert_eq!(s.cached(ip(1)), Some(d[2].addr));
}

#[test]
fn lblc_cache_hit_ignores_the_threshold_flag_as_the_kernel_does() {
    // ip_vs_lblc_schedule checks a cached server's weight and the active > weight rule,
    // not IP_VS_DEST_F_OVERLOAD; only a fresh choice skips overloaded servers.
    let mut d = dests(&[5, 5]);
    let mut s = Lblc::new();
    assert_eq!(pick(&mut s, t0(), &to(1), &d), Some(0));
    d[0].overloaded = true;
    assert_eq!(pick(&mut s, t0(), &to(1), &d), Some(0));
    assert_eq!(pick(&mut s, t0(), &to(2), &d), Some(1));
}

#[test]
fn lblc_entries_expire_after_the_expiration_idle() {
    // Checks run every minute from the first pick; a full expiry pass every 30th.
    let d = dests(&[1, 1]);
    let mut s = Lblc::with_expiration(10 * MIN);
    pick(&mut s, t0(), &to(1), &d);
    pick(&mut s, t0() + 29 * MIN, &to(2), &d);
    assert!(s.cached(ip(1)).is_some(), "no full pass yet");
    pick(&mut s, t0() + 31 * MIN, &to(3), &d);
    assert_eq!(
        s.cached(ip(1)),
        None,
        "idle 30 min at the pass of minute 30"
    );
    assert!(s.cached(ip(2)).is_some(), "idle 1 min at that pass");
    assert_eq!(s.len(), 2);
}

#[test]
fn lblc_default_expiration_is_a_day() {
    let d = dests(&[1, 1]);
    let mut s = Lblc::new();
    pick(&mut s, t0(), &to(1), &d);
    pick(&mut s, t0() + 23 * HOUR, &to(2), &d);
    assert!(s.cached(ip(1)).is_some());
    pick(&mut s, t0() + 24 * HOUR + 31 * MIN, &to(3), &d);
    assert_eq!(s.cached(ip(1)), None);
    assert!(s.cached(ip(2)).is_some());
}

#[test]
fn lblcr_grows_its_set_under_load_and_shares_it() {
    let mut d = dests(&[10, 10, 10]);
    let mut s = Lblcr::new();
    assert_eq!(pick(&mut s, t0(), &to(1), &d), Some(0));
    assert_eq!(s.set(ip(1)), Some(&[d[0].addr][..]));
    d[0].active = 11;
    d[1].active = 3;
    d[2].active = 4;
    // A is past its weight and B under half: the cluster's least loaded joins the set.
    assert_eq!(pick(&mut s, t0() + MIN, &to(1), &d), Some(1));
    assert_eq!(s.set(ip(1)), Some(&[d[1].addr, d[0].addr][..]));
    // Now the set's least loaded is chosen; C, outside the set, is not.
    d[0].active = 2;
    d[1].active = 3;
    d[2].active = 0;
    assert_eq!(pick(&mut s, t0() + 2 * MIN, &to(1), &d), Some(0));
}

#[test]
fn lblcr_skips_overloaded_members_and_adds_a_server_when_all_are() {
    let mut d = dests(&[10, 10]);
    let mut s = Lblcr::new();
    assert_eq!(pick(&mut s, t0(), &to(1), &d), Some(0));
    d[0].overloaded = true;
    assert_eq!(pick(&mut s, t0(), &to(1), &d), Some(1));
    assert_eq!(s.set(ip(1)).map(<[_]>::len), Some(2));
    d[1].overloaded = true;
    assert_eq!(pick(&mut s, t0(), &to(1), &d), None);
}

#[test]
fn lblcr_shrinks_a_set_unchanged_for_the_expiration() {
    let mut d = dests(&[10, 10]);
    let mut s = Lblcr::with_expiration(10 * MIN);
    pick(&mut s, t0(), &to(1), &d);
    d[0].active = 11;
    assert_eq!(pick(&mut s, t0() + MIN, &to(1), &d), Some(1));
    assert_eq!(s.set(ip(1)).map(<[_]>::len), Some(2));
    d[0].active = 3;
    d[1].active = 1;
    // Used every few minutes; unchanged since minute 1.
    for m in [3u32, 6, 9, 11] {
        pick(&mut s, t0() + m * MIN, &to(1), &d);
        assert_eq!(s.set(ip(1)).map(<[_]>::len), Some(2), "minute {m}");
    }
    pick(&mut s, t0() + 12 * MIN, &to(1), &d);
    assert_eq!(s.set(ip(1)), Some(&[d[1].addr][..]), "the most loaded left");
}

#[test]
fn lblcr_forgets_removed_servers() {
    let mut d = dests(&[10, 10]);
    let mut s = Lblcr::new();
    pick(&mut s, t0(), &to(1), &d);
    d[0].active = 11;
    pick(&mut s, t0(), &to(1), &d);
    let only_b = vec![d[1]];
    s.update(&only_b);
    assert_eq!(s.set(ip(1)), Some(&[d[1].addr][..]));
    let none: Vec<DestLoad> = Vec::new();
    s.update(&none);
    assert_eq!(s.set(ip(1)), None);
    assert!(s.is_empty());
}

proptest! {
    #![proptest_config(config(128))]

    /// While nobody is past its weight, an address keeps its server whatever the loads.
    #[test]
    fn lblc_is_sticky_below_the_weights(
        loads in prop::collection::vec(prop::collection::vec(0u32..=10, 4), 1..20),
        hosts in prop::collection::vec(1u8..50, 1..10),
    ) {
        let mut s = Lblc::new();
        let mut d = dests(&[10, 10, 10, 10]);
        let mut first = std::collections::HashMap::new();
        for (step, actives) in loads.iter().enumerate() {
            for (x, &a) in d.iter_mut().zip(actives) {
                x.active = a;
            }
            for &h in &hosts {
                let now = t0() + Duration::from_secs(step as u64);
                let got = pick(&mut s, now, &to(h), &d).unwrap();
                prop_assert_eq!(*first.entry(h).or_insert(got), got);
            }
        }
    }
}
