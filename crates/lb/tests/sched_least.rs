//! The load-based schedulers (lc, wlc, sed, nq, fo, ovf, twos) against straightforward
//! reference computations of the kernel's formulas.

mod sched_support;

use std::cmp::Ordering;

use halb_lb::sched::{self, DestLoad, Schedule, TwosChoice};
use halb_lb::table::{SchedFlags, Scheduler};
use proptest::prelude::*;
use sched_support::*;

/// `a.0 / a.1` against `b.0 / b.1`, for positive denominators.
fn cmp_ratio(a: (u64, u64), b: (u64, u64)) -> Ordering {
    (u128::from(a.0) * u128::from(b.1)).cmp(&(u128::from(b.0) * u128::from(a.1)))
}

/// The first available destination with the least `cost / weight`.
fn least_ratio(dests: &[DestLoad], cost: impl Fn(&DestLoad) -> u64) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, d) in dests.iter().enumerate() {
        if d.weight == 0 || d.overloaded {
            continue;
        }
        let this = (cost(d), u64::from(d.weight));
        if best.is_none_or(|b| {
            cmp_ratio(this, (cost(&dests[b]), u64::from(dests[b].weight))) == Ordering::Less
        }) {
            best = Some(i);
        }
    }
    best
}

fn overhead(d: &DestLoad) -> u64 {
    u64::from(d.active) * 256 + u64::from(d.inactive)
}

fn reference(kind: Scheduler, dests: &[DestLoad]) -> Option<usize> {
    let ok = |d: &DestLoad| d.weight > 0 && !d.overloaded;
    match kind {
        Scheduler::Lc => dests
            .iter()
            .enumerate()
            .filter(|(_, d)| ok(d))
            .min_by_key(|(i, d)| (overhead(d), *i))
            .map(|(i, _)| i),
        Scheduler::Wlc => least_ratio(dests, overhead),
        Scheduler::Sed => least_ratio(dests, |d| u64::from(d.active) + 1),
        Scheduler::Nq => dests
            .iter()
            .position(|d| ok(d) && d.active == 0)
            .or_else(|| least_ratio(dests, |d| u64::from(d.active) + 1)),
        Scheduler::Fo => dests
            .iter()
            .enumerate()
            .filter(|(_, d)| ok(d))
            .min_by_key(|(i, d)| (std::cmp::Reverse(d.weight), *i))
            .map(|(i, _)| i),
        Scheduler::Ovf => dests
            .iter()
            .enumerate()
            .filter(|(_, d)| ok(d) && d.active <= d.weight)
            .min_by_key(|(i, d)| (std::cmp::Reverse(d.weight), *i))
            .map(|(i, _)| i),
        other => unreachable!("no reference for {other:?}"),
    }
}

fn load() -> impl Strategy<Value = (u32, u32, u32, bool)> {
    (
        prop_oneof![Just(0u32), 1u32..6, 1u32..1000],
        0u32..8,
        prop_oneof![0u32..4, 0u32..2000],
        prop::bool::weighted(0.2),
    )
}

fn loads() -> impl Strategy<Value = Vec<DestLoad>> {
    prop::collection::vec(load(), 0..9).prop_map(|spec| {
        spec.iter()
            .enumerate()
            .map(|(i, &(weight, active, inactive, overloaded))| DestLoad {
                addr: addr(i),
                weight,
                active,
                inactive,
                overloaded,
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn load_schedulers_pick_what_the_formulas_say(dests in loads()) {
        for kind in [Scheduler::Lc, Scheduler::Wlc, Scheduler::Sed, Scheduler::Nq, Scheduler::Fo, Scheduler::Ovf] {
            let mut s = sched::new(kind, SchedFlags::default());
            s.update(&dests);
            let got = pick(s.as_mut(), t0(), &flow_from(client(7)), &dests);
            prop_assert_eq!(got, reference(kind, &dests), "{:?} on {:?}", kind, dests);
        }
    }

    /// twos only picks available destinations, and of its two draws the less loaded.
    #[test]
    fn twos_picks_an_available_destination(dests in loads(), seed in any::<u64>()) {
        let mut s = TwosChoice;
        let mut rng = Rng(seed);
        for _ in 0..20 {
            let got = pick_seeded(&mut s, t0(), &flow_from(client(3)), &dests, &mut rng);
            match got {
                Some(i) => prop_assert!(dests[i].available()),
                None => prop_assert!(!dests.iter().any(DestLoad::available)),
            }
        }
    }
}

#[test]
fn lc_ignores_weights_but_wlc_does_not() {
    let mut d = dests(&[1, 10]);
    d[0].active = 1;
    d[1].active = 2;
    let mut lc = sched::new(Scheduler::Lc, SchedFlags::default());
    let mut wlc = sched::new(Scheduler::Wlc, SchedFlags::default());
    let f = flow_from(client(1));
    assert_eq!(pick(lc.as_mut(), t0(), &f, &d), Some(0));
    assert_eq!(pick(wlc.as_mut(), t0(), &f, &d), Some(1));
    // One active connection weighs as 256 inactive ones.
    let mut d = dests(&[1, 1]);
    d[0].active = 1;
    d[1].inactive = 256;
    assert_eq!(pick(lc.as_mut(), t0(), &f, &d), Some(0));
    d[1].inactive = 255;
    assert_eq!(pick(lc.as_mut(), t0(), &f, &d), Some(1));
}

#[test]
fn nq_takes_an_idle_server_before_a_fast_one() {
    let mut d = dests(&[100, 1]);
    d[0].active = 1;
    let f = flow_from(client(1));
    let mut nq = sched::new(Scheduler::Nq, SchedFlags::default());
    let mut sed = sched::new(Scheduler::Sed, SchedFlags::default());
    assert_eq!(pick(nq.as_mut(), t0(), &f, &d), Some(1));
    // sed: (1+1)/100 < (0+1)/1.
    assert_eq!(pick(sed.as_mut(), t0(), &f, &d), Some(0));
}

#[test]
fn ovf_overflows_once_active_exceeds_weight() {
    let mut d = dests(&[3, 2, 1]);
    let f = flow_from(client(1));
    let mut ovf = sched::new(Scheduler::Ovf, SchedFlags::default());
    d[0].active = 3;
    assert_eq!(pick(ovf.as_mut(), t0(), &f, &d), Some(0));
    d[0].active = 4;
    assert_eq!(pick(ovf.as_mut(), t0(), &f, &d), Some(1));
    d[1].active = 3;
    assert_eq!(pick(ovf.as_mut(), t0(), &f, &d), Some(2));
    d[2].active = 2;
    assert_eq!(pick(ovf.as_mut(), t0(), &f, &d), None);
}

#[test]
fn fo_fails_over_by_weight() {
    let mut d = dests(&[5, 10, 10, 1]);
    let f = flow_from(client(1));
    let mut fo = sched::new(Scheduler::Fo, SchedFlags::default());
    assert_eq!(pick(fo.as_mut(), t0(), &f, &d), Some(1));
    d[1].overloaded = true;
    assert_eq!(pick(fo.as_mut(), t0(), &f, &d), Some(2));
    d[2].weight = 0;
    assert_eq!(pick(fo.as_mut(), t0(), &f, &d), Some(0));
}

#[test]
fn twos_compares_its_two_draws() {
    // Total weight 3, draws in [0, 3]: 0 lands on A, 3 on C.
    let mut d = dests(&[1, 1, 1]);
    let f = flow_from(client(1));
    let mut draws = [0u32, 3].into_iter().cycle();
    let mut random = move || draws.next().unwrap_or(0);
    d[0].active = 2;
    d[2].active = 1;
    assert_eq!(TwosChoice.pick(t0(), &f, &d, &mut random), Some(2));
    d[2].active = 2;
    // A tie keeps the first draw.
    assert_eq!(TwosChoice.pick(t0(), &f, &d, &mut random), Some(0));
    // Normalised by weight: C at weight 3 with 4 active beats A at weight 1 with 2.
    let mut d = dests(&[1, 1, 3]);
    d[0].active = 2;
    d[2].active = 4;
    let mut draws = [0u32, 5].into_iter().cycle();
    let mut random = move || draws.next().unwrap_or(0);
    assert_eq!(TwosChoice.pick(t0(), &f, &d, &mut random), Some(2));
}

#[test]
fn twos_spreads_idle_load_by_weight_reproducibly() {
    let d = dests(&[1, 2, 5]);
    let f = flow_from(client(1));
    let run = |seed| {
        let mut rng = Rng(seed);
        let mut counts = [0usize; 3];
        for _ in 0..40_000 {
            counts[pick_seeded(&mut TwosChoice, t0(), &f, &d, &mut rng).unwrap()] += 1;
        }
        counts
    };
    let counts = run(42);
    assert_eq!(counts, run(42), "same seed, same picks");
    // Idle destinations tie, so the first draw wins: shares follow the weights (the first
    // destination also gets the draw of 0: 2/9 rather than 1/8).
    let expect = [2.0 / 9.0, 2.0 / 9.0, 5.0 / 9.0];
    for (c, e) in counts.iter().zip(expect) {
        let share = *c as f64 / 40_000.0;
        assert!((share - e).abs() < 0.02, "{counts:?}");
    }
}
