//! `halb monitor daemon`: the daemon answers on its control socket, its configuration is
//! applied, and its last reload was not refused.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args as ClapArgs;

use super::{Local, Outcome, Perf, Status};
use crate::control::protocol::Snapshot;

#[derive(ClapArgs)]
pub struct Args {
    #[command(flatten)]
    local: Local,
}

pub fn run(args: &Args, timeout: Duration) -> Outcome {
    match args.local.snapshot(timeout) {
        Ok(snapshot) => evaluate(&snapshot, SystemTime::now()),
        Err(e) => Outcome::new(Status::Critical, format!("halb is not running: {e:#}")),
    }
}

/// CRITICAL while the configuration is not applied or the daemon is stopping; WARNING when the
/// last reload was refused (the previous configuration still runs) or one is under way.
pub fn evaluate(s: &Snapshot, now: SystemTime) -> Outcome {
    let d = &s.daemon;
    let uptime = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |n| n.as_secs().saturating_sub(d.started));
    let perf = vec![
        Perf::new("uptime", uptime).unit("s").range(0, None::<u64>),
        Perf::new("vrrp_instances", s.vrrp.len()),
        Perf::new("virtual_servers", s.virtual_servers.len()),
        Perf::new("reloads", d.reloads).unit("c"),
    ];
    let running = format!("halb {} (pid {})", s.version, d.pid);
    let (status, text) = if d.stopping {
        (Status::Critical, format!("{running} is stopping"))
    } else if !d.ready {
        (
            Status::Critical,
            format!("{running} runs but its configuration is not applied yet"),
        )
    } else if d.reloading {
        (Status::Warning, format!("{running}: a reload is under way"))
    } else {
        match &d.last_reload {
            Some(r) if !r.applied => (
                Status::Warning,
                format!(
                    "{running}: the last reload was refused, the previous configuration runs{}",
                    r.details
                        .first()
                        .map(|first| format!(" ({first})"))
                        .unwrap_or_default()
                ),
            ),
            Some(_) => (
                Status::Ok,
                format!("{running} running, configuration applied, last reload applied"),
            ),
            None => (
                Status::Ok,
                format!("{running} running, configuration applied"),
            ),
        }
    };
    Outcome::new(status, text).with_perf(perf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::{DaemonView, ReloadView};

    fn snapshot(daemon: DaemonView) -> Snapshot {
        Snapshot {
            version: "0.1.0".into(),
            daemon,
            ..Snapshot::default()
        }
    }

    #[test]
    fn states() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let ready = DaemonView {
            pid: 7,
            started: 900,
            ready: true,
            ..DaemonView::default()
        };
        let ok = evaluate(&snapshot(ready.clone()), now);
        assert_eq!(ok.status, Status::Ok);
        assert_eq!(
            ok.line(),
            "OK - halb 0.1.0 (pid 7) running, configuration applied | uptime=100s;;;0 vrrp_instances=0 virtual_servers=0 reloads=0c"
        );
        let starting = DaemonView {
            ready: false,
            ..ready.clone()
        };
        assert_eq!(evaluate(&snapshot(starting), now).status, Status::Critical);
        let refused = DaemonView {
            reloads: 1,
            last_reload: Some(ReloadView {
                at: 950,
                applied: false,
                details: vec!["keepalived.conf:4:3: unknown keyword".into()],
            }),
            ..ready
        };
        let warn = evaluate(&snapshot(refused), now);
        assert_eq!(warn.status, Status::Warning);
        assert!(warn.text.contains("keepalived.conf:4:3"), "{}", warn.text);
    }
}
