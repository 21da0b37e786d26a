//! Open files. The proxy takes two descriptors per client connection, and systemd's default
//! soft limit is 1024: the soft limit is raised to the hard one at start, and the proxy is told
//! how many connections fit (as HAProxy derives its maxconn from the limit), keeping a reserve
//! so that the control socket, VRRP, the checkers and notify scripts still get descriptors when
//! clients take all the rest.

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use tracing::{info, warn};

/// Descriptors kept out of the proxy's reach (at most half the limit): the control socket's
/// clients, the VRRP and netlink sockets, one or two per checker, scripts' pipes.
const RESERVE: u64 = 256;

/// Raises the soft limit on open files to the hard limit, logging both values.
pub(crate) fn raise_soft_limit() {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => info!("Raised the open files limit from {soft} to {hard} (the hard limit)"),
            Err(e) => warn!("Cannot raise the open files limit from {soft} to {hard}: {e}"),
        },
        Ok((soft, _)) => info!("Open files limit: {soft} (the hard limit)"),
        Err(e) => warn!("Cannot read the open files limit: {e}"),
    }
}

/// How many client connections the proxy may hold under the current limit; logged.
pub(crate) fn proxy_capacity() -> usize {
    let limit = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) => soft,
        Err(e) => {
            warn!("Cannot read the open files limit ({e}); the proxy takes any number of clients");
            return usize::MAX;
        }
    };
    let (capacity, reserve) = capacity_for(limit);
    info!(
        "The proxy takes at most {capacity} client connections at once (open files limit \
         {limit}: two descriptors per connection, {reserve} kept for the control socket, VRRP \
         and the checkers)"
    );
    capacity
}

/// The connections `limit` descriptors hold, and the reserve kept out of them.
fn capacity_for(limit: u64) -> (usize, u64) {
    let reserve = RESERVE.min(limit / 2);
    let capacity = (limit - reserve) / 2;
    (usize::try_from(capacity).unwrap_or(usize::MAX), reserve)
}

#[cfg(test)]
mod tests {
    use super::capacity_for;

    #[test]
    fn two_descriptors_per_connection_after_the_reserve() {
        assert_eq!(capacity_for(1024), (384, 256));
        assert_eq!(capacity_for(524_288), (262_016, 256));
        // A tiny limit keeps half for the daemon itself.
        assert_eq!(capacity_for(200), (50, 100));
        assert_eq!(capacity_for(0), (0, 0));
    }
}
