//! What came of a [`Dataplane::apply`](crate::Dataplane::apply) that did not fully land: which
//! changes did and which did not, and from that what the data plane holds now.
//!
//! A data plane tries every change of a diff, so that one service the kernel refuses does not
//! keep the others out; its caller then records as held only what landed, and tries the rest
//! again soon.

use halb_lb::table::{Change, ServiceKey, Table};

use crate::DataplaneError;

/// One change that did not land, with why.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Failed {
    pub change: Change,
    #[source]
    pub error: DataplaneError,
}

impl Failed {
    /// Whether trying again may land it: a refusal (something this data plane cannot hold at
    /// all, such as a firewall-mark service on the proxy) stays one, a kernel's error may pass.
    pub fn may_pass(&self) -> bool {
        !matches!(self.error, DataplaneError::Refused(_))
    }
}

/// Some changes of an apply failed; every change was tried, and those in `landed` took effect.
#[derive(Debug, thiserror::Error)]
pub struct ApplyError {
    /// The changes that took effect, in the order given.
    pub landed: Vec<Change>,
    /// The changes that did not, in the order given (never empty).
    pub failed: Vec<Failed>,
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = self.landed.len() + self.failed.len();
        write!(f, "{} of {total} change(s) failed", self.failed.len())?;
        for failed in &self.failed {
            write!(f, "; {failed}")?;
        }
        Ok(())
    }
}

impl ApplyError {
    /// Whether some failure may pass when tried again ([`Failed::may_pass`]).
    pub fn worth_retrying(&self) -> bool {
        self.failed.iter().any(Failed::may_pass)
    }

    /// What the data plane holds after changes that aimed to turn `before` into `desired` went
    /// in with this result: `desired`, except that each service or destination whose change
    /// failed is as `before` had it (absent when `before` had none). A refusal counts as held:
    /// trying it again would only be refused again.
    ///
    /// For the changes of `before.diff(desired)` this is `before` with the landed changes
    /// applied. It also serves a repair planned against the kernel's own table, where `before`
    /// is that table and `desired` carries what the kernel does not keep (a service's sorry
    /// server for the proxy): whatever landed is held as `desired` says it.
    pub fn held(&self, before: &Table, desired: &Table) -> Table {
        let mut held = desired.clone();
        for failed in self.failed.iter().filter(|f| f.may_pass()) {
            match &failed.change {
                Change::AddService(s) | Change::EditService(s) => {
                    match (before.services.get(&s.key), held.services.get_mut(&s.key)) {
                        (Some(was), Some(now)) => {
                            now.scheduler = was.scheduler;
                            now.flags = was.flags;
                            now.persistence = was.persistence;
                            now.persistence_engine = was.persistence_engine.clone();
                            now.fallback = was.fallback;
                        }
                        (Some(was), None) => {
                            held.services.insert(s.key, was.clone());
                        }
                        (None, _) => {
                            held.services.remove(&s.key);
                        }
                    }
                }
                Change::DelService(key) => match before.services.get(key) {
                    Some(was) => {
                        held.services.insert(*key, was.clone());
                    }
                    None => {
                        held.services.remove(key);
                    }
                },
                Change::AddDest(key, d) | Change::EditDest(key, d) => {
                    restore_dest(&mut held, before, key, d.addr)
                }
                Change::DelDest(key, addr) => restore_dest(&mut held, before, key, *addr),
            }
        }
        held
    }
}

/// Puts destination `addr` of service `key` back as `before` had it.
fn restore_dest(held: &mut Table, before: &Table, key: &ServiceKey, addr: std::net::SocketAddr) {
    let Some(service) = held.services.get_mut(key) else {
        return;
    };
    match before
        .services
        .get(key)
        .and_then(|s| s.destinations.get(&addr))
    {
        Some(was) => {
            service.destinations.insert(addr, *was);
        }
        None => {
            service.destinations.remove(&addr);
        }
    }
}

/// Tries `one` on every change, in order, whatever the earlier ones gave: the loop of a data
/// plane's apply.
pub fn apply_each(
    changes: &[Change],
    one: impl FnMut(&Change) -> Result<(), DataplaneError>,
) -> Result<(), ApplyError> {
    collect(changes, changes.iter().map(one).collect())
}

/// The result of an apply from the result of each change (`results[i]` is that of
/// `changes[i]`).
pub fn collect(
    changes: &[Change],
    results: Vec<Result<(), DataplaneError>>,
) -> Result<(), ApplyError> {
    let mut landed = Vec::with_capacity(changes.len());
    let mut failed = Vec::new();
    for (change, result) in changes.iter().zip(results) {
        match result {
            Ok(()) => landed.push(change.clone()),
            Err(error) => failed.push(Failed {
                change: change.clone(),
                error,
            }),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(ApplyError { landed, failed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use halb_lb::table::{
        Destination, Forwarding, ProtocolKey, SchedFlags, Scheduler, Service, ServiceSettings,
    };
    use std::io;

    fn tcp(port: u16) -> ServiceKey {
        ServiceKey::Addr {
            protocol: ProtocolKey::Tcp,
            addr: ([192, 168, 66, 251], port).into(),
        }
    }

    fn dest(last: u8, weight: u32) -> Destination {
        Destination {
            addr: ([192, 168, 66, last], 3306).into(),
            weight,
            forwarding: Forwarding::Dr,
            uthreshold: 0,
            lthreshold: 0,
        }
    }

    fn service(key: ServiceKey, scheduler: Scheduler, dests: &[Destination]) -> Service {
        Service {
            key,
            scheduler,
            flags: SchedFlags::default(),
            persistence: None,
            persistence_engine: None,
            fallback: None,
            destinations: dests.iter().map(|d| (d.addr, *d)).collect(),
        }
    }

    fn table(services: Vec<Service>) -> Table {
        Table {
            services: services.into_iter().map(|s| (s.key, s)).collect(),
        }
    }

    /// The kernel's answer to a command: an errno, as the netlink socket reports it.
    fn kernel(errno: nix::errno::Errno, what: &str) -> DataplaneError {
        DataplaneError::Io {
            what: what.into(),
            source: io::Error::from_raw_os_error(errno as i32),
        }
    }

    /// A fake kernel: refuses the scheduler `Twos` (no module) and every destination of a
    /// service it does not have; everything else lands in `kernel`.
    fn fake_kernel(
        kernel_table: &mut Table,
    ) -> impl FnMut(&Change) -> Result<(), DataplaneError> + '_ {
        move |change| {
            match change {
                Change::AddService(s) | Change::EditService(s)
                    if s.scheduler == Scheduler::Twos =>
                {
                    return Err(kernel(nix::errno::Errno::ENOENT, "adding service"))
                }
                Change::AddDest(k, _) | Change::EditDest(k, _) | Change::DelDest(k, _)
                    if !kernel_table.services.contains_key(k) =>
                {
                    return Err(kernel(nix::errno::Errno::ESRCH, "adding destination"))
                }
                _ => {}
            }
            kernel_table.apply(std::slice::from_ref(change));
            Ok(())
        }
    }

    #[test]
    fn one_failed_service_does_not_stop_the_others() {
        let before = table(vec![service(tcp(1), Scheduler::Rr, &[dest(10, 1)])]);
        let desired = table(vec![
            service(tcp(1), Scheduler::Rr, &[dest(10, 0), dest(11, 1)]),
            service(tcp(2), Scheduler::Twos, &[dest(10, 1)]),
            service(tcp(3), Scheduler::Wrr, &[dest(12, 1)]),
        ]);
        let changes = before.diff(&desired);
        let mut in_kernel = before.clone();
        let err = apply_each(&changes, fake_kernel(&mut in_kernel)).expect_err("twos fails");

        // Everything but tcp(2) and its destination landed, in the kernel and in the result.
        let failed: Vec<&Change> = err.failed.iter().map(|f| &f.change).collect();
        assert_eq!(
            failed,
            [
                &Change::AddService(desired.services[&tcp(2)].settings()),
                &Change::AddDest(tcp(2), dest(10, 1)),
            ]
        );
        assert_eq!(err.landed.len() + err.failed.len(), changes.len());
        let mut want = desired.clone();
        want.services.remove(&tcp(2));
        assert_eq!(in_kernel, want);

        // What is recorded as held is exactly what the kernel holds, and the next diff retries
        // exactly what failed.
        let held = err.held(&before, &desired);
        assert_eq!(held, in_kernel);
        let mut landed_only = before.clone();
        landed_only.apply(&err.landed);
        assert_eq!(held, landed_only);
        assert_eq!(
            held.diff(&desired),
            failed.into_iter().cloned().collect::<Vec<_>>()
        );
        assert!(err.worth_retrying());
        let text = err.to_string();
        assert!(text.starts_with("2 of 6 change(s) failed; "), "{text}");
    }

    #[test]
    fn failed_edits_and_deletions_keep_what_was_there() {
        let before = table(vec![
            service(tcp(1), Scheduler::Rr, &[dest(10, 1), dest(11, 1)]),
            service(tcp(2), Scheduler::Rr, &[dest(10, 1)]),
        ]);
        let desired = table(vec![service(tcp(1), Scheduler::Wlc, &[dest(10, 5)])]);
        let changes = before.diff(&desired);
        let refuse = |c: &Change| match c {
            Change::EditService(_) | Change::DelService(_) | Change::DelDest(..) => {
                Err(kernel(nix::errno::Errno::EBUSY, "busy"))
            }
            _ => Ok(()),
        };
        let err = apply_each(&changes, refuse).expect_err("three fail");
        let held = err.held(&before, &desired);
        let mut landed_only = before.clone();
        landed_only.apply(&err.landed);
        assert_eq!(held, landed_only);
        assert_eq!(held.services[&tcp(1)].scheduler, Scheduler::Rr);
        assert_eq!(
            held.services[&tcp(1)].destinations[&dest(10, 5).addr].weight,
            5
        );
        assert!(held.services[&tcp(1)]
            .destinations
            .contains_key(&dest(11, 1).addr));
        assert_eq!(held.services[&tcp(2)], before.services[&tcp(2)]);
    }

    #[test]
    fn a_refusal_is_held_and_not_worth_retrying() {
        let fwm = ServiceKey::Fwmark {
            mark: 1,
            inet6: false,
        };
        let desired = table(vec![service(fwm, Scheduler::Rr, &[dest(10, 1)])]);
        let changes = Table::default().diff(&desired);
        let err = apply_each(&changes, |c| match c {
            Change::AddService(ServiceSettings { key, .. }) => {
                Err(DataplaneError::Refused(format!("{key}: no marks here")))
            }
            _ => Ok(()),
        })
        .expect_err("refused");
        assert!(!err.worth_retrying());
        assert_eq!(err.held(&Table::default(), &desired), desired);
    }

    #[test]
    fn all_landed_is_ok() {
        let desired = table(vec![service(tcp(1), Scheduler::Rr, &[dest(10, 1)])]);
        let changes = Table::default().diff(&desired);
        let mut tried = 0;
        apply_each(&changes, |_| {
            tried += 1;
            Ok(())
        })
        .expect("all land");
        assert_eq!(tried, changes.len());
    }
}
