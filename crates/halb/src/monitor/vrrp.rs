//! `halb monitor vrrp`: on one director, its instances are in the state expected; across
//! directors (`--peer`, once per director), each instance is MASTER on exactly one of them.

use std::collections::BTreeSet;
use std::time::Duration;

use clap::Args as ClapArgs;

use super::{peer, Local, Outcome, Perf, Status};
use crate::control::protocol::VrrpView;

#[derive(ClapArgs)]
pub struct Args {
    #[command(flatten)]
    local: Local,
    /// The state this director's instances should be in: MASTER or BACKUP. Without it, any
    /// of the two is fine and only FAULT and INIT are reported.
    #[arg(long, value_parser = ["MASTER", "BACKUP"], ignore_case = true, conflicts_with = "peer")]
    expect: Option<String>,
    /// Only this instance (default: all).
    #[arg(long)]
    instance: Option<String>,
    /// A director to ask, once per director: its HTTP endpoint (`http://HOST:9165`) or its
    /// control socket's path. With `--peer`, the check is that each instance is MASTER on
    /// exactly one of them.
    #[arg(long)]
    peer: Vec<String>,
}

pub fn run(args: &Args, timeout: Duration) -> Outcome {
    if args.peer.is_empty() {
        match args.local.snapshot(timeout) {
            Ok(s) => evaluate_local(
                &s.vrrp,
                args.expect
                    .as_deref()
                    .map(str::to_ascii_uppercase)
                    .as_deref(),
                args.instance.as_deref(),
            ),
            Err(e) => Outcome::new(Status::Critical, format!("halb is not running: {e:#}")),
        }
    } else {
        let answers: Vec<(String, Result<Vec<VrrpView>, String>)> = std::thread::scope(|scope| {
            let asked: Vec<_> = args
                .peer
                .iter()
                .map(|p| {
                    scope.spawn(move || {
                        peer::snapshot(p, timeout)
                            .map(|s| s.vrrp)
                            .map_err(|e| format!("{e:#}"))
                    })
                })
                .collect();
            args.peer
                .iter()
                .cloned()
                .zip(asked.into_iter().map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("the query failed".to_string()))
                }))
                .collect()
        });
        evaluate_cluster(&answers, args.instance.as_deref())
    }
}

/// keepalived's state numbers (vrrp.h), for graphs.
fn state_number(state: &str) -> u8 {
    match state {
        "BACKUP" => 1,
        "MASTER" => 2,
        "FAULT" => 3,
        _ => 0,
    }
}

fn selected<'a>(vrrp: &'a [VrrpView], instance: Option<&str>) -> Vec<&'a VrrpView> {
    vrrp.iter()
        .filter(|v| instance.is_none_or(|name| v.name == name))
        .collect()
}

/// One director: CRITICAL for an instance in FAULT (or stopped), WARNING for one still in INIT
/// or in the other role than `expect` (a failover happened: the service runs, from the other
/// director), OK otherwise.
pub fn evaluate_local(vrrp: &[VrrpView], expect: Option<&str>, instance: Option<&str>) -> Outcome {
    let chosen = selected(vrrp, instance);
    if chosen.is_empty() {
        return Outcome::new(
            Status::Unknown,
            match instance {
                Some(name) => format!("no VRRP instance {name} on this director"),
                None => "no VRRP instance on this director".to_string(),
            },
        );
    }
    let mut status = Status::Ok;
    let mut parts = Vec::new();
    let mut perf = Vec::new();
    for v in chosen {
        let this = match v.state.as_str() {
            "FAULT" | "STOP" => Status::Critical,
            "INIT" => Status::Warning,
            state if expect.is_some_and(|e| e != state) => Status::Warning,
            _ => Status::Ok,
        };
        status = status.worst(this);
        let mut part = format!("{} {}", v.name, v.state);
        if let (Some(e), false) = (expect, this == Status::Ok) {
            part.push_str(&format!(" (expected {e})"));
        }
        part.push_str(&format!(" priority {}", v.effective_priority));
        parts.push(part);
        perf.push(Perf::new(format!("{}_state", v.name), state_number(&v.state)).range(0, Some(3)));
        perf.push(
            Perf::new(format!("{}_priority", v.name), v.effective_priority).range(0, Some(255)),
        );
    }
    Outcome::new(status, parts.join(", ")).with_perf(perf)
}

/// Several directors: each instance MASTER on exactly one. None or two MASTERs is CRITICAL
/// (the VIP is nowhere, or split brain); a director that does not answer is WARNING while the
/// others still have one MASTER per instance, CRITICAL when none answers.
pub fn evaluate_cluster(
    answers: &[(String, Result<Vec<VrrpView>, String>)],
    instance: Option<&str>,
) -> Outcome {
    let reachable: Vec<(&String, &Vec<VrrpView>)> = answers
        .iter()
        .filter_map(|(p, a)| a.as_ref().ok().map(|v| (p, v)))
        .collect();
    let mut status = Status::Ok;
    let mut parts = Vec::new();
    let mut perf = Vec::new();
    for (p, answer) in answers {
        if let Err(e) = answer {
            status = status.worst(Status::Warning);
            parts.push(format!("{p} does not answer: {e}"));
        }
    }
    if reachable.is_empty() {
        return Outcome::new(
            Status::Critical,
            format!("no director answers: {}", parts.join("; ")),
        )
        .with_perf(vec![
            Perf::new("directors_up", 0).range(0, Some(answers.len()))
        ]);
    }
    let names: BTreeSet<&str> = reachable
        .iter()
        .flat_map(|(_, v)| selected(v, instance))
        .map(|v| v.name.as_str())
        .collect();
    if names.is_empty() {
        return Outcome::new(
            Status::Unknown,
            "no VRRP instance on the directors that answer",
        );
    }
    for name in names {
        let masters: Vec<&str> = reachable
            .iter()
            .filter(|(_, v)| v.iter().any(|i| i.name == name && i.state == "MASTER"))
            .map(|(p, _)| p.as_str())
            .collect();
        match masters.len() {
            1 => parts.push(format!("{name} MASTER on {}", masters[0])),
            0 => {
                status = status.worst(Status::Critical);
                parts.insert(0, format!("{name} has no MASTER"));
            }
            _ => {
                status = status.worst(Status::Critical);
                parts.insert(
                    0,
                    format!(
                        "{name} is MASTER on {} (split brain)",
                        masters.join(" and ")
                    ),
                );
            }
        }
        perf.push(
            Perf::new(format!("{name}_masters"), masters.len()).range(0, Some(answers.len())),
        );
    }
    perf.push(Perf::new("directors_up", reachable.len()).range(0, Some(answers.len())));
    Outcome::new(status, parts.join(", ")).with_perf(perf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(state: &str) -> VrrpView {
        VrrpView {
            name: "INT".into(),
            interface: "eth0".into(),
            vrid: 200,
            state: state.into(),
            priority: 100,
            effective_priority: 100,
            virtual_addresses: vec!["192.168.66.251/32".into()],
            last_master: None,
        }
    }

    #[test]
    fn local_states() {
        let ok = evaluate_local(&[instance("MASTER")], Some("MASTER"), None);
        assert_eq!(
            ok.line(),
            "OK - INT MASTER priority 100 | INT_state=2;;;0;3 INT_priority=100;;;0;255"
        );
        let moved = evaluate_local(&[instance("BACKUP")], Some("MASTER"), None);
        assert_eq!(moved.status, Status::Warning);
        assert!(moved.text.contains("expected MASTER"));
        assert_eq!(
            evaluate_local(&[instance("FAULT")], None, None).status,
            Status::Critical
        );
        assert_eq!(
            evaluate_local(&[instance("BACKUP")], None, None).status,
            Status::Ok
        );
        assert_eq!(
            evaluate_local(&[instance("MASTER")], None, Some("EXT")).status,
            Status::Unknown
        );
    }

    #[test]
    fn cluster_states() {
        let a = |s: &str| ("http://a:9165".to_string(), Ok(vec![instance(s)]));
        let b = |s: &str| ("http://b:9165".to_string(), Ok(vec![instance(s)]));
        let down = ("http://b:9165".to_string(), Err("refused".to_string()));
        assert_eq!(
            evaluate_cluster(&[a("MASTER"), b("BACKUP")], None).status,
            Status::Ok
        );
        assert_eq!(
            evaluate_cluster(&[a("MASTER"), down.clone()], None).status,
            Status::Warning
        );
        let split = evaluate_cluster(&[a("MASTER"), b("MASTER")], None);
        assert_eq!(split.status, Status::Critical);
        assert!(split.text.contains("split brain"), "{}", split.text);
        assert_eq!(
            evaluate_cluster(&[a("BACKUP"), b("BACKUP")], None).status,
            Status::Critical
        );
        assert_eq!(
            evaluate_cluster(&[a("BACKUP"), down], None).status,
            Status::Critical
        );
    }
}
