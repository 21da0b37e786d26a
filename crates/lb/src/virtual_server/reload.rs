//! A reload: the virtual servers of a new configuration, built as at start but carrying the
//! run-time state of what did not change (keepalived's `clear_diff_services()` keeps matching
//! virtual servers, real servers and checkers): checker verdicts, so that a server that failed
//! stays out (keepalived #608, #1163, #1720 were the opposite); quorum; the sorry server's
//! place in the pool (#490). Which new part continues which old one is decided by the caller
//! ([`Carried`]); this module only moves the state.

use std::collections::BTreeMap;
use std::net::IpAddr;

use halb_config::model::LvsConfig;
use halb_config::names::CheckerId;

use super::build;
use super::output::Output;
use super::state::VsState;
use super::VirtualServers;

/// Which virtual server, real server and checker of the running configuration each one of the
/// new configuration continues (indices: new → old). What is not listed starts afresh.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carried {
    pub virtual_servers: BTreeMap<usize, usize>,
    /// (new virtual server, new real server) → old real server, within the matched virtual
    /// servers.
    pub real_servers: BTreeMap<(usize, usize), usize>,
    /// New checker → old checker; only checkers whose definition is unchanged.
    pub checkers: BTreeMap<CheckerId, CheckerId>,
}

impl VirtualServers {
    /// The virtual servers of `lvs`, started, with the state `carried` names taken from
    /// `self`. `local` lists the addresses on this host now (for `ha_suspend`). The outputs
    /// are what the new parts say and run at their start (a new virtual server's quorum, its
    /// checkers' activation) and what the carried ones say if the new settings move them
    /// (a new weight or quorum that gains or loses quorum).
    #[must_use = "the outputs must be carried out"]
    pub fn reloaded(
        &self,
        lvs: &LvsConfig,
        carried: &Carried,
        local: &[IpAddr],
    ) -> (VirtualServers, Vec<Output>) {
        let (mut vss, mut out) = build::build(lvs);
        for (n, vs) in vss.iter_mut().enumerate() {
            vs.local_addresses = u32::try_from(
                local
                    .iter()
                    .filter(|ip| vs.ha_suspend && vs.serves_address(**ip))
                    .count(),
            )
            .unwrap_or(u32::MAX);
            match carried
                .virtual_servers
                .get(&n)
                .and_then(|&o| self.vss.get(o))
            {
                Some(old) => carry_vs(old, vs, n, carried, &mut out),
                None => {
                    vs.update_quorum_state(true, &mut out);
                    vs.start_checkers(&mut out);
                }
            }
        }
        let reloaded = VirtualServers {
            vss,
            startup: Vec::new(),
            started: true,
            stopped: self.stopped,
        };
        (reloaded, out)
    }
}

/// `vs` (new index `n`) continues `old`.
fn carry_vs(old: &VsState, vs: &mut VsState, n: usize, carried: &Carried, out: &mut Vec<Output>) {
    for (r, rs) in vs.real_servers.iter_mut().enumerate() {
        let Some(old_rs) = carried
            .real_servers
            .get(&(n, r))
            .and_then(|&o| old.real_servers.get(o))
        else {
            continue;
        };
        for (c, checker) in rs.checkers.iter_mut().enumerate() {
            let Some(was) = carried
                .checkers
                .get(&CheckerId::new(n, r, c))
                .and_then(|o| old_rs.checkers.get(o.checker))
            else {
                continue;
            };
            checker.up = was.up;
            checker.has_run = was.has_run;
            checker.weight_delta = was.weight_delta;
        }
        rs.effective_weight =
            i64::from(rs.weight) + rs.checkers.iter().map(|c| c.weight_delta).sum::<i64>();
        rs.alive = rs.checkers.iter().all(|c| !c.counted || c.up);
    }
    vs.quorum_up = old.quorum_up;
    vs.drops = old.drops;
    if let (Some(sorry), Some(was)) = (vs.sorry.as_mut(), old.sorry.as_ref()) {
        if (sorry.ip, sorry.port) == (was.ip, was.port) {
            sorry.active = was.active;
        }
    }
    vs.checkers_enabled = !vs.ha_suspend || vs.local_addresses > 0;
    if !vs.checkers_enabled {
        out.push(Output::SuspendCheckers { vs: n });
    }
    // New weights, servers or quorum settings may gain or lose quorum; a sorry server the
    // new file added while quorum is missing comes in as it would at start.
    let sorry_waiting = !vs.quorum_up && vs.sorry.as_ref().is_some_and(|s| !s.active);
    vs.update_quorum_state(sorry_waiting, out);
}
