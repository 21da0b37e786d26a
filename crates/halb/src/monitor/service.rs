//! `halb monitor service`: the service answers through the VIP, as a client sees it: a TCP
//! connect, or a MySQL login (with halb's own MySQL client, the one MYSQL_CHECK uses), timed.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use clap::Args as ClapArgs;

use super::{Outcome, Perf, Status};

#[derive(ClapArgs)]
pub struct Args {
    /// The virtual address clients use.
    #[arg(long)]
    vip: IpAddr,
    /// The service's port.
    #[arg(long)]
    port: u16,
    /// Log in to MySQL/MariaDB as this user instead of only connecting.
    #[arg(long)]
    mysql_user: Option<String>,
    /// The MySQL user's password (default: `$HALB_MYSQL_PASSWORD`, else empty).
    #[arg(long, requires = "mysql_user")]
    mysql_password: Option<String>,
    /// WARNING when the answer takes longer than this many seconds.
    #[arg(long, short = 'w', value_parser = super::seconds)]
    warning: Option<f64>,
    /// CRITICAL when the answer takes longer than this many seconds.
    #[arg(long, short = 'c', value_parser = super::seconds)]
    critical: Option<f64>,
}

/// How one attempt went.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// Connected (and logged in, for MySQL) in `took`; `detail` says what answered.
    Answered {
        took: Duration,
        detail: String,
    },
    Failed(String),
}

pub fn run(args: &Args, timeout: Duration) -> Outcome {
    let target = SocketAddr::new(args.vip, args.port);
    let attempt = match &args.mysql_user {
        None => tcp(target, timeout),
        Some(user) => {
            let password = args
                .mysql_password
                .clone()
                .or_else(|| std::env::var("HALB_MYSQL_PASSWORD").ok())
                .unwrap_or_default();
            mysql(target, user, &password, timeout)
        }
    };
    let what = match &args.mysql_user {
        None => format!("TCP {target}"),
        Some(user) => format!("MySQL login as {user} at {target}"),
    };
    evaluate(&what, &attempt, args.warning, args.critical, timeout)
}

fn tcp(target: SocketAddr, timeout: Duration) -> Attempt {
    let start = Instant::now();
    match std::net::TcpStream::connect_timeout(&target, timeout) {
        Ok(_) => Attempt::Answered {
            took: start.elapsed(),
            detail: "connected".into(),
        },
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            Attempt::Failed(format!("no answer within {:.1} s", timeout.as_secs_f64()))
        }
        Err(e) => Attempt::Failed(format!("connect failed: {e}")),
    }
}

fn mysql(target: SocketAddr, user: &str, password: &str, timeout: Duration) -> Attempt {
    let check = halb_config::model::MysqlCheck {
        common: Default::default(),
        user: user.to_string(),
        password: password.to_string(),
        database: None,
        query: halb_config::model::DEFAULT_MYSQL_QUERY.to_string(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return Attempt::Failed(format!("cannot start the MySQL client: {e}")),
    };
    let start = Instant::now();
    match runtime.block_on(halb_check::mysql::check(&check, target, None, timeout)) {
        Ok(status) => Attempt::Answered {
            took: start.elapsed(),
            detail: format!(
                "logged in (server {}, read_only {})",
                status.server_version,
                if status.read_only { "ON" } else { "OFF" }
            ),
        },
        Err(e) => Attempt::Failed(e.to_string()),
    }
}

/// CRITICAL when nothing answered or the answer took longer than `critical`; WARNING when it
/// took longer than `warning`.
pub fn evaluate(
    what: &str,
    attempt: &Attempt,
    warning: Option<f64>,
    critical: Option<f64>,
    timeout: Duration,
) -> Outcome {
    let max = format!("{:.6}", timeout.as_secs_f64());
    match attempt {
        Attempt::Failed(why) => Outcome::new(Status::Critical, format!("{what}: {why}")),
        Attempt::Answered { took, detail } => {
            let secs = took.as_secs_f64();
            let status = if critical.is_some_and(|c| secs > c) {
                Status::Critical
            } else if warning.is_some_and(|w| secs > w) {
                Status::Warning
            } else {
                Status::Ok
            };
            Outcome::new(status, format!("{what}: {detail} in {secs:.3} s")).with_perf(vec![
                Perf::new("time", format!("{secs:.6}"))
                    .unit("s")
                    .thresholds(
                        warning.map(|w| format!("{w:.6}")),
                        critical.map(|c| format!("{c:.6}")),
                    )
                    .range("0.000000", Some(max)),
            ])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_against_thresholds() {
        let answered = Attempt::Answered {
            took: Duration::from_millis(20),
            detail: "connected".into(),
        };
        let t = Duration::from_secs(10);
        let ok = evaluate("TCP 192.168.66.251:3306", &answered, None, None, t);
        assert_eq!(
            ok.line(),
            "OK - TCP 192.168.66.251:3306: connected in 0.020 s | time=0.020000s;;;0.000000;10.000000"
        );
        assert_eq!(
            evaluate("x", &answered, Some(0.01), None, t).status,
            Status::Warning
        );
        assert_eq!(
            evaluate("x", &answered, Some(0.001), Some(0.01), t).status,
            Status::Critical
        );
        let failed = evaluate(
            "x",
            &Attempt::Failed("connect failed: refused".into()),
            None,
            None,
            t,
        );
        assert_eq!(failed.line(), "CRITICAL - x: connect failed: refused");
    }
}
