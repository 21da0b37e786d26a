//! The runner with tiny timings against real servers on 127.0.0.1.

mod support;

use halb_check::runner::{spawn, RunnerOptions};
use halb_check::{CheckerId, Report};
use halb_config::model::{
    Checker, CheckerCommon, FileCheck, HttpCheck, LvsConfig, Protocol, RealServer, TcpCheck, Url,
    VirtualServer, VirtualServerKey,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Generous: these only bound how long a broken test waits.
const PATIENCE: Duration = Duration::from_secs(20);

fn common(delay_loop_ms: u64) -> CheckerCommon {
    CheckerCommon {
        retry: Some(2),
        delay_before_retry_us: Some(50_000),
        delay_loop_us: Some(delay_loop_ms * 1000),
        warmup_us: Some(0),
        connect_timeout_us: Some(2_000_000),
        ..CheckerCommon::default()
    }
}

fn config(rs: SocketAddr, checker: Checker) -> LvsConfig {
    let mut vs = VirtualServer::new(VirtualServerKey::Addr {
        ip: "127.0.0.1".parse().unwrap(),
        port: 1,
    });
    vs.protocol = Some(Protocol::Tcp);
    let mut real = RealServer::new(rs.ip(), rs.port());
    real.checkers.push(checker);
    vs.real_servers.push(real);
    LvsConfig {
        groups: vec![],
        virtual_servers: vec![vs],
    }
}

async fn next(rx: &mut mpsc::Receiver<Report>) -> Report {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("a report in time")
        .expect("the runner is alive")
}

/// An HTTP server whose health can be switched; it logs each answer with its time.
struct Switchable {
    addr: SocketAddr,
    healthy: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<(Instant, bool)>>>,
}

async fn switchable() -> Switchable {
    let healthy = Arc::new(AtomicBool::new(true));
    let answers: Arc<Mutex<Vec<(Instant, bool)>>> = Arc::default();
    let (h, a) = (healthy.clone(), answers.clone());
    let (addr, _) = support::http_server(move |_| {
        let ok = h.load(Ordering::SeqCst);
        a.lock().unwrap().push((Instant::now(), ok));
        if ok {
            support::response("200 OK", b"up")
        } else {
            support::response("503 Service Unavailable", b"down")
        }
    })
    .await;
    Switchable {
        addr,
        healthy,
        answers,
    }
}

impl Switchable {
    fn failures(&self) -> Vec<Instant> {
        self.answers
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, ok)| !ok)
            .map(|(t, _)| *t)
            .collect()
    }

    fn count(&self) -> usize {
        self.answers.lock().unwrap().len()
    }
}

async fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "waited too long for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn http_checker() -> Checker {
    Checker::Http(HttpCheck {
        common: common(100),
        urls: vec![Url::new("/".into())],
        ..HttpCheck::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_after_the_retries_and_up_again() {
    let server = switchable().await;
    let cfg = config(server.addr, http_checker());
    let (tx, mut rx) = mpsc::channel(1);
    let handle = spawn(&cfg, &RunnerOptions::default(), tx.clone());
    let id = CheckerId {
        vs: 0,
        rs: 0,
        checker: 0,
    };
    let up = next(&mut rx).await;
    assert_eq!((up.id, up.up, up.real_server), (id, true, server.addr));
    assert_eq!(
        up.detail,
        format!(
            "Remote Web server [127.0.0.1]:tcp:{} succeed on service.",
            server.addr.port()
        )
    );

    // Fill the channel: the checker blocks on its next report, and stops probing there.
    let filler = Report {
        detail: "filler".into(),
        ..up.clone()
    };
    tx.send(filler).await.unwrap();
    server.healthy.store(false, Ordering::SeqCst);
    wait_for("three failed probes", || server.failures().len() >= 3).await;
    // 1 probe + 2 retries, then the verdict; no fourth probe while the report waits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let failures = server.failures();
    assert_eq!(
        failures.len(),
        3,
        "retry 2: three failed probes before the verdict"
    );
    for pair in failures.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(50),
            "retries are delay_before_retry apart"
        );
    }
    assert_eq!(next(&mut rx).await.detail, "filler");
    let down = next(&mut rx).await;
    assert!(!down.up);
    assert!(
        down.detail.starts_with(&format!(
            "HTTP_CHECK on service [127.0.0.1]:tcp:{} failed after 2 retries.",
            server.addr.port()
        )),
        "{}",
        down.detail
    );
    assert!(down.detail.contains("HTTP status 503"), "{}", down.detail);

    // Down: probes every delay_loop, without retries.
    wait_for("two more failed probes", || server.failures().len() >= 5).await;
    let failures = server.failures();
    for pair in failures[2..].windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(100),
            "while down, probes are delay_loop apart"
        );
    }
    server.healthy.store(true, Ordering::SeqCst);
    let up = next(&mut rx).await;
    assert!(up.up);
    handle.stop().await;
    let count = server.count();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.count(), count, "no probe after stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_server_that_stops_and_restarts() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = config(
        addr,
        Checker::Tcp(TcpCheck {
            common: common(100),
        }),
    );
    let (tx, mut rx) = mpsc::channel(8);
    let handle = spawn(&cfg, &RunnerOptions::default(), tx);
    assert!(next(&mut rx).await.up);
    drop(listener);
    let down = next(&mut rx).await;
    assert!(!down.up);
    assert!(down.detail.starts_with(&format!(
        "TCP_CHECK on service [127.0.0.1]:tcp:{} failed after 2 retries.",
        addr.port()
    )));
    let listener = TcpListener::bind(addr).await.unwrap();
    let up = next(&mut rx).await;
    assert!(up.up);
    assert_eq!(
        up.detail,
        format!("TCP connection to [127.0.0.1]:tcp:{} success.", addr.port())
    );
    drop(listener);
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_now_expedites_a_probe() {
    let server = switchable().await;
    // delay_loop 1 hour: only probe_now can bring a probe before the end of the test.
    let mut checker = http_checker();
    if let Checker::Http(h) = &mut checker {
        h.common = CheckerCommon {
            retry: Some(0),
            ..common(3_600_000)
        };
    }
    let cfg = config(server.addr, checker);
    let (tx, mut rx) = mpsc::channel(8);
    let handle = spawn(&cfg, &RunnerOptions::default(), tx);
    assert!(next(&mut rx).await.up);
    server.healthy.store(false, Ordering::SeqCst);
    assert_eq!(handle.probe_now(server.addr), 1);
    let down = next(&mut rx).await;
    assert!(!down.up);
    assert_eq!(server.count(), 2);
    let other: SocketAddr = "127.0.0.1:9".parse().unwrap();
    assert_eq!(
        handle.probe_now(other),
        0,
        "no checker for that real server"
    );
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expedite_bounds_the_wait_and_runs_the_retries_back_to_back() {
    // A server that accepts and then never answers (a hung database): HTTP_GET with a
    // connect_timeout of 1 hour and an hour between retries would take hours to notice.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let answer = Arc::new(AtomicBool::new(true));
    let (held2, answer2) = (Arc::clone(&held), Arc::clone(&answer));
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            if answer2.load(Ordering::SeqCst) {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .await;
            } else {
                held2.lock().unwrap().push(s);
            }
        }
    });
    let mut checker = http_checker();
    if let Checker::Http(h) = &mut checker {
        h.common = CheckerCommon {
            retry: Some(2),
            delay_before_retry_us: Some(3_600_000_000),
            connect_timeout_us: Some(3_600_000_000),
            ..common(3_600_000)
        };
    }
    let cfg = config(addr, checker);
    let (tx, mut rx) = mpsc::channel(8);
    let handle = spawn(&cfg, &RunnerOptions::default(), tx);
    assert!(next(&mut rx).await.up);
    answer.store(false, Ordering::SeqCst);
    // Evidence within a second of a success does not bring the probe forward (a half-open
    // client in front of a healthy server); after it, it does.
    assert_eq!(handle.expedite(addr, Duration::from_secs(3600)), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        held.lock().unwrap().len(),
        0,
        "no probe within the quiet second"
    );
    let asked = Instant::now();
    assert_eq!(handle.expedite(addr, Duration::from_secs(3600)), 1);
    let down = next(&mut rx).await;
    assert!(!down.up);
    // Three probes (one and two retries), each cut at the bound for HTTP_GET (1 s).
    let took = asked.elapsed();
    assert!(took >= Duration::from_secs(3), "{took:?}");
    assert_eq!(held.lock().unwrap().len(), 3);
    assert!(down.detail.contains("within"), "{}", down.detail);
    handle.stop().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_and_resume_a_virtual_server() {
    let server = switchable().await;
    let cfg = config(server.addr, http_checker());
    let (tx, mut rx) = mpsc::channel(8);
    let opts = RunnerOptions {
        suspended_vs: vec![0],
        ..RunnerOptions::default()
    };
    let handle = spawn(&cfg, &opts, tx);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.count(), 0, "starts suspended");
    assert_eq!(handle.resume_vs(0), 1);
    assert!(next(&mut rx).await.up);
    assert_eq!(handle.suspend_vs(0), 1);
    // A probe already running finishes; then nothing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let count = server.count();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(server.count(), count, "no probe while suspended");
    handle.resume_vs(0);
    wait_for("probes again", || server.count() > count).await;
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_checks_are_not_run() {
    let cfg = config(
        "127.0.0.1:9".parse().unwrap(),
        Checker::File(FileCheck {
            track_file: "f".into(),
            weight: None,
            reverse: false,
        }),
    );
    let (tx, _rx) = mpsc::channel(8);
    let handle = spawn(&cfg, &RunnerOptions::default(), tx);
    assert!(handle.checkers().is_empty());
    handle.stop().await;
}
