//! systemd's notification protocol (`sd_notify(3)`), written here instead of linking
//! libsystemd: newline-separated `KEY=VALUE` assignments in one datagram to the unix socket
//! named by `NOTIFY_SOCKET`. A unit with `Type=notify` waits for `READY=1`; `RELOADING=1` and
//! `STOPPING=1` show the reload and the stop in `systemctl status`; `STATUS=` is its one-line
//! summary; `WATCHDOG=1` keeps a `WatchdogSec=` unit from being restarted.
//!
//! What to send is pure ([`NotifyAddr::parse`], [`watchdog_interval`], the message builders);
//! [`NotifySocket`] sends, [`spawn`] turns the event bus into notifications and [`Watchdog`]
//! pings from the VRRP loop, so that a wedged loop stops the pings and systemd restarts halb.

use std::ffi::OsStr;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use halb_config::model::Config;
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, warn};

use crate::event::{DaemonEvent, EventBus, EventKind};
use crate::reload::{ConfigReader, Reread};
use crate::service_status::ServiceStatus;

/// Where `NOTIFY_SOCKET` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyAddr {
    /// A socket in the file system (systemd's own: `/run/systemd/notify`).
    Path(PathBuf),
    /// A socket in the abstract namespace (`@name`), as containers' managers use.
    Abstract(Vec<u8>),
}

impl NotifyAddr {
    /// `NOTIFY_SOCKET`'s value: an absolute path, or `@` and an abstract name.
    pub fn parse(value: &OsStr) -> Result<NotifyAddr> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = value.as_bytes();
        match bytes.first() {
            Some(b'/') => Ok(NotifyAddr::Path(PathBuf::from(value))),
            Some(b'@') if bytes.len() > 1 => Ok(NotifyAddr::Abstract(bytes[1..].to_vec())),
            _ => bail!(
                "NOTIFY_SOCKET={}: neither an absolute path nor @name (vsock addresses are not supported)",
                value.to_string_lossy()
            ),
        }
    }
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC` (as `sd_watchdog_enabled(3)`
/// advises), when it is set and `WATCHDOG_PID`, if set, is this process.
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(own_pid) {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

/// `STATUS=` takes one line: a newline would start another assignment.
fn one_line(status: &str) -> String {
    status.replace(['\n', '\r'], " ")
}

/// Start-up done, or a reload ended: the unit is active.
pub fn ready(status: &str) -> String {
    format!("READY=1\nSTATUS={}", one_line(status))
}

/// A reload began, at `monotonic_usec` on CLOCK_MONOTONIC (systemd 253 wants the time, to
/// tell this reload's READY=1 from an earlier one's).
pub fn reloading(monotonic_usec: u64) -> String {
    format!("RELOADING=1\nMONOTONIC_USEC={monotonic_usec}\nSTATUS=Reloading the configuration")
}

pub fn stopping() -> String {
    "STOPPING=1\nSTATUS=Stopping: removing the VIPs and virtual servers".to_string()
}

pub fn status(status: &str) -> String {
    format!("STATUS={}", one_line(status))
}

pub const WATCHDOG: &str = "WATCHDOG=1";

/// From the process that hands over: `pid` is the service's main process from now on (the
/// unit's default `NotifyAccess=main` accepts this from the main process only, so the old one
/// says it before the new one speaks).
pub fn main_pid(pid: u32) -> String {
    format!("MAINPID={pid}")
}

/// From the process that took over: it is the main process, and ready.
pub fn took_over(pid: u32, status: &str) -> String {
    format!("MAINPID={pid}\nREADY=1\nSTATUS={}", one_line(status))
}

/// Tells systemd, when it runs this process, that `successor` is the service's main process
/// now. Sent from here rather than from the event task so that it leaves before the successor
/// is told to go on.
pub fn hand_main_pid(successor: u32) {
    match NotifySocket::from_env() {
        Ok(Some(socket)) => {
            if let Err(e) = socket.send(&main_pid(successor)) {
                warn!("{e:#}");
            }
        }
        Ok(None) => {}
        Err(e) => warn!("no notifications to systemd: {e:#}"),
    }
}

/// CLOCK_MONOTONIC now, in microseconds.
fn monotonic_usec() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    match clock_gettime(ClockId::CLOCK_MONOTONIC) {
        Ok(t) => {
            let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
            let nanos = u64::try_from(t.tv_nsec()).unwrap_or(0);
            secs * 1_000_000 + nanos / 1_000
        }
        Err(_) => 0,
    }
}

/// A socket to systemd's notification socket.
#[derive(Debug)]
pub struct NotifySocket {
    socket: UnixDatagram,
    addr: NotifyAddr,
}

impl NotifySocket {
    /// The socket `NOTIFY_SOCKET` names, or `None` when it is not set (not run by systemd).
    pub fn from_env() -> Result<Option<NotifySocket>> {
        let Some(value) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        NotifySocket::connect(NotifyAddr::parse(&value)?).map(Some)
    }

    pub fn connect(addr: NotifyAddr) -> Result<NotifySocket> {
        let socket = UnixDatagram::unbound().context("creating a socket for sd_notify")?;
        // A full queue at systemd's end drops a notification rather than stalling the loop
        // that sends it (the next status or ping follows soon).
        socket
            .set_nonblocking(true)
            .context("making the sd_notify socket non-blocking")?;
        Ok(NotifySocket { socket, addr })
    }

    /// Sends one notification (one datagram of `KEY=VALUE` lines).
    pub fn send(&self, message: &str) -> Result<()> {
        let sent = match &self.addr {
            NotifyAddr::Path(path) => self.socket.send_to(message.as_bytes(), path),
            NotifyAddr::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)
                    .context("an abstract NOTIFY_SOCKET name")?;
                self.socket.send_to_addr(message.as_bytes(), &addr)
            }
        };
        sent.with_context(|| format!("sending {message:?} to NOTIFY_SOCKET {:?}", self.addr))?;
        Ok(())
    }
}

/// Sends the daemon's life and a one-line status to systemd as the events come, when
/// `NOTIFY_SOCKET` is set; does nothing otherwise. `reader` reads the file a reload applied,
/// for the summary's list of instances and virtual servers. A process `taking_over` says
/// nothing until it has taken over: until then the running one is the service's main process,
/// and systemd would refuse (and log) what another process sends.
pub fn spawn(bus: &EventBus, config: &Config, reader: Option<ConfigReader>, taking_over: bool) {
    let socket = match NotifySocket::from_env() {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => {
            warn!("no notifications to systemd: {e:#}");
            return;
        }
    };
    let mut events = bus.subscribe();
    let mut summary = ServiceStatus::new(config);
    tokio::spawn(async move {
        let send = |message: String| {
            if let Err(e) = socket.send(&message) {
                warn!("{e:#}");
            }
        };
        let mut ready = false;
        let mut main = !taking_over;
        let mut shown = String::new();
        loop {
            let event = match events.recv().await {
                Ok(e) => e,
                // Missed events can only have made the status stale; the next one updates it.
                Err(RecvError::Lagged(n)) => {
                    debug!("sd_notify: {n} event(s) missed");
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            match &event.kind {
                EventKind::Daemon(DaemonEvent::Ready) => {
                    ready = true;
                    shown = summary.line();
                    if main {
                        send(self::ready(&shown));
                    }
                }
                EventKind::Daemon(DaemonEvent::TookOver) => {
                    main = true;
                    shown = summary.line();
                    send(took_over(std::process::id(), &shown));
                }
                // The successor is the main process now (see [`hand_main_pid`]).
                EventKind::Daemon(DaemonEvent::HandedOver { .. }) => return,
                EventKind::Daemon(DaemonEvent::ReloadStarted) if main => {
                    send(reloading(monotonic_usec()));
                }
                EventKind::Daemon(DaemonEvent::ReloadFinished(outcome)) => {
                    summary.reloaded(outcome);
                    if let (true, Some(reader)) = (outcome.applied, reader.clone()) {
                        if let Ok(Reread {
                            config: Some(config),
                            ..
                        }) = tokio::task::spawn_blocking(move || (reader.0)()).await
                        {
                            summary.reconfigure(&config);
                        }
                    }
                    shown = summary.line();
                    if main {
                        send(self::ready(&shown));
                    }
                }
                EventKind::Daemon(DaemonEvent::Stopping) => {
                    if main {
                        send(stopping());
                    }
                    return;
                }
                kind => {
                    summary.apply(kind);
                    let line = summary.line();
                    if ready && main && line != shown {
                        shown = line;
                        send(status(&shown));
                    }
                }
            }
        }
    });
}

/// `WATCHDOG=1` every half `WATCHDOG_USEC`, from the loop that owns the VRRP instances: when
/// that loop stops turning, the pings stop and systemd restarts halb (`WatchdogSec=`).
#[derive(Debug)]
pub struct Watchdog {
    ping: Option<(NotifySocket, tokio::time::Interval)>,
}

impl Watchdog {
    /// Pings when systemd asked for them (`WATCHDOG_USEC`, for this process); otherwise
    /// [`Watchdog::due`] never completes.
    pub fn from_env() -> Watchdog {
        let interval = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        let ping = match (interval, NotifySocket::from_env()) {
            (Some(every), Ok(Some(socket))) => {
                let mut timer = tokio::time::interval(every);
                timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                Some((socket, timer))
            }
            (Some(_), Err(e)) => {
                warn!("WATCHDOG_USEC is set but no pings can be sent: {e:#}");
                None
            }
            _ => None,
        };
        Watchdog { ping }
    }

    /// No pings: a process that is taking over is not the service's main process yet.
    pub fn off() -> Watchdog {
        Watchdog { ping: None }
    }

    /// Completes when a ping is due.
    pub async fn due(&mut self) {
        match &mut self.ping {
            Some((_, timer)) => {
                timer.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    pub fn ping(&self) {
        if let Some((socket, _)) = &self.ping {
            if let Err(e) = socket.send(WATCHDOG) {
                warn!("{e:#}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_socket_addresses() {
        assert_eq!(
            NotifyAddr::parse(OsStr::new("/run/systemd/notify")).unwrap(),
            NotifyAddr::Path(PathBuf::from("/run/systemd/notify"))
        );
        assert_eq!(
            NotifyAddr::parse(OsStr::new("@/org/freedesktop/systemd1/notify/x")).unwrap(),
            NotifyAddr::Abstract(b"/org/freedesktop/systemd1/notify/x".to_vec())
        );
        for bad in ["", "@", "relative/path", "vsock:2:1234"] {
            let e = NotifyAddr::parse(OsStr::new(bad)).unwrap_err().to_string();
            assert!(e.contains("NOTIFY_SOCKET"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_watchdog_pings_at_half_the_interval_for_this_process_only() {
        assert_eq!(
            watchdog_interval(Some("20000000"), None, 7),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            watchdog_interval(Some("20000000"), Some("7"), 7),
            Some(Duration::from_secs(10))
        );
        // Meant for another process (a parent that exec'ed halb without passing it on).
        assert_eq!(watchdog_interval(Some("20000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(None, Some("7"), 7), None);
    }

    #[test]
    fn messages_are_assignments_one_per_line() {
        assert_eq!(ready("MASTER on VI_1"), "READY=1\nSTATUS=MASTER on VI_1");
        assert_eq!(
            status("two\nlines"),
            "STATUS=two lines",
            "a newline would start a new assignment"
        );
        assert_eq!(
            reloading(1_234_567),
            "RELOADING=1\nMONOTONIC_USEC=1234567\nSTATUS=Reloading the configuration"
        );
        assert!(stopping().starts_with("STOPPING=1\n"));
        assert_eq!(main_pid(42), "MAINPID=42");
        assert_eq!(
            took_over(42, "MASTER on VI_1"),
            "MAINPID=42\nREADY=1\nSTATUS=MASTER on VI_1"
        );
    }

    #[test]
    fn monotonic_time_advances() {
        let a = monotonic_usec();
        std::thread::sleep(Duration::from_millis(2));
        assert!(monotonic_usec() > a);
    }

    #[test]
    fn a_datagram_reaches_a_listener() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let socket = NotifySocket::connect(NotifyAddr::Path(path)).unwrap();
        socket.send(&ready("up")).unwrap();
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=up");
    }
}
