//! What holds for every scheduler built by `sched::new`: no destination from an empty or
//! fully unavailable service, and never a quiescent or overloaded one.

mod sched_support;

use std::time::Duration;

use halb_lb::sched::{self, DestLoad};
use halb_lb::table::{SchedFlags, Scheduler};
use proptest::prelude::*;
use sched_support::*;

fn all_flags() -> [SchedFlags; 2] {
    [
        SchedFlags::default(),
        SchedFlags {
            ops: false,
            flag_1: true,
            flag_2: true,
            flag_3: false,
        },
    ]
}

#[test]
fn empty_service_has_no_destination() {
    for kind in Scheduler::ALL {
        for flags in all_flags() {
            let mut s = sched::new(kind, flags);
            let mut rng = Rng(1);
            assert_eq!(
                pick_seeded(s.as_mut(), t0(), &flow_from(client(1)), &[], &mut rng),
                None,
                "{kind:?} before update"
            );
            s.update(&[]);
            assert_eq!(
                pick_seeded(s.as_mut(), t0(), &flow_from(client(1)), &[], &mut rng),
                None,
                "{kind:?}"
            );
        }
    }
}

#[test]
fn fully_unavailable_service_has_no_destination() {
    let mut d = dests(&[0, 3, 0, 2]);
    d[1].overloaded = true;
    d[3].overloaded = true;
    for kind in Scheduler::ALL {
        for flags in all_flags() {
            let mut s = sched::new(kind, flags);
            s.update(&d);
            let mut rng = Rng(2);
            for c in 0..200 {
                let got = pick_seeded(s.as_mut(), t0(), &flow_from(client(c)), &d, &mut rng);
                assert_eq!(got, None, "{kind:?} {flags:?}");
            }
        }
    }
}

#[test]
fn every_kind_schedules_an_ordinary_service() {
    let d = dests(&[1, 2, 3]);
    for kind in Scheduler::ALL {
        let mut s = sched::new(kind, SchedFlags::default());
        s.update(&d);
        let mut rng = Rng(3);
        for c in 0..50 {
            let got = pick_seeded(s.as_mut(), t0(), &flow_from(client(c)), &d, &mut rng);
            assert!(got.is_some_and(|i| i < d.len()), "{kind:?}");
        }
    }
}

fn spec() -> impl Strategy<Value = Vec<(u32, u32, u32, bool)>> {
    prop::collection::vec(
        (0u32..4, 0u32..6, 0u32..300, prop::bool::weighted(0.25)),
        1..7,
    )
}

proptest! {
    #![proptest_config(config(96))]

    /// Through a run of picks with loads and flags changing between them, no scheduler
    /// returns a destination of weight 0, and none but lblc an overloaded one (lblc's cache
    /// keeps an overloaded server, as in the kernel: see sched_locality).
    #[test]
    fn quiescent_and_overloaded_destinations_are_never_picked(
        steps in prop::collection::vec(spec(), 1..6),
        seed in any::<u64>(),
    ) {
        for kind in Scheduler::ALL {
            for flags in all_flags() {
                let mut s = sched::new(kind, flags);
                let mut rng = Rng(seed);
                for (n, step) in steps.iter().enumerate() {
                    let d: Vec<DestLoad> = step
                        .iter()
                        .enumerate()
                        .map(|(i, &(weight, active, inactive, overloaded))| DestLoad {
                            addr: addr(i),
                            weight,
                            active,
                            inactive,
                            overloaded,
                        })
                        .collect();
                    s.update(&d);
                    let now = t0() + Duration::from_secs(n as u64 * 90);
                    for c in 0..40 {
                        let f = flow_from(client(c));
                        if let Some(i) = pick_seeded(s.as_mut(), now, &f, &d, &mut rng) {
                            prop_assert!(i < d.len());
                            prop_assert!(d[i].weight > 0, "{:?} picked a quiescent {:?}", kind, d[i]);
                            if kind != Scheduler::Lblc {
                                prop_assert!(!d[i].overloaded, "{:?} picked an overloaded {:?}", kind, d[i]);
                            }
                        }
                    }
                }
            }
        }
    }
}
