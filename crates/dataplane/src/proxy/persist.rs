//! Persistence templates for the proxy (IPVS's `-p TIMEOUT -M NETMASK`): a client network
//! sticks to the destination that served it, until `timeout` after its last connection.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use halb_lb::table::{Persistence, PersistenceGranularity};

#[derive(Debug)]
pub(crate) struct Templates {
    persistence: Persistence,
    /// Masked client address → (destination, expiry).
    entries: HashMap<IpAddr, (SocketAddr, Instant)>,
    /// When the table was last swept of expired entries.
    swept: Option<Instant>,
}

impl Templates {
    pub(crate) fn new(persistence: Persistence) -> Templates {
        Templates {
            persistence,
            entries: HashMap::new(),
            swept: None,
        }
    }

    pub(crate) fn persistence(&self) -> Persistence {
        self.persistence
    }

    /// The destination this client's network is bound to, if its template is still alive.
    pub(crate) fn lookup(&self, client: IpAddr, now: Instant) -> Option<SocketAddr> {
        let (dest, expires) = self.entries.get(&self.mask(client))?;
        (now < *expires).then_some(*dest)
    }

    /// Binds the client's network to `dest` (or refreshes the binding) for another timeout.
    pub(crate) fn remember(&mut self, client: IpAddr, dest: SocketAddr, now: Instant) {
        let timeout = Duration::from_secs(u64::from(self.persistence.timeout_s));
        self.entries
            .insert(self.mask(client), (dest, now + timeout));
        // Sweep now and then so that a table of one-off clients does not grow for ever.
        if self
            .swept
            .is_none_or(|at| now.duration_since(at) >= timeout)
        {
            self.entries.retain(|_, (_, expires)| now < *expires);
            self.swept = Some(now);
        }
    }

    fn mask(&self, client: IpAddr) -> IpAddr {
        match (client, self.persistence.granularity) {
            (IpAddr::V4(a), Some(PersistenceGranularity::Netmask(m))) => {
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & u32::from(m)))
            }
            (IpAddr::V6(a), Some(PersistenceGranularity::Prefix(len))) => {
                let len = u32::from(len.min(128));
                let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
            (addr, _) => addr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_sticks_until_the_timeout() {
        let mut t = Templates::new(Persistence {
            timeout_s: 10,
            granularity: Some(PersistenceGranularity::Netmask(Ipv4Addr::new(
                255, 255, 255, 0,
            ))),
        });
        let now = Instant::now();
        let dest: SocketAddr = "10.0.0.1:80".parse().unwrap();
        t.remember("192.0.2.7".parse().unwrap(), dest, now);
        assert_eq!(t.lookup("192.0.2.200".parse().unwrap(), now), Some(dest));
        assert_eq!(t.lookup("192.0.3.7".parse().unwrap(), now), None);
        assert_eq!(
            t.lookup("192.0.2.7".parse().unwrap(), now + Duration::from_secs(10)),
            None
        );
    }

    #[test]
    fn ipv6_prefixes_mask() {
        let t = Templates::new(Persistence {
            timeout_s: 10,
            granularity: Some(PersistenceGranularity::Prefix(64)),
        });
        assert_eq!(
            t.mask("2001:db8::1:2:3:4".parse().unwrap()),
            "2001:db8::".parse::<IpAddr>().unwrap()
        );
    }
}
