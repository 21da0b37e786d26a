//! One async probe per checker kind. A probe runs once and says up or down; the timing around
//! it is the policy's ([`crate::policy`]).
//!
//! Every probe that connects honours `connect_ip`/`connect_port`, `bindto`/`bind_port`,
//! `bind_if` and `fwmark` ([`Target`]), and its `connect_timeout` is the deadline of the whole
//! probe (keepalived applies it to each step); HTTP_GET / SSL_GET give it to each url.

pub mod dns;
pub mod dr_path;
pub mod http;
pub mod http_response;
pub mod misc;
pub mod net;
pub mod ping;
pub mod smtp;
pub mod tcp;
pub mod tls;
pub mod udp;

pub use net::Target;

use crate::policy::{Failure, FailureKind, Outcome};
use halb_config::model::{
    Checker, MysqlCheck, RealServer, VirtualServer, VirtualServerKey, DEFAULT_SMTP_HELO,
};
use halb_sys::script::RunAs;
use std::net::IpAddr;
use std::time::Duration;

/// A probe that succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOk {
    /// What was seen, for debugging.
    pub detail: String,
    /// MISC_CHECK with `misc_dynamic`: the weight asked for.
    pub weight: Option<u32>,
    /// MYSQL_CHECK: the server's `@@global.read_only`.
    pub read_only: Option<bool>,
}

impl ProbeOk {
    pub fn new(detail: impl Into<String>) -> ProbeOk {
        ProbeOk {
            detail: detail.into(),
            weight: None,
            read_only: None,
        }
    }
}

/// A probe that failed: what failed, and where (peer address, step).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProbeFailure {
    pub message: String,
    /// What kind of failure it was (a timeout, a refused connection, a wrong answer, ...);
    /// [`FailureKind::Local`] when the probe could not start here (no socket, its source
    /// address or device not on this host), which says nothing about the server.
    pub kind: FailureKind,
}

impl ProbeFailure {
    /// A failure of a kind not told apart (a script's exit status, a client's error).
    pub fn new(message: impl Into<String>) -> ProbeFailure {
        ProbeFailure::of_kind(FailureKind::Other, message)
    }

    pub fn of_kind(kind: FailureKind, message: impl Into<String>) -> ProbeFailure {
        ProbeFailure {
            message: message.into(),
            kind,
        }
    }

    /// A failure on this host, before anything reached the server.
    pub fn local(message: impl Into<String>) -> ProbeFailure {
        ProbeFailure::of_kind(FailureKind::Local, message)
    }

    pub fn timeout(message: impl Into<String>) -> ProbeFailure {
        ProbeFailure::of_kind(FailureKind::Timeout, message)
    }

    /// The server answered, but not as the checker requires (a status, a digest, a banner).
    pub fn protocol(message: impl Into<String>) -> ProbeFailure {
        ProbeFailure::of_kind(FailureKind::Protocol, message)
    }

    /// A socket call failed with `error`: its kind says refused, reset or unreachable.
    pub fn io(error: &std::io::Error, message: impl Into<String>) -> ProbeFailure {
        ProbeFailure::of_kind(FailureKind::of_io(error), message)
    }

    pub fn timed_out(&self) -> bool {
        self.kind == FailureKind::Timeout
    }
}

pub type ProbeResult = Result<ProbeOk, ProbeFailure>;

/// What the policy makes of a probe's result.
pub fn outcome(result: &ProbeResult) -> Outcome {
    match result {
        Ok(ok) => Outcome::Success { weight: ok.weight },
        Err(f) if f.kind == FailureKind::Local => Outcome::Skipped {
            cause: f.message.clone(),
        },
        Err(f) => Outcome::Failure(Failure {
            kind: f.kind,
            cause: f.message.clone(),
        }),
    }
}

/// A checker that cannot run as configured (an unknown script user, a regex halb cannot
/// compile, …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

/// A checker's probe, prepared once from the configuration.
#[derive(Debug)]
pub enum Probe {
    Tcp(Target),
    /// HTTP_GET and SSL_GET.
    Http(http::HttpProbe),
    Smtp(smtp::SmtpProbe),
    Dns(dns::DnsProbe),
    Udp(udp::UdpProbe),
    Ping(ping::PingProbe),
    Misc(misc::MiscProbe),
    Mysql {
        cfg: MysqlCheck,
        target: Target,
        /// For a `mysql_writer` virtual server: the servers halb holds read-only itself; any
        /// other server found read-only fails the check.
        writer: Option<crate::mysql::FencedServers>,
    },
    DrPath(dr_path::DrPathProbe),
}

/// The user scripts run as when they name none: the global `script_user`, else the
/// `keepalived_script` user if it exists, else the daemon's own.
pub type ScriptUser = Option<(String, Option<String>)>;

impl Probe {
    /// The probe of `checker`, a checker of `rs` in `vs`. `None` for FILE_CHECK and
    /// BFD_CHECK, which are not probes.
    pub fn from_config(
        vs: &VirtualServer,
        rs: &RealServer,
        checker: &Checker,
        script_user: &ScriptUser,
    ) -> Result<Option<Probe>, SetupError> {
        let Some(timing) = rs.effective_checker_timing(vs, checker) else {
            return Ok(None);
        };
        let timeout =
            Duration::from_micros(timing.connect_timeout_us.unwrap_or(vs.connect_timeout_us));
        let target = |common| Target::from_config(common, rs.ip, rs.port, timeout);
        let probe = match checker {
            Checker::Tcp(c) => Probe::Tcp(target(&c.common)),
            Checker::Http(c) | Checker::Ssl(c) => {
                let tls = matches!(checker, Checker::Ssl(_));
                let vhost = c
                    .virtualhost
                    .as_deref()
                    .or(rs.virtualhost.as_deref())
                    .or(vs.virtualhost.as_deref());
                // keepalived's SNI skips the real server's virtualhost.
                let sni = c.virtualhost.as_deref().or(vs.virtualhost.as_deref());
                Probe::Http(http::HttpProbe::new(c, tls, target(&c.common), vhost, sni)?)
            }
            Checker::Smtp(c) => Probe::Smtp(smtp::SmtpProbe {
                target: target(&c.common),
                helo_name: c
                    .helo_name
                    .clone()
                    .unwrap_or_else(|| DEFAULT_SMTP_HELO.to_string()),
            }),
            Checker::Dns(c) => Probe::Dns(dns::DnsProbe {
                target: target(&c.common),
                query_type: c.query_type.code(),
                name: c.name.clone(),
            }),
            Checker::Udp(c) => Probe::Udp(udp::UdpProbe {
                target: target(&c.common),
                payload: c
                    .payload
                    .as_ref()
                    .map(|p| p.data.clone())
                    .unwrap_or_else(udp::default_payload),
                require_reply: c.require_reply,
                reply: c.reply.clone(),
                min_reply_length: c.min_reply_length,
                max_reply_length: c.max_reply_length,
            }),
            Checker::Ping(c) => Probe::Ping(ping::PingProbe::new(target(&c.common))),
            Checker::Misc(c) => {
                let credentials = RunAs::for_script(
                    c.misc_path.user.as_deref(),
                    c.misc_path.group.as_deref(),
                    script_user.as_ref(),
                )
                .map_err(|e| SetupError(e.to_string()))?;
                Probe::Misc(misc::MiscProbe {
                    argv: c.misc_path.argv.clone(),
                    credentials,
                    timeout: Duration::from_micros(c.misc_timeout_us.unwrap_or(vs.delay_loop_us)),
                    dynamic: c.misc_dynamic,
                    base_weight: rs.weight,
                    term_grace: misc::TERM_GRACE,
                })
            }
            Checker::Mysql(c) => Probe::Mysql {
                cfg: c.clone(),
                target: target(&c.common),
                writer: None,
            },
            Checker::DrPath(c) => {
                let (
                    VirtualServerKey::Addr {
                        ip: IpAddr::V4(vip),
                        port,
                    },
                    IpAddr::V4(rip),
                ) = (&vs.key, rs.ip)
                else {
                    return Err(SetupError(
                        "DR_PATH_CHECK needs an IPv4 virtual server address and real server".into(),
                    ));
                };
                Probe::DrPath(dr_path::DrPathProbe {
                    vip: *vip,
                    port: c.common.connect_port.unwrap_or(*port),
                    real_server: rip,
                    interface: c.common.bind_if.clone(),
                    timeout,
                })
            }
            Checker::File(_) | Checker::Bfd(_) => return Ok(None),
        };
        Ok(Some(probe))
    }

    /// Where the probe connects; `None` for MISC_CHECK.
    pub fn target(&self) -> Option<&Target> {
        match self {
            Probe::Tcp(t) => Some(t),
            Probe::Http(p) => Some(&p.target),
            Probe::Smtp(p) => Some(&p.target),
            Probe::Dns(p) => Some(&p.target),
            Probe::Udp(p) => Some(&p.target),
            Probe::Ping(p) => Some(&p.target),
            Probe::Mysql { target, .. } => Some(target),
            Probe::Misc(_) | Probe::DrPath(_) => None,
        }
    }

    /// Runs the probe once.
    pub async fn run(&self) -> ProbeResult {
        match self {
            Probe::Tcp(t) => tcp::check(t).await,
            Probe::Http(p) => p.check().await,
            Probe::Smtp(p) => p.check().await,
            Probe::Dns(p) => p.check().await,
            Probe::Udp(p) => p.check().await,
            Probe::Ping(p) => p.check().await,
            Probe::Misc(p) => p.check().await,
            Probe::Mysql {
                cfg,
                target,
                writer,
            } => mysql(cfg, target, writer.as_ref()).await,
            Probe::DrPath(p) => p.check().await,
        }
    }
}

/// MYSQL_CHECK through [`crate::mysql`]; `bind_if` and `fwmark` are not passed on.
async fn mysql(
    cfg: &MysqlCheck,
    target: &Target,
    writer: Option<&crate::mysql::FencedServers>,
) -> ProbeResult {
    let peer = target.peer();
    // The client has its own deadline; this one only guards against it hanging.
    let guard = target.timeout + Duration::from_secs(1);
    match tokio::time::timeout(
        guard,
        crate::mysql::check(cfg, target.connect, target.bind, target.timeout),
    )
    .await
    {
        Ok(Ok(status))
            if status.read_only && writer.is_some_and(|held| !held.contains(target.connect)) =>
        {
            Err(ProbeFailure::new(format!(
                "MySQL server {peer} is read_only where a writer is required (mysql_writer)"
            )))
        }
        Ok(Ok(status)) => Ok(ProbeOk {
            read_only: Some(status.read_only),
            ..ProbeOk::new(format!(
                "MySQL server {peer} answered (read_only={})",
                status.read_only
            ))
        }),
        Ok(Err(e)) => Err(ProbeFailure::new(format!("MySQL server {e}"))),
        Err(_) => Err(ProbeFailure::timeout(format!(
            "MySQL server {peer}: no answer within {:?}",
            target.timeout
        ))),
    }
}
