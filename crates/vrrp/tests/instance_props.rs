//! Properties over random histories: an instance never panics and keeps its bookkeeping
//! straight whatever it is fed, and routers converge on exactly one master, the right one,
//! once the network is whole again.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::{addr, config, Net, VIP};
use halb_vrrp::packet::{
    encode, AddressList, Advert, Auth, Centiseconds, Endpoints, PacketContext, VersionFields,
};
use halb_vrrp::{Action, Instance, State, TrackerConfig, TrackerStatus};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Input {
    Advert {
        from: u8,
        priority: u8,
        v3: bool,
        extra_vip: bool,
    },
    Bytes(Vec<u8>),
    Wait(u16),
    Interface(bool),
    Tracker(bool),
    Weight(i8),
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        4 => (1u8..4, any::<u8>(), prop::bool::weighted(0.1), prop::bool::weighted(0.1))
            .prop_map(|(from, priority, v3, extra_vip)| Input::Advert { from, priority, v3, extra_vip }),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(Input::Bytes),
        4 => (0u16..5000).prop_map(Input::Wait),
        1 => any::<bool>().prop_map(Input::Interface),
        1 => any::<bool>().prop_map(Input::Tracker),
        1 => any::<i8>().prop_map(Input::Weight),
    ]
}

fn make_advert(priority: u8, v3: bool, extra_vip: bool) -> Advert {
    let mut vips = vec![VIP];
    if extra_vip {
        vips.push(Ipv4Addr::new(192, 168, 66, 252));
    }
    let fields = if v3 {
        VersionFields::V3 {
            max_advert_int: Centiseconds::new(100).unwrap_or(Centiseconds::MAX),
        }
    } else {
        VersionFields::V2 {
            auth: Auth::None,
            advert_int_secs: 1,
        }
    };
    Advert {
        vrid: 51,
        priority,
        fields,
        addresses: AddressList::ipv4(vips).unwrap(),
    }
}

proptest! {
    #[test]
    fn an_instance_survives_any_history(inputs in prop::collection::vec(input(), 1..120), priority in 1u8..=255) {
        let t0 = Instant::now();
        let mut c = config("VI_1", 51, addr(10), priority);
        c.trackers = vec![TrackerConfig { name: "chk".into(), weight: 0, reverse: false, initial: TrackerStatus::Up }];
        c.garp.master_refresh = Some(Duration::from_secs(3));
        let mut vrrp = Instance::new(c, t0);
        let mut now = t0;
        let mut vips_held = false;
        for input in inputs {
            match input {
                Input::Advert { from, priority, v3, extra_vip } => {
                    let _ = vrrp.handle_advert(now, addr(from), &make_advert(priority, v3, extra_vip));
                }
                Input::Bytes(bytes) => {
                    let IpAddr::V4(src) = addr(20) else { unreachable!() };
                    let ctx = PacketContext { endpoints: Endpoints::V4 { src, dst: Ipv4Addr::new(224, 0, 0, 18) }, ttl: Some(255) };
                    let _ = vrrp.handle_packet(now, &bytes, &ctx);
                    // The same bytes with a valid checksum reach the deeper checks.
                    if let Ok(advert) = halb_vrrp::packet::decode(&encode(&make_advert(bytes.first().copied().unwrap_or(0), false, false), &ctx.endpoints), &ctx) {
                        let _ = vrrp.handle_advert(now, addr(20), &advert);
                    }
                }
                Input::Wait(ms) => {
                    let until = now + Duration::from_millis(ms.into());
                    while let Some(at) = vrrp.poll_timeout().filter(|at| *at <= until) {
                        prop_assert!(at >= now, "a deadline in the past: {:?}", now - at);
                        now = at;
                        vrrp.handle_timeout(now);
                    }
                    now = until;
                }
                Input::Interface(up) => vrrp.set_interface_up(now, up),
                Input::Tracker(up) => {
                    vrrp.set_tracker_status(now, "chk", if up { TrackerStatus::Up } else { TrackerStatus::Down });
                }
                Input::Weight(w) => {
                    vrrp.set_track_weight(now, "chk", w.into());
                }
            }
            while let Some(action) = vrrp.poll_action() {
                match action {
                    Action::AddVips { .. } => {
                        prop_assert!(!vips_held, "VIPs added twice");
                        vips_held = true;
                    }
                    Action::RemoveVips { .. } => {
                        prop_assert!(vips_held, "VIPs removed without being added");
                        vips_held = false;
                    }
                    Action::SendGratuitousArp { addresses, .. } => {
                        // Only a master announces the VIP (a unicast instance coming up
                        // announces its own address instead).
                        prop_assert!(vips_held || !addresses.contains(&VIP.into()));
                    }
                    Action::SendAdvert { advert, .. } => {
                        prop_assert!(vrrp.state() == State::Master || advert.priority == 0);
                    }
                    _ => {}
                }
            }
            prop_assert_eq!(vips_held, vrrp.state() == State::Master);
            match vrrp.state() {
                State::Master | State::Backup => prop_assert!(vrrp.poll_timeout().is_some()),
                State::Fault => prop_assert_eq!(vrrp.poll_timeout(), None),
                State::Initialize | State::Stopped => {}
            }
            prop_assert!(vrrp.effective_priority() >= 1);
        }
    }
}

#[derive(Debug, Clone)]
enum Trouble {
    Partition(usize, usize),
    Heal(usize, usize),
    Link(usize, bool),
    Wait(u16),
}

fn trouble() -> impl Strategy<Value = Trouble> {
    prop_oneof![
        (0usize..3, 0usize..3).prop_map(|(a, b)| Trouble::Partition(a, b)),
        (0usize..3, 0usize..3).prop_map(|(a, b)| Trouble::Heal(a, b)),
        (0usize..3, any::<bool>()).prop_map(|(n, up)| Trouble::Link(n, up)),
        (0u16..8000).prop_map(Trouble::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn after_any_trouble_the_highest_priority_router_is_the_only_master(
        troubles in prop::collection::vec(trouble(), 0..30),
        priorities in Just([100u8, 150, 200]).prop_shuffle(),
    ) {
        let mut net = Net::new();
        for (k, &priority) in priorities.iter().enumerate() {
            let a = addr(10 + k as u8);
            net.add_node(a, vec![config("VI_1", 51, a, priority)]);
        }
        for t in troubles {
            match t {
                Trouble::Partition(a, b) if a != b => net.partition(a, b),
                Trouble::Heal(a, b) => net.heal(a, b),
                Trouble::Link(n, up) => net.set_link(n, up),
                Trouble::Wait(ms) => net.run_for(Duration::from_millis(ms.into())),
                Trouble::Partition(..) => {}
            }
        }
        for a in 0..3 {
            net.set_link(a, true);
            for b in 0..3 {
                net.heal(a, b);
            }
        }
        // The slowest path to one master: a backup of priority 200 waits 3.21875 s for a
        // lower master's adverts to stop counting, and the losers yield on its first advert.
        net.run_for(Duration::from_secs(8));
        let best = priorities.iter().position(|&p| p == 200).unwrap();
        prop_assert_eq!(net.masters(), vec![best]);
    }
}
