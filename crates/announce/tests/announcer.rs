//! The announcement core with virtual time: what is announced and withdrawn, and why, for quorum,
//! VRRP state, drain and stop.

use std::time::{Duration, Instant};

use halb_announce::{AnnounceEvent, Announcer, DrainEnd, WithdrawReason, DRAIN_QUIET};
use halb_config::{load_str, LoadOptions};

const CONF: &str = r#"
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    priority 100
    virtual_ipaddress {
        192.168.66.251
    }
}
virtual_server 192.168.66.251 80 {
    lb_algo mh
    lb_kind DR
    protocol TCP
    real_server 192.168.66.253 80 {
    }
}
virtual_server 192.168.66.251 443 {
    lb_algo mh
    lb_kind DR
    protocol TCP
    real_server 192.168.66.253 443 {
    }
}
virtual_server 192.168.66.252 80 {
    lb_algo mh
    lb_kind DR
    protocol TCP
    real_server 192.168.66.253 80 {
    }
}
bgp_announce {
    local_as 65001
    drain_timeout 10
    neighbor 10.0.0.1 {
        remote_as 65000
    }
    announce 192.168.66.251
    announce 192.168.66.252 {
        track_instance VI_1
    }
}
"#;

const A: &str = "192.168.66.251/32";
const B: &str = "192.168.66.252/32";

fn core(t0: Instant) -> Announcer {
    let l = load_str(
        "test.conf",
        CONF,
        &LoadOptions {
            config_id: "x".into(),
            interfaces: None,
            max_lines: 10_000,
            script_search_path: None,
        },
    );
    let cfg = l.config.bgp.as_ref().expect("bgp_announce");
    Announcer::new(cfg, &l.config.lvs, &|i| format!("vs{i}"), t0)
}

fn events(c: &mut Announcer) -> Vec<AnnounceEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn announced(p: &str) -> AnnounceEvent {
    AnnounceEvent::Announced { prefix: p.into() }
}

fn withdrawn(p: &str, reason: WithdrawReason) -> AnnounceEvent {
    AnnounceEvent::Withdrawn {
        prefix: p.into(),
        reason,
    }
}

#[test]
fn nothing_is_announced_before_every_virtual_server_has_a_verdict() {
    let t0 = Instant::now();
    let mut c = core(t0);
    assert!(events(&mut c).is_empty());
    let s = c.status();
    assert!(!s[0].announced);
    assert_eq!(
        s[0].reason,
        Some(WithdrawReason::Waiting {
            virtual_server: "vs0".into()
        })
    );
    c.set_quorum(t0, 0, true);
    assert_eq!(
        events(&mut c),
        [withdrawn(
            A,
            WithdrawReason::Waiting {
                virtual_server: "vs1".into()
            }
        )],
        "port 443 of the same VIP has no verdict yet"
    );
    c.set_quorum(t0, 1, true);
    assert_eq!(events(&mut c), [announced(A)]);
}

#[test]
fn one_virtual_server_of_the_vip_losing_quorum_withdraws_the_route() {
    let t0 = Instant::now();
    let mut c = core(t0);
    c.set_quorum(t0, 0, true);
    c.set_quorum(t0, 1, true);
    events(&mut c);
    let t1 = t0 + Duration::from_secs(5);
    c.set_quorum(t1, 1, false);
    assert_eq!(
        events(&mut c),
        [withdrawn(
            A,
            WithdrawReason::QuorumLost {
                virtual_server: "vs1".into()
            }
        )]
    );
    assert_eq!(c.status()[0].since, t1);
    c.set_quorum(t1, 1, true);
    assert_eq!(events(&mut c), [announced(A)]);
    // A verdict repeated changes nothing.
    c.set_quorum(t1, 1, true);
    assert!(events(&mut c).is_empty());
}

#[test]
fn a_tracked_instance_must_be_master() {
    let t0 = Instant::now();
    let mut c = core(t0);
    c.set_quorum(t0, 2, true);
    assert_eq!(
        events(&mut c),
        [withdrawn(
            B,
            WithdrawReason::NotMaster {
                instance: "VI_1".into()
            }
        )]
    );
    c.set_instance(t0, "VI_1", true);
    assert_eq!(events(&mut c), [announced(B)]);
    c.set_instance(t0, "VI_1", false);
    assert_eq!(
        events(&mut c),
        [withdrawn(
            B,
            WithdrawReason::NotMaster {
                instance: "VI_1".into()
            }
        )]
    );
    // An instance no route tracks is no input.
    c.set_instance(t0, "VI_9", true);
    assert!(events(&mut c).is_empty());
}

fn all_up(c: &mut Announcer, t: Instant) {
    for i in 0..3 {
        c.set_quorum(t, i, true);
    }
    c.set_instance(t, "VI_1", true);
    events(c);
}

#[test]
fn drain_withdraws_first_then_ends_when_connections_end() {
    let t0 = Instant::now();
    let mut c = core(t0);
    all_up(&mut c, t0);
    c.drain(t0);
    assert_eq!(
        events(&mut c),
        [
            withdrawn(A, WithdrawReason::Drain),
            withdrawn(B, WithdrawReason::Drain)
        ]
    );
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    // Health coming back does not undo a drain.
    c.set_quorum(t0, 0, true);
    assert!(events(&mut c).is_empty());
    c.set_connections(t0, A, 3);
    c.set_connections(t0, B, 0);
    assert!(events(&mut c).is_empty(), "3 connections still open");
    c.set_connections(t0 + Duration::from_secs(2), A, 0);
    assert_eq!(
        events(&mut c),
        [AnnounceEvent::DrainFinished {
            end: DrainEnd::Idle
        }]
    );
    assert_eq!(c.poll_timeout(), None);
    assert!(c.draining(), "drained routes stay withdrawn");
    c.resume(t0);
    assert_eq!(events(&mut c), [announced(A), announced(B)]);
}

#[test]
fn drain_times_out_with_the_connections_left() {
    let t0 = Instant::now();
    let mut c = core(t0);
    all_up(&mut c, t0);
    c.drain(t0);
    events(&mut c);
    c.set_connections(t0, A, 7);
    c.handle_timeout(t0 + Duration::from_secs(9));
    assert!(events(&mut c).is_empty());
    c.handle_timeout(t0 + Duration::from_secs(10));
    assert_eq!(
        events(&mut c),
        [AnnounceEvent::DrainFinished {
            end: DrainEnd::TimedOut { connections: 7 }
        }]
    );
}

/// On IPVS the flows ECMP moved to other directors leave ESTABLISHED entries behind for
/// 15 minutes: once the route is withdrawn and no packet arrives for DRAIN_QUIET, the drain
/// ends with those entries counted as carried elsewhere.
#[test]
fn drain_ends_when_no_packet_arrives_any_more() {
    let t0 = Instant::now();
    let mut c = core(t0);
    all_up(&mut c, t0);
    c.drain(t0);
    events(&mut c);
    let tick = |c: &mut Announcer, at: Duration, a_packets: u64| {
        c.set_connections(t0 + at, A, 5);
        c.set_connections(t0 + at, B, 0);
        c.set_packets_in(t0 + at, A, a_packets);
        c.set_packets_in(t0 + at, B, 0);
    };
    // Packets still arrive while the router converges.
    tick(&mut c, Duration::ZERO, 100);
    tick(&mut c, Duration::from_millis(500), 130);
    tick(&mut c, Duration::from_millis(1500), 130);
    assert!(events(&mut c).is_empty(), "quiet for 1 s only");
    assert_eq!(
        c.poll_timeout(),
        Some(t0 + Duration::from_millis(500) + DRAIN_QUIET)
    );
    tick(&mut c, Duration::from_millis(2600), 130);
    assert_eq!(
        events(&mut c),
        [AnnounceEvent::DrainFinished {
            end: DrainEnd::Quiet { connections: 5 }
        }]
    );
}

/// A packet counter that keeps moving holds the drain until its timeout.
#[test]
fn packets_still_arriving_hold_the_drain() {
    let t0 = Instant::now();
    let mut c = core(t0);
    all_up(&mut c, t0);
    c.drain(t0);
    events(&mut c);
    for s in 0..=10u64 {
        let at = t0 + Duration::from_secs(s);
        c.set_connections(at, A, 2);
        c.set_connections(at, B, 0);
        c.set_packets_in(at, A, 10 * s);
        c.set_packets_in(at, B, 0);
        if s < 10 {
            assert!(events(&mut c).is_empty(), "at {s} s");
        }
    }
    assert_eq!(
        events(&mut c),
        [AnnounceEvent::DrainFinished {
            end: DrainEnd::TimedOut { connections: 2 }
        }]
    );
}

#[test]
fn shutdown_withdraws_everything_for_good() {
    let t0 = Instant::now();
    let mut c = core(t0);
    all_up(&mut c, t0);
    c.shutdown(t0);
    assert_eq!(
        events(&mut c),
        [
            withdrawn(A, WithdrawReason::Shutdown),
            withdrawn(B, WithdrawReason::Shutdown)
        ]
    );
    c.resume(t0);
    c.set_quorum(t0, 0, true);
    assert!(events(&mut c).is_empty());
}

#[test]
fn log_lines_say_what_and_why() {
    assert_eq!(
        withdrawn(
            A,
            WithdrawReason::QuorumLost {
                virtual_server: "[192.168.66.251]:tcp:80".into()
            }
        )
        .to_string(),
        "Withdrawing route 192.168.66.251/32 from BGP: VS [192.168.66.251]:tcp:80 has no quorum"
    );
    assert_eq!(
        announced(A).to_string(),
        "Announcing route 192.168.66.251/32 by BGP"
    );
}
