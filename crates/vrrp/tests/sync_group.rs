//! Sync groups (vrrp_sync.c): initial group states, and members following each other to
//! BACKUP, MASTER and FAULT.

mod common;

use std::time::Duration;

use common::{addr, config, us, Net};
use halb_vrrp::{Action, InitialState, Reason, State};

fn group_state(net: &Net, node: usize) -> State {
    net.nodes[node].group.as_ref().map(|g| g.state()).unwrap()
}

#[test]
fn a_member_down_at_start_holds_the_whole_group_in_fault() {
    let mut net = Net::new();
    let mut vi2 = config("VI_2", 52, addr(10), 100);
    vi2.interface_up = false;
    net.add_node(addr(10), vec![config("VI_1", 51, addr(10), 100), vi2]);
    net.group(0, "G1");
    assert_eq!(group_state(&net, 0), State::Fault);
    assert_eq!(net.instance(0, 0).state(), State::Fault);
    assert_eq!(net.instance(0, 1).state(), State::Fault);
    net.run_until(Duration::from_secs(10));
    assert!(net.adverts_sent(0, 0).is_empty() && net.adverts_sent(0, 1).is_empty());

    // The interface returns: both members come up together as BACKUP.
    net.with(0, 1, |vi2, now| vi2.set_interface_up(now, true));
    assert_eq!(group_state(&net, 0), State::Backup);
    assert_eq!(net.instance(0, 0).state(), State::Backup);
    assert_eq!(net.instance(0, 1).state(), State::Backup);
    let vi1_up = net
        .actions(0, 0)
        .into_iter()
        .rev()
        .find_map(|(at, a)| match a {
            Action::StateChange(c) => Some((at, c.from, c.to, c.reason)),
            _ => None,
        });
    assert_eq!(
        vi1_up,
        Some((
            Duration::from_secs(10),
            State::Fault,
            State::Backup,
            Reason::SyncGroup { group: "G1".into() }
        ))
    );
}

#[test]
fn a_group_of_address_owners_starts_as_master() {
    let mut net = Net::new();
    let owner = |name: &str, vrid| {
        let mut c = config(name, vrid, addr(10), 255);
        c.initial_state = InitialState::Master;
        c
    };
    net.add_node(addr(10), vec![owner("VI_1", 51), owner("VI_2", 52)]);
    net.group(0, "G1");
    assert_eq!(group_state(&net, 0), State::Master);
    net.run_until(Duration::from_secs(1));
    assert_eq!(
        net.transitions(0, 0),
        [(us(0), State::Initialize, State::Master)]
    );
    assert_eq!(
        net.transitions(0, 1),
        [(us(0), State::Initialize, State::Master)]
    );
}

#[test]
fn an_owner_in_a_mixed_group_waits_for_the_others() {
    // keepalived: "Sync group … has some member(s) as address owner and some not" — the
    // group starts BACKUP; the owner gets one interval plus the minimal skew, then waits for
    // the other member to want MASTER too.
    let mut net = Net::new();
    let mut owner = config("VI_1", 51, addr(10), 255);
    owner.initial_state = InitialState::Master;
    net.add_node(addr(10), vec![owner, config("VI_2", 52, addr(10), 100)]);
    net.group(0, "G1");
    assert_eq!(group_state(&net, 0), State::Backup);
    assert_eq!(net.instance(0, 0).state(), State::Backup);
    assert_eq!(
        net.instance(0, 0).poll_timeout(),
        Some(net.start + us(1_003_906))
    );
    net.run_until(Duration::from_secs(2));
    assert_eq!(
        net.instance(0, 0).state(),
        State::Backup,
        "held by the group"
    );
    net.run_until(Duration::from_secs(10));
    assert_eq!(
        net.transitions(0, 0).last(),
        Some(&(us(3_609_375), State::Backup, State::Master))
    );
    assert_eq!(
        net.transitions(0, 1).last(),
        Some(&(us(3_609_375), State::Backup, State::Master))
    );
}

#[test]
fn state_master_members_take_over_after_one_interval() {
    // Every member configured `state MASTER` (not owners): keepalived gives them one advert
    // interval and the minimal skew to hear a master, then the group goes MASTER.
    let mut net = Net::new();
    let wants_master = |name: &str, vrid| {
        let mut c = config(name, vrid, addr(10), 150);
        c.initial_state = InitialState::Master;
        c
    };
    net.add_node(
        addr(10),
        vec![wants_master("VI_1", 51), wants_master("VI_2", 52)],
    );
    net.group(0, "G1");
    net.run_until(Duration::from_secs(5));
    assert_eq!(
        net.transitions(0, 0).last(),
        Some(&(us(1_003_906), State::Backup, State::Master))
    );
    assert_eq!(
        net.transitions(0, 1).last(),
        Some(&(us(1_003_906), State::Backup, State::Master))
    );
}

#[test]
fn one_member_yielding_takes_the_group_to_backup() {
    let mut net = Net::new();
    net.add_node(
        addr(10),
        vec![
            config("VI_1", 51, addr(10), 150),
            config("VI_2", 52, addr(10), 150),
        ],
    );
    net.group(0, "G1");
    net.run_until(Duration::from_secs(10));
    assert_eq!(group_state(&net, 0), State::Master);

    // A better router appears for VI_1 only: VI_2 follows VI_1 to BACKUP although nobody
    // contests it.
    net.add_node(addr(11), vec![config("VI_1", 51, addr(11), 200)]);
    net.run_until(Duration::from_secs(20));
    let b_master = net.transitions(1, 0).last().map(|t| t.0).unwrap();
    assert_eq!(b_master, Duration::from_secs(10) + us(3_218_750));
    let yielded = b_master + common::LATENCY;
    assert_eq!(
        net.transitions(0, 0).last(),
        Some(&(yielded, State::Master, State::Backup))
    );
    assert_eq!(
        net.transitions(0, 1).last(),
        Some(&(yielded, State::Master, State::Backup))
    );
    assert_eq!(group_state(&net, 0), State::Backup);
    let vi2_reason = net
        .actions(0, 1)
        .into_iter()
        .rev()
        .find_map(|(_, a)| match a {
            Action::StateChange(c) => Some(c.reason),
            _ => None,
        });
    assert_eq!(vi2_reason, Some(Reason::SyncGroup { group: "G1".into() }));
    // VI_2 yields without a priority 0 advert (vrrp_sync_backup → leave_master(false)).
    assert_eq!(net.instance(0, 1).stats().priority_zero_sent, 0);
}
