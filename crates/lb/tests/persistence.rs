//! Persistence templates: stickiness, expiry at the timeout, netmask granularity, templates
//! kept alive by their connections, and `ip_vs_check_template`'s rules.

mod sched_support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use halb_lb::persistence::{mask, Templates};
use halb_lb::table::{Persistence, PersistenceGranularity};
use proptest::prelude::*;
use sched_support::*;

const S: Duration = Duration::from_secs(1);

fn templates(timeout_s: u32, granularity: Option<PersistenceGranularity>) -> Templates {
    let mut t = Templates::new(Persistence {
        timeout_s,
        granularity,
    });
    t.update(&dests(&[1, 1, 1]));
    t
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

#[test]
fn a_client_sticks_to_its_destination_until_the_timeout() {
    let mut t = templates(300, None);
    let c = v4(172, 16, 0, 5);
    assert_eq!(t.lookup(t0(), c), None);
    let hold = t.bind(t0(), c, addr(1));
    t.release(t0() + S, hold);
    assert_eq!(t.lookup(t0() + 299 * S, c), Some(addr(1)));
    assert_eq!(t.lookup(t0() + 300 * S, c), None, "expired at the timeout");
    assert!(
        t.is_empty(),
        "an expired template found at lookup is dropped"
    );
    // Another client of the same /24 is another template without a granularity.
    t.bind(t0(), c, addr(1));
    assert_eq!(t.lookup(t0(), v4(172, 16, 0, 6)), None);
}

#[test]
fn each_new_connection_restarts_the_timer() {
    let mut t = templates(300, None);
    let c = v4(172, 16, 0, 5);
    let h = t.bind(t0(), c, addr(2));
    t.release(t0(), h);
    let h = t.bind(t0() + 200 * S, c, addr(2));
    t.release(t0() + 201 * S, h);
    assert_eq!(t.lookup(t0() + 499 * S, c), Some(addr(2)));
    assert_eq!(t.lookup(t0() + 500 * S, c), None);
}

#[test]
fn a_netmask_groups_the_clients_of_one_network() {
    let g = Some(PersistenceGranularity::Netmask(Ipv4Addr::new(
        255, 255, 255, 0,
    )));
    let mut t = templates(300, g);
    t.bind(t0(), v4(172, 16, 7, 10), addr(0));
    assert_eq!(t.lookup(t0() + S, v4(172, 16, 7, 200)), Some(addr(0)));
    assert_eq!(t.lookup(t0() + S, v4(172, 16, 8, 10)), None);
    assert_eq!(t.network(v4(172, 16, 7, 200)), v4(172, 16, 7, 0));
    assert_eq!(t.len(), 1);
}

#[test]
fn a_prefix_groups_ipv6_clients() {
    let mut t = templates(60, Some(PersistenceGranularity::Prefix(64)));
    let a: IpAddr = "2001:db8:1:2::10".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
    let other: IpAddr = "2001:db8:1:3::10".parse().unwrap();
    t.bind(t0(), a, addr(2));
    assert_eq!(t.lookup(t0(), b), Some(addr(2)));
    assert_eq!(t.lookup(t0(), other), None);
}

#[test]
fn a_template_lives_while_it_controls_connections() {
    let mut t = templates(300, None);
    let c = v4(172, 16, 0, 5);
    let first = t.bind(t0(), c, addr(1));
    let second = t.bind(t0() + 10 * S, c, addr(1));
    assert_eq!(t.get(c).unwrap().controlled, 2);
    // Long past the timeout, the open connections keep it.
    let late = t0() + 3600 * S;
    assert_eq!(t.expire(late), 0);
    assert_eq!(t.lookup(late, c), Some(addr(1)));
    t.release(late, first);
    assert_eq!(t.lookup(late + S, c), Some(addr(1)));
    // The last one closes: IPVS finds it idle at its next 60-second re-check.
    t.release(late + 5 * S, second);
    let state = t.get(c).unwrap();
    assert_eq!(state.controlled, 0);
    assert!(state.expires > late + 5 * S && state.expires <= late + 65 * S);
    assert_eq!(t.next_expiry(), Some(state.expires));
    assert_eq!(t.lookup(state.expires - S, c), Some(addr(1)));
    assert_eq!(t.expire(state.expires), 1);
    assert_eq!(t.lookup(state.expires, c), None);
}

#[test]
fn a_destination_gone_from_the_service_drops_its_templates_at_lookup() {
    let mut t = templates(300, None);
    let c = v4(172, 16, 0, 5);
    t.bind(t0(), c, addr(1));
    t.update(&dests(&[1]));
    assert_eq!(t.lookup(t0() + S, c), None);
    assert!(t.get(c).is_none());
}

#[test]
fn quiescent_destinations_keep_their_clients_unless_expire_quiescent_template() {
    let mut d = dests(&[1, 1]);
    let c = v4(172, 16, 0, 5);
    let p = Persistence {
        timeout_s: 300,
        granularity: None,
    };
    let mut keep = Templates::new(p);
    let mut expire = Templates::new(p).with_expire_quiescent(true);
    for t in [&mut keep, &mut expire] {
        t.update(&d);
        t.bind(t0(), c, addr(1));
    }
    d[1].weight = 0;
    keep.update(&d);
    expire.update(&d);
    assert_eq!(keep.lookup(t0() + S, c), Some(addr(1)));
    assert_eq!(expire.lookup(t0() + S, c), None);
}

#[test]
fn a_rebound_network_does_not_count_the_old_templates_connections() {
    let mut t = templates(300, None);
    let c = v4(172, 16, 0, 5);
    let old = t.bind(t0(), c, addr(1));
    let new = t.bind(t0() + S, c, addr(2));
    assert_eq!(t.get(c).unwrap().dest, addr(2));
    t.release(t0() + 2 * S, old);
    assert_eq!(t.get(c).unwrap().controlled, 1);
    t.release(t0() + 2 * S, new);
    assert_eq!(t.get(c).unwrap().controlled, 0);
}

#[test]
fn removing_a_destination_drops_its_templates() {
    let mut t = templates(300, None);
    for i in 0..10 {
        t.bind(t0(), v4(172, 16, 0, i), addr(usize::from(i % 2)));
    }
    assert_eq!(t.remove_dest(addr(1)), 5);
    assert_eq!(t.len(), 5);
    assert_eq!(t.lookup(t0(), v4(172, 16, 0, 1)), None);
    assert_eq!(t.lookup(t0(), v4(172, 16, 0, 2)), Some(addr(0)));
}

proptest! {
    #![proptest_config(config(256))]

    /// Two clients share a template exactly when their masked addresses are equal.
    #[test]
    fn clients_share_a_template_exactly_within_the_netmask(a in any::<u32>(), b in any::<u32>(), bits in 0u32..=32) {
        let netmask = Ipv4Addr::from(u32::MAX.checked_shl(32 - bits).unwrap_or(0));
        let g = Some(PersistenceGranularity::Netmask(netmask));
        let mut t = templates(60, g);
        let (ca, cb) = (IpAddr::V4(Ipv4Addr::from(a)), IpAddr::V4(Ipv4Addr::from(b)));
        t.bind(t0(), ca, addr(0));
        let same = (a & u32::from(netmask)) == (b & u32::from(netmask));
        prop_assert_eq!(t.lookup(t0(), cb).is_some(), same);
        // A prefix of the same length groups the same way.
        prop_assert_eq!(mask(cb, Some(PersistenceGranularity::Prefix(bits as u8))), mask(cb, g));
    }

    /// Whatever the order of binds and releases: a template lives while it controls a
    /// connection; without one it lives until its last bind plus the timeout, and dies at
    /// the latest a re-check (60 s) after its last connection closed, if that was later.
    #[test]
    fn templates_expire_only_when_idle(ops in prop::collection::vec((any::<bool>(), 1u64..400), 1..30)) {
        let timeout = Duration::from_secs(300);
        let recheck = Duration::from_secs(60);
        let mut t = templates(300, None);
        let c = v4(172, 16, 0, 5);
        let mut now = t0();
        let mut open = Vec::new();
        let mut last_bind: Option<Instant> = None;
        let mut last_close: Option<Instant> = None;
        for (bind, dt) in ops {
            now += Duration::from_secs(dt);
            let alive = t.lookup(now, c).is_some();
            if let Some(b) = last_bind {
                if !open.is_empty() || now < b + timeout {
                    prop_assert!(alive, "dropped at {:?} with {} open", now - t0(), open.len());
                }
                let dead_by = last_close.map_or(b + timeout, |cl| (b + timeout).max(cl + recheck));
                if open.is_empty() && now >= dead_by {
                    prop_assert!(!alive, "still alive at {:?}", now - t0());
                }
            } else {
                prop_assert!(!alive);
            }
            if !alive {
                last_bind = None;
                last_close = None;
            }
            if bind || open.is_empty() {
                open.push(t.bind(now, c, addr(1)));
                last_bind = Some(now);
            } else if let Some(h) = open.pop() {
                t.release(now, h);
                if open.is_empty() {
                    last_close = Some(now);
                }
            }
        }
    }
}
