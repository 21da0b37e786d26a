//! Kernel IPVS as a [`Dataplane`], over the generic netlink family `IPVS`.
//!
//! The attribute encoding is written here from the kernel's uapi header
//! (`include/uapi/linux/ip_vs.h`) and its policies (`net/netfilter/ipvs/ip_vs_ctl.c`):
//!
//! | module | holds |
//! |---|---|
//! | [`genl`] | generic netlink framing, attributes, acks and errors, family lookup, the socket |
//! | [`attrs`] | the `IPVS_CMD_*` / `IPVS_*_ATTR_*` numbers and flags |
//! | [`service`], [`dest`], [`stats`] | services, destinations and their counters, both ways |
//! | [`daemon`] | the connection sync daemon |
//! | [`config`] | timeouts and version |
//! | [`conn`] | the connection table (`/proc/net/ip_vs_conn`) |
//! | [`conn_scan`], [`stall`] | a cheap repeated read of it, and the destinations whose new connections stall (passive detection) |
//! | [`reconcile`] | the changes that repair the kernel's table, for halb's services only |
//!
//! Everything acts on the network namespace of the thread that called [`Ipvs::open`] (the
//! netlink socket belongs to it), except [`conn`] and the sysctl that
//! [`Dataplane::drop_connections`] sets, which follow the calling thread's namespace.
//!
//! Changing the table needs `CAP_NET_ADMIN`, and the kernel needs the `ip_vs` module (and
//! `ip_vs_<scheduler>` for each scheduler, which it loads by itself when it can).

pub mod attrs;
pub mod config;
pub mod conn;
pub mod conn_scan;
pub mod daemon;
pub mod dest;
pub mod genl;
pub mod reconcile;
pub mod service;
pub mod stall;
pub mod stats;

use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use halb_lb::table::{Change, Destination, ServiceKey, ServiceSettings, Table};

pub use config::{IpvsInfo, Timeouts};
pub use daemon::{SyncDaemon, SyncState};
pub use dest::{DestAttrs, KernelDest};
pub use reconcile::{KernelEntry, KernelTable};
pub use service::{KernelService, ServiceAttrs, ServiceId};

use crate::{
    partial, ApplyError, ConnectionEntry, Dataplane, DataplaneError, DestStats, ServiceStats,
};
use attrs::*;
use genl::{AttrMap, AttrWriter, GenlMessage, GenlSocket};

/// How long [`Dataplane::drop_connections`] keeps a destination out of the table while the
/// kernel expires its connections.
const FENCE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Where the kernel is told to expire the connections of removed destinations.
const EXPIRE_NODEST_CONN: &str = "/proc/sys/net/ipv4/vs/expire_nodest_conn";

/// The kernel's IPVS table, driven over generic netlink.
#[derive(Debug)]
pub struct Ipvs {
    socket: Mutex<GenlSocket>,
    family: u16,
    expire_nodest_conn_set: bool,
}

impl Ipvs {
    /// Connects to the kernel's IPVS in the calling thread's network namespace. Fails when the
    /// kernel has no IPVS (the `ip_vs` module is not loaded: see [`Ipvs::available_or_load`]).
    pub fn open() -> Result<Ipvs, DataplaneError> {
        let mut socket =
            GenlSocket::open().map_err(|e| io_error("opening a generic netlink socket", e))?;
        let family = socket
            .resolve_family(GENL_NAME)
            .map_err(|e| io_error("looking up the generic netlink family IPVS", e))?
            .ok_or_else(|| {
                DataplaneError::Refused(
                    "the kernel has no IPVS (generic netlink family IPVS not found; is the ip_vs module loaded?)"
                        .into(),
                )
            })?;
        Ok(Ipvs {
            socket: Mutex::new(socket),
            family,
            expire_nodest_conn_set: false,
        })
    }

    /// Whether the kernel offers IPVS right now (its generic netlink family resolves), without
    /// trying to load anything. This is what `auto` mode asks.
    pub fn available() -> bool {
        GenlSocket::open()
            .and_then(|mut s| s.resolve_family(GENL_NAME))
            .map(|family| family.is_some())
            .unwrap_or(false)
    }

    /// Like [`Ipvs::available`], but first runs `modprobe ip_vs` when IPVS is missing, as
    /// ipvsadm and keepalived do (the kernel does not load the module for a family lookup).
    pub fn available_or_load() -> bool {
        if Ipvs::available() {
            return true;
        }
        let loaded = Command::new("modprobe")
            .arg("ip_vs")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        loaded && Ipvs::available()
    }

    /// Sends one command; `what` says what it was for in the error.
    fn execute(
        &self,
        cmd: u8,
        attrs: &AttrWriter,
        dump: bool,
        what: impl FnOnce() -> String,
    ) -> Result<Vec<GenlMessage>, DataplaneError> {
        let mut socket = self.socket.lock().unwrap_or_else(|p| p.into_inner());
        socket
            .execute(self.family, cmd, GENL_VERSION, attrs.as_bytes(), dump)
            .map_err(|e| {
                // The errno's name too (EEXIST, ESRCH, …): the kernel's source and ipvsadm's
                // man page speak in those, the message alone is vaguer.
                let what = match e.raw_os_error() {
                    Some(code) => format!(
                        "{} ({}: {:?})",
                        what(),
                        command_name(cmd),
                        nix::errno::Errno::from_raw(code)
                    ),
                    None => format!("{} ({})", what(), command_name(cmd)),
                };
                explain(what, e)
            })
    }

    /// The version of the kernel's IPVS and the size of its connection hash table.
    pub fn info(&self) -> Result<IpvsInfo, DataplaneError> {
        let messages = self.execute(CMD_GET_INFO, &AttrWriter::new(), false, || {
            "reading IPVS's version".into()
        })?;
        let message = first(messages, "IPVS's version")?;
        IpvsInfo::decode(&parse(&message.attrs)?)
            .map_err(|e| io_error("reading IPVS's version", e.into()))
    }

    /// Every service of the table, with its counters.
    pub fn services(&self) -> Result<Vec<KernelService>, DataplaneError> {
        let messages = self.execute(CMD_GET_SERVICE, &AttrWriter::new(), true, || {
            "listing the IPVS services".into()
        })?;
        let mut services = Vec::with_capacity(messages.len());
        for message in messages.iter().filter(|m| m.cmd == CMD_NEW_SERVICE) {
            let top = parse(&message.attrs)?;
            let nest = top
                .nested(CMD_ATTR_SERVICE)
                .map_err(|e| io_error("listing the IPVS services", e.into()))?;
            if let Some(nest) = nest {
                services.push(
                    KernelService::decode(&nest)
                        .map_err(|e| io_error("listing the IPVS services", e.into()))?,
                );
            }
        }
        Ok(services)
    }

    /// One service, or `None` when the kernel has no such service.
    pub fn service(&self, id: &ServiceId) -> Result<Option<KernelService>, DataplaneError> {
        let mut w = AttrWriter::new();
        w.nested(CMD_ATTR_SERVICE, |s| id.encode(s));
        let what = || format!("reading service {id}");
        let messages = match self.execute(CMD_GET_SERVICE, &w, false, what) {
            Ok(m) => m,
            Err(e) if errno(&e) == Some(nix::errno::Errno::ESRCH as i32) => return Ok(None),
            Err(e) => return Err(e),
        };
        let message = first(messages, "the service")?;
        let top = parse(&message.attrs)?;
        match top
            .nested(CMD_ATTR_SERVICE)
            .map_err(|e| io_error(what(), e.into()))?
        {
            Some(nest) => Ok(Some(
                KernelService::decode(&nest).map_err(|e| io_error(what(), e.into()))?,
            )),
            None => Ok(None),
        }
    }

    /// The destinations of service `id`, with their connection counts and counters.
    pub fn destinations(&self, id: &ServiceId) -> Result<Vec<KernelDest>, DataplaneError> {
        let mut w = AttrWriter::new();
        w.nested(CMD_ATTR_SERVICE, |s| id.encode(s));
        let what = || format!("listing the destinations of service {id}");
        let messages = self.execute(CMD_GET_DEST, &w, true, what)?;
        let inet6 = id.family() == AF_INET6;
        let mut dests = Vec::with_capacity(messages.len());
        for message in messages.iter().filter(|m| m.cmd == CMD_NEW_DEST) {
            let top = parse(&message.attrs)?;
            if let Some(nest) = top
                .nested(CMD_ATTR_DEST)
                .map_err(|e| io_error(what(), e.into()))?
            {
                dests.push(
                    KernelDest::decode(&nest, inet6).map_err(|e| io_error(what(), e.into()))?,
                );
            }
        }
        Ok(dests)
    }

    /// The whole table: every service with its destinations, services in the order of their
    /// ids and destinations in the order of their addresses (as `ipvsadm -L` sorts them).
    pub fn read(&self) -> Result<KernelTable, DataplaneError> {
        let mut services = self.services()?;
        services.sort_by_key(|s| s.attrs.id);
        let mut entries = Vec::with_capacity(services.len());
        for service in services {
            let mut dests = match self.destinations(&service.attrs.id) {
                Ok(d) => d,
                // Deleted between the two dumps.
                Err(e) if errno(&e) == Some(nix::errno::Errno::ESRCH as i32) => continue,
                Err(e) => return Err(e),
            };
            dests.sort_by_key(|d| d.attrs.addr);
            entries.push(KernelEntry { service, dests });
        }
        Ok(KernelTable { entries })
    }

    /// The part of the kernel's table that halb can express.
    pub fn table(&self) -> Result<Table, DataplaneError> {
        Ok(self.read()?.to_table())
    }

    fn service_command(
        &self,
        cmd: u8,
        settings: &ServiceSettings,
        verb: &str,
    ) -> Result<(), DataplaneError> {
        let attrs = ServiceAttrs::from_settings(settings).map_err(DataplaneError::Refused)?;
        attrs.validate().map_err(DataplaneError::Refused)?;
        let mut w = AttrWriter::new();
        w.nested(CMD_ATTR_SERVICE, |s| attrs.encode(s));
        let what = || {
            format!(
                "{verb} service {} (scheduler {})",
                settings.key, attrs.scheduler
            )
        };
        match self.execute(cmd, &w, false, what) {
            // The kernel's only ENOENT here: it could not load `ip_vs_<scheduler>`.
            Err(DataplaneError::Io { what, source })
                if source.raw_os_error() == Some(nix::errno::Errno::ENOENT as i32) =>
            {
                Err(io_error(
                    format!(
                        "{what}; this kernel has no IPVS scheduler {0} (module ip_vs_{0})",
                        attrs.scheduler
                    ),
                    source,
                ))
            }
            other => other.map(drop),
        }
    }

    /// `ipvsadm -A`.
    pub fn add_service(&self, settings: &ServiceSettings) -> Result<(), DataplaneError> {
        self.service_command(CMD_NEW_SERVICE, settings, "adding")
    }

    /// `ipvsadm -E`.
    pub fn edit_service(&self, settings: &ServiceSettings) -> Result<(), DataplaneError> {
        self.service_command(CMD_SET_SERVICE, settings, "editing")
    }

    /// `ipvsadm -D`, with its destinations.
    pub fn del_service(&self, key: &ServiceKey) -> Result<(), DataplaneError> {
        let id = ServiceId::from_key(key);
        let mut w = AttrWriter::new();
        w.nested(CMD_ATTR_SERVICE, |s| id.encode(s));
        self.execute(CMD_DEL_SERVICE, &w, false, || {
            format!("deleting service {key}")
        })
        .map(drop)
    }

    fn dest_command(
        &self,
        cmd: u8,
        key: &ServiceKey,
        dest: &Destination,
        verb: &str,
    ) -> Result<(), DataplaneError> {
        let attrs = DestAttrs::from_destination(dest).map_err(DataplaneError::Refused)?;
        let id = ServiceId::from_key(key);
        let mut w = AttrWriter::new();
        w.nested(CMD_ATTR_SERVICE, |s| id.encode(s));
        w.nested(CMD_ATTR_DEST, |d| attrs.encode(d));
        self.execute(cmd, &w, false, || {
            format!(
                "{verb} destination {} ({}, weight {}) of service {key}",
                dest.addr,
                dest.forwarding.name(),
                dest.weight
            )
        })
        .map(drop)
    }

    /// `ipvsadm -a`.
    pub fn add_dest(&self, key: &ServiceKey, dest: &Destination) -> Result<(), DataplaneError> {
        self.dest_command(CMD_NEW_DEST, key, dest, "adding")
    }

    /// `ipvsadm -e`.
    pub fn edit_dest(&self, key: &ServiceKey, dest: &Destination) -> Result<(), DataplaneError> {
        self.dest_command(CMD_SET_DEST, key, dest, "editing")
    }

    /// `ipvsadm -d`.
    pub fn del_dest(&self, key: &ServiceKey, addr: SocketAddr) -> Result<(), DataplaneError> {
        let id = ServiceId::from_key(key);
        let mut w = AttrWriter::new();
        w.nested(CMD_ATTR_SERVICE, |s| id.encode(s));
        w.nested(CMD_ATTR_DEST, |d| DestAttrs::encode_id(addr, d));
        self.execute(CMD_DEL_DEST, &w, false, || {
            format!("deleting destination {addr} of service {key}")
        })
        .map(drop)
    }

    /// `ipvsadm -C`: every service, halb's or not.
    pub fn flush(&self) -> Result<(), DataplaneError> {
        self.execute(CMD_FLUSH, &AttrWriter::new(), false, || {
            "flushing the IPVS table".into()
        })
        .map(drop)
    }

    /// `ipvsadm -Z`: zeroes the counters of one service, or of all with `None`.
    pub fn zero(&self, key: Option<&ServiceKey>) -> Result<(), DataplaneError> {
        let mut w = AttrWriter::new();
        if let Some(key) = key {
            let id = ServiceId::from_key(key);
            w.nested(CMD_ATTR_SERVICE, |s| id.encode(s));
        }
        self.execute(CMD_ZERO, &w, false, || "zeroing the IPVS counters".into())
            .map(drop)
    }

    /// `ipvsadm --set TCP TCPFIN UDP` (keepalived's `lvs_timeouts`): seconds; `None` (or 0)
    /// leaves that timeout as it is.
    pub fn set_timeouts(
        &self,
        tcp: Option<u32>,
        tcp_fin: Option<u32>,
        udp: Option<u32>,
    ) -> Result<(), DataplaneError> {
        let timeouts = Timeouts {
            tcp_s: tcp.unwrap_or(0),
            tcp_fin_s: tcp_fin.unwrap_or(0),
            udp_s: udp.unwrap_or(0),
        };
        timeouts.validate().map_err(DataplaneError::Refused)?;
        let mut w = AttrWriter::new();
        timeouts.encode(&mut w);
        self.execute(CMD_SET_CONFIG, &w, false, || {
            format!(
                "setting the IPVS timeouts (tcp {}, tcpfin {}, udp {})",
                timeouts.tcp_s, timeouts.tcp_fin_s, timeouts.udp_s
            )
        })
        .map(drop)
    }

    /// `ipvsadm -L --timeout`.
    pub fn timeouts(&self) -> Result<Timeouts, DataplaneError> {
        let what = || "reading the IPVS timeouts".to_string();
        let messages = self.execute(CMD_GET_CONFIG, &AttrWriter::new(), false, what)?;
        let message = first(messages, "the IPVS timeouts")?;
        Timeouts::decode(&parse(&message.attrs)?).map_err(|e| io_error(what(), e.into()))
    }

    /// `ipvsadm --start-daemon` (keepalived's `lvs_sync_daemon`).
    pub fn start_daemon(&self, daemon: &SyncDaemon) -> Result<(), DataplaneError> {
        daemon.validate().map_err(DataplaneError::Refused)?;
        let mut w = AttrWriter::new();
        w.nested(CMD_ATTR_DAEMON, |d| daemon.encode(d));
        self.execute(CMD_NEW_DAEMON, &w, false, || {
            format!(
                "starting the IPVS sync daemon ({} on {}, syncid {})",
                daemon.state, daemon.interface, daemon.sync_id
            )
        })
        .map(drop)
    }

    /// `ipvsadm --stop-daemon STATE`.
    pub fn stop_daemon(&self, state: SyncState) -> Result<(), DataplaneError> {
        let mut w = AttrWriter::new();
        w.nested(CMD_ATTR_DAEMON, |d| SyncDaemon::encode_stop(state, d));
        self.execute(CMD_DEL_DAEMON, &w, false, || {
            format!("stopping the IPVS {state} sync daemon")
        })
        .map(drop)
    }

    /// `ipvsadm -L --daemon`: the running sync daemons (master first).
    pub fn daemons(&self) -> Result<Vec<SyncDaemon>, DataplaneError> {
        let what = || "listing the IPVS sync daemons".to_string();
        let messages = self.execute(CMD_GET_DAEMON, &AttrWriter::new(), true, what)?;
        let mut daemons = Vec::new();
        for message in messages.iter().filter(|m| m.cmd == CMD_NEW_DAEMON) {
            let top = parse(&message.attrs)?;
            if let Some(nest) = top
                .nested(CMD_ATTR_DAEMON)
                .map_err(|e| io_error(what(), e.into()))?
            {
                daemons.push(SyncDaemon::decode(&nest).map_err(|e| io_error(what(), e.into()))?);
            }
        }
        Ok(daemons)
    }

    /// Reads the kernel's table and makes halb's part of it match `desired`: the services in
    /// `owned` and in `desired` are added, edited, emptied of extra destinations or removed;
    /// every other service is left as it is. Fails only when the table cannot be read or
    /// `desired` holds what IPVS cannot; the changes themselves are all tried, and
    /// [`Reconciled::result`] says which did not land.
    pub fn reconcile(
        &self,
        desired: &Table,
        owned: &BTreeSet<ServiceKey>,
    ) -> Result<Reconciled, DataplaneError> {
        let kernel = self.read()?;
        let changes = reconcile::plan(&kernel, desired, owned).map_err(DataplaneError::Refused)?;
        let result = self.apply_all(&changes);
        Ok(Reconciled {
            before: kernel.to_table(),
            changes,
            result,
        })
    }

    /// [`Dataplane::apply`], which needs no exclusive access: the socket is behind a lock.
    pub fn apply_all(&self, changes: &[Change]) -> Result<(), ApplyError> {
        partial::apply_each(changes, |change| self.apply_one(change))
    }

    /// Sets `net.ipv4.vs.expire_nodest_conn` to 1, so that the kernel expires the connections
    /// of a destination once it is removed (at once since Linux 5.9, at their next packet
    /// before) instead of letting them linger until they time out.
    pub fn expire_connections_of_removed_dests(&mut self) -> io::Result<()> {
        if !self.expire_nodest_conn_set {
            std::fs::write(EXPIRE_NODEST_CONN, "1").map_err(|e| {
                io::Error::new(e.kind(), format!("setting {EXPIRE_NODEST_CONN} to 1: {e}"))
            })?;
            self.expire_nodest_conn_set = true;
        }
        Ok(())
    }

    /// Applies one change, tolerating what makes it a no-op: adding what is there edits it,
    /// deleting what is gone succeeds. A data plane that re-applies its desired state after a
    /// restart or a race with another program must not fail on those.
    fn apply_one(&self, change: &Change) -> Result<(), DataplaneError> {
        const EEXIST: i32 = nix::errno::Errno::EEXIST as i32;
        const ENOENT: i32 = nix::errno::Errno::ENOENT as i32;
        const ESRCH: i32 = nix::errno::Errno::ESRCH as i32;
        match change {
            Change::AddService(s) => match self.add_service(s) {
                Err(e) if errno(&e) == Some(EEXIST) => self.edit_service(s),
                other => other,
            },
            Change::EditService(s) => match self.edit_service(s) {
                Err(e) if errno(&e) == Some(ESRCH) => self.add_service(s),
                other => other,
            },
            Change::DelService(key) => match self.del_service(key) {
                Err(e) if errno(&e) == Some(ESRCH) => Ok(()),
                other => other,
            },
            Change::AddDest(key, d) => match self.add_dest(key, d) {
                Err(e) if errno(&e) == Some(EEXIST) => self.edit_dest(key, d),
                other => other,
            },
            Change::EditDest(key, d) => match self.edit_dest(key, d) {
                Err(e) if errno(&e) == Some(ENOENT) => self.add_dest(key, d),
                other => other,
            },
            Change::DelDest(key, addr) => match self.del_dest(key, *addr) {
                Err(e) if matches!(errno(&e), Some(ENOENT) | Some(ESRCH)) => Ok(()),
                other => other,
            },
        }
    }
}

impl Dataplane for Ipvs {
    fn apply(&mut self, changes: &[Change]) -> Result<(), ApplyError> {
        self.apply_all(changes)
    }

    /// Services halb cannot name (a protocol other than TCP, UDP and SCTP) are left out. A
    /// failure to read is logged and gives an empty list.
    fn stats(&self) -> Vec<ServiceStats> {
        let table = match self.read() {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("reading the IPVS counters: {e}");
                return Vec::new();
            }
        };
        let mut stats: Vec<ServiceStats> = table
            .entries
            .iter()
            .filter_map(|entry| {
                Some(ServiceStats {
                    key: entry.service.attrs.id.key()?,
                    counters: entry.service.stats.counters,
                    rates: entry.service.stats.rates,
                    dests: entry
                        .dests
                        .iter()
                        .map(|d| DestStats {
                            addr: d.attrs.addr,
                            active: d.active,
                            inactive: d.inactive,
                            counters: d.stats.counters,
                            rates: d.stats.rates,
                        })
                        .collect(),
                })
            })
            .collect();
        stats.sort_by_key(|s| ipvsadm_order(&s.key));
        stats
    }

    /// From `/proc/net/ip_vs_conn` (IPVS offers the connection table over netlink to no one);
    /// a failure to read is logged and gives an empty list.
    fn connections(&self) -> Vec<ConnectionEntry> {
        match conn::read() {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!("reading {}: {e}", conn::PROC_PATH);
                Vec::new()
            }
        }
    }

    /// IPVS cannot close one destination's connections on request. What it can do is expire
    /// the connections of a destination that is removed while `net.ipv4.vs.expire_nodest_conn`
    /// is 1: since Linux 5.9 at once, before that at each connection's next packet. Either way
    /// the client's next packet finds no entry, reaches the director's own stack, which holds
    /// the VIP, and is answered with a reset.
    ///
    /// This sets the sysctl (see [`Ipvs::expire_connections_of_removed_dests`]; the caller does
    /// best to set it before the destination's `DelDest`). A destination still in the table
    /// (at weight 0: `inhibit_on_failure`, `sorry_server_inhibit`, a weight set to 0) is taken
    /// out, and put back as it was once its entries are gone, or after a second at most. Returns
    /// how many entries the connection table held from `service` to `dest`.
    fn drop_connections(&mut self, service: &ServiceKey, dest: SocketAddr) -> usize {
        if let Err(e) = self.expire_connections_of_removed_dests() {
            tracing::warn!("connections to {dest} of {service} will linger: {e}");
        }
        let count = |entries: &[ConnectionEntry]| {
            entries
                .iter()
                .filter(|c| c.dest == dest)
                .filter(|c| match service {
                    ServiceKey::Addr { protocol, addr } => {
                        c.protocol == *protocol && c.virtual_addr == *addr
                    }
                    // A firewall-mark service's connections carry the packet's own address.
                    ServiceKey::Fwmark { .. } => true,
                })
                .count()
        };
        let held = count(&self.connections());
        if held == 0 {
            return 0;
        }
        let kept = match self.destinations(&ServiceId::from_key(service)) {
            Ok(dests) => dests
                .into_iter()
                .find(|d| d.attrs.addr == dest)
                .and_then(|d| d.attrs.destination()),
            Err(e) => {
                tracing::warn!("reading the destinations of {service}: {e}");
                None
            }
        };
        if let Some(kept) = kept {
            if let Err(e) = self.del_dest(service, dest) {
                tracing::warn!("connections to {dest} of {service} will linger: {e}");
                return held;
            }
            // Put back at once, the kernel would take the removed destination out of its
            // trash with its connections still attached: wait for its flush first.
            let until = std::time::Instant::now() + FENCE_WAIT;
            while count(&self.connections()) > 0 && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            if let Err(e) = self.add_dest(service, &kept) {
                tracing::warn!(
                    "putting {dest} back into {service} at weight {}: {e}",
                    kept.weight
                );
            }
        }
        held
    }

    fn name(&self) -> &'static str {
        "ipvs"
    }
}

/// What [`Ipvs::reconcile`] found and did.
#[derive(Debug)]
pub struct Reconciled {
    /// The kernel's table before the repair, as far as halb can express it: with
    /// [`ApplyError::held`], what halb's services hold after it.
    pub before: Table,
    /// The changes planned, in the order tried (none when the kernel already matched).
    pub changes: Vec<Change>,
    /// Whether every one of them landed.
    pub result: Result<(), ApplyError>,
}

/// ipvsadm's order of services (`ipvs_cmp_services`): address services before firewall marks,
/// then by mark, family, protocol, address and port.
fn ipvsadm_order(key: &ServiceKey) -> (u32, bool, u16, SocketAddr) {
    match *key {
        ServiceKey::Addr { protocol, addr } => {
            (0, addr.is_ipv6(), service::protocol_number(protocol), addr)
        }
        ServiceKey::Fwmark { mark, inet6 } => (mark, inet6, 0, SocketAddr::from(([0, 0, 0, 0], 0))),
    }
}

fn io_error(what: impl Into<String>, source: io::Error) -> DataplaneError {
    DataplaneError::Io {
        what: what.into(),
        source,
    }
}

/// The error of a kernel refusal, with a hint where the errno alone misleads.
fn explain(what: String, e: io::Error) -> DataplaneError {
    let hint = match e.raw_os_error() {
        Some(code) if code == nix::errno::Errno::EPERM as i32 => {
            Some("changing IPVS needs CAP_NET_ADMIN")
        }
        _ => None,
    };
    match hint {
        Some(hint) => io_error(format!("{what}; {hint}"), e),
        None => io_error(what, e),
    }
}

fn errno(e: &DataplaneError) -> Option<i32> {
    match e {
        DataplaneError::Io { source, .. } => source.raw_os_error(),
        DataplaneError::Refused(_) => None,
    }
}

fn first(messages: Vec<GenlMessage>, what: &str) -> Result<GenlMessage, DataplaneError> {
    messages.into_iter().next().ok_or_else(|| {
        io_error(
            format!("reading {what}"),
            io::Error::new(
                io::ErrorKind::InvalidData,
                "the kernel acknowledged without answering",
            ),
        )
    })
}

fn parse(attrs: &[u8]) -> Result<AttrMap<'_>, DataplaneError> {
    AttrMap::parse(attrs).map_err(|e| io_error("reading the kernel's answer", e.into()))
}
