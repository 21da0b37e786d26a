//! Instances wired together through the in-memory network, in virtual time. Every timing is
//! exact: VRRPv2 with a 1 s interval gives Master_Down_Interval = 3 s + (256 - priority)/256 s,
//! and the network takes 1 ms.
//!
//! | priority | Skew_Time   | Master_Down_Interval |
//! |----------|-------------|----------------------|
//! | 100      | 0.609375 s  | 3.609375 s           |
//! | 150      | 0.414062 s  | 3.414062 s           |
//! | 160      | 0.375 s     | 3.375 s              |
//! | 200      | 0.21875 s   | 3.21875 s            |

mod common;

use std::time::Duration;

use common::{addr, config, us, Net};
use halb_vrrp::packet::Version;
use halb_vrrp::{Action, Dropped, InitialState, Reason, State, TrackerConfig, TrackerStatus};

const A: u8 = 10;
const B: u8 = 11;
const C: u8 = 12;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Two routers, A (priority 100) and B (priority 200), both starting as BACKUP.
fn pair() -> Net {
    let mut net = Net::new();
    net.add_node(addr(A), vec![config("VI_1", 51, addr(A), 100)]);
    net.add_node(addr(B), vec![config("VI_1", 51, addr(B), 200)]);
    net
}

#[test]
fn election_at_start_higher_priority_wins() {
    let mut net = pair();
    assert_eq!(net.states(), [State::Backup, State::Backup]);
    net.run_until(secs(20));

    assert_eq!(
        net.transitions(0, 0),
        [(us(0), State::Initialize, State::Backup)]
    );
    assert_eq!(
        net.transitions(1, 0),
        [
            (us(0), State::Initialize, State::Backup),
            (us(3_218_750), State::Backup, State::Master)
        ]
    );
    // B advertises every second from the takeover on; A hears every one.
    let sent = net.adverts_sent(1, 0);
    assert_eq!(sent.len(), 17);
    assert!(sent
        .iter()
        .enumerate()
        .all(|(k, &(at, prio))| at == us(3_218_750) + secs(k as u64) && prio == 200));
    assert_eq!(net.instance(0, 0).stats().adverts_received, 17);
    assert_eq!(net.instance(0, 0).last_master(), Some((addr(B), 200)));

    // The takeover: advert first (the old master drops the VIP before our GARPs), then the
    // state, the VIP, 5 GARPs, and 5 more after garp_master_delay (5 s).
    let at = |t| {
        net.actions(1, 0)
            .into_iter()
            .filter(move |(when, _)| *when == t)
            .map(|(_, a)| a)
            .collect::<Vec<_>>()
    };
    let takeover = at(us(3_218_750));
    assert!(matches!(takeover[0], Action::SendAdvert { .. }));
    assert!(matches!(
        &takeover[1],
        Action::StateChange(c) if c.to == State::Master && c.reason == Reason::MasterDown
    ));
    assert_eq!(
        takeover[2],
        Action::AddVips {
            addresses: vec![common::VIP.into()]
        }
    );
    assert_eq!(
        takeover[3],
        Action::SendGratuitousArp {
            addresses: vec![common::VIP.into()],
            repeat: 5
        }
    );
    assert!(at(us(8_218_750)).contains(&Action::SendGratuitousArp {
        addresses: vec![common::VIP.into()],
        repeat: 5
    }));
    assert_eq!(net.instance(1, 0).stats().became_master, 1);
}

#[test]
fn preemption_when_the_higher_priority_router_returns() {
    let mut net = pair();
    net.run_until(secs(10));
    net.crash(1);
    // B's last advert left at 9.21875 s and arrived at 9.21975 s; A waits its full
    // Master_Down_Interval from there.
    net.run_until(secs(20));
    assert_eq!(
        net.transitions(0, 0).last(),
        Some(&(us(12_829_125), State::Backup, State::Master))
    );

    net.restart(1, vec![config("VI_1", 51, addr(B), 200)], None);
    net.run_until(secs(30));
    // B discards A's lower priority adverts and takes over when its own timer runs out.
    assert!(net.drops.iter().any(|d| d.node == 1
        && d.reason
            == Dropped::LowerPriority {
                from: addr(A),
                priority: 100
            }));
    assert_eq!(
        net.transitions(1, 0).last(),
        Some(&(secs(20) + us(3_218_750), State::Backup, State::Master))
    );
    assert_eq!(
        net.transitions(0, 0).last(),
        Some(&(secs(20) + us(3_219_750), State::Master, State::Backup))
    );
    assert_eq!(net.masters(), [1]);
    let yielded = net.actions(0, 0).into_iter().find_map(|(_, a)| match a {
        Action::StateChange(c) if c.from == State::Master => Some(c.reason),
        _ => None,
    });
    assert_eq!(
        yielded,
        Some(Reason::HigherPriority {
            from: addr(B),
            priority: 200
        })
    );
}

#[test]
fn nopreempt_keeps_the_lower_priority_master() {
    for preempt in [false, true] {
        let mut net = Net::new();
        net.add_node(addr(A), vec![config("VI_1", 51, addr(A), 100)]);
        net.run_until(secs(10));
        assert_eq!(net.masters(), [0]);
        let mut b = config("VI_1", 51, addr(B), 200);
        b.preempt = preempt;
        net.add_node(addr(B), vec![b]);
        net.run_until(secs(60));
        if preempt {
            // The contrast: with preemption B takes over when its start-up timer runs out.
            assert_eq!(
                net.transitions(1, 0).last(),
                Some(&(secs(10) + us(3_218_750), State::Backup, State::Master))
            );
            assert_eq!(net.masters(), [1]);
        } else {
            assert_eq!(
                net.transitions(1, 0),
                [(secs(10), State::Initialize, State::Backup)]
            );
            assert_eq!(net.masters(), [0]);
            assert_eq!(net.instance(1, 0).last_master(), Some((addr(A), 100)));
        }
    }
}

#[test]
fn preempt_delay_tolerates_a_lower_master_for_that_long() {
    let mut net = Net::new();
    net.add_node(addr(A), vec![config("VI_1", 51, addr(A), 100)]);
    net.run_until(secs(10));
    let mut b = config("VI_1", 51, addr(B), 200);
    b.preempt_delay = secs(15);
    net.add_node(addr(B), vec![b]);
    net.run_until(secs(60));
    // A advertises at 3.609375 + k s. B hears the first at 10.610375 s and starts its 15 s
    // delay; the advert of 25.610375 s is the first it discards, so its timer runs from the
    // one of 24.610375 s.
    assert_eq!(
        net.transitions(1, 0).last(),
        Some(&(us(27_829_125), State::Backup, State::Master))
    );
    assert_eq!(
        net.transitions(0, 0).last(),
        Some(&(us(27_830_125), State::Master, State::Backup))
    );
    let first_discard = net.drops.iter().find(|d| d.node == 1).map(|d| d.at);
    assert_eq!(first_discard, Some(us(25_610_375)));
}

#[test]
fn shutdown_hands_over_after_skew_time_not_three_intervals() {
    let mut net = pair();
    net.run_until(us(10_500_000));
    net.shutdown(1);
    net.run_until(secs(20));
    // Priority 0 leaves at 10.5 s, arrives at 10.501 s; A takes over Skew_Time (0.609375 s)
    // later instead of 3.609375 s.
    assert_eq!(
        net.transitions(0, 0).last(),
        Some(&(us(11_110_375), State::Backup, State::Master))
    );
    let reason = net.actions(0, 0).into_iter().find_map(|(_, a)| match a {
        Action::StateChange(c) if c.to == State::Master => Some(c.reason),
        _ => None,
    });
    assert_eq!(reason, Some(Reason::MasterReleased));
    let b_end: Vec<_> = net
        .actions(1, 0)
        .into_iter()
        .filter(|(at, _)| *at == us(10_500_000))
        .map(|(_, a)| a)
        .collect();
    assert!(matches!(&b_end[0], Action::SendAdvert { advert, .. } if advert.priority == 0));
    assert!(matches!(&b_end[1], Action::RemoveVips { .. }));
    assert!(matches!(&b_end[2], Action::StateChange(c) if c.to == State::Stopped));
    assert_eq!(net.instance(1, 0).stats().priority_zero_sent, 1);
    assert_eq!(net.instance(0, 0).stats().priority_zero_received, 1);
}

#[test]
fn partition_makes_two_masters_and_healing_leaves_one() {
    let mut net = pair();
    net.run_until(secs(10));
    net.partition(0, 1);
    net.run_until(secs(15));
    assert_eq!(
        net.transitions(0, 0).last(),
        Some(&(us(12_829_125), State::Backup, State::Master))
    );
    assert_eq!(net.masters(), [0, 1], "split brain while partitioned");
    net.run_until(secs(20));
    assert_eq!(net.masters(), [0, 1]);

    net.heal(0, 1);
    net.run_until(secs(40));
    // B's first advert after healing (sent 20.21875 s) reaches A, which yields at once.
    assert_eq!(
        net.transitions(0, 0).last(),
        Some(&(us(20_219_750), State::Master, State::Backup))
    );
    assert_eq!(net.masters(), [1]);
    assert_eq!(net.transitions(1, 0).len(), 2, "B never left MASTER");
    assert_eq!(net.instance(0, 0).stats().released_master, 1);
}

#[test]
fn equal_priorities_are_broken_by_the_higher_address() {
    let mut net = Net::new();
    net.add_node(addr(A), vec![config("VI_1", 51, addr(A), 100)]);
    net.add_node(addr(B), vec![config("VI_1", 51, addr(B), 100)]);
    net.run_until(secs(10));
    // Both time out together and become MASTER; their adverts cross, and the lower address
    // yields.
    assert_eq!(
        net.transitions(0, 0),
        [
            (us(0), State::Initialize, State::Backup),
            (us(3_609_375), State::Backup, State::Master),
            (us(3_610_375), State::Master, State::Backup),
        ]
    );
    assert_eq!(
        net.transitions(1, 0).last(),
        Some(&(us(3_609_375), State::Backup, State::Master))
    );
    assert_eq!(net.masters(), [1]);
    // B answered A's advert with one of its own, "forcing new election".
    assert_eq!(
        net.adverts_sent(1, 0)[..2],
        [(us(3_609_375), 100), (us(3_610_375), 100)]
    );
    let reason = net
        .actions(0, 0)
        .into_iter()
        .rev()
        .find_map(|(_, a)| match a {
            Action::StateChange(c) => Some(c.reason),
            _ => None,
        });
    assert_eq!(reason, Some(Reason::HigherAddress { from: addr(B) }));
}

#[test]
fn address_owner_is_master_at_once() {
    let mut net = Net::new();
    let mut owner = config("VI_1", 51, addr(A), 255);
    owner.initial_state = InitialState::Master;
    net.add_node(addr(A), vec![owner]);
    net.add_node(addr(B), vec![config("VI_1", 51, addr(B), 100)]);
    net.run_until(secs(10));
    assert_eq!(
        net.transitions(0, 0),
        [(us(0), State::Initialize, State::Master)]
    );
    assert_eq!(
        net.transitions(1, 0),
        [(us(0), State::Initialize, State::Backup)]
    );
    assert_eq!(net.adverts_sent(0, 0)[0], (us(0), 255));
}

#[test]
fn state_master_without_priority_255_starts_as_backup() {
    // keepalived 2.2 `vrrp_init_state`: only the address owner skips BACKUP.
    let mut net = Net::new();
    let mut a = config("VI_1", 51, addr(A), 150);
    a.initial_state = InitialState::Master;
    net.add_node(addr(A), vec![a]);
    net.add_node(addr(B), vec![config("VI_1", 51, addr(B), 100)]);
    assert_eq!(net.states(), [State::Backup, State::Backup]);
    net.run_until(secs(10));
    assert_eq!(
        net.transitions(0, 0).last(),
        Some(&(us(3_414_062), State::Backup, State::Master))
    );
    assert_eq!(net.masters(), [0]);
}

#[test]
fn three_routers_the_next_highest_takes_over() {
    let mut net = Net::new();
    net.add_node(addr(A), vec![config("VI_1", 51, addr(A), 100)]);
    net.add_node(addr(B), vec![config("VI_1", 51, addr(B), 150)]);
    net.add_node(addr(C), vec![config("VI_1", 51, addr(C), 200)]);
    net.run_until(secs(10));
    assert_eq!(net.masters(), [2]);
    net.crash(2);
    net.run_until(secs(30));
    // C's last advert arrived at 9.21975 s; B's shorter skew wins, and its advert reaches A
    // before A's own timer (12.829125 s) runs out.
    assert_eq!(
        net.transitions(1, 0).last(),
        Some(&(us(12_633_812), State::Backup, State::Master))
    );
    assert_eq!(
        net.transitions(0, 0),
        [(us(0), State::Initialize, State::Backup)]
    );
    assert_eq!(net.masters(), [1]);
}

#[test]
fn sync_group_members_fault_and_take_over_together() {
    let mut net = Net::new();
    let mut a2 = config("VI_2", 52, addr(A), 200);
    a2.trackers = vec![TrackerConfig {
        name: "chk_mysql".into(),
        weight: 0,
        reverse: false,
        initial: TrackerStatus::Up,
    }];
    net.add_node(addr(A), vec![config("VI_1", 51, addr(A), 200), a2]);
    net.group(0, "G1");
    net.add_node(
        addr(B),
        vec![
            config("VI_1", 51, addr(B), 100),
            config("VI_2", 52, addr(B), 100),
        ],
    );
    net.group(1, "G1");

    net.run_until(secs(10));
    for k in 0..2 {
        assert_eq!(
            net.transitions(0, k).last(),
            Some(&(us(3_218_750), State::Backup, State::Master))
        );
        assert_eq!(net.instance(1, k).state(), State::Backup);
    }

    // VI_2's tracked check fails: both of A's instances go to FAULT, each telling B with a
    // priority 0 advert, and B's two instances take over together Skew_Time later.
    net.with(0, 1, |vi2, now| {
        vi2.set_tracker_status(now, "chk_mysql", TrackerStatus::Down)
    });
    assert_eq!(net.instance(0, 0).state(), State::Fault);
    assert_eq!(net.instance(0, 1).state(), State::Fault);
    let vi1_fault = net.actions(0, 0).into_iter().find_map(|(_, a)| match a {
        Action::StateChange(c) if c.to == State::Fault => Some(c.reason),
        _ => None,
    });
    assert_eq!(vi1_fault, Some(Reason::SyncGroup { group: "G1".into() }));
    net.run_until(secs(20));
    for k in 0..2 {
        assert_eq!(
            net.transitions(1, k).last(),
            Some(&(us(10_610_375), State::Backup, State::Master))
        );
        assert_eq!(net.instance(0, k).stats().priority_zero_sent, 1);
    }

    // The check recovers: A's members return to BACKUP together and preempt B when their
    // timers run out.
    net.with(0, 1, |vi2, now| {
        vi2.set_tracker_status(now, "chk_mysql", TrackerStatus::Up)
    });
    assert_eq!(net.instance(0, 0).state(), State::Backup);
    assert_eq!(net.instance(0, 1).state(), State::Backup);
    net.run_until(secs(30));
    for k in 0..2 {
        assert_eq!(
            net.transitions(0, k).last(),
            Some(&(us(23_218_750), State::Backup, State::Master))
        );
        assert_eq!(
            net.transitions(1, k).last(),
            Some(&(us(23_219_750), State::Master, State::Backup))
        );
    }
}

#[test]
fn sync_group_holds_a_member_in_backup_until_all_want_master() {
    // B's VI_1 hears no master, but VI_2 does: the group prefers BACKUP, so VI_1 waits.
    let mut net = Net::new();
    net.add_node(addr(A), vec![config("VI_2", 52, addr(A), 200)]);
    net.add_node(
        addr(B),
        vec![
            config("VI_1", 51, addr(B), 100),
            config("VI_2", 52, addr(B), 100),
        ],
    );
    net.group(1, "G1");
    net.run_until(secs(30));
    assert_eq!(net.instance(1, 0).state(), State::Backup);
    assert_eq!(net.instance(1, 1).state(), State::Backup);
    assert_eq!(
        net.transitions(1, 0),
        [(us(0), State::Initialize, State::Backup)]
    );

    // A goes away: now both of B's instances want MASTER, and take over together.
    net.crash(0);
    net.run_until(secs(60));
    let vi2_at = net.transitions(1, 1).last().map(|t| t.0);
    assert_eq!(net.transitions(1, 0).last().map(|t| t.0), vi2_at);
    assert_eq!(net.instance(1, 0).state(), State::Master);
    assert_eq!(net.instance(1, 1).state(), State::Master);
    // A's last advert: 29.21875 s sent, 29.21975 s received; VI_2's timer runs out
    // 3.609375 s later, and VI_1 already wanted MASTER.
    assert_eq!(vi2_at, Some(us(32_829_125)));
}

#[test]
fn vrrp_v3_with_100ms_interval_fails_over_in_under_half_a_second() {
    let v3 = |name: &str, source, priority| {
        let mut c = config(name, 51, source, priority);
        c.version = Version::V3;
        c.advert_interval = Duration::from_millis(100);
        c
    };
    let mut net = Net::new();
    net.add_node(addr(A), vec![v3("VI_1", addr(A), 200)]);
    net.add_node(addr(B), vec![v3("VI_1", addr(B), 100)]);
    net.run_until(secs(1));
    // A: 300 ms + (56 × 100 ms)/256 = 321.875 ms.
    assert_eq!(
        net.transitions(0, 0).last(),
        Some(&(us(321_875), State::Backup, State::Master))
    );
    net.crash(0);
    net.run_until(secs(2));
    // A's last advert left at 921.875 ms; B waits 300 ms + 60.937 ms from its arrival.
    let (at, _, to) = *net.transitions(1, 0).last().unwrap();
    assert_eq!((at, to), (us(1_283_812), State::Master));
    assert!(
        at - secs(1) < Duration::from_millis(500),
        "failover took {:?}",
        at - secs(1)
    );
}

#[test]
fn vrrp_v3_backup_adopts_the_master_interval() {
    let mut net = Net::new();
    let mut a = config("VI_1", 51, addr(A), 200);
    a.version = Version::V3;
    a.advert_interval = Duration::from_millis(100);
    let mut b = config("VI_1", 51, addr(B), 100);
    b.version = Version::V3;
    net.add_node(addr(A), vec![a]);
    net.add_node(addr(B), vec![b]);
    net.run_until(secs(1));
    assert_eq!(
        net.instance(1, 0).master_adver_int(),
        Duration::from_millis(100)
    );
    net.crash(0);
    net.run_until(secs(3));
    // Without adoption B would wait 3.6 s; with it, 360.937 ms after A's last advert.
    assert_eq!(
        net.transitions(1, 0).last(),
        Some(&(us(1_283_812), State::Backup, State::Master))
    );
    // As master B advertises its own interval again.
    let interval = net
        .actions(1, 0)
        .into_iter()
        .rev()
        .find_map(|(_, a)| match a {
            Action::SendAdvert { advert, .. } => Some(advert.interval()),
            _ => None,
        });
    assert_eq!(interval, Some(secs(1)));
    assert_eq!(net.instance(1, 0).master_adver_int(), secs(1));
}

#[test]
fn interface_down_is_fault_and_up_is_backup_then_preemption() {
    let mut net = pair();
    net.run_until(secs(10));
    net.set_link(1, false);
    assert_eq!(net.state(1), State::Fault);
    let fault = net.actions(1, 0).into_iter().find_map(|(at, a)| match a {
        Action::StateChange(c) if c.to == State::Fault => Some((at, c.reason)),
        _ => None,
    });
    assert_eq!(fault, Some((secs(10), Reason::InterfaceDown)));
    assert!(net
        .actions(1, 0)
        .iter()
        .any(|(at, a)| *at == secs(10) && matches!(a, Action::RemoveVips { .. })));

    net.run_until(secs(20));
    // Nothing went out on the dead link, so A waits its full Master_Down_Interval.
    assert_eq!(
        net.transitions(0, 0).last(),
        Some(&(us(12_829_125), State::Backup, State::Master))
    );
    assert_eq!(
        net.instance(1, 0).poll_timeout(),
        None,
        "FAULT runs no timer"
    );

    net.set_link(1, true);
    assert_eq!(
        net.transitions(1, 0).last(),
        Some(&(secs(20), State::Fault, State::Backup))
    );
    net.run_until(secs(30));
    assert_eq!(
        net.transitions(1, 0).last(),
        Some(&(secs(20) + us(3_218_750), State::Backup, State::Master))
    );
    assert_eq!(
        net.transitions(0, 0).last(),
        Some(&(secs(20) + us(3_219_750), State::Master, State::Backup))
    );
}

#[test]
fn weighted_tracker_failure_lowers_priority_and_loses_mastership() {
    let mut net = Net::new();
    let mut a = config("VI_1", 51, addr(A), 100);
    a.trackers = vec![TrackerConfig {
        name: "chk_lvs".into(),
        weight: 60,
        reverse: false,
        initial: TrackerStatus::Up,
    }];
    net.add_node(addr(A), vec![a]);
    net.add_node(addr(B), vec![config("VI_1", 51, addr(B), 150)]);
    assert_eq!(net.instance(0, 0).effective_priority(), 160);
    net.run_until(us(10_500_000));
    assert_eq!(
        net.transitions(0, 0).last(),
        Some(&(us(3_375_000), State::Backup, State::Master))
    );

    net.with(0, 0, |a, now| {
        a.set_tracker_status(now, "chk_lvs", TrackerStatus::Down)
    });
    assert_eq!(net.instance(0, 0).effective_priority(), 100);
    assert!(net.actions(0, 0).contains(&(
        us(10_500_000),
        Action::PriorityChange { from: 160, to: 100 }
    )));
    net.run_until(secs(20));
    // B accepted A's advert of 10.375 s (priority 160), then discards those at 100.
    assert_eq!(
        net.transitions(1, 0).last(),
        Some(&(us(13_790_062), State::Backup, State::Master))
    );
    assert_eq!(
        net.transitions(0, 0).last(),
        Some(&(us(13_791_062), State::Master, State::Backup))
    );
}

#[test]
fn unicast_adverts_go_to_peers_only() {
    let mut net = Net::new();
    let mut a = config("VI_1", 51, addr(A), 200);
    a.unicast_peers = vec![addr(B)];
    let mut b = config("VI_1", 51, addr(B), 100);
    b.unicast_peers = vec![addr(A)];
    net.add_node(addr(A), vec![a]);
    net.add_node(addr(B), vec![b]);
    // C speaks multicast on the same VRID: it hears nobody, and unicast instances drop it.
    net.add_node(addr(C), vec![config("VI_1", 51, addr(C), 50)]);
    net.run_until(secs(10));
    assert_eq!(net.masters(), [0, 2]);
    assert!(net.actions(0, 0).iter().all(|(_, a)| match a {
        Action::SendAdvert { dst, .. } => *dst == addr(B),
        _ => true,
    }));
    assert_eq!(net.state(1), State::Backup);
    assert!(net
        .drops
        .iter()
        .any(|d| d.node == 1 && d.reason == Dropped::UnexpectedDestination { multicast: true }));
    assert!(net.instance(1, 0).stats().address_list_errors > 0);
}

#[test]
fn wrong_password_is_dropped_and_counted() {
    let mut net = Net::new();
    let mut a = config("VI_1", 51, addr(A), 200);
    a.auth = halb_vrrp::packet::Auth::pass("lvs50tes");
    let mut b = config("VI_1", 51, addr(B), 100);
    b.auth = halb_vrrp::packet::Auth::pass("wrong");
    net.add_node(addr(A), vec![a]);
    net.add_node(addr(B), vec![b]);
    net.run_until(secs(10));
    // Neither hears the other: both MASTER, as with keepalived.
    assert_eq!(net.masters(), [0, 1]);
    assert!(net.instance(1, 0).stats().auth_failures > 0);
    assert_eq!(net.instance(1, 0).stats().adverts_received, 0);
    assert!(net
        .drops
        .iter()
        .any(|d| d.node == 1 && d.reason == Dropped::AuthFailure));
    assert_eq!(
        Dropped::AuthFailure.to_string(),
        "received an invalid passwd!"
    );
}

#[test]
fn v2_interval_mismatch_is_dropped_and_counted() {
    let mut net = Net::new();
    net.add_node(addr(A), vec![config("VI_1", 51, addr(A), 200)]);
    let mut b = config("VI_1", 51, addr(B), 100);
    b.advert_interval = secs(2);
    net.add_node(addr(B), vec![b]);
    net.run_until(secs(10));
    assert_eq!(net.masters(), [0, 1]);
    let drop = net
        .drops
        .iter()
        .find(|d| d.node == 1)
        .map(|d| d.reason.clone());
    assert_eq!(
        drop,
        Some(Dropped::IntervalMismatch {
            got: secs(1),
            ours: secs(2)
        })
    );
    assert_eq!(
        drop.map(|d| d.to_string()).as_deref(),
        Some("advertisement interval mismatch mine=2 sec rcv'd=1 sec")
    );
    assert!(net.instance(1, 0).stats().advert_interval_errors > 0);
}
