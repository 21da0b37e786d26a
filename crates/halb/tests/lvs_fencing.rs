//! Connection fencing on the userspace proxy: the seed's keepalived.conf, with its real
//! server's TCP_CHECK moved to a port of its own (3307), so that the check can fail while the
//! database (3306) still serves: an overloaded master, a check that times out. The sorry server
//! takes over; a client connection held on the real server is then
//! - closed within a second with `connection_fencing close` (the default for a TCP service):
//!   a pool left on the old master would keep writing there while new connections write to the
//!   other one;
//! - left open with `connection_fencing drain`, as keepalived leaves it.
//!
//! Figures are printed (`--nocapture`). Needs root.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::lvs_lab::{still_open, Backend, LvsLab, VIP};
use support::vrrp_lab::wait_for;
use support::vrrp_lab::Daemon;

/// The seed's file on short timings (one check every 2 s, no retry), with the real server of
/// 3306 checked on 3307 and `fencing` written into that virtual server when given.
fn config(fencing: Option<&str>) -> String {
    let mut text = halb_test_support::seed_text("keepalived-master.conf")
        .replacen("connect_port 3306", "connect_port 3307", 1)
        .replace("delay_loop 20", "delay_loop 2")
        .replace("connect_timeout 5", "connect_timeout 1")
        .replace("nb_get_retry 3", "nb_get_retry 0")
        .replace("delay_before_retry 3", "delay_before_retry 1");
    if let Some(f) = fencing {
        text = text.replacen(
            "persistence_timeout 120",
            &format!("persistence_timeout 120\n    connection_fencing {f}"),
            1,
        );
    }
    text
}

fn vip(port: u16) -> SocketAddr {
    SocketAddr::new(VIP.parse().expect("the VIP"), port)
}

/// What became of the connection held on the real server once the sorry server took over.
struct Outcome {
    /// From the log line "Adding sorry server" being seen to the connection found closed.
    closed_after: Option<Duration>,
    /// The real server's side of it, after the wait.
    server_side_open: usize,
}

fn run(what: &str, fencing: Option<&str>, watch: Duration) -> Outcome {
    let lab = Arc::new(LvsLab::new(what));
    let a = Backend::start(&lab.rs_a.ns, 3306, "A-3306");
    let mut a_check = Backend::start(&lab.rs_a.ns, 3307, "A-3307");
    let _b = Backend::start(&lab.rs_b.ns, 3306, "B-3306");
    let conf = lab.write("keepalived.conf", &config(fencing));
    let mut halb = Daemon::halb_with(
        &lab.director.ns,
        &conf,
        lab.dir.path().join("halb.log"),
        &[],
    );
    let served = wait_for(Duration::from_secs(30), || {
        lab.connect(vip(3306)).is_ok_and(|(_, g)| g == "A-3306")
    });
    assert!(
        served.is_some(),
        "the VIP never served A:3306; halb's log:\n{}",
        halb.log_text()
    );
    // The application's pooled connection, on the real server.
    let (held, greeting) = lab.connect(vip(3306)).expect("connect to the VIP");
    assert_eq!(greeting, "A-3306");
    assert!(still_open(&held));

    // The check fails; the database goes on serving.
    a_check.stop();
    let switched = wait_for(Duration::from_secs(30), || {
        halb.log_text()
            .contains("Adding sorry server [192.168.66.254]:tcp:3306")
    });
    assert!(
        switched.is_some(),
        "the sorry server never took over:\n{}",
        halb.log_text()
    );
    let seen = Instant::now();
    let closed = wait_for(watch, || !still_open(&held)).map(|_| seen.elapsed());
    // A new connection goes to the sorry server either way.
    assert_eq!(
        lab.connect(vip(3306)).expect("connect after the switch").1,
        "B-3306"
    );
    let server_side_open = a.open_connections();
    halb.terminate(Duration::from_secs(10));
    Outcome {
        closed_after: closed,
        server_side_open,
    }
}

#[test]
fn a_real_server_taken_out_while_alive_loses_its_connections_with_close_keeps_them_with_drain() {
    let close = run("fclose", None, Duration::from_secs(5));
    println!(
        "connection_fencing close (default): the connection held on the real server closed {:?} \
         after halb logged the switch; connections still open on the real server: {}",
        close.closed_after, close.server_side_open
    );
    assert!(
        close
            .closed_after
            .is_some_and(|d| d < Duration::from_secs(1)),
        "with close, the connection to the real server should end within 1 s: {:?}",
        close.closed_after
    );
    assert_eq!(
        close.server_side_open, 0,
        "the real server's side should be closed too"
    );

    let drain = run("fdrain", Some("drain"), Duration::from_secs(3));
    println!(
        "connection_fencing drain: the connection held on the real server {} 3 s after the \
         switch; connections still open on the real server: {}",
        if drain.closed_after.is_some() {
            "closed"
        } else {
            "still echoed"
        },
        drain.server_side_open
    );
    assert!(
        drain.closed_after.is_none(),
        "with drain, the connection should stay: closed after {:?}",
        drain.closed_after
    );
    assert_eq!(drain.server_side_open, 1);
}
