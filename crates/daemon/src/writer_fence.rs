//! Server fencing for `mysql_writer` virtual servers: exactly one writable server. When the
//! servers a writer service routes to change, the one it leaves is made read-only and its
//! client sessions are killed, then the new one is made writable, and only then does the table
//! change (the shell calls [`WriterFencing::switch`] between the core's verdict and the data
//! plane). A server that cannot be reached is fenced again every second until it answers; the
//! switch does not wait for it (it is down for everyone this director serves).
//!
//! Only the VRRP MASTER of the service's address acts: a BACKUP never writes to a database.
//! When this director becomes MASTER, it brings the servers to the state the table says
//! ([`WriterFencing::take_over`]), and while it is MASTER it keeps them so: a server it does not
//! route to that is found writable (another director that believes itself MASTER made it the
//! writer, or a person did) is fenced again ([`WriterFencing::enforce`]). Two directors that
//! disagree then leave at most one server writable, or none, never two.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use halb_check::mysql::fence::{self, Credentials};
use halb_check::mysql::replica::{replica_state, ReplicaState};
use halb_check::mysql::FencedServers;
use halb_config::model::LvsConfig;
use halb_lb::table::ServiceKey;
use halb_lb::virtual_server::{VirtualServerStatus, VirtualServers};
use tracing::{debug, error, info, warn};

/// The servers a virtual server sends new connections to: the sorry server while it stands
/// in, else the real servers in the pool with a weight.
pub fn routed(status: &VirtualServerStatus) -> BTreeSet<SocketAddr> {
    match &status.sorry_server {
        Some(s) if s.active => [s.addr].into(),
        _ => status
            .real_servers
            .iter()
            .filter(|rs| rs.in_pool && rs.effective_weight > 0)
            .map(|rs| rs.addr)
            .collect(),
    }
}

/// Every server of a virtual server, routed or not.
fn all_servers(status: &VirtualServerStatus) -> BTreeSet<SocketAddr> {
    status
        .real_servers
        .iter()
        .map(|rs| rs.addr)
        .chain(status.sorry_server.as_ref().map(|s| s.addr))
        .collect()
}

/// What one change of a writer service asks for, in this order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Made read-only, their sessions killed.
    pub fence: Vec<SocketAddr>,
    /// Then made writable.
    pub unfence: Vec<SocketAddr>,
}

impl Plan {
    /// From the servers routed before to those routed after.
    pub fn between(before: &BTreeSet<SocketAddr>, after: &BTreeSet<SocketAddr>) -> Plan {
        Plan {
            fence: before.difference(after).copied().collect(),
            unfence: after.difference(before).copied().collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.fence.is_empty() && self.unfence.is_empty()
    }
}

/// A fence that failed and is tried again every second.
#[derive(Debug, Clone)]
struct Owed {
    creds: Credentials,
    /// When the first attempt failed.
    since: Instant,
    /// Retries that failed so far.
    retries: u32,
}

impl Owed {
    fn new(creds: Credentials) -> Owed {
        Owed {
            creds,
            since: Instant::now(),
            retries: 0,
        }
    }

    /// Whether the retry that just failed is one to log: the first, then one in 30 (every
    /// half minute at one a second), so that a fence that stays owed says why without
    /// filling the log.
    fn worth_logging(&self) -> bool {
        self.retries % 30 == 1
    }
}

/// The writer services of a configuration and the fences still owed.
#[derive(Debug, Default)]
pub struct WriterFencing {
    /// By virtual server index: whom to log in as.
    writers: BTreeMap<usize, Credentials>,
    /// Servers whose fence failed, to try again.
    pending: BTreeMap<SocketAddr, Owed>,
    /// The servers held read-only by this director's fences (shared with the checkers).
    fenced: FencedServers,
}

impl WriterFencing {
    /// `fenced`: the servers held read-only so far (kept across a reload).
    pub fn new(lvs: &LvsConfig, fenced: FencedServers) -> WriterFencing {
        let writers = lvs
            .virtual_servers
            .iter()
            .enumerate()
            .filter(|(_, vs)| vs.mysql_writer)
            .filter_map(|(i, vs)| {
                let check = vs.writer_check()?;
                let timeout_us = check
                    .common
                    .connect_timeout_us
                    .unwrap_or(vs.connect_timeout_us);
                Some((
                    i,
                    Credentials {
                        user: check.user.clone(),
                        password: check.password.clone(),
                        timeout: Duration::from_micros(timeout_us),
                    },
                ))
            })
            .collect();
        WriterFencing {
            writers,
            pending: BTreeMap::new(),
            fenced,
        }
    }

    /// The servers this director holds read-only, for the checkers.
    pub fn fenced(&self) -> FencedServers {
        self.fenced.clone()
    }

    pub fn is_empty(&self) -> bool {
        self.writers.is_empty()
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The servers each writer service routes to now, for [`WriterFencing::switch`].
    pub fn routed_now(&self, vs: &VirtualServers) -> BTreeMap<usize, BTreeSet<SocketAddr>> {
        self.writers
            .keys()
            .filter_map(|&i| Some((i, routed(&vs.vs_status(i)?))))
            .collect()
    }

    /// A verdict changed what the writer services route to (from `before` to what `vs` says
    /// now): fences and unfences, where this director is MASTER of the service's address
    /// (`vips`). Returns when done; the caller changes the table after.
    pub async fn switch(
        &mut self,
        before: &BTreeMap<usize, BTreeSet<SocketAddr>>,
        vs: &VirtualServers,
        vips: &BTreeSet<IpAddr>,
    ) {
        for (&i, creds) in &self.writers.clone() {
            let Some(status) = vs.vs_status(i) else {
                continue;
            };
            let Some(was) = before.get(&i) else { continue };
            let plan = Plan::between(was, &routed(&status));
            if plan.is_empty() || !master_of(&status, vips) {
                continue;
            }
            self.carry_out(&status.name, plan, creds, Why::Switch).await;
        }
    }

    /// Before a verdict that would hand a writer service back from its sorry server (`before`
    /// routed; `trial` is the state the verdict leads to): the catch-up. The returning server
    /// must have applied what the sorry server wrote: first without fencing, for up to a
    /// second, then with the sorry server fenced (so that nothing new is written) for up to the
    /// check's timeout. `Some(why)` when it has not: the verdict waits and the sorry server
    /// stays the writer. Only the MASTER waits; a BACKUP follows its checkers.
    pub async fn catch_up(
        &self,
        before: &BTreeMap<usize, BTreeSet<SocketAddr>>,
        trial: &VirtualServers,
        vips: &BTreeSet<IpAddr>,
    ) -> Option<String> {
        for (&i, creds) in &self.writers {
            let Some(status) = trial.vs_status(i) else {
                continue;
            };
            let Some(sorry) = status.sorry_server.as_ref().map(|s| s.addr) else {
                continue;
            };
            let handback = before
                .get(&i)
                .is_some_and(|was| was.len() == 1 && was.contains(&sorry))
                && !routed(&status).contains(&sorry);
            if !handback || !master_of(&status, vips) {
                continue;
            }
            let returning: Vec<SocketAddr> = routed(&status).into_iter().collect();
            let creds = creds.clone();
            let name = status.name.clone();
            let held = tokio::task::spawn_blocking(move || {
                catch_up_blocking(&name, sorry, &returning, &creds)
            })
            .await;
            match held {
                Ok(None) => {}
                Ok(Some(why)) => return Some(why),
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
        None
    }

    /// This director just became MASTER of `gained`: every writer service there gets its
    /// routed servers writable and the others fenced.
    pub async fn take_over(&mut self, vs: &VirtualServers, gained: &[IpAddr]) {
        for (&i, creds) in &self.writers.clone() {
            let Some(status) = vs.vs_status(i) else {
                continue;
            };
            let serves = status
                .services
                .iter()
                .any(|s| matches!(s, ServiceKey::Addr { addr, .. } if gained.contains(&addr.ip())));
            if !serves {
                continue;
            }
            let routed = routed(&status);
            let plan = Plan {
                fence: all_servers(&status).difference(&routed).copied().collect(),
                unfence: routed.into_iter().collect(),
            };
            self.carry_out(&status.name, plan, creds, Why::TakeOver)
                .await;
        }
    }

    /// Where this director is MASTER: each server of a writer service that it does not route
    /// to, and whose fence is not already owed ([`WriterFencing::retry`] has those), must be
    /// read-only; one found writable is fenced again. Each look is bounded by [`ENFORCE_PROBE`],
    /// so a server that does not answer holds the daemon up briefly.
    pub async fn enforce(&mut self, vs: &VirtualServers, vips: &BTreeSet<IpAddr>) {
        for (&i, creds) in &self.writers.clone() {
            let Some(status) = vs.vs_status(i) else {
                continue;
            };
            if !master_of(&status, vips) {
                continue;
            }
            for server in not_routed(&status, &self.pending) {
                let mut probe = creds.clone();
                probe.timeout = probe.timeout.min(ENFORCE_PROBE);
                let looked =
                    tokio::task::spawn_blocking(move || fence::is_read_only(server, &probe)).await;
                let writable = match looked {
                    Ok(Ok(read_only)) => !read_only,
                    // Unreachable: nobody this director serves can write there either.
                    Ok(Err(_)) => false,
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                };
                if !writable {
                    continue;
                }
                match run_fence(server, creds.clone()).await {
                    // This director holds it read-only now: its checks may pass again.
                    Ok(done) => {
                        self.fenced.insert(server);
                        warn!(
                            "[{}]:{} of VS {} was writable while the VS routes elsewhere (another \
                         director or a person made it so): fenced again, read_only ON, {} \
                         client session(s) killed",
                            server.ip(),
                            server.port(),
                            status.name,
                            done.killed.len()
                        )
                    }
                    Err(e) => {
                        warn!(
                            "[{}]:{} of VS {} is writable while the VS routes elsewhere and \
                             cannot be fenced ({e}); trying again every second",
                            server.ip(),
                            server.port(),
                            status.name
                        );
                        self.pending.insert(server, Owed::new(creds.clone()));
                    }
                }
            }
        }
    }

    /// Every server of the writer services, with whom to log in as: whose replica state
    /// `halb status` and the metrics show.
    pub fn replica_targets(&self, vs: &VirtualServers) -> Vec<(SocketAddr, Credentials)> {
        let mut targets = BTreeMap::new();
        for (&i, creds) in &self.writers {
            if let Some(status) = vs.vs_status(i) {
                for server in all_servers(&status) {
                    targets.entry(server).or_insert_with(|| creds.clone());
                }
            }
        }
        targets.into_iter().collect()
    }

    /// Tries the fences that failed again, where this director is still MASTER of a writer
    /// service the server belongs to; the others are dropped: a director that went BACKUP
    /// while a fence was owed must not fence the server its peer now routes to.
    pub async fn retry(&mut self, vs: &VirtualServers, vips: &BTreeSet<IpAddr>) {
        let mastered: BTreeSet<SocketAddr> = self
            .writers
            .keys()
            .filter_map(|&i| vs.vs_status(i))
            .filter(|status| master_of(status, vips))
            .flat_map(|status| all_servers(&status))
            .collect();
        for (server, mut owed) in std::mem::take(&mut self.pending) {
            if !mastered.contains(&server) {
                info!(
                    "No longer MASTER of a writer service of [{}]:{}: its owed fence is dropped",
                    server.ip(),
                    server.port()
                );
                continue;
            }
            match run_fence(server, owed.creds.clone()).await {
                Ok(done) => {
                    if !done.was_read_only {
                        self.fenced.insert(server);
                    }
                    info!(
                        "Fenced [{}]:{} now that it answers: read_only ON, {} session(s) killed \
                         ({:.1} s after the fence was first owed, retry {})",
                        server.ip(),
                        server.port(),
                        done.killed.len(),
                        owed.since.elapsed().as_secs_f64(),
                        owed.retries + 1
                    )
                }
                Err(e) => {
                    owed.retries += 1;
                    if owed.worth_logging() {
                        warn!(
                            "Still cannot fence [{}]:{} ({e}): owed for {:.1} s, retry {} \
                             failed; trying again every second",
                            server.ip(),
                            server.port(),
                            owed.since.elapsed().as_secs_f64(),
                            owed.retries
                        );
                    }
                    self.pending.insert(server, owed);
                }
            }
        }
    }

    async fn carry_out(&mut self, vs: &str, plan: Plan, creds: &Credentials, why: Why) {
        let switching = why == Why::Switch;
        for server in plan.fence {
            match run_fence(server, creds.clone()).await {
                // A server found read-only already was made so by someone else (an operator,
                // another tool), and was taken out for it: it stays out until they make it
                // writable again. A take-over adopts every fence (the previous MASTER's).
                Ok(done) if done.was_read_only && switching => info!(
                    "Fenced [{}]:{} of VS {vs}: it was read_only already (not by this \
                     director), {} client session(s) killed; it returns when it is writable",
                    server.ip(),
                    server.port(),
                    done.killed.len()
                ),
                Ok(done) => {
                    self.fenced.insert(server);
                    info!(
                        "Fenced [{}]:{} of VS {vs}: read_only ON{}, {} client session(s) killed",
                        server.ip(),
                        server.port(),
                        if done.super_read_only {
                            ", super_read_only ON"
                        } else {
                            ""
                        },
                        done.killed.len()
                    )
                }
                Err(e) => {
                    warn!(
                        "Cannot fence [{}]:{} of VS {vs} ({e}); {}it is fenced as soon as it answers",
                        server.ip(),
                        server.port(),
                        if switching { "switching anyway: " } else { "" }
                    );
                    self.pending
                        .entry(server)
                        .or_insert_with(|| Owed::new(creds.clone()));
                }
            }
        }
        for server in plan.unfence {
            // The new writer: no fence owed to it any more.
            self.pending.remove(&server);
            self.fenced.remove(server);
            let creds = creds.clone();
            let done = tokio::task::spawn_blocking(move || fence::unfence(server, &creds)).await;
            match done {
                Ok(Ok(())) => info!(
                    "Made [{}]:{} writable for VS {vs}: read_only OFF",
                    server.ip(),
                    server.port()
                ),
                Ok(Err(e)) => error!(
                    "Cannot make [{}]:{} writable for VS {vs}: {e}",
                    server.ip(),
                    server.port()
                ),
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
    }
}

/// The limit of each look [`WriterFencing::enforce`] takes at a server's `read_only`.
const ENFORCE_PROBE: Duration = Duration::from_millis(500);

/// The servers of a writer service that must be read-only and that no owed fence covers: every
/// one but those it routes to.
fn not_routed(
    status: &VirtualServerStatus,
    pending: &BTreeMap<SocketAddr, Owed>,
) -> Vec<SocketAddr> {
    all_servers(status)
        .difference(&routed(status))
        .filter(|s| !pending.contains_key(s))
        .copied()
        .collect()
}

/// What a fence plan is carried out for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// A verdict moved the writer.
    Switch,
    /// This director became MASTER.
    TakeOver,
}

/// How long the returning server may take to catch up before the sorry server is fenced.
const UNFENCED_WAIT: Duration = Duration::from_secs(1);

fn catch_up_blocking(
    vs: &str,
    sorry: SocketAddr,
    returning: &[SocketAddr],
    creds: &Credentials,
) -> Option<String> {
    // A returning server whose replication is stopped cannot catch up, however long the
    // wait: say why at once.
    for &server in returning {
        if let Some(why) = not_applying(server, creds) {
            return Some(format!("{server} cannot catch up: {why}"));
        }
    }
    let Ok(position) = fence::gtid_position(sorry, creds) else {
        // The sorry server is gone: the returning server is all there is.
        warn!("Cannot read the GTID position of sorry server {sorry} of VS {vs}; handing back without waiting");
        return None;
    };
    let caught_up = |limit: Duration, position: &fence::GtidPosition| -> Result<(), String> {
        for &server in returning {
            match fence::wait_for_position(server, creds, position, limit) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(format!(
                        "{server} has not applied the sorry server's {position} within {limit:?}"
                    ))
                }
                Err(e) => return Err(format!("waiting for {server} to apply {position}: {e}")),
            }
        }
        Ok(())
    };
    if let Err(why) = caught_up(UNFENCED_WAIT, &position) {
        return Some(why);
    }
    // Nothing new may be written to the sorry server while the last of it is applied.
    if let Err(e) = fence::fence(sorry, creds) {
        return Some(format!("cannot fence sorry server {sorry}: {e}"));
    }
    let last = match fence::gtid_position(sorry, creds) {
        Ok(p) => p,
        Err(e) => {
            let _ = fence::unfence(sorry, creds);
            return Some(format!("reading sorry server {sorry}'s GTID position: {e}"));
        }
    };
    match caught_up(creds.timeout, &last) {
        Ok(()) => {
            info!(
                "VS {vs}: the returning server has applied the sorry server's {last}; handing back"
            );
            None
        }
        Err(why) => {
            if let Err(e) = fence::unfence(sorry, creds) {
                error!("Cannot make sorry server {sorry} of VS {vs} writable again: {e}");
            }
            Some(why)
        }
    }
}

/// Why `server` is not applying its peer's writes (its replica state), if it is not. A user
/// without the right to read it (MariaDB's SLAVE MONITOR, MySQL's REPLICATION CLIENT) or a
/// server that replicates from nobody leave the decision to the GTID wait.
fn not_applying(server: SocketAddr, creds: &Credentials) -> Option<String> {
    match read_replica_state(server, creds) {
        Ok(Some(state)) => state.not_applying(),
        Ok(None) => None,
        Err(e) => {
            debug!("reading the replica state of {server}: {e}");
            None
        }
    }
}

/// The replica state of `server` (`None`: it replicates from nobody). Blocking.
pub fn read_replica_state(
    server: SocketAddr,
    creds: &Credentials,
) -> Result<Option<ReplicaState>, halb_check::mysql::client::SqlError> {
    let mut options =
        halb_check::mysql::client::ConnectOptions::new(server, &creds.user, &creds.password);
    options.connect_timeout = creds.timeout;
    options.io_timeout = creds.timeout;
    let mut conn = halb_check::mysql::client::Connection::connect(&options)?;
    let state = replica_state(&mut conn);
    conn.close();
    state
}

async fn run_fence(
    server: SocketAddr,
    creds: Credentials,
) -> Result<fence::Fenced, halb_check::mysql::client::SqlError> {
    match tokio::task::spawn_blocking(move || fence::fence(server, &creds)).await {
        Ok(r) => r,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Whether this director holds an address of the virtual server (it is the VRRP MASTER).
fn master_of(status: &VirtualServerStatus, vips: &BTreeSet<IpAddr>) -> bool {
    status
        .services
        .iter()
        .any(|s| matches!(s, ServiceKey::Addr { addr, .. } if vips.contains(&addr.ip())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(addrs: &[&str]) -> BTreeSet<SocketAddr> {
        addrs.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn a_switch_fences_the_server_left_and_unfences_the_new_one() {
        let plan = Plan::between(&set(&["10.0.0.1:3306"]), &set(&["10.0.0.2:3306"]));
        assert_eq!(plan.fence, vec!["10.0.0.1:3306".parse().unwrap()]);
        assert_eq!(plan.unfence, vec!["10.0.0.2:3306".parse().unwrap()]);
        assert!(Plan::between(&set(&["10.0.0.1:3306"]), &set(&["10.0.0.1:3306"])).is_empty());
        // Nothing left to route to: fence the old one, unfence nobody.
        let plan = Plan::between(&set(&["10.0.0.1:3306"]), &set(&[]));
        assert_eq!(plan.unfence, vec![]);
    }
}
