//! `halb monitor`: checks in the monitoring-plugins convention, for Nagios, Icinga and Zabbix
//! agents. Each prints one line, `STATUS - text | perfdata`, and exits 0 (OK), 1 (WARNING),
//! 2 (CRITICAL) or 3 (UNKNOWN). Each check is a pure function from what it read (a snapshot of
//! the daemon, a connection's outcome) to an [`Outcome`]; the I/O around it is thin and bounded
//! by `--timeout`.

mod daemon;
mod peer;
mod realservers;
mod service;
mod vrrp;

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args as ClapArgs, Subcommand};

use crate::control::DEFAULT_SOCKET;

#[derive(ClapArgs)]
pub struct Args {
    /// Give up after this many seconds (the check then says UNKNOWN, or CRITICAL where not
    /// answering is the failure it looks for).
    #[arg(long, short = 't', global = true, default_value_t = 10.0, value_parser = seconds)]
    timeout: f64,
    #[command(subcommand)]
    check: Check,
}

#[derive(Subcommand)]
enum Check {
    /// The daemon runs, its configuration is applied and its last reload was not refused.
    Daemon(daemon::Args),
    /// VRRP instances are in the state expected (`--expect`), or exactly one director is
    /// MASTER across the directors given with `--peer`.
    Vrrp(vrrp::Args),
    /// Real servers down per virtual server, against warning and critical thresholds.
    Realservers(realservers::Args),
    /// The service answers through the VIP: a TCP connect, or a MySQL login.
    Service(service::Args),
}

/// Where the local daemon answers.
#[derive(ClapArgs, Clone)]
struct Local {
    /// The daemon's control socket (root only).
    #[arg(long, default_value = DEFAULT_SOCKET)]
    control_socket: PathBuf,
    /// Ask the daemon's HTTP endpoint instead (`http://127.0.0.1:9165`), which any user may
    /// read: what a monitoring agent that does not run as root uses.
    #[arg(long, conflicts_with = "control_socket")]
    url: Option<String>,
}

impl Local {
    /// The daemon's snapshot, or why there is none.
    fn snapshot(&self, timeout: Duration) -> anyhow::Result<crate::control::protocol::Snapshot> {
        match &self.url {
            Some(url) => peer::snapshot(url, timeout),
            None => crate::control::client::query_within(
                &self.control_socket,
                &crate::control::protocol::Request::default(),
                timeout,
            ),
        }
    }
}

fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() => Ok(s),
        _ => Err(format!("{text:?} is not a positive number of seconds")),
    }
}

/// The monitoring-plugins states, with their exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        })
    }
}

impl Status {
    /// The worse of two: CRITICAL over WARNING over OK; UNKNOWN only over OK.
    fn worst(self, other: Status) -> Status {
        let rank = |s: Status| match s {
            Status::Ok => 0,
            Status::Unknown => 1,
            Status::Warning => 2,
            Status::Critical => 3,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

/// One performance value: `'label'=value[unit];[warn];[crit];[min];[max]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Perf {
    pub label: String,
    pub value: String,
    pub unit: &'static str,
    pub warn: Option<String>,
    pub crit: Option<String>,
    pub min: Option<String>,
    pub max: Option<String>,
}

impl Perf {
    pub fn new(label: impl Into<String>, value: impl fmt::Display) -> Perf {
        Perf {
            label: label.into(),
            value: value.to_string(),
            unit: "",
            warn: None,
            crit: None,
            min: None,
            max: None,
        }
    }

    pub fn unit(mut self, unit: &'static str) -> Perf {
        self.unit = unit;
        self
    }

    pub fn thresholds(
        mut self,
        warn: Option<impl fmt::Display>,
        crit: Option<impl fmt::Display>,
    ) -> Perf {
        self.warn = warn.map(|w| w.to_string());
        self.crit = crit.map(|c| c.to_string());
        self
    }

    pub fn range(mut self, min: impl fmt::Display, max: Option<impl fmt::Display>) -> Perf {
        self.min = Some(min.to_string());
        self.max = max.map(|m| m.to_string());
        self
    }
}

impl fmt::Display for Perf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Quotes when the label has anything but word characters; a quote inside is doubled.
        let plain = self
            .label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        if plain {
            write!(f, "{}", self.label)?;
        } else {
            write!(f, "'{}'", self.label.replace('\'', "''"))?;
        }
        write!(f, "={}{}", self.value, self.unit)?;
        let fields = [&self.warn, &self.crit, &self.min, &self.max];
        let used = fields
            .iter()
            .rposition(|x| x.is_some())
            .map_or(0, |n| n + 1);
        for field in &fields[..used] {
            write!(f, ";{}", field.as_deref().unwrap_or(""))?;
        }
        Ok(())
    }
}

/// What a check found.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: Status,
    pub text: String,
    pub perf: Vec<Perf>,
}

impl Outcome {
    pub fn new(status: Status, text: impl Into<String>) -> Outcome {
        Outcome {
            status,
            text: text.into(),
            perf: Vec::new(),
        }
    }

    pub fn with_perf(mut self, perf: Vec<Perf>) -> Outcome {
        self.perf = perf;
        self
    }

    /// The plugin's one line (without its newline).
    pub fn line(&self) -> String {
        // One line: a newline or a `|` in the text would start long output or perfdata.
        let text = self.text.replace(['\n', '\r'], " ").replace('|', "/");
        if self.perf.is_empty() {
            format!("{} - {text}", self.status)
        } else {
            let perf: Vec<String> = self.perf.iter().map(ToString::to_string).collect();
            format!("{} - {text} | {}", self.status, perf.join(" "))
        }
    }
}

pub fn run(args: &Args) -> ExitCode {
    let timeout = Duration::from_secs_f64(args.timeout);
    let outcome = match &args.check {
        Check::Daemon(a) => daemon::run(a, timeout),
        Check::Vrrp(a) => vrrp::run(a, timeout),
        Check::Realservers(a) => realservers::run(a, timeout),
        Check::Service(a) => service::run(a, timeout),
    };
    println!("{}", outcome.line());
    ExitCode::from(outcome.status as u8)
}

/// A usage error, as plugins report one: UNKNOWN, exit 3.
pub fn usage_error(error: &clap::Error) -> ExitCode {
    let first = error
        .to_string()
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("bad arguments")
        .trim_start_matches("error: ")
        .to_string();
    println!(
        "{}",
        Outcome::new(Status::Unknown, format!("halb monitor: {first}")).line()
    );
    ExitCode::from(Status::Unknown as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_follow_the_plugin_convention() {
        let o =
            Outcome::new(Status::Warning, "1 of 2 real servers down | odd\ntext").with_perf(vec![
                Perf::new("[192.168.66.251]:tcp:3306 down", 1)
                    .thresholds(Some(1), Some(2))
                    .range(0, Some(2)),
                Perf::new("time", "0.001200").unit("s"),
            ]);
        assert_eq!(
            o.line(),
            "WARNING - 1 of 2 real servers down / odd text | '[192.168.66.251]:tcp:3306 down'=1;1;2;0;2 time=0.001200s"
        );
        assert_eq!(Outcome::new(Status::Ok, "fine").line(), "OK - fine");
    }

    #[test]
    fn the_worst_status_wins() {
        assert_eq!(Status::Ok.worst(Status::Warning), Status::Warning);
        assert_eq!(Status::Critical.worst(Status::Warning), Status::Critical);
        assert_eq!(Status::Unknown.worst(Status::Warning), Status::Warning);
        assert_eq!(Status::Ok.worst(Status::Unknown), Status::Unknown);
    }
}
