//! Persistence templates (IPVS's `ip_vs_sched_persist`): a client network, masked by the
//! service's granularity, sticks to one destination for `persistence_timeout` after its last
//! connection.
//!
//! As in IPVS, a template is a connection entry of its own: each connection scheduled
//! through it is one it "controls", and a template never expires while it controls a live
//! connection. Its timer restarts (to the full timeout) each time a new connection uses it.
//! At lookup, a template whose destination has left the service is dropped, and so is one
//! whose destination is quiescent (weight 0) if `expire_quiescent_template` is on — by default
//! it is off, as in the kernel, so a client keeps reaching a quiescent destination.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::sched::DestLoad;
use crate::table::{Persistence, PersistenceGranularity};

/// How often IPVS re-checks a template kept past its timeout by its connections: once they
/// are all gone, the template lingers until the next such check.
const RECHECK: Duration = Duration::from_secs(60);

/// One service's templates.
#[derive(Debug, Clone)]
pub struct Templates {
    persistence: Persistence,
    expire_quiescent: bool,
    /// The service's destinations and their weights, as last told by [`Templates::update`].
    dests: HashMap<SocketAddr, u32>,
    /// Masked client address → template.
    entries: HashMap<IpAddr, Template>,
    next_id: u64,
}

#[derive(Debug, Clone, Copy)]
struct Template {
    /// Tells this template from a later one for the same network, so that connections
    /// of a dropped template do not count against its successor.
    id: u64,
    dest: SocketAddr,
    expires: Instant,
    /// Live connections scheduled through this template (the kernel's `n_control`).
    controlled: u32,
}

/// A connection's hold on the template it was scheduled through; give it back with
/// [`Templates::release`] when the connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TemplateRef {
    network: IpAddr,
    id: u64,
}

/// What a template holds, for status output and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateState {
    /// The masked client address.
    pub network: IpAddr,
    pub dest: SocketAddr,
    /// When it expires unless a connection uses it or is still open then.
    pub expires: Instant,
    /// Its live connections.
    pub controlled: u32,
}

impl Templates {
    pub fn new(persistence: Persistence) -> Templates {
        Templates {
            persistence,
            expire_quiescent: false,
            dests: HashMap::new(),
            entries: HashMap::new(),
            next_id: 0,
        }
    }

    /// The `expire_quiescent_template` sysctl: drop a template at lookup when its destination
    /// has weight 0, rather than keep sending its clients there.
    pub fn with_expire_quiescent(mut self, on: bool) -> Templates {
        self.expire_quiescent = on;
        self
    }

    pub fn persistence(&self) -> Persistence {
        self.persistence
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.persistence.timeout_s))
    }

    /// The client's network: its address masked by the service's granularity.
    pub fn network(&self, client: IpAddr) -> IpAddr {
        mask(client, self.persistence.granularity)
    }

    /// The service's destinations changed (as [`crate::sched::Schedule::update`]): what
    /// lookups check templates against.
    pub fn update(&mut self, dests: &[DestLoad]) {
        self.dests = dests.iter().map(|d| (d.addr, d.weight)).collect();
    }

    /// The destination the client's network is bound to, if its template is alive and its
    /// destination still in the service (`ip_vs_check_template`); a template that fails the
    /// check is dropped, and the caller schedules the connection afresh.
    pub fn lookup(&mut self, now: Instant, client: IpAddr) -> Option<SocketAddr> {
        let network = self.network(client);
        let t = *self.entries.get(&network)?;
        let alive = t.controlled > 0 || now < t.expires;
        let usable = match self.dests.get(&t.dest) {
            None => false,
            Some(&weight) => !(self.expire_quiescent && weight == 0),
        };
        if alive && usable {
            Some(t.dest)
        } else {
            self.entries.remove(&network);
            None
        }
    }

    /// A connection from `client` was sent to `dest`: binds the client's network to `dest`
    /// (creating the template, or replacing one bound elsewhere), restarts its timer, and
    /// counts the connection as one it controls until [`Templates::release`].
    pub fn bind(&mut self, now: Instant, client: IpAddr, dest: SocketAddr) -> TemplateRef {
        let network = self.network(client);
        let expires = now + self.timeout();
        let t = match self.entries.get_mut(&network) {
            Some(t) if t.dest == dest => {
                t.expires = expires;
                t.controlled += 1;
                *t
            }
            _ => {
                let t = Template {
                    id: self.next_id,
                    dest,
                    expires,
                    controlled: 1,
                };
                self.next_id += 1;
                self.entries.insert(network, t);
                t
            }
        };
        TemplateRef { network, id: t.id }
    }

    /// A connection counted by [`Templates::bind`] ended. A template kept past its timeout
    /// only by its connections then lasts until IPVS's next 60-second re-check.
    pub fn release(&mut self, now: Instant, hold: TemplateRef) {
        let Some(t) = self.entries.get_mut(&hold.network) else {
            return;
        };
        if t.id != hold.id {
            return;
        }
        t.controlled = t.controlled.saturating_sub(1);
        if t.controlled == 0 && now >= t.expires {
            let late = now.duration_since(t.expires).as_secs() / RECHECK.as_secs() + 1;
            t.expires += Duration::from_secs(late * RECHECK.as_secs());
        }
    }

    /// Drops every template bound to `dest` (for a destination whose clients must move at
    /// once, e.g. when its connections are dropped too). Returns how many.
    pub fn remove_dest(&mut self, dest: SocketAddr) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, t| t.dest != dest);
        before - self.entries.len()
    }

    /// Drops the templates expired by `now` that control no connection. Returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|_, t| t.controlled > 0 || now < t.expires);
        before - self.entries.len()
    }

    /// When the next template may expire (for the caller's timer).
    pub fn next_expiry(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter(|t| t.controlled == 0)
            .map(|t| t.expires)
            .min()
    }

    /// The template of the client's network, as held (without the checks of `lookup`).
    pub fn get(&self, client: IpAddr) -> Option<TemplateState> {
        let network = self.network(client);
        self.entries.get(&network).map(|t| TemplateState {
            network,
            dest: t.dest,
            expires: t.expires,
            controlled: t.controlled,
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `ip` masked by the granularity: an IPv4 netmask, or a prefix length. A netmask given for
/// an IPv6 client counts as the prefix of its leading ones; a prefix longer than the address
/// is the whole address.
pub fn mask(ip: IpAddr, granularity: Option<PersistenceGranularity>) -> IpAddr {
    let prefix = match granularity {
        None => return ip,
        Some(PersistenceGranularity::Netmask(m)) => match ip {
            IpAddr::V4(a) => return IpAddr::V4(Ipv4Addr::from(u32::from(a) & u32::from(m))),
            IpAddr::V6(_) => u32::from(m).leading_ones(),
        },
        Some(PersistenceGranularity::Prefix(p)) => u32::from(p),
    };
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::MAX.checked_shl(32 - prefix.min(32)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & bits))
        }
        IpAddr::V6(a) => {
            let bits = u128::MAX.checked_shl(128 - prefix.min(128)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & bits))
        }
    }
}
