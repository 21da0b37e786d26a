//! `halb monitor realservers`: how many real servers of each virtual server are down, against
//! thresholds; a virtual server that lost its quorum (all its servers, by default) is CRITICAL.

use std::time::Duration;

use clap::Args as ClapArgs;

use super::{Local, Outcome, Perf, Status};
use std::net::SocketAddr;

use crate::control::protocol::VirtualServerView;

#[derive(ClapArgs)]
pub struct Args {
    #[command(flatten)]
    local: Local,
    /// WARNING when at least this many real servers of one virtual server are down.
    #[arg(long, short = 'w', default_value_t = 1)]
    warning: usize,
    /// CRITICAL when at least this many real servers of one virtual server are down (default:
    /// all of them, or its quorum lost).
    #[arg(long, short = 'c')]
    critical: Option<usize>,
    /// Only this virtual server, by keepalived's name (`[192.168.66.251]:tcp:3306`) or as
    /// `IP:PORT`.
    #[arg(long)]
    virtual_server: Option<String>,
    /// Only this real server (`IP:PORT`): OK while it is up in every virtual server that has
    /// it, CRITICAL when it is down in one.
    #[arg(long, conflicts_with_all = ["warning", "critical"])]
    real_server: Option<SocketAddr>,
}

pub fn run(args: &Args, timeout: Duration) -> Outcome {
    match args.local.snapshot(timeout) {
        Ok(s) if args.real_server.is_some() => evaluate_one(
            &s.virtual_servers,
            args.real_server.expect("checked"),
            args.virtual_server.as_deref(),
        ),
        Ok(s) => evaluate(
            &s.virtual_servers,
            args.warning,
            args.critical,
            args.virtual_server.as_deref(),
        ),
        Err(e) => Outcome::new(Status::Critical, format!("halb is not running: {e:#}")),
    }
}

/// Whether `wanted` names `vs`: keepalived's name, or `IP:PORT` inside it.
fn names(vs: &VirtualServerView, wanted: &str) -> bool {
    if vs.name == wanted {
        return true;
    }
    // `[192.168.66.251]:tcp:3306` against `192.168.66.251:3306`.
    let plain = vs.name.replace(['[', ']'], "");
    let mut parts = plain.split(':');
    let (ip, port) = (parts.next(), parts.next_back());
    matches!((ip, port), (Some(ip), Some(port)) if format!("{ip}:{port}") == wanted)
}

pub fn evaluate(
    vss: &[VirtualServerView],
    warning: usize,
    critical: Option<usize>,
    only: Option<&str>,
) -> Outcome {
    let chosen: Vec<&VirtualServerView> = vss
        .iter()
        .filter(|vs| only.is_none_or(|w| names(vs, w)))
        .collect();
    if chosen.is_empty() {
        return Outcome::new(
            Status::Unknown,
            match only {
                Some(w) => format!("no virtual server {w}"),
                None => "no virtual server in the configuration".to_string(),
            },
        );
    }
    let mut status = Status::Ok;
    let mut problems = Vec::new();
    let mut perf = Vec::new();
    let mut total_all = 0;
    for vs in chosen {
        let total = vs.real_servers.len();
        let down: Vec<String> = vs
            .real_servers
            .iter()
            .filter(|rs| !rs.alive)
            .map(|rs| rs.addr.to_string())
            .collect();
        total_all += total;
        let crit_at = critical.unwrap_or(total.max(1));
        let this = if down.len() >= crit_at || !vs.quorum_up {
            Status::Critical
        } else if down.len() >= warning && !down.is_empty() {
            Status::Warning
        } else {
            Status::Ok
        };
        status = status.worst(this);
        if this != Status::Ok {
            let mut text = format!(
                "{}: {} of {total} real servers down ({})",
                vs.name,
                down.len(),
                down.join(", ")
            );
            if !vs.quorum_up {
                text.push_str(", quorum lost");
            }
            if vs.sorry_server_active {
                text.push_str(", sorry server in use");
            }
            problems.push(text);
        }
        perf.push(
            Perf::new(format!("{} down", vs.name), down.len())
                .thresholds(Some(warning), Some(crit_at))
                .range(0, Some(total)),
        );
    }
    let text = if problems.is_empty() {
        format!("all {total_all} real servers up")
    } else {
        problems.join("; ")
    };
    Outcome::new(status, text).with_perf(perf)
}

/// One real server: up (1) or down (0) in each virtual server that has it.
pub fn evaluate_one(vss: &[VirtualServerView], rs: SocketAddr, only: Option<&str>) -> Outcome {
    let mut status = Status::Ok;
    let mut parts = Vec::new();
    let mut perf = Vec::new();
    for vs in vss.iter().filter(|vs| only.is_none_or(|w| names(vs, w))) {
        for server in vs.real_servers.iter().filter(|r| r.addr == rs) {
            let checkers: Vec<String> = server
                .checkers
                .iter()
                .filter(|c| !c.up)
                // The detail usually names the checker already.
                .map(|c| {
                    if c.detail.is_empty() {
                        c.kind.clone()
                    } else {
                        c.detail.clone()
                    }
                })
                .collect();
            if server.alive {
                parts.push(format!("{rs} up in {} (weight {})", vs.name, server.weight));
            } else {
                status = Status::Critical;
                let why = if checkers.is_empty() {
                    String::new()
                } else {
                    format!(": {}", checkers.join("; "))
                };
                parts.push(format!("{rs} down in {}{why}", vs.name));
            }
            perf.push(
                Perf::new(format!("{} up", vs.name), u8::from(server.alive)).range(0, Some(1)),
            );
        }
    }
    if parts.is_empty() {
        return Outcome::new(Status::Unknown, format!("no real server {rs}"));
    }
    Outcome::new(status, parts.join(", ")).with_perf(perf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Built from JSON, as the daemon sends it, so that fields added later keep their
    /// defaults here.
    fn vs(alive: &[bool]) -> VirtualServerView {
        let real_servers: Vec<serde_json::Value> = alive
            .iter()
            .enumerate()
            .map(|(n, &alive)| {
                serde_json::json!({
                    "addr": format!("192.168.66.{}:3306", 252 + n),
                    "alive": alive,
                    "weight": 1,
                    "checkers": [],
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "name": "[192.168.66.251]:tcp:3306",
            "quorum_up": alive.iter().any(|a| *a),
            "sorry_server_active": !alive.iter().any(|a| *a),
            "real_servers": real_servers,
        }))
        .expect("a virtual server")
    }

    #[test]
    fn thresholds() {
        let ok = evaluate(&[vs(&[true, true])], 1, None, None);
        assert_eq!(
            ok.line(),
            "OK - all 2 real servers up | '[192.168.66.251]:tcp:3306 down'=0;1;2;0;2"
        );
        let warn = evaluate(&[vs(&[true, false])], 1, None, None);
        assert_eq!(warn.status, Status::Warning);
        assert!(warn
            .text
            .contains("1 of 2 real servers down (192.168.66.253:3306)"));
        let crit = evaluate(&[vs(&[false, false])], 1, None, None);
        assert_eq!(crit.status, Status::Critical);
        assert!(crit.text.contains("sorry server in use"));
        assert_eq!(
            evaluate(&[vs(&[true, false])], 1, Some(1), None).status,
            Status::Critical
        );
        assert_eq!(
            evaluate(&[vs(&[true])], 1, None, Some("192.168.66.251:3306")).status,
            Status::Ok
        );
        assert_eq!(
            evaluate(&[vs(&[true])], 1, None, Some("10.0.0.1:80")).status,
            Status::Unknown
        );
        let two = [vs(&[true, false])];
        let a = "192.168.66.252:3306".parse().unwrap();
        let b = "192.168.66.253:3306".parse().unwrap();
        assert_eq!(
            evaluate_one(&two, a, None).line(),
            "OK - 192.168.66.252:3306 up in [192.168.66.251]:tcp:3306 (weight 1) | '[192.168.66.251]:tcp:3306 up'=1;;;0;1"
        );
        assert_eq!(evaluate_one(&two, b, None).status, Status::Critical);
        assert_eq!(
            evaluate_one(&two, "10.0.0.1:1".parse().unwrap(), None).status,
            Status::Unknown
        );
    }
}
