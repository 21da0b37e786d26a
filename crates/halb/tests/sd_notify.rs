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

/// A notify socket that knows who sent each message (`SO_PASSCRED`), as systemd does: it
/// accepts a message only from the service's main process.
struct SenderListener {
    socket: UnixDatagram,
    /// (sender's pid, message), in order.
    received: Vec<(i32, String)>,
}

impl SenderListener {
    fn bind(path: &std::path::Path) -> SenderListener {
        let socket = UnixDatagram::bind(path).expect("bind the notify socket");
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::PassCred, &true)
            .expect("SO_PASSCRED");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("a read timeout");
        SenderListener {
            socket,
            received: Vec::new(),
        }
    }

    /// Reads until `done` holds for what was received, or `timeout`; whether it held.
    fn until(&mut self, timeout: Duration, done: impl Fn(&[(i32, String)]) -> bool) -> bool {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixCredentials};
        use std::os::fd::AsRawFd;
        let start = Instant::now();
        let mut buf = vec![0u8; 4096];
        while !done(&self.received) {
            if start.elapsed() >= timeout {
                return false;
            }
            let mut space = nix::cmsg_space!(UnixCredentials);
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let Ok(message) = recvmsg::<()>(
                self.socket.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::empty(),
            ) else {
                continue;
            };
            let pid = message
                .cmsgs()
                .ok()
                .and_then(|mut c| {
                    c.find_map(|m| match m {
                        ControlMessageOwned::ScmCredentials(creds) => Some(creds.pid()),
                        _ => None,
                    })
                })
                .unwrap_or(0);
            let n = message.bytes;
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.received.push((pid, text));
        }
        true
    }
}

/// `halb upgrade` under a notify socket: the running halb starts its successor, which says
/// nothing until the old one, still the main process, has named it with `MAINPID=`; then the
/// successor sends `MAINPID=`/`READY=1` and its watchdog pings, and the old one falls silent,
/// drains and exits. The VIP stays throughout. What systemd would refuse (a message from a
/// process that is not the main one) does not happen; `systemd_unit.rs` shows it under a real
/// systemd.
#[test]
fn an_upgrade_names_the_successor_as_the_main_process() {
    if !is_root() {
        skip("needs root (network namespaces, raw VRRP sockets)");
        return;
    }
    let lab = Lab::new("sdu");
    let config = lab.write("a.conf", &seed_vrrp("MASTER", 150));
    let notify = lab.dir.path().join("notify");
    let mut listener = SenderListener::bind(&notify);
    let log = lab.dir.path().join("halb.log");
    let socket = log.with_extension("sock");
    let notify_socket = format!("NOTIFY_SOCKET={}", notify.display());
    let mut old = Daemon::spawn(
        &lab.a.ns,
        &[
            "env",
            &notify_socket,
            "WATCHDOG_USEC=400000",
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
    let old_pid = old.pid();
    let master = listener.until(Duration::from_secs(10), |r| {
        r.iter().any(|(_, m)| m.contains("STATUS=MASTER on INT"))
    });
    assert!(master, "no STATUS=MASTER: {:?}", listener.received);
    let before = listener.received.len();

    // The successor is a child of the old halb, in its process group: dropping `old` ends it
    // too, should the test fail half-way.
    let upgrade = std::process::Command::new(env!("CARGO_BIN_EXE_halb"))
        .args(["upgrade", "--control-socket"])
        .arg(&socket)
        .output()
        .expect("run halb upgrade");
    let said = String::from_utf8_lossy(&upgrade.stdout);
    assert!(
        upgrade.status.success(),
        "halb upgrade: {}\n{said}{}\n{}",
        upgrade.status,
        String::from_utf8_lossy(&upgrade.stderr),
        old.log_text()
    );
    // "halb upgrade: halb VERSION (pid NEW) took over from pid OLD"
    let new_pid: i32 = said
        .lines()
        .find(|l| l.contains("took over"))
        .and_then(|l| l.split("(pid ").nth(1))
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no new pid in {said:?}"));
    assert!(
        said.contains(&format!("took over from pid {old_pid}")),
        "{said}"
    );
    let main_pid = format!("MAINPID={new_pid}");
    let handed = listener.until(Duration::from_secs(5), |r| {
        r[before..]
            .iter()
            .filter(|(pid, m)| *pid == new_pid && m == "WATCHDOG=1")
            .count()
            >= 3
    });
    assert!(
        handed,
        "no pings from the successor: {:?}",
        listener.received
    );
    assert!(
        wait_for(Duration::from_secs(10), || old.exited().is_some()).is_some(),
        "the old halb did not exit after handing over\n{}",
        old.log_text()
    );
    listener.until(Duration::from_millis(500), |_| false);
    let after = &listener.received[before..];
    eprintln!("notifications after `halb upgrade`: {after:?}");
    // The order systemd needs: the old (main) process names the successor first.
    let named = after
        .iter()
        .position(|(pid, m)| *pid == old_pid && *m == main_pid)
        .unwrap_or_else(|| panic!("no {main_pid} from pid {old_pid}: {after:?}"));
    assert!(
        after[..named].iter().all(|(pid, _)| *pid == old_pid),
        "the successor spoke before it was the main process: {after:?}"
    );
    assert!(
        after[named + 1..].iter().all(|(pid, _)| *pid == new_pid),
        "the old process spoke after it named its successor: {after:?}"
    );
    // Its first message besides the watchdog's pings (which start as soon as it resumes).
    let ready = after[named + 1..]
        .iter()
        .find(|(_, m)| m != "WATCHDOG=1")
        .unwrap_or_else(|| panic!("nothing from the successor after {main_pid}: {after:?}"));
    assert!(
        ready
            .1
            .starts_with(&format!("{main_pid}\nREADY=1\nSTATUS=")),
        "the successor's first message: {ready:?}"
    );
    assert!(lab.a.has(VIP), "the VIP stays through the upgrade");
    let text = old.log_text();
    assert!(
        !text.contains("sent 0 priority"),
        "no priority 0 advert at an upgrade\n{text}"
    );

    // SAFETY: kill(2) on the successor, a child of the halb this test started.
    assert_eq!(unsafe { libc::kill(new_pid, libc::SIGTERM) }, 0);
    let stopping = listener.until(Duration::from_secs(5), |r| {
        r.iter()
            .any(|(pid, m)| *pid == new_pid && m.starts_with("STOPPING=1"))
    });
    assert!(stopping, "no STOPPING=1 from the successor");
    assert!(
        wait_for(Duration::from_secs(10), || !lab.a.has(VIP)).is_some(),
        "the VIP left with the successor's stop"
    );
}
