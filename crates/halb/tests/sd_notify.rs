//! `halb run` speaking systemd's notification protocol to a unix datagram socket bound by the
//! test, as systemd's `NOTIFY_SOCKET` is: READY=1 once started, STATUS= as the instance becomes
//! MASTER, RELOADING=1 and READY=1 around a SIGHUP reload, WATCHDOG=1 at half `WATCHDOG_USEC` and none while the process is stopped, STOPPING=1
//! on SIGTERM. And its log lines under journald (`JOURNAL_STREAM` naming its stderr). This is
//! the protocol alone; `systemd_unit.rs` runs the packaged unit under a real systemd.

mod support;

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use halb_test_support::{is_root, skip};
use support::vrrp_lab::{seed_vrrp, wait_for, Daemon, Lab, VIP};

/// What the listener received, in order; `cursor`: how far [`Listener::wait`] has looked.
struct Listener {
    socket: UnixDatagram,
    received: Vec<String>,
    cursor: usize,
}

impl Listener {
    fn bind(path: &std::path::Path) -> Listener {
        let socket = UnixDatagram::bind(path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("a read timeout");
        Listener {
            socket,
            received: Vec::new(),
            cursor: 0,
        }
    }

    /// Reads what arrives for `period` into `received`; the messages.
    fn receive(&mut self, period: Duration) -> Vec<String> {
        let start = Instant::now();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 4096];
        while start.elapsed() < period {
            if let Ok(n) = self.socket.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        self.received.extend(got.iter().cloned());
        got
    }

    /// What arrives for `period`; a later [`Listener::wait`] looks only after it.
    fn read_for(&mut self, period: Duration) -> Vec<String> {
        let got = self.receive(period);
        self.cursor = self.received.len();
        got
    }

    /// The first message after the last one looked at that satisfies `wanted`, waiting for
    /// it at most `timeout`.
    fn wait(&mut self, timeout: Duration, wanted: impl Fn(&str) -> bool) -> Option<String> {
        let start = Instant::now();
        loop {
            while self.cursor < self.received.len() {
                let m = self.received[self.cursor].clone();
                self.cursor += 1;
                if wanted(&m) {
                    return Some(m);
                }
            }
            if start.elapsed() >= timeout {
                return None;
            }
            self.receive(Duration::from_millis(50));
        }
    }
}

fn pings(messages: &[String]) -> usize {
    messages.iter().filter(|m| *m == "WATCHDOG=1").count()
}

#[test]
fn ready_status_watchdog_and_stopping_reach_the_notify_socket() {
    if !is_root() {
        skip("needs root (network namespaces, raw VRRP sockets)");
        return;
    }
    let lab = Lab::new("sdn");
    let config = lab.write("a.conf", &seed_vrrp("MASTER", 150));
    let notify = lab.dir.path().join("notify");
    let mut listener = Listener::bind(&notify);
    let log = lab.dir.path().join("halb.log");
    let socket = log.with_extension("sock");
    // The log file exists before halb starts: JOURNAL_STREAM names it as systemd names the
    // journal's socket (Daemon::spawn truncates it, keeping the inode).
    std::fs::File::create(&log).expect("create the log");
    let meta = std::fs::metadata(&log).expect("stat the log");
    let journal_stream = format!("JOURNAL_STREAM={}:{}", meta.dev(), meta.ino());
    let notify_socket = format!("NOTIFY_SOCKET={}", notify.display());
    let mut halb = Daemon::spawn(
        &lab.a.ns,
        &[
            "env",
            &notify_socket,
            // 400 ms: a ping every 200 ms.
            "WATCHDOG_USEC=400000",
            &journal_stream,
            env!("CARGO_BIN_EXE_halb"),
            "run",
            "-f",
            config.to_str().expect("UTF-8"),
            "--control-socket",
            socket.to_str().expect("UTF-8"),
        ],
        log,
        "halb",
    );

    let ready = listener.wait(Duration::from_secs(10), |m| m.starts_with("READY=1\n"));
    let ready = ready.unwrap_or_else(|| {
        panic!(
            "no READY=1 in {:?}:\n{}",
            listener.received,
            halb.log_text()
        )
    });
    assert!(
        ready.contains("\nSTATUS=")
            && ready.contains("on INT")
            && ready.contains("no virtual server"),
        "READY=1 carries the status: {ready:?}"
    );
    let master = listener.wait(Duration::from_secs(10), |m| {
        m.contains("STATUS=MASTER on INT")
    });
    assert!(
        master.is_some(),
        "no STATUS=MASTER on INT in {:?}:\n{}",
        listener.received,
        halb.log_text()
    );
    assert!(lab.a.has(VIP), "MASTER holds the VIP");

    // SIGHUP reloads: RELOADING=1 with its CLOCK_MONOTONIC time, then READY=1.
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(halb.pid(), libc::SIGHUP) }, 0);
    let reloading = listener.wait(Duration::from_secs(5), |m| {
        m.starts_with("RELOADING=1\nMONOTONIC_USEC=")
    });
    assert!(
        reloading.is_some(),
        "no RELOADING=1 in {:?}",
        listener.received
    );
    let reloaded = listener.wait(Duration::from_secs(10), |m| m.starts_with("READY=1\n"));
    assert!(
        reloaded
            .as_deref()
            .is_some_and(|m| m.contains("MASTER on INT")),
        "no READY=1 after the reload: {:?}",
        listener.received
    );

    let running = listener.read_for(Duration::from_millis(1500));
    let n = pings(&running);
    eprintln!("{n} WATCHDOG=1 in 1.5 s at WATCHDOG_USEC=400000");
    assert!(
        (4..=10).contains(&n),
        "about one ping per 200 ms: {n} in 1.5 s ({running:?})"
    );

    // A stopped process (its event loop with it) sends nothing; it resumes after SIGCONT.
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(halb.pid(), libc::SIGSTOP) }, 0);
    listener.read_for(Duration::from_millis(300)); // what was already queued
    let stopped = listener.read_for(Duration::from_secs(1));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(halb.pid(), libc::SIGCONT) }, 0);
    assert_eq!(pings(&stopped), 0, "pings while stopped: {stopped:?}");
    let resumed = listener.wait(Duration::from_secs(2), |m| m == "WATCHDOG=1");
    assert!(resumed.is_some(), "pings resume after SIGCONT");

    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(halb.pid(), libc::SIGTERM) }, 0);
    let stopping = listener.wait(Duration::from_secs(5), |m| m.starts_with("STOPPING=1"));
    assert!(
        stopping.is_some(),
        "no STOPPING=1 in {:?}",
        listener.received
    );
    assert!(
        wait_for(Duration::from_secs(10), || halb.exited().is_some()).is_some(),
        "halb did not exit after SIGTERM"
    );
    assert!(!lab.a.has(VIP), "the VIP left with the stop");

    // Under journald: priority prefixes, no timestamps.
    let text = halb.log_text();
    let entering = text
        .lines()
        .find(|l| l.contains("Entering MASTER STATE"))
        .unwrap_or_else(|| panic!("no MASTER line:\n{text}"));
    assert_eq!(entering, "<6>(INT) Entering MASTER STATE", "{text}");
    assert!(
        text.lines().all(|l| l.starts_with('<')),
        "every line has a priority prefix:\n{text}"
    );
}
