//! What a tracked file's value does to those tracking it (track_file.c
//! `update_track_file_status()` and its VRRP and checker halves, vrrp_track.c
//! `initialise_vrrp_file_tracking_priorities()`, check_file.c `set_track_file_*()`).
//!
//! A weighted tracker adds `value × weight` (negated with `reverse`); past the bottom of the
//! range it means FAULT. With weight 0 the value is a verdict: non-zero is FAULT (`reverse`:
//! zero is).

use halb_lb::virtual_server::FileStatus;

/// How one instance or real server tracks a file: the line's `weight` and `reverse`, else the
/// `track_file`'s own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracking {
    pub weight: i32,
    pub reverse: bool,
}

impl Tracking {
    /// `value × weight × (reverse ? -1 : 1)`; an unweighted tracking is not asked.
    fn product(self, value: i64) -> i64 {
        let sign = if self.reverse { -1 } else { 1 };
        value
            .saturating_mul(i64::from(self.weight))
            .saturating_mul(sign)
    }

    /// An unweighted tracking's verdict: FAULT for a non-zero value, or a zero one reversed.
    fn unweighted_fault(self, value: i64) -> bool {
        (value != 0) != self.reverse
    }
}

/// What a VRRP instance's priority gets from a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VrrpEffect {
    /// The instance goes to FAULT (keepalived's status -254).
    Fault,
    /// Added to the priority: -253..=253.
    Priority(i32),
}

/// A VRRP instance: the product is clamped into -254..=253, and -254 is FAULT.
pub fn vrrp_effect(value: i64, tracking: Tracking) -> VrrpEffect {
    if tracking.weight == 0 {
        return if tracking.unweighted_fault(value) {
            VrrpEffect::Fault
        } else {
            VrrpEffect::Priority(0)
        };
    }
    match tracking.product(value) {
        p if p <= -254 => VrrpEffect::Fault,
        // Within -253..=253 after the clamp.
        p => VrrpEffect::Priority(i32::try_from(p.min(253)).unwrap_or(253)),
    }
}

/// A FILE_CHECK, on a change of the value: the product is clamped into the `int` range, and
/// `INT_MIN` (keepalived's `IPVS_WEIGHT_FAULT`) is FAULT.
pub fn checker_status(value: i64, tracking: Tracking) -> FileStatus {
    if tracking.weight == 0 {
        return if tracking.unweighted_fault(value) {
            FileStatus::Fault
        } else {
            FileStatus::Weight(0)
        };
    }
    let product = tracking
        .product(value)
        .clamp(i64::from(i32::MIN), i64::from(i32::MAX));
    if product == i64::from(i32::MIN) {
        FileStatus::Fault
    } else {
        FileStatus::Weight(product)
    }
}

/// A FILE_CHECK when it starts (check_file.c `set_track_file_checkers_down()` and
/// ipwrapper.c `init_service_rs()`): as on a change, except that an unweighted tracking with
/// `reverse` is read without it (keepalived 2.2.7 checks only `last_status != 0` there); its
/// first change puts it right.
pub fn initial_checker_status(value: i64, tracking: Tracking) -> FileStatus {
    if tracking.weight == 0 {
        return if value != 0 {
            FileStatus::Fault
        } else {
            FileStatus::Weight(0)
        };
    }
    checker_status(value, tracking)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(weight: i32, reverse: bool) -> Tracking {
        Tracking { weight, reverse }
    }

    #[test]
    fn vrrp_weighted_values_move_the_priority_within_range() {
        assert_eq!(vrrp_effect(0, t(10, false)), VrrpEffect::Priority(0));
        assert_eq!(vrrp_effect(3, t(10, false)), VrrpEffect::Priority(30));
        assert_eq!(vrrp_effect(3, t(10, true)), VrrpEffect::Priority(-30));
        assert_eq!(vrrp_effect(-2, t(-5, false)), VrrpEffect::Priority(10));
        assert_eq!(vrrp_effect(100, t(10, false)), VrrpEffect::Priority(253));
        assert_eq!(vrrp_effect(-25, t(10, false)), VrrpEffect::Priority(-250));
        assert_eq!(vrrp_effect(-26, t(10, false)), VrrpEffect::Fault);
        assert_eq!(vrrp_effect(-254, t(1, false)), VrrpEffect::Fault);
        assert_eq!(vrrp_effect(-253, t(1, false)), VrrpEffect::Priority(-253));
    }

    #[test]
    fn unweighted_tracking_is_a_verdict() {
        assert_eq!(vrrp_effect(0, t(0, false)), VrrpEffect::Priority(0));
        assert_eq!(vrrp_effect(7, t(0, false)), VrrpEffect::Fault);
        assert_eq!(vrrp_effect(-1, t(0, false)), VrrpEffect::Fault);
        assert_eq!(vrrp_effect(0, t(0, true)), VrrpEffect::Fault);
        assert_eq!(vrrp_effect(7, t(0, true)), VrrpEffect::Priority(0));
        assert_eq!(checker_status(7, t(0, false)), FileStatus::Fault);
        assert_eq!(checker_status(0, t(0, false)), FileStatus::Weight(0));
        assert_eq!(checker_status(0, t(0, true)), FileStatus::Fault);
        assert_eq!(checker_status(7, t(0, true)), FileStatus::Weight(0));
    }

    #[test]
    fn checker_weights_use_the_whole_int_range() {
        assert_eq!(checker_status(3, t(10, false)), FileStatus::Weight(30));
        assert_eq!(
            checker_status(-300, t(10, false)),
            FileStatus::Weight(-3000)
        );
        assert_eq!(checker_status(4, t(-5, true)), FileStatus::Weight(20));
        assert_eq!(
            checker_status(i64::from(i32::MAX), t(2, false)),
            FileStatus::Weight(i64::from(i32::MAX))
        );
        assert_eq!(
            checker_status(i64::from(i32::MIN), t(1, false)),
            FileStatus::Fault
        );
        assert_eq!(
            checker_status(-2_000_000_000, t(2, false)),
            FileStatus::Fault
        );
    }

    #[test]
    fn at_start_an_unweighted_reverse_checker_reads_unreversed() {
        assert_eq!(initial_checker_status(0, t(0, true)), FileStatus::Weight(0));
        assert_eq!(initial_checker_status(5, t(0, true)), FileStatus::Fault);
        assert_eq!(initial_checker_status(5, t(0, false)), FileStatus::Fault);
        assert_eq!(
            initial_checker_status(5, t(2, true)),
            FileStatus::Weight(-10)
        );
    }
}
