//! The VRRP timer arithmetic (RFC 3768 §6.1, RFC 5798 §6.1), to the microsecond as keepalived
//! computes it (vrrp.h `VRRP_TIMER_SKEW`, `VRRP_MS_DOWN_TIMER`).

use std::time::Duration;

use crate::packet::Version;

/// Skew_Time: how much later than a higher priority backup a lower priority one takes over.
///
/// VRRPv2: (256 - Priority) / 256 seconds, whatever the interval. VRRPv3:
/// ((256 - Priority) * Master_Adver_Interval) / 256.
pub fn skew_time(version: Version, priority: u8, master_adver_int: Duration) -> Duration {
    skew_for(version, 256 - u64::from(priority), master_adver_int)
}

/// The smallest skew (priority 255's): keepalived's `VRRP_TIMER_SKEW_MIN`.
pub fn min_skew_time(version: Version, master_adver_int: Duration) -> Duration {
    skew_for(version, 1, master_adver_int)
}

fn skew_for(version: Version, weight: u64, master_adver_int: Duration) -> Duration {
    match version {
        Version::V2 => Duration::from_micros(weight * 1_000_000 / 256),
        Version::V3 => {
            // keepalived works in whole centiseconds here: (weight * cs * 625) / 16 µs.
            let cs = u64::try_from(master_adver_int.as_millis() / 10).unwrap_or(u64::MAX / 1024);
            Duration::from_micros(weight * cs * 625 / 16)
        }
    }
}

/// Master_Down_Interval: `down_timer_adverts` (3) intervals plus the skew.
pub fn master_down_interval(
    version: Version,
    priority: u8,
    master_adver_int: Duration,
    down_timer_adverts: u32,
) -> Duration {
    master_adver_int * down_timer_adverts + skew_time(version, priority, master_adver_int)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_skew_ignores_the_interval() {
        let skew = skew_time(Version::V2, 100, Duration::from_secs(5));
        assert_eq!(skew, Duration::from_micros(156 * 1_000_000 / 256));
        assert_eq!(skew, Duration::from_micros(609_375));
    }

    #[test]
    fn v3_skew_scales_with_the_interval() {
        // (256 - 100) * 100 ms / 256 = 60.9375 ms
        assert_eq!(
            skew_time(Version::V3, 100, Duration::from_millis(100)),
            Duration::from_micros(60_937)
        );
        assert_eq!(
            skew_time(Version::V3, 255, Duration::from_secs(1)),
            Duration::from_micros(3_906)
        );
    }

    #[test]
    fn master_down_is_three_intervals_and_skew() {
        assert_eq!(
            master_down_interval(Version::V2, 100, Duration::from_secs(1), 3),
            Duration::from_micros(3_609_375)
        );
        assert_eq!(
            master_down_interval(Version::V3, 100, Duration::from_millis(100), 3),
            Duration::from_micros(360_937)
        );
    }
}
