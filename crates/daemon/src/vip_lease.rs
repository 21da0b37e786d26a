//! VIPs on a lease: every address halb adds carries a finite valid lifetime, and the MASTER
//! holding it renews it well before it runs out. A daemon killed with SIGKILL cannot remove
//! its VIPs, and keepalived's stay on the interface until something removes them (the dead
//! director's kernel then answers clients with "Connection refused" while the BACKUP takes
//! over); halb's leave by themselves once the lease runs out. A clean stop still removes them
//! at once, and a BACKUP holds none.
//!
//! The lease is three advert intervals (at least [`MIN_LIFETIME`]: the kernel counts in whole
//! seconds and looks at lifetimes about once a second), renewed every third of it, so one or
//! two late renewals do not lose the address. After a kill the VIP leaves within the lease
//! plus about a second.
//!
//! Pure bookkeeping, with time as an input: which instance holds which addresses and when
//! they are due for renewal. The shell does the renewing.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::vrrp_map::MappedInstance;

/// The shortest lease, whatever the advert interval.
pub(crate) const MIN_LIFETIME: Duration = Duration::from_secs(2);

/// The lease of the VIPs of an instance advertising every `advert_interval`, in whole
/// seconds as the kernel takes it.
pub(crate) fn lifetime(advert_interval: Duration) -> u32 {
    let lease = (advert_interval * 3).max(MIN_LIFETIME);
    let seconds = lease.as_secs() + u64::from(lease.subsec_nanos() > 0);
    u32::try_from(seconds).unwrap_or(u32::MAX)
}

/// How often a lease of `lifetime` seconds is renewed.
pub(crate) fn renew_every(lifetime: u32) -> Duration {
    Duration::from_secs(u64::from(lifetime)) / 3
}

/// Gives every VIP of `instance` its lease.
pub(crate) fn lease_vips(instance: &mut MappedInstance) {
    let lifetime = lifetime(instance.config.advert_interval);
    for placed in &mut instance.vips {
        placed.vip.valid_lifetime = Some(lifetime);
    }
}

/// The addresses each instance holds and when they are next renewed.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    by_instance: BTreeMap<usize, Lease>,
}

#[derive(Debug)]
struct Lease {
    addresses: Vec<IpAddr>,
    every: Duration,
    next: Instant,
}

impl Leases {
    /// Instance `n` added `addresses` at `now`; they are renewed every `every` from now on.
    pub(crate) fn added(&mut self, n: usize, addresses: &[IpAddr], every: Duration, now: Instant) {
        let lease = self.by_instance.entry(n).or_insert_with(|| Lease {
            addresses: Vec::new(),
            every,
            next: now + every,
        });
        lease.every = every;
        for address in addresses {
            if !lease.addresses.contains(address) {
                lease.addresses.push(*address);
            }
        }
    }

    /// Instance `n` removed `addresses`: they are no longer renewed.
    pub(crate) fn removed(&mut self, n: usize, addresses: &[IpAddr]) {
        if let Some(lease) = self.by_instance.get_mut(&n) {
            lease.addresses.retain(|a| !addresses.contains(a));
            if lease.addresses.is_empty() {
                self.by_instance.remove(&n);
            }
        }
    }

    /// A reload renumbered the instances: `new_index` gives the new index of each old one
    /// (none: it was removed, and its addresses went with it).
    pub(crate) fn renumber(&mut self, new_index: impl Fn(usize) -> Option<usize>) {
        self.by_instance = std::mem::take(&mut self.by_instance)
            .into_iter()
            .filter_map(|(n, lease)| new_index(n).map(|m| (m, lease)))
            .collect();
    }

    /// When the next renewal is due.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.by_instance.values().map(|l| l.next).min()
    }

    /// The instances whose addresses are due for renewal at `now`, with those addresses; each
    /// is next due one period later.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<(usize, Vec<IpAddr>)> {
        let mut due = Vec::new();
        for (&n, lease) in &mut self.by_instance {
            if lease.next <= now {
                // From now, not from the missed instant: a late loop must not renew in a burst.
                lease.next = now + lease.every;
                due.push((n, lease.addresses.clone()));
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_lease_is_three_adverts_in_whole_seconds_and_never_under_two() {
        assert_eq!(lifetime(Duration::from_secs(1)), 3);
        assert_eq!(lifetime(Duration::from_millis(1500)), 5);
        assert_eq!(lifetime(Duration::from_millis(100)), 2);
        assert_eq!(lifetime(Duration::from_secs(255)), 765);
        assert_eq!(renew_every(3), Duration::from_secs(1));
        assert_eq!(renew_every(2), Duration::from_nanos(666_666_666));
    }

    #[test]
    fn held_addresses_come_due_once_a_period_until_removed() {
        let start = Instant::now();
        let every = Duration::from_secs(1);
        let mut leases = Leases::default();
        assert_eq!(leases.poll_timeout(), None);
        leases.added(0, &[ip("192.168.66.251"), ip("fd66::251")], every, start);
        assert_eq!(leases.poll_timeout(), Some(start + every));
        assert!(leases.due(start + every / 2).is_empty());
        let due = leases.due(start + every);
        assert_eq!(due, [(0, vec![ip("192.168.66.251"), ip("fd66::251")])]);
        assert_eq!(leases.poll_timeout(), Some(start + every * 2));
        // A loop that wakes late renews once, and the period counts from then.
        let late = start + every * 5;
        assert_eq!(leases.due(late).len(), 1);
        assert!(leases.due(late).is_empty());
        assert_eq!(leases.poll_timeout(), Some(late + every));

        leases.removed(0, &[ip("fd66::251")]);
        let next = late + every * 2;
        assert_eq!(leases.due(next), [(0, vec![ip("192.168.66.251")])]);
        leases.removed(0, &[ip("192.168.66.251")]);
        assert_eq!(leases.poll_timeout(), None);
    }

    #[test]
    fn a_reload_renumbers_the_leases_and_forgets_removed_instances() {
        let t0 = Instant::now();
        let mut leases = Leases::default();
        leases.added(0, &[ip("192.168.66.251")], Duration::from_secs(1), t0);
        leases.added(1, &[ip("192.168.66.252")], Duration::from_secs(1), t0);
        leases.renumber(|n| (n == 1).then_some(0));
        assert_eq!(
            leases.due(t0 + Duration::from_secs(1)),
            vec![(0, vec![ip("192.168.66.252")])]
        );
    }

    #[test]
    fn instances_are_renewed_on_their_own_periods() {
        let start = Instant::now();
        let mut leases = Leases::default();
        leases.added(0, &[ip("192.168.66.251")], Duration::from_secs(1), start);
        leases.added(1, &[ip("192.168.66.252")], Duration::from_secs(2), start);
        let due = leases.due(start + Duration::from_secs(1));
        assert_eq!(due, [(0, vec![ip("192.168.66.251")])]);
        let due = leases.due(start + Duration::from_secs(2));
        assert_eq!(due.len(), 2);
    }
}
