//! The seed's section 4.3.1 on the userspace proxy: the seed's own keepalived.conf on a
//! director, its real server (.253) and sorry server (.254) as small TCP servers, a client
//! connecting through the VIP. Stopping the real server moves new connections to the sorry
//! server with keepalived's log lines; starting it again moves them back, and the
//! connections still open to the sorry server are closed (the seed saw them linger for 5–10
//! minutes). Figures are printed (`--nocapture`); only generous bounds are asserted.
//! Needs root.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::lvs_lab::{still_open, Backend, LvsLab, VIP};
use support::vrrp_lab::{wait_for, Daemon};

fn seed_config() -> String {
    halb_test_support::seed_text("keepalived-master.conf")
}

fn vip(port: u16) -> SocketAddr {
    SocketAddr::new(VIP.parse().unwrap(), port)
}

/// When a connection attempt started, and who answered (or why none did).
type Attempts = Arc<Mutex<Vec<(Instant, Result<String, String>)>>>;

/// A client that opens a connection through the VIP every 100 ms and records who answered.
struct Prober {
    stop: Arc<AtomicBool>,
    answers: Attempts,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Prober {
    fn start(lab: &Arc<LvsLab>, to: SocketAddr) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let answers: Attempts = Arc::new(Mutex::new(Vec::new()));
        let (s, a, lab) = (stop.clone(), answers.clone(), lab.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let at = Instant::now();
                let r = lab.connect(to).map(|(_, g)| g).map_err(|e| e.to_string());
                a.lock().unwrap().push((at, r));
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Prober {
            stop,
            answers,
            thread: Some(thread),
        }
    }

    /// When the first answer from `name` at or after `since` came.
    fn first_from(&self, name: &str, since: Instant) -> Option<Duration> {
        self.answers
            .lock()
            .unwrap()
            .iter()
            .find(|(at, r)| *at >= since && r.as_deref() == Ok(name))
            .map(|(at, _)| at.duration_since(since))
    }

    fn failures_since(&self, since: Instant) -> Vec<String> {
        self.answers
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, r)| *at >= since && r.is_err())
            .map(|(_, r)| r.clone().unwrap_err())
            .collect()
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn log_has(daemon: &Daemon, needle: &str) -> bool {
    daemon.log_text().contains(needle)
}

fn halb_status(socket: &Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_halb"))
        .args(["status", "--control-socket"])
        .arg(socket)
        .output()
        .expect("run halb status");
    assert!(
        out.status.success(),
        "halb status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Run {
    lab: Arc<LvsLab>,
    halb: Daemon,
    a: Backend,
    _b: Backend,
    _a8: Backend,
    _b8: Backend,
}

fn start(what: &str, extra: &[&str]) -> Run {
    let lab = Arc::new(LvsLab::new(what));
    let a = Backend::start(&lab.rs_a.ns, 3306, "A-3306");
    let b = Backend::start(&lab.rs_b.ns, 3306, "B-3306");
    let a8 = Backend::start(&lab.rs_a.ns, 3308, "A-3308");
    let b8 = Backend::start(&lab.rs_b.ns, 3308, "B-3308");
    let config = lab.write("keepalived.conf", &seed_config());
    let halb = Daemon::halb_with(
        &lab.director.ns,
        &config,
        lab.dir.path().join("halb.log"),
        extra,
    );
    // The seed's director starts as BACKUP in its sync group and takes the VIP after three
    // missed adverts; the real servers are in the table from the start.
    let served = wait_for(Duration::from_secs(30), || {
        lab.connect(vip(3306)).is_ok_and(|(_, g)| g == "A-3306")
    });
    assert!(
        served.is_some(),
        "the VIP never served A:3306; halb's log:\n{}",
        halb.log_text()
    );
    Run {
        lab,
        halb,
        a,
        _b: b,
        _a8: a8,
        _b8: b8,
    }
}

#[test]
fn seed_4_3_1_real_server_stopped_and_restarted_with_passive_checks() {
    let mut run = start("pass", &[]);
    let lab = run.lab.clone();
    assert_eq!(
        lab.connect(vip(3308)).unwrap().1,
        "A-3308",
        "3308 goes to A too"
    );
    let status = halb_status(&run.halb.log.with_extension("sock"));
    println!("{status}");
    assert!(
        status.contains("TCP  192.168.66.251:3306 wrr persistent 120"),
        "{status}"
    );
    assert!(
        // The userspace proxy: connections reach A from the director's address.
        status.contains("  -> 192.168.66.253:3306          Proxy   1"),
        "{status}"
    );

    let prober = Prober::start(&lab, vip(3306));
    std::thread::sleep(Duration::from_millis(500));
    let stopped = Instant::now();
    run.a.stop();
    let to_sorry = wait_for(Duration::from_secs(10), || {
        prober.first_from("B-3306", stopped).is_some()
    });
    let removed = wait_for(Duration::from_secs(60), || {
        log_has(&run.halb, "Adding sorry server [192.168.66.254]:tcp:3306")
    });
    let lost = stopped.elapsed();
    let failed = prober.failures_since(stopped);
    println!(
        "passive: first connection served by the sorry server {:?} after the stop; \
         checkers took the real server out after {:?}; failed client connections: {}",
        prober.first_from("B-3306", stopped),
        lost,
        failed.len()
    );
    assert!(to_sorry.is_some(), "no connection reached the sorry server");
    assert!(
        removed.is_some(),
        "no 'Adding sorry server'; log:\n{}",
        run.halb.log_text()
    );
    assert!(
        failed.is_empty(),
        "client connections failed while the sorry server was up: {failed:?}"
    );
    let log = run.halb.log_text();
    for line in [
        // keepalived 2.2's wording (the seed's 1.x said "TCP connection to … failed !!!").
        "TCP_CHECK on service [192.168.66.253]:tcp:3306 failed after 3 retries.",
        "Removing service [192.168.66.253]:tcp:3306 from VS [192.168.66.251]:tcp:3306",
        "Lost quorum 1-0=1 > 0 for VS [192.168.66.251]:tcp:3306",
    ] {
        assert!(log.contains(line), "missing {line:?} in halb's log:\n{log}");
    }

    // A connection held open on the sorry server, as the seed's application pool did.
    let (held, greeting) = lab.connect(vip(3306)).expect("connect while A is down");
    assert_eq!(greeting, "B-3306");
    drop(prober);

    let restarted = Instant::now();
    run.a = Backend::start(&lab.rs_a.ns, 3306, "A-3306");
    let back = wait_for(Duration::from_secs(60), || {
        log_has(&run.halb, "Removing sorry server [192.168.66.254]:tcp:3306")
    });
    assert!(
        back.is_some(),
        "the sorry server never handed back:\n{}",
        run.halb.log_text()
    );
    let seen = Instant::now();
    let closed = wait_for(Duration::from_secs(5), || !still_open(&held));
    println!(
        "handback {:?} after the restart; the connection held on the sorry server closed {:?} \
         after halb logged it",
        restarted.elapsed(),
        closed.map(|_| seen.elapsed())
    );
    assert!(
        closed.is_some_and(|_| seen.elapsed() < Duration::from_secs(2)),
        "the connection to the sorry server stayed open"
    );
    let served = wait_for(Duration::from_secs(5), || {
        lab.connect(vip(3306)).is_ok_and(|(_, g)| g == "A-3306")
    });
    assert!(served.is_some(), "new connections did not go back to A");
    let log = run.halb.log_text();
    for line in [
        "TCP connection to [192.168.66.253]:tcp:3306 success",
        "Adding service [192.168.66.253]:tcp:3306 to VS [192.168.66.251]:tcp:3306",
        "Gained quorum 1+0=1 <= 1 for VS [192.168.66.251]:tcp:3306",
    ] {
        assert!(log.contains(line), "missing {line:?} in halb's log:\n{log}");
    }
    run.halb.terminate(Duration::from_secs(10));
}

/// The same stop with passive detection off, as IPVS behaves: clients fail until the
/// checkers, on the seed's timings (delay_loop 20, 3 retries 3 s apart), take the real
/// server out. The figure is the window a keepalived user lives with.
#[test]
fn seed_4_3_1_real_server_stopped_with_active_checks_only() {
    let mut run = start("active", &["--no-passive"]);
    let lab = run.lab.clone();
    let prober = Prober::start(&lab, vip(3306));
    std::thread::sleep(Duration::from_millis(500));
    let stopped = Instant::now();
    run.a.stop();
    let moved = wait_for(Duration::from_secs(60), || {
        prober.first_from("B-3306", stopped).is_some()
    });
    let failed = prober.failures_since(stopped);
    println!(
        "active checks only: first connection served by the sorry server {:?} after the \
         stop; failed client connections meanwhile: {}",
        prober.first_from("B-3306", stopped),
        failed.len()
    );
    assert!(
        moved.is_some(),
        "the sorry server never took over:\n{}",
        run.halb.log_text()
    );
    assert!(
        log_has(&run.halb, "Adding sorry server [192.168.66.254]:tcp:3306"),
        "{}",
        run.halb.log_text()
    );
    run.halb.terminate(Duration::from_secs(10));
}
