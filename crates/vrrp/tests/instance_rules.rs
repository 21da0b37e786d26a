//! One instance at a time, fed adverts by hand: keepalived's rules for what a MASTER and a
//! BACKUP do with each kind of advert, the receive checks and their counters, trackers,
//! GARP timing and configuration fix-ups.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::{addr, config, us, VIP};
use halb_vrrp::packet::{
    encode, AddressList, Advert, Auth, Endpoints, PacketContext, VersionFields,
    IPV4_MULTICAST_GROUP,
};
use halb_vrrp::{
    Action, ConfigWarning, DecodeError, Dropped, InitialState, Instance, InstanceConfig, Reason,
    State, TrackerConfig, TrackerStatus,
};

const ME: u8 = 10;
const PEER: u8 = 20;

fn advert(priority: u8) -> Advert {
    Advert {
        vrid: 51,
        priority,
        fields: VersionFields::V2 {
            auth: Auth::None,
            advert_int_secs: 1,
        },
        addresses: AddressList::ipv4([VIP]).unwrap(),
    }
}

fn drain(instance: &mut Instance) -> Vec<Action> {
    std::iter::from_fn(|| instance.poll_action()).collect()
}

/// An instance of priority 100 made MASTER by letting its timer run out.
fn master(config: InstanceConfig, t0: Instant) -> (Instance, Instant) {
    let mut instance = Instance::new(config, t0);
    let at = instance.poll_timeout().unwrap();
    instance.handle_timeout(at);
    assert_eq!(instance.state(), State::Master);
    drain(&mut instance);
    (instance, at)
}

fn multicast_ctx(src: IpAddr, ttl: u8) -> PacketContext {
    let IpAddr::V4(src) = src else { unreachable!() };
    PacketContext {
        endpoints: Endpoints::V4 {
            src,
            dst: IPV4_MULTICAST_GROUP,
        },
        ttl: Some(ttl),
    }
}

#[test]
fn master_answers_a_lower_priority_advert_at_once() {
    let t0 = Instant::now();
    let (mut vrrp, t) = master(config("VI_1", 51, addr(ME), 100), t0);
    let now = t + Duration::from_millis(300);
    assert_eq!(vrrp.handle_advert(now, addr(PEER), &advert(50)), Ok(()));
    let actions = drain(&mut vrrp);
    assert!(matches!(&actions[0], Action::SendAdvert { advert, .. } if advert.priority == 100));
    assert_eq!(
        actions[1],
        Action::SendGratuitousArp {
            addresses: vec![VIP.into()],
            repeat: 5
        }
    );
    assert_eq!(
        actions[2],
        Action::MasterReceivedLowerPriority {
            from: addr(PEER),
            priority: 50
        }
    );
    // The advert restarts the interval; the second GARP burst is due garp_lower_prio_delay
    // (5 s) later.
    assert_eq!(vrrp.poll_timeout(), Some(now + Duration::from_secs(1)));
    vrrp.handle_timeout(now + Duration::from_secs(5));
    assert!(drain(&mut vrrp).contains(&Action::SendGratuitousArp {
        addresses: vec![VIP.into()],
        repeat: 5
    }));
    assert_eq!(vrrp.state(), State::Master);
}

#[test]
fn lower_prio_no_advert_keeps_quiet() {
    let mut c = config("VI_1", 51, addr(ME), 100);
    c.lower_prio_no_advert = true;
    c.garp.lower_prio_repeat = 0;
    let (mut vrrp, t) = master(c, Instant::now());
    let now = t + Duration::from_millis(300);
    assert_eq!(vrrp.handle_advert(now, addr(PEER), &advert(50)), Ok(()));
    assert_eq!(
        drain(&mut vrrp),
        [Action::MasterReceivedLowerPriority {
            from: addr(PEER),
            priority: 50
        }]
    );
    assert_eq!(
        vrrp.poll_timeout(),
        Some(t + Duration::from_secs(1)),
        "the advert schedule is unchanged"
    );
}

#[test]
fn master_answers_priority_zero_with_an_advert() {
    let (mut vrrp, t) = master(config("VI_1", 51, addr(ME), 100), Instant::now());
    assert_eq!(vrrp.handle_advert(t, addr(PEER), &advert(0)), Ok(()));
    let actions = drain(&mut vrrp);
    assert_eq!(actions.len(), 1);
    assert!(matches!(&actions[0], Action::SendAdvert { advert, .. } if advert.priority == 100));
    assert_eq!(vrrp.stats().priority_zero_received, 1);
}

#[test]
fn higher_prio_send_advert_sends_one_more_before_yielding() {
    let mut c = config("VI_1", 51, addr(ME), 100);
    c.higher_prio_send_advert = true;
    let (mut vrrp, t) = master(c, Instant::now());
    vrrp.handle_advert(t, addr(PEER), &advert(200)).unwrap();
    let actions = drain(&mut vrrp);
    assert!(matches!(&actions[0], Action::SendAdvert { advert, .. } if advert.priority == 100));
    assert_eq!(
        actions[1],
        Action::RemoveVips {
            addresses: vec![VIP.into()]
        }
    );
    assert!(matches!(&actions[2], Action::StateChange(c) if c.to == State::Backup));
    assert_eq!(vrrp.stats().released_master, 1);
}

#[test]
fn two_address_owners_one_lowers_itself_and_yields() {
    let mut c = config("VI_1", 51, addr(ME), 255);
    c.initial_state = InitialState::Master;
    let t0 = Instant::now();
    let mut vrrp = Instance::new(c, t0);
    assert_eq!(vrrp.poll_timeout(), Some(t0));
    vrrp.handle_timeout(t0);
    assert_eq!(vrrp.state(), State::Master);
    drain(&mut vrrp);
    vrrp.handle_advert(t0, addr(PEER), &advert(255)).unwrap();
    let actions = drain(&mut vrrp);
    assert_eq!(actions[0], Action::PriorityChange { from: 255, to: 254 });
    assert_eq!(vrrp.state(), State::Backup);
    assert_eq!(vrrp.effective_priority(), 254);
}

#[test]
fn own_address_at_equal_priority_is_a_warning() {
    let (mut vrrp, t) = master(config("VI_1", 51, addr(ME), 100), Instant::now());
    assert_eq!(
        vrrp.handle_advert(t, addr(ME), &advert(100)),
        Err(Dropped::OwnAddress)
    );
    assert_eq!(vrrp.state(), State::Master);
}

#[test]
fn backup_with_priority_zero_waits_only_skew_time() {
    let t0 = Instant::now();
    let mut vrrp = Instance::new(config("VI_1", 51, addr(ME), 100), t0);
    let t = t0 + Duration::from_secs(1);
    vrrp.handle_advert(t, addr(PEER), &advert(200)).unwrap();
    assert_eq!(vrrp.poll_timeout(), Some(t + us(3_609_375)));
    vrrp.handle_advert(t, addr(PEER), &advert(0)).unwrap();
    assert_eq!(vrrp.poll_timeout(), Some(t + us(609_375)));
    vrrp.handle_timeout(t + us(609_375));
    let reason = drain(&mut vrrp).into_iter().find_map(|a| match a {
        Action::StateChange(c) if c.to == State::Master => Some(c.reason),
        _ => None,
    });
    assert_eq!(reason, Some(Reason::MasterReleased));
}

#[test]
fn ignored_adverts_do_not_restart_the_backup_timer() {
    let t0 = Instant::now();
    let mut vrrp = Instance::new(config("VI_1", 51, addr(ME), 100), t0);
    let deadline = vrrp.poll_timeout();
    let mut wrong = advert(200);
    wrong.addresses = AddressList::ipv4([Ipv4Addr::new(192, 168, 66, 252)]).unwrap();
    assert_eq!(
        vrrp.handle_advert(t0 + Duration::from_secs(1), addr(PEER), &wrong),
        Err(Dropped::MissingAddress { addr: VIP.into() })
    );
    assert_eq!(vrrp.poll_timeout(), deadline);
    assert_eq!(vrrp.stats().address_list_errors, 1);
    assert_eq!(
        vrrp.stats().adverts_received,
        1,
        "keepalived counts it before checking the addresses"
    );

    let mut two = advert(200);
    two.addresses = AddressList::ipv4([VIP, Ipv4Addr::new(192, 168, 66, 252)]).unwrap();
    assert_eq!(
        vrrp.handle_advert(t0, addr(PEER), &two),
        Err(Dropped::AddressCountMismatch { got: 2, ours: 1 })
    );
    assert_eq!(vrrp.stats().address_list_errors, 2);
    assert_eq!(vrrp.poll_timeout(), deadline);
}

#[test]
fn receive_checks_and_their_counters() {
    let t0 = Instant::now();
    let mut c = config("VI_1", 51, addr(ME), 100);
    c.auth = Auth::pass("lvs50tes");
    let mut vrrp = Instance::new(c, t0);

    let mut other_vrid = advert(100);
    other_vrid.vrid = 52;
    assert_eq!(
        vrrp.handle_advert(t0, addr(PEER), &other_vrid),
        Err(Dropped::WrongVrid { got: 52, ours: 51 })
    );
    assert_eq!(vrrp.stats().vrid_errors, 1);

    assert_eq!(
        vrrp.handle_advert(t0, addr(PEER), &advert(100)),
        Err(Dropped::AuthTypeMismatch { got: 0, ours: 1 })
    );
    assert_eq!(vrrp.stats().auth_type_mismatch, 1);

    let mut wrong_pass = advert(100);
    wrong_pass.fields = VersionFields::V2 {
        auth: Auth::pass("lvs50tet"),
        advert_int_secs: 1,
    };
    assert_eq!(
        vrrp.handle_advert(t0, addr(PEER), &wrong_pass),
        Err(Dropped::AuthFailure)
    );
    assert_eq!(vrrp.stats().auth_failures, 1);

    let mut v3 = advert(100);
    v3.fields = VersionFields::V3 {
        max_advert_int: halb_vrrp::packet::Centiseconds::new(100).unwrap(),
    };
    assert!(matches!(
        vrrp.handle_advert(t0, addr(PEER), &v3),
        Err(Dropped::VersionMismatch { .. })
    ));
    assert_eq!(vrrp.stats().version_errors, 1);

    let mut good = advert(100);
    good.fields = VersionFields::V2 {
        auth: Auth::pass("lvs50tes"),
        advert_int_secs: 1,
    };
    assert_eq!(vrrp.handle_advert(t0, addr(PEER), &good), Ok(()));
    assert_eq!(vrrp.stats().adverts_received, 1);
}

#[test]
fn handle_packet_checks_ttl_for_multicast_only() {
    let t0 = Instant::now();
    let mut vrrp = Instance::new(config("VI_1", 51, addr(ME), 100), t0);
    let endpoints = multicast_ctx(addr(PEER), 255).endpoints;
    let bytes = encode(&advert(200), &endpoints);
    assert_eq!(
        vrrp.handle_packet(t0, &bytes, &multicast_ctx(addr(PEER), 64)),
        Err(Dropped::Decode(DecodeError::BadTtl { ttl: 64 }))
    );
    assert_eq!(vrrp.stats().ttl_errors, 1);
    assert_eq!(
        vrrp.handle_packet(t0, &bytes, &multicast_ctx(addr(PEER), 255)),
        Ok(())
    );
    assert_eq!(vrrp.last_master(), Some((addr(PEER), 200)));

    let mut corrupt = bytes.clone();
    corrupt[2] = 201;
    assert!(matches!(
        vrrp.handle_packet(t0, &corrupt, &multicast_ctx(addr(PEER), 255)),
        Err(Dropped::Decode(DecodeError::BadChecksum { .. }))
    ));
    assert_eq!(vrrp.stats().checksum_errors, 1);
    assert!(matches!(
        vrrp.handle_packet(t0, &bytes[..10], &multicast_ctx(addr(PEER), 255)),
        Err(Dropped::Decode(DecodeError::AddressCountMismatch { .. }))
    ));
    assert_eq!(vrrp.stats().packet_length_errors, 1);

    // A unicast instance takes adverts that crossed routers.
    let mut c = config("VI_1", 51, addr(ME), 100);
    c.unicast_peers = vec![addr(PEER)];
    c.check_unicast_source = true;
    let mut unicast = Instance::new(c, t0);
    let IpAddr::V4(me) = addr(ME) else {
        unreachable!()
    };
    let IpAddr::V4(peer) = addr(PEER) else {
        unreachable!()
    };
    let ctx = PacketContext {
        endpoints: Endpoints::V4 { src: peer, dst: me },
        ttl: Some(61),
    };
    let bytes = encode(&advert(200), &ctx.endpoints);
    assert_eq!(unicast.handle_packet(t0, &bytes, &ctx), Ok(()));
    let stranger = Ipv4Addr::new(192, 168, 66, 99);
    let ctx = PacketContext {
        endpoints: Endpoints::V4 {
            src: stranger,
            dst: me,
        },
        ttl: Some(255),
    };
    let bytes = encode(&advert(200), &ctx.endpoints);
    assert_eq!(
        unicast.handle_packet(t0, &bytes, &ctx),
        Err(Dropped::NotAPeer {
            from: stranger.into()
        })
    );
}

#[test]
fn fault_ignores_adverts() {
    let t0 = Instant::now();
    let mut c = config("VI_1", 51, addr(ME), 100);
    c.interface_up = false;
    let mut vrrp = Instance::new(c, t0);
    assert_eq!(vrrp.state(), State::Fault);
    let change = drain(&mut vrrp);
    assert!(
        matches!(&change[0], Action::StateChange(c) if c.to_string() == "Entering FAULT STATE (init)")
    );
    assert_eq!(
        vrrp.handle_advert(t0, addr(PEER), &advert(200)),
        Err(Dropped::NotListening {
            state: State::Fault
        })
    );
    assert_eq!(vrrp.stats().adverts_received, 0);
    assert_eq!(vrrp.poll_timeout(), None);
}

#[test]
fn pending_tracker_holds_initialize_until_its_first_result() {
    let t0 = Instant::now();
    let tracker = TrackerConfig {
        name: "chk".into(),
        weight: 0,
        reverse: false,
        initial: TrackerStatus::Pending,
    };
    let mut c = config("VI_1", 51, addr(ME), 255);
    c.initial_state = InitialState::Master;
    c.trackers = vec![tracker.clone()];
    let mut owner = Instance::new(c, t0);
    assert_eq!(owner.state(), State::Initialize);
    assert_eq!(owner.poll_timeout(), None);
    let t = t0 + Duration::from_secs(2);
    owner.set_tracker_status(t, "chk", TrackerStatus::Up);
    assert_eq!(
        owner.state(),
        State::Master,
        "an owner that never faulted goes straight to MASTER"
    );

    let mut c = config("VI_1", 51, addr(ME), 100);
    c.trackers = vec![tracker];
    let mut backup = Instance::new(c, t0);
    assert!(!backup.set_tracker_status(t, "no-such-tracker", TrackerStatus::Up));
    backup.set_tracker_status(t, "chk", TrackerStatus::Down);
    assert_eq!(backup.state(), State::Fault);
    backup.set_tracker_status(t, "chk", TrackerStatus::Up);
    assert_eq!(backup.state(), State::Backup);
    assert_eq!(backup.poll_timeout(), Some(t + us(3_609_375)));
}

#[test]
fn owner_returning_from_fault_goes_through_backup() {
    // vrrp_track.c `down_instance` forgets the wish to be MASTER; `try_up_instance` brings
    // the owner back as BACKUP with a full Master_Down_Interval.
    let t0 = Instant::now();
    let mut c = config("VI_1", 51, addr(ME), 255);
    c.initial_state = InitialState::Master;
    let mut owner = Instance::new(c, t0);
    owner.handle_timeout(t0);
    drain(&mut owner);
    owner.set_interface_up(t0 + Duration::from_secs(1), false);
    let actions = drain(&mut owner);
    assert!(matches!(&actions[0], Action::SendAdvert { advert, .. } if advert.priority == 0));
    assert_eq!(owner.state(), State::Fault);
    let t = t0 + Duration::from_secs(2);
    owner.set_interface_up(t, true);
    assert_eq!(owner.state(), State::Backup);
    assert_eq!(owner.poll_timeout(), Some(t + us(3_003_906)));
}

#[test]
fn reverse_and_negative_weights() {
    let t0 = Instant::now();
    let mut c = config("VI_1", 51, addr(ME), 100);
    c.trackers = vec![
        TrackerConfig {
            name: "down_is_bad".into(),
            weight: -30,
            reverse: false,
            initial: TrackerStatus::Up,
        },
        TrackerConfig {
            name: "reversed".into(),
            weight: 20,
            reverse: true,
            initial: TrackerStatus::Down,
        },
    ];
    let mut vrrp = Instance::new(c, t0);
    assert_eq!(vrrp.effective_priority(), 120);
    vrrp.set_tracker_status(t0, "down_is_bad", TrackerStatus::Down);
    assert_eq!(vrrp.effective_priority(), 90);
    vrrp.set_tracker_status(t0, "reversed", TrackerStatus::Up);
    assert_eq!(vrrp.effective_priority(), 70);
    vrrp.set_track_weight(t0, "down_is_bad", -200);
    assert_eq!(vrrp.effective_priority(), 1, "clamped to 1");
    vrrp.set_track_weight(t0, "down_is_bad", 0);
    assert_eq!(
        vrrp.state(),
        State::Fault,
        "an unweighted tracker that is down is a fault"
    );
}

#[test]
fn priority_change_moves_a_running_backup_timer_by_the_skew_difference() {
    let t0 = Instant::now();
    let mut c = config("VI_1", 51, addr(ME), 100);
    c.trackers = vec![TrackerConfig {
        name: "chk".into(),
        weight: 100,
        reverse: false,
        initial: TrackerStatus::Down,
    }];
    let mut vrrp = Instance::new(c, t0);
    assert_eq!(vrrp.poll_timeout(), Some(t0 + us(3_609_375)));
    vrrp.set_tracker_status(t0, "chk", TrackerStatus::Up);
    // Priority 200: skew 0.21875 s instead of 0.609375 s.
    assert_eq!(vrrp.poll_timeout(), Some(t0 + us(3_218_750)));
}

#[test]
fn garp_refresh_rides_on_adverts() {
    let mut c = config("VI_1", 51, addr(ME), 100);
    c.garp.master_refresh = Some(Duration::from_secs(10));
    c.garp.master_delay = Duration::ZERO;
    let (mut vrrp, t) = master(c, Instant::now());
    let mut refreshes = Vec::new();
    for k in 1..=25 {
        let now = t + Duration::from_secs(k);
        vrrp.handle_timeout(now);
        for action in drain(&mut vrrp) {
            if let Action::SendGratuitousArp { repeat, .. } = action {
                refreshes.push((k, repeat));
            }
        }
    }
    assert_eq!(refreshes, [(10, 1), (20, 1)]);
}

#[test]
fn shutdown_of_a_backup_sends_nothing() {
    let t0 = Instant::now();
    let mut vrrp = Instance::new(config("VI_1", 51, addr(ME), 100), t0);
    drain(&mut vrrp);
    vrrp.shutdown(t0);
    let actions = drain(&mut vrrp);
    assert_eq!(actions.len(), 1);
    assert!(
        matches!(&actions[0], Action::StateChange(c) if c.to == State::Stopped && c.reason == Reason::Shutdown)
    );
    assert_eq!(vrrp.poll_timeout(), None);
    assert_eq!(
        vrrp.handle_advert(t0, addr(PEER), &advert(1)),
        Err(Dropped::Stopped)
    );
}

#[test]
fn unicast_instance_sends_to_each_peer_and_refreshes_arp_when_coming_up() {
    let t0 = Instant::now();
    let mut c = config("VI_1", 51, addr(ME), 100);
    c.unicast_peers = vec![addr(PEER), addr(PEER + 1)];
    let (mut vrrp, t) = master(c, t0);
    vrrp.handle_timeout(t + Duration::from_secs(1));
    let dsts: Vec<IpAddr> = drain(&mut vrrp)
        .into_iter()
        .filter_map(|a| match a {
            Action::SendAdvert { dst, .. } => Some(dst),
            _ => None,
        })
        .collect();
    assert_eq!(dsts, [addr(PEER), addr(PEER + 1)]);
    assert_eq!(
        vrrp.stats().adverts_sent,
        2,
        "one advert, however many peers"
    );

    vrrp.set_interface_up(t, false);
    drain(&mut vrrp);
    vrrp.set_interface_up(t, true);
    assert_eq!(
        drain(&mut vrrp)[0],
        Action::SendGratuitousArp {
            addresses: vec![addr(ME)],
            repeat: 1
        }
    );
}

#[test]
fn keepalived_configuration_fixups() {
    let mut c = config("VI_1", 51, addr(ME), 255);
    c.preempt = false;
    c.initial_state = InitialState::Master;
    c.preempt_delay = Duration::from_secs(5);
    c.advert_interval = Duration::from_millis(1500);
    c.version = halb_vrrp::packet::Version::V3;
    c.auth = Auth::pass("x");
    let warnings = c.normalize();
    assert_eq!(
        warnings,
        [
            ConfigWarning::AuthWithV3,
            ConfigWarning::NopreemptWithOwner,
            ConfigWarning::PreemptDelayWithStateMaster,
        ]
    );
    assert!(c.preempt);
    assert_eq!(c.auth, Auth::None);
    assert!(c.normalize().is_empty(), "idempotent");

    let mut c = config("VI_1", 51, addr(ME), 100);
    c.advert_interval = Duration::from_millis(1500);
    assert!(matches!(
        c.normalize()[..],
        [ConfigWarning::AdvertInterval { .. }]
    ));
    assert_eq!(
        c.advert_interval,
        Duration::from_secs(2),
        "VRRPv2 rounds to whole seconds"
    );

    let mut c = config("VI_1", 51, addr(ME), 100);
    c.preempt = false;
    c.preempt_delay = Duration::from_secs(5);
    assert_eq!(c.normalize(), [ConfigWarning::PreemptDelayWithNopreempt]);
    let vrrp = Instance::new(c, Instant::now());
    assert!(vrrp.config_warnings().is_empty(), "already normalized");
}

#[test]
fn state_change_log_lines_use_keepalived_wording() {
    let t0 = Instant::now();
    let mut vrrp = Instance::new(config("VI_1", 51, addr(ME), 100), t0);
    let lines: Vec<String> = drain(&mut vrrp)
        .into_iter()
        .filter_map(|a| match a {
            Action::StateChange(c) => Some(c.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(lines, ["Entering BACKUP STATE (init)"]);
    vrrp.handle_timeout(t0 + us(3_609_375));
    let lines: Vec<String> = drain(&mut vrrp)
        .into_iter()
        .filter_map(|a| match a {
            Action::StateChange(c) => Some(c.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(lines, ["Entering MASTER STATE"]);
}

/// An upgrade's hand-over: the new process's instance starts as BACKUP and, once the old one
/// lets go, is MASTER at once: one advert now, the VIPs (already on the interface) claimed,
/// no gratuitous ARPs (the MAC did not change), the next advert one interval later.
#[test]
fn a_handed_over_master_advertises_at_once_without_garps() {
    let t0 = Instant::now();
    let mut instance = Instance::new(config("VI_1", 51, addr(ME), 100), t0);
    assert_eq!(instance.state(), State::Backup);
    drain(&mut instance);
    let now = t0 + Duration::from_millis(300);
    instance.resume_master(now);
    assert_eq!(instance.state(), State::Master);
    let actions = drain(&mut instance);
    assert!(
        matches!(&actions[0], Action::SendAdvert { advert, .. } if advert.priority == 100),
        "{actions:?}"
    );
    assert!(actions.iter().any(|a| matches!(a,
        Action::StateChange(c) if c.to == State::Master && c.reason == Reason::HandedOver)));
    assert!(actions.iter().any(|a| matches!(a, Action::AddVips { .. })));
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::SendGratuitousArp { .. })),
        "{actions:?}"
    );
    assert_eq!(instance.poll_timeout(), Some(now + Duration::from_secs(1)));
    // Only a BACKUP takes over: a MASTER stays as it is.
    instance.resume_master(now);
    assert!(drain(&mut instance).is_empty());
}
