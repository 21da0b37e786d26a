//! Reconciliation: the changes that bring the kernel's table back to the desired one, for the
//! services halb owns and those only.
//!
//! Another program (an operator's `ipvsadm`, a second keepalived, a container runtime) may keep
//! services of its own in the same table. halb never touches a service that it does not own;
//! within the services it owns, whatever differs from the desired table is put right: missing
//! services and destinations added, changed ones edited, extra ones removed.
//!
//! Equality is judged in the kernel's own terms ([`ServiceAttrs::same_settings`],
//! [`DestAttrs::same_settings`]), so that a setting that reads back in another spelling (a
//! netmask of 255.255.255.255 and no netmask) is not "repaired" on every pass.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use halb_lb::table::{Change, Service, ServiceKey, Table};

use super::dest::{DestAttrs, KernelDest};
use super::service::{KernelService, ServiceAttrs, ServiceId};

/// One service of the kernel's table with its destinations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelEntry {
    pub service: KernelService,
    pub dests: Vec<KernelDest>,
}

/// The kernel's table as read, in the kernel's terms (it may hold what halb cannot express:
/// other protocols, schedulers or forwarding methods).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelTable {
    pub entries: Vec<KernelEntry>,
}

impl KernelTable {
    /// The entry of the service `id`.
    pub fn get(&self, id: &ServiceId) -> Option<&KernelEntry> {
        self.entries.iter().find(|e| e.service.attrs.id == *id)
    }

    /// The part of the table halb can express, as a [`Table`]; services and destinations it
    /// cannot express are left out.
    pub fn to_table(&self) -> Table {
        let mut table = Table::default();
        for entry in &self.entries {
            let Some(settings) = entry.service.attrs.settings() else {
                continue;
            };
            let destinations = entry
                .dests
                .iter()
                .filter_map(|d| d.attrs.destination())
                .map(|d| (d.addr, d))
                .collect();
            table.services.insert(
                settings.key,
                Service {
                    key: settings.key,
                    scheduler: settings.scheduler,
                    flags: settings.flags,
                    persistence: settings.persistence,
                    persistence_engine: settings.persistence_engine,
                    fallback: None,
                    destinations,
                },
            );
        }
        table
    }
}

/// The changes that make the kernel's services in `owned` (and those in `desired`, which halb
/// owns by wanting them) match `desired`, in the order a data plane applies them: removed
/// destinations, removed services, added or edited services, added or edited destinations.
///
/// Fails when `desired` holds something IPVS cannot (a GUE tunnel without a port, …).
pub fn plan(
    kernel: &KernelTable,
    desired: &Table,
    owned: &BTreeSet<ServiceKey>,
) -> Result<Vec<Change>, String> {
    let mut dest_dels = Vec::new();
    let mut svc_dels = Vec::new();
    let mut svc_sets = Vec::new();
    let mut dest_sets = Vec::new();

    let mut in_kernel: BTreeMap<ServiceKey, &KernelEntry> = BTreeMap::new();
    for entry in &kernel.entries {
        // A service of a protocol halb does not know cannot be one of halb's.
        if let Some(key) = entry.service.attrs.id.key() {
            in_kernel.insert(key, entry);
        }
    }

    for key in in_kernel.keys() {
        if owned.contains(key) && !desired.services.contains_key(key) {
            svc_dels.push(Change::DelService(*key));
        }
    }

    for (key, want) in &desired.services {
        let want_attrs = ServiceAttrs::from_settings(&want.settings())?;
        match in_kernel.get(key) {
            None => {
                svc_sets.push(Change::AddService(want.settings()));
                for dest in want.destinations.values() {
                    DestAttrs::from_destination(dest)?;
                    dest_sets.push(Change::AddDest(*key, *dest));
                }
            }
            Some(entry) => {
                if !want_attrs.same_settings(&entry.service.attrs) {
                    svc_sets.push(Change::EditService(want.settings()));
                }
                let have: BTreeMap<SocketAddr, &KernelDest> =
                    entry.dests.iter().map(|d| (d.attrs.addr, d)).collect();
                for addr in have.keys() {
                    if !want.destinations.contains_key(addr) {
                        dest_dels.push(Change::DelDest(*key, *addr));
                    }
                }
                for (addr, dest) in &want.destinations {
                    let want_dest = DestAttrs::from_destination(dest)?;
                    match have.get(addr) {
                        None => dest_sets.push(Change::AddDest(*key, *dest)),
                        Some(d) if !want_dest.same_settings(&d.attrs) => {
                            dest_sets.push(Change::EditDest(*key, *dest))
                        }
                        Some(_) => {}
                    }
                }
            }
        }
    }

    let mut changes = dest_dels;
    changes.extend(svc_dels);
    changes.extend(svc_sets);
    changes.extend(dest_sets);
    Ok(changes)
}
