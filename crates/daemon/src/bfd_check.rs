//! `BFD_CHECK`: a real server follows a `bfd_instance` (check_bfd.c in keepalived 2.2.7). A
//! session entering Up brings the checker up, leaving Up takes it down; like keepalived, whose
//! BFD process tells the checkers of changes only, nothing is said while a session has not yet
//! been Up, so a server without `alpha` stays up until then. After a reload (`reported`
//! emptied) a session that has been Up before is reported whatever its state.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use halb_check::{CheckerId, Failure, FailureKind, Report};
use halb_config::model::{Checker, CheckerKind, LvsConfig};
use tracing::info;

use crate::bfd::BfdView;

/// The verdicts to hand to the virtual servers after `view`; `reported` holds each checker's
/// last one.
pub fn reports(
    lvs: &LvsConfig,
    view: &BfdView,
    reported: &mut BTreeMap<CheckerId, bool>,
) -> Vec<Report> {
    let mut out = Vec::new();
    for (v, vs) in lvs.virtual_servers.iter().enumerate() {
        for (r, rs) in vs.real_servers.iter().enumerate() {
            for (c, checker) in rs.checkers.iter().enumerate() {
                let Checker::Bfd(b) = checker else { continue };
                let Some(session) = view.sessions.iter().find(|s| s.name == b.name && s.checker)
                else {
                    continue;
                };
                let id = CheckerId::new(v, r, c);
                let up = session.up;
                let before = reported.get(&id).copied();
                let never_up = session.down_transitions == 0;
                if before == Some(up) || (before.is_none() && !up && never_up) {
                    continue;
                }
                reported.insert(id, up);
                let real_server = SocketAddr::new(rs.ip, rs.port);
                info!(
                    "BFD check of [{}] RS({real_server}) is {}",
                    b.name,
                    if up { "UP" } else { "DOWN" }
                );
                out.push(Report {
                    id,
                    real_server,
                    kind: CheckerKind::Bfd,
                    up,
                    weight: None,
                    detail: format!("BFD {} {}", b.name, session.state),
                    failure: (!up).then(|| Failure {
                        kind: FailureKind::Other,
                        cause: format!(
                            "BFD {} is {} ({})",
                            b.name, session.state, session.local_diag
                        ),
                    }),
                    probe_duration: Duration::ZERO,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bfd::SessionView;
    use halb_config::{load_str, LoadOptions};

    fn view(state: &str) -> BfdView {
        BfdView {
            sessions: vec![SessionView {
                name: "B".into(),
                neighbor: "192.168.66.2".parse().unwrap(),
                state: state.into(),
                up: state == "Up",
                local_diag: "No Diagnostic".into(),
                remote_diag: "No Diagnostic".into(),
                local_discriminator: 1,
                remote_discriminator: 2,
                packets_received: 0,
                packets_sent: 0,
                packets_dropped: 0,
                down_transitions: 0,
                vrrp: true,
                checker: true,
            }],
            counters: Default::default(),
        }
    }

    #[test]
    fn nothing_until_first_up_then_every_change() {
        let text = "bfd_instance B {\n neighbor_ip 192.168.66.2\n}\n\
            virtual_server 192.168.66.251 3306 {\n real_server 192.168.66.2 3306 {\n \
            BFD_CHECK {\n name B\n }\n }\n}\n";
        let opts = LoadOptions {
            config_id: "t".into(),
            interfaces: None,
            max_lines: 1000,
            script_search_path: None,
        };
        let lvs = load_str("t.conf", text, &opts).config.lvs;
        let mut reported = BTreeMap::new();
        assert!(reports(&lvs, &view("Down"), &mut reported).is_empty());
        assert!(reports(&lvs, &view("Init"), &mut reported).is_empty());
        let up = reports(&lvs, &view("Up"), &mut reported);
        assert_eq!(up.len(), 1);
        assert!(up[0].up && up[0].kind == CheckerKind::Bfd);
        assert_eq!(up[0].real_server, "192.168.66.2:3306".parse().unwrap());
        assert!(reports(&lvs, &view("Up"), &mut reported).is_empty());
        let down = reports(&lvs, &view("Down"), &mut reported);
        assert_eq!(down.len(), 1);
        assert!(!down[0].up && down[0].failure.is_some());
        // A reload empties `reported`: a session Down after having been Up is said again.
        let mut after_reload = BTreeMap::new();
        let mut was_up = view("Down");
        was_up.sessions[0].down_transitions = 1;
        let again = reports(&lvs, &was_up, &mut after_reload);
        assert_eq!(again.len(), 1);
        assert!(!again[0].up);
    }
}
