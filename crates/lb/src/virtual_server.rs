//! The virtual servers' state with keepalived 2.2's semantics, without I/O: health-checker
//! verdicts in, the desired IPVS table and what to log, run and drop out.
//!
//! keepalived's rules, as this module keeps them (`check/ipwrapper.c`):
//! - A real server is alive while none of its checkers has failed. A checker starts up, or
//!   failed in alpha mode; a real server without checkers is always alive.
//! - A real server that goes down leaves every service of its virtual server, or stays at
//!   weight 0 with `inhibit_on_failure`; coming up, it is back with its weight.
//! - Quorum: the alive servers' weights must add up to `quorum`. Gained at
//!   `quorum + hysteresis`, lost below `quorum - hysteresis`. Losing it runs `quorum_down`
//!   and, with a sorry server, takes the remaining alive servers out (weight 0 with
//!   `inhibit_on_failure`) and puts the sorry server in at weight 1; gaining it reverses that
//!   and runs `quorum_up`. A `sorry_server_inhibit` sorry server waits in the table at weight 0.
//! - At start quorum counts as missing until it is evaluated once over the servers alive then:
//!   a virtual server that has it logs "Gained quorum" and runs quorum_up; one that lacks it
//!   and has a sorry server starts with the sorry server in.
//! - Shutdown empties the table; with `omega` it also runs notify_down of the servers in the
//!   pool and quorum_down.
//!
//! Every state change leaves as a typed [`VsEvent`] in [`Output::Event`]; its `Display` is
//! keepalived's log line.
//!
//! What halb adds: [`Output::DropConnections`] when the sorry server hands back to the real
//! servers (and, if asked, when a real server leaves), per [`ConnectionDrops`].
//!
//! How a shell drives it: build with [`VirtualServers::new`], report the addresses already on
//! the host ([`VirtualServers::local_address_added`]), then [`VirtualServers::start`]. After
//! every call, diff [`VirtualServers::table`] against what the data plane holds
//! ([`crate::table::Table::diff`]), apply it, and then carry out the outputs in order.

mod build;
mod events;
mod file_check;
mod output;
mod reload;
mod state;
mod status;
mod suspend;
mod vs_event;

use std::net::IpAddr;

use halb_config::model::LvsConfig;

pub use build::MAX_RANGE_ADDRESSES;
pub use file_check::FileStatus;
pub use halb_config::names::CheckerId;
pub use output::{Output, ScriptReason};
pub use reload::Carried;
pub use state::ConnectionDrops;
pub use status::{CheckerStatus, RealServerStatus, SorryServerStatus, VirtualServerStatus};
pub use vs_event::{CheckerActivity, IgnoredVerdict, Level, ServerRef, VsEvent, VsRef};

use crate::table::{Destination, Service, Table};
use state::{VsState, SORRY_WEIGHT};

/// Every virtual server of a configuration.
#[derive(Debug, Clone)]
pub struct VirtualServers {
    vss: Vec<VsState>,
    /// What keepalived says and runs while it initialises the services, held until
    /// [`VirtualServers::start`].
    startup: Vec<Output>,
    started: bool,
    stopped: bool,
}

impl VirtualServers {
    /// The state keepalived reaches once it has set up its services (`init_services()`):
    /// real servers alive unless an alpha checker holds them, quorum decided, sorry servers in
    /// where quorum is missing. Nothing is said until [`VirtualServers::start`].
    pub fn new(lvs: &LvsConfig) -> Self {
        Self::with_files(lvs, &[])
    }

    /// [`VirtualServers::new`], with the FILE_CHECK checkers in the state their files' values
    /// give at start (keepalived reads the files before it sets up the services, so a server
    /// whose file says FAULT is never added, and its weight is there from the start).
    pub fn with_files(lvs: &LvsConfig, files: &[(CheckerId, FileStatus)]) -> Self {
        let (mut vss, mut startup) = build::build(lvs);
        for (id, status) in files {
            if let Some(vs) = vss.get_mut(id.vs) {
                if vs.is_file_check(id.rs, id.checker) {
                    vs.init_file_status(id.rs, id.checker, *status);
                }
            }
        }
        for vs in &mut vss {
            vs.update_quorum_state(true, &mut startup);
        }
        VirtualServers {
            vss,
            startup,
            started: false,
            stopped: false,
        }
    }

    /// The start: keepalived's log lines and scripts of the initialisation (quorum gained,
    /// or started down with the sorry server in), then the checkers' activation, with
    /// [`Output::SuspendCheckers`] for `ha_suspend` virtual servers whose address is not here.
    /// A second call returns nothing.
    #[must_use = "the outputs must be carried out"]
    pub fn start(&mut self) -> Vec<Output> {
        if self.started || self.stopped {
            return Vec::new();
        }
        self.started = true;
        let mut out = std::mem::take(&mut self.startup);
        for vs in &mut self.vss {
            vs.start_checkers(&mut out);
        }
        out
    }

    /// The table the data plane must hold now.
    pub fn table(&self) -> Table {
        let mut table = Table::default();
        if self.stopped {
            return table;
        }
        for vs in &self.vss {
            let fallback = vs.sorry.as_ref().map(|s| (s, SORRY_WEIGHT));
            for spec in &vs.services {
                // Two virtual servers may name the same service (two groups sharing an
                // entry); IPVS holds it once, with the first one's settings and everyone's
                // destinations.
                let service = table.services.entry(spec.key).or_insert_with(|| Service {
                    key: spec.key,
                    scheduler: vs.template.scheduler,
                    flags: vs.template.flags,
                    persistence: vs.template.persistence,
                    persistence_engine: vs.template.persistence_engine.clone(),
                    fallback: fallback.map(|(s, weight)| Destination {
                        addr: VsState::dest_addr(spec, s.ip, s.port, &s.forwarding),
                        weight,
                        forwarding: s.forwarding,
                        uthreshold: 0,
                        lthreshold: 0,
                    }),
                    destinations: Default::default(),
                });
                let mut put = |dest: Destination| {
                    // An address listed twice (a sorry server that is also a real server)
                    // is one IPVS destination: the larger weight wins, so that it serves if
                    // either role says so.
                    match service.destinations.get(&dest.addr) {
                        Some(d) if d.weight >= dest.weight => {}
                        _ => {
                            service.destinations.insert(dest.addr, dest);
                        }
                    }
                };
                for rs in &vs.real_servers {
                    if let Some(weight) = vs.rs_table_weight(rs) {
                        put(Destination {
                            addr: VsState::dest_addr(spec, rs.ip, rs.port, &rs.forwarding),
                            weight,
                            forwarding: rs.forwarding,
                            uthreshold: rs.uthreshold,
                            lthreshold: rs.lthreshold,
                        });
                    }
                }
                if let (Some(s), Some(weight)) = (&vs.sorry, vs.sorry_table_weight()) {
                    put(Destination {
                        addr: VsState::dest_addr(spec, s.ip, s.port, &s.forwarding),
                        weight,
                        forwarding: s.forwarding,
                        uthreshold: 0,
                        lthreshold: 0,
                    });
                }
            }
        }
        table
    }

    /// A checker's verdict: `up`, and for a `misc_dynamic` MISC_CHECK the weight its exit
    /// status asks for (the real server's configured weight for exit 0). Verdicts that change
    /// nothing are fine to send; a verdict after [`VirtualServers::shutdown`] is ignored.
    #[must_use = "the table changed: the outputs must be carried out"]
    pub fn handle_check(&mut self, id: CheckerId, up: bool, weight: Option<u32>) -> Vec<Output> {
        let mut out = Vec::new();
        if self.stopped {
            return out;
        }
        let counted = self
            .vss
            .get(id.vs)
            .and_then(|vs| vs.real_servers.get(id.rs))
            .and_then(|rs| rs.checkers.get(id.checker))
            .map(|c| c.counted);
        match counted {
            Some(true) => {
                self.vss[id.vs].handle_verdict(id.rs, id.checker, up, weight, &mut out);
            }
            Some(false) => out.push(Output::Event(VsEvent::VerdictIgnored {
                checker: id,
                why: IgnoredVerdict::NotRun,
            })),
            None => out.push(Output::Event(VsEvent::VerdictIgnored {
                checker: id,
                why: IgnoredVerdict::Unknown,
            })),
        }
        out
    }

    /// A tracked file's value changed what FILE_CHECK `id` says. Statuses that change nothing
    /// are fine to send; anything but a FILE_CHECK is ignored.
    #[must_use = "the table changed: the outputs must be carried out"]
    pub fn set_file_status(&mut self, id: CheckerId, status: FileStatus) -> Vec<Output> {
        let mut out = Vec::new();
        if self.stopped {
            return out;
        }
        if let Some(vs) = self.vss.get_mut(id.vs) {
            if vs.is_file_check(id.rs, id.checker) {
                vs.handle_file_status(id.rs, id.checker, status, &mut out);
            }
        }
        out
    }

    /// Stopping (`clear_services()`): the table becomes empty; keepalived's "Shutting down
    /// service" lines, and in omega mode the notify_down of the servers that were in the pool
    /// and quorum_down. Everything after this is ignored.
    #[must_use = "the outputs must be carried out"]
    pub fn shutdown(&mut self) -> Vec<Output> {
        let mut out = Vec::new();
        if self.stopped {
            return out;
        }
        self.stopped = true;
        for vs in &mut self.vss {
            vs.shut_down(&mut out);
        }
        out
    }

    /// An address appeared on this host (for `ha_suspend`; an address on two interfaces is
    /// reported twice). May resume the checkers of the virtual servers that serve it.
    #[must_use = "the outputs must be carried out"]
    pub fn local_address_added(&mut self, ip: IpAddr) -> Vec<Output> {
        self.local_address_changed(ip, true)
    }

    /// An address left this host. May suspend the checkers of the `ha_suspend` virtual
    /// servers that serve it, once no copy of it is left.
    #[must_use = "the outputs must be carried out"]
    pub fn local_address_removed(&mut self, ip: IpAddr) -> Vec<Output> {
        self.local_address_changed(ip, false)
    }

    fn local_address_changed(&mut self, ip: IpAddr, present: bool) -> Vec<Output> {
        let mut out = Vec::new();
        if self.stopped {
            return out;
        }
        for vs in &mut self.vss {
            vs.local_address_changed(ip, present, self.started, &mut out);
        }
        out
    }

    /// Whether the checkers of virtual server `vs` are suspended (`ha_suspend` and its
    /// address is not here). Before [`VirtualServers::start`], what start will decide.
    pub fn checkers_suspended(&self, vs: usize) -> bool {
        self.vss.get(vs).is_some_and(|v| {
            if self.started {
                !v.checkers_enabled
            } else {
                v.ha_suspend && v.local_addresses == 0
            }
        })
    }

    /// The virtual servers whose checkers are suspended (see
    /// [`VirtualServers::checkers_suspended`]).
    pub fn suspended_virtual_servers(&self) -> Vec<usize> {
        (0..self.vss.len())
            .filter(|&i| self.checkers_suspended(i))
            .collect()
    }

    /// Sets virtual server `vs`'s connection drops; `false` if there is no such virtual
    /// server.
    pub fn set_connection_drops(&mut self, vs: usize, drops: ConnectionDrops) -> bool {
        match self.vss.get_mut(vs) {
            Some(v) => {
                v.drops = drops;
                true
            }
            None => false,
        }
    }

    pub fn connection_drops(&self, vs: usize) -> Option<ConnectionDrops> {
        self.vss.get(vs).map(|v| v.drops)
    }

    /// Every virtual server's state, for `halb status`.
    pub fn status(&self) -> Vec<VirtualServerStatus> {
        self.vss.iter().map(status::vs_status).collect()
    }

    /// One virtual server's state.
    pub fn vs_status(&self, vs: usize) -> Option<VirtualServerStatus> {
        self.vss.get(vs).map(status::vs_status)
    }

    /// Whether real server `rs` of virtual server `vs` is alive.
    pub fn real_server_alive(&self, vs: usize, rs: usize) -> Option<bool> {
        self.vss
            .get(vs)
            .and_then(|v| v.real_servers.get(rs))
            .map(|r| r.alive)
    }

    /// Whether virtual server `vs` has quorum.
    pub fn quorum_up(&self, vs: usize) -> Option<bool> {
        self.vss.get(vs).map(|v| v.quorum_up)
    }

    /// Whether virtual server `vs`'s sorry server is in the pool.
    pub fn sorry_server_active(&self, vs: usize) -> Option<bool> {
        self.vss.get(vs).map(|v| v.sorry_active())
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped
    }
}
