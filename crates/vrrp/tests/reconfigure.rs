//! A reload's new configuration for a running instance: the state, timers and statistics are
//! kept, and only the addresses that changed are acted on (keepalived's `clear_diff_vrrp`).

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::{addr, config, VIP};
use halb_vrrp::packet::AddressList;
use halb_vrrp::{Action, Instance, InstanceConfig, State, TrackerConfig, TrackerStatus};

fn drain(instance: &mut Instance) -> Vec<Action> {
    std::iter::from_fn(|| instance.poll_action()).collect()
}

fn master(config: InstanceConfig, t0: Instant) -> (Instance, Instant) {
    let mut instance = Instance::new(config, t0);
    let at = instance.poll_timeout().unwrap();
    instance.handle_timeout(at);
    assert_eq!(instance.state(), State::Master);
    drain(&mut instance);
    (instance, at)
}

const OTHER: Ipv4Addr = Ipv4Addr::new(192, 168, 66, 252);

#[test]
fn a_master_reloaded_with_the_same_file_says_and_does_nothing() {
    let t0 = Instant::now();
    let (mut vrrp, t) = master(config("VI_1", 51, addr(10), 150), t0);
    let adverts = vrrp.stats().adverts_sent;
    let deadline = vrrp.poll_timeout();
    let (changes, warnings) = vrrp.reconfigure(t, config("VI_1", 51, addr(10), 150));
    assert!(changes.added.is_empty() && changes.removed.is_empty() && warnings.is_empty());
    assert_eq!(drain(&mut vrrp), Vec::new(), "no advert, no address change");
    assert_eq!(vrrp.state(), State::Master);
    assert_eq!(vrrp.stats().adverts_sent, adverts, "statistics kept");
    assert_eq!(vrrp.poll_timeout(), deadline, "the advert timer kept");
}

#[test]
fn a_master_adds_and_announces_only_the_new_address_and_removes_only_the_old_one() {
    let t0 = Instant::now();
    let mut first = config("VI_1", 51, addr(10), 150);
    first.virtual_addresses = AddressList::ipv4([VIP, Ipv4Addr::new(192, 168, 66, 250)]).unwrap();
    let (mut vrrp, t) = master(first, t0);
    let mut second = config("VI_1", 51, addr(10), 150);
    second.virtual_addresses = AddressList::ipv4([VIP, OTHER]).unwrap();
    let (changes, _) = vrrp.reconfigure(t + Duration::from_millis(10), second);
    assert_eq!(changes.added, vec![IpAddr::from(OTHER)]);
    assert_eq!(
        changes.removed,
        vec![IpAddr::from(Ipv4Addr::new(192, 168, 66, 250))]
    );
    let actions = drain(&mut vrrp);
    assert_eq!(
        actions,
        vec![
            Action::RemoveVips {
                addresses: vec![Ipv4Addr::new(192, 168, 66, 250).into()]
            },
            Action::AddVips {
                addresses: vec![OTHER.into()]
            },
            Action::SendGratuitousArp {
                addresses: vec![OTHER.into()],
                repeat: 5
            },
        ]
    );
    assert_eq!(vrrp.state(), State::Master);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::SendAdvert { advert, .. } if advert.priority == 0)),
        "no priority 0 advert"
    );
}

#[test]
fn a_backup_changes_no_address() {
    let t0 = Instant::now();
    let mut vrrp = Instance::new(config("VI_1", 51, addr(10), 100), t0);
    drain(&mut vrrp);
    let mut second = config("VI_1", 51, addr(10), 100);
    second.virtual_addresses = AddressList::ipv4([VIP, OTHER]).unwrap();
    let (changes, _) = vrrp.reconfigure(t0, second);
    assert_eq!(changes.added, vec![IpAddr::from(OTHER)]);
    assert_eq!(drain(&mut vrrp), Vec::new());
    assert_eq!(vrrp.state(), State::Backup);
}

#[test]
fn repeated_reloads_never_take_mastership_away() {
    let t0 = Instant::now();
    let (mut vrrp, mut t) = master(config("VI_1", 51, addr(10), 150), t0);
    for n in 0..100u32 {
        t += Duration::from_millis(7);
        let mut c = config("VI_1", 51, addr(10), 150 + u8::try_from(n % 3).unwrap());
        c.advert_interval = Duration::from_secs(1);
        vrrp.reconfigure(t, c);
        if let Some(at) = vrrp.poll_timeout().filter(|at| *at <= t) {
            vrrp.handle_timeout(at);
        }
        assert!(
            !drain(&mut vrrp)
                .iter()
                .any(|a| matches!(a, Action::StateChange(_) | Action::RemoveVips { .. })),
            "reload {n} moved the instance"
        );
        assert_eq!(vrrp.state(), State::Master);
    }
}

#[test]
fn a_new_priority_moves_the_effective_one_and_trackers_keep_their_results() {
    let t0 = Instant::now();
    let mut first = config("VI_1", 51, addr(10), 100);
    first.trackers = vec![TrackerConfig {
        name: "chk".into(),
        weight: -20,
        reverse: false,
        initial: TrackerStatus::Pending,
    }];
    let mut vrrp = Instance::new(first.clone(), t0);
    vrrp.set_tracker_status(t0, "chk", TrackerStatus::Down);
    assert_eq!(vrrp.effective_priority(), 80);
    drain(&mut vrrp);
    let mut second = first;
    second.priority = 120;
    vrrp.reconfigure(t0, second);
    assert_eq!(
        vrrp.effective_priority(),
        100,
        "the tracker's failure still counts"
    );
    assert_eq!(
        drain(&mut vrrp),
        vec![Action::PriorityChange { from: 80, to: 100 }]
    );
}

#[test]
fn a_new_tracker_that_is_pending_holds_the_instance_as_at_start() {
    let t0 = Instant::now();
    let (mut vrrp, t) = master(config("VI_1", 51, addr(10), 150), t0);
    let mut second = config("VI_1", 51, addr(10), 150);
    second.trackers = vec![TrackerConfig {
        name: "chk".into(),
        weight: 0,
        reverse: false,
        initial: TrackerStatus::Down,
    }];
    vrrp.reconfigure(t, second);
    assert_eq!(vrrp.state(), State::Fault);
}
