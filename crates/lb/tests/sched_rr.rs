//! rr and wrr: the kernel's exact order, positions kept across changes, weights honoured.

mod sched_support;

use halb_lb::sched::{self, DestLoad, RoundRobin, Schedule, WeightedRoundRobin};
use halb_lb::table::{SchedFlags, Scheduler};
use proptest::prelude::*;
use sched_support::*;

fn run(s: &mut dyn Schedule, dests: &[DestLoad], n: usize) -> Vec<Option<usize>> {
    let flow = flow_from(client(1));
    (0..n).map(|_| pick(s, t0(), &flow, dests)).collect()
}

fn names(picks: &[Option<usize>]) -> String {
    picks
        .iter()
        .map(|p| p.map_or('-', |i| (b'A' + i as u8) as char))
        .collect()
}

#[test]
fn rr_cycles_in_list_order() {
    let d = dests(&[1, 1, 1]);
    let mut s = RoundRobin::new();
    s.update(&d);
    assert_eq!(names(&run(&mut s, &d, 7)), "ABCABCA");
}

#[test]
fn rr_skips_quiescent_and_overloaded() {
    let mut d = dests(&[1, 0, 5, 1]);
    d[3].overloaded = true;
    let mut s = sched::new(Scheduler::Rr, SchedFlags::default());
    s.update(&d);
    // Weights other than 0 do not matter to rr.
    assert_eq!(names(&run(s.as_mut(), &d, 5)), "ACACA");
}

#[test]
fn rr_keeps_its_position_across_additions() {
    let d = dests(&[1, 1, 1]);
    let mut s = RoundRobin::new();
    s.update(&d);
    assert_eq!(names(&run(&mut s, &d, 2)), "AB");
    // A destination added at the front (where IPVS itself adds them) and one at the end:
    // the rotation goes on after B.
    let mut grown = vec![dest(9, 1)];
    grown.extend(d.iter().copied());
    grown.push(dest(3, 1));
    s.update(&grown);
    let picks = run(&mut s, &grown, 5);
    let order: Vec<_> = picks.iter().map(|p| grown[p.unwrap()].addr).collect();
    assert_eq!(order, [addr(2), addr(3), addr(9), addr(0), addr(1)]);
}

#[test]
fn rr_removing_the_last_picked_goes_on_with_its_successor() {
    let d = dests(&[1, 1, 1, 1]);
    let mut s = RoundRobin::new();
    s.update(&d);
    assert_eq!(names(&run(&mut s, &d, 2)), "AB");
    // B (the cursor) leaves: IPVS steps its cursor back to A, so C is next.
    let shrunk = vec![d[0], d[2], d[3]];
    s.update(&shrunk);
    let next = pick(&mut s, t0(), &flow_from(client(1)), &shrunk).unwrap();
    assert_eq!(shrunk[next].addr, addr(2));
    // The first destination as cursor: back to the head, so the new first is next.
    let mut s = RoundRobin::new();
    s.update(&d);
    run(&mut s, &d, 1);
    let rest = vec![d[1], d[2], d[3]];
    s.update(&rest);
    let next = pick(&mut s, t0(), &flow_from(client(1)), &rest).unwrap();
    assert_eq!(rest[next].addr, addr(1));
}

#[test]
fn wrr_sequence_for_3_2_1_is_the_kernels() {
    let d = dests(&[3, 2, 1]);
    let mut s = WeightedRoundRobin::new();
    s.update(&d);
    assert_eq!(names(&run(&mut s, &d, 12)), "AABABCAABABC");
}

#[test]
fn wrr_sequence_steps_by_the_gcd() {
    // gcd 2, max 4: the bar goes 3, 1 (mw = 4 - (2 - 1)).
    let d = dests(&[4, 2]);
    let mut s = WeightedRoundRobin::new();
    s.update(&d);
    assert_eq!(names(&run(&mut s, &d, 6)), "AABAAB");
    let d = dests(&[4, 3, 2]);
    let mut s = WeightedRoundRobin::new();
    s.update(&d);
    assert_eq!(names(&run(&mut s, &d, 9)), "AABABCABC");
}

#[test]
fn wrr_skips_overloaded_and_reports_none_when_all_are() {
    let mut d = dests(&[3, 2, 1]);
    d[0].overloaded = true;
    let mut s = WeightedRoundRobin::new();
    s.update(&d);
    assert_eq!(names(&run(&mut s, &d, 6)), "BBCBBC");
    for x in d.iter_mut() {
        x.overloaded = true;
    }
    assert_eq!(names(&run(&mut s, &d, 3)), "---");
    // And recovers once one is back.
    d[2].overloaded = false;
    assert_eq!(names(&run(&mut s, &d, 2)), "CC");
}

#[test]
fn wrr_all_quiescent_or_empty_is_none() {
    let mut s = WeightedRoundRobin::new();
    s.update(&[]);
    assert_eq!(names(&run(&mut s, &[], 2)), "--");
    let d = dests(&[0, 0]);
    s.update(&d);
    assert_eq!(names(&run(&mut s, &d, 2)), "--");
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// Over whole cycles, wrr gives each destination exactly weight / gcd picks per cycle.
    #[test]
    fn wrr_shares_are_exactly_proportional(
        weights in prop::collection::vec(0u32..=12, 1..8),
        cycles in 1usize..4,
    ) {
        let d = dests(&weights);
        let g = weights.iter().copied().filter(|&w| w > 0).fold(0, gcd);
        prop_assume!(g > 0);
        let per_cycle: usize = weights.iter().map(|&w| (w / g) as usize).sum();
        let mut s = WeightedRoundRobin::new();
        s.update(&d);
        let mut counts = vec![0usize; d.len()];
        for p in run(&mut s, &d, per_cycle * cycles) {
            counts[p.expect("some weight is positive")] += 1;
        }
        for (i, &w) in weights.iter().enumerate() {
            prop_assert_eq!(counts[i], (w / g) as usize * cycles, "weights {:?}", weights);
        }
    }

    /// rr visits every available destination once per round, whatever the others.
    #[test]
    fn rr_rounds_cover_the_available_once(
        spec in prop::collection::vec((0u32..3, any::<bool>()), 1..8),
    ) {
        let mut d: Vec<DestLoad> = spec.iter().enumerate().map(|(i, &(w, _))| dest(i, w)).collect();
        for (x, &(_, over)) in d.iter_mut().zip(&spec) {
            x.overloaded = over;
        }
        let available: Vec<usize> = (0..d.len()).filter(|&i| d[i].available()).collect();
        let mut s = RoundRobin::new();
        s.update(&d);
        let picks = run(&mut s, &d, available.len() * 2);
        if available.is_empty() {
            prop_assert!(picks.iter().all(Option::is_none));
        } else {
            let got: Vec<usize> = picks.iter().map(|p| p.unwrap()).collect();
            let want: Vec<usize> = available.iter().chain(&available).copied().collect();
            prop_assert_eq!(got, want);
        }
    }
}
