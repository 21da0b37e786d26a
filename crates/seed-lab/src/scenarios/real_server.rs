//! Section 4.3.1: MariaDB on A:3306 stopped, then started again, under the application.
//!
//! The seed saw keepalived log the failed TCP check, remove A, lose quorum and add the sorry
//! server B; the VIP kept working through B. With halb's proxy a refused connect also goes to
//! the next destination (the sorry server) at once, before the checkers decide. When A is back,
//! the checkers (every 20 s) put it back and the sorry server's connections are closed.

use super::Session;
use crate::topology::{server_label, Side};
use crate::writer::Op;
use anyhow::Result;
use std::time::Duration;

/// The lines the seed quoted from keepalived (in keepalived 2.2's wording).
const LOG_LINES: &[&str] = &[
    "TCP_CHECK on service [192.168.66.253]:tcp:3306 failed",
    "Removing service [192.168.66.253]:tcp:3306 from VS [192.168.66.251]:tcp:3306",
    "Lost quorum 1-0=1 > 0 for VS [192.168.66.251]:tcp:3306",
    "Adding sorry server [192.168.66.254]:tcp:3306 to VS [192.168.66.251]:tcp:3306",
];

pub(super) fn run(s: &mut Session) -> Result<()> {
    super::expect_start_state(s.lab)?;
    let a = server_label(Side::A, 3306);
    let b = server_label(Side::B, 3306);
    s.wait_writes(3306, &a, Duration::from_secs(30))?;
    let log_start = s.lab.director("d1")?.log_text().len();

    s.mark("stop MariaDB 253:3306 (clean shutdown, as `service mysqld stop`)");
    s.lab.db_mut(Side::A, 3306)?.server.stop()?;
    s.observe("mariadbd 253:3306 has exited");
    let stopped = s.timeline.now();
    let on_b = s.wait_writes(3306, &b, Duration::from_secs(60))?;
    let out = s.wait_sorry_server(3306, true)?;
    s.note(format!(
        "the application wrote to B {:.1} s after the stop, the checkers took A out {:.1} s \
         after it: the proxy sends a refused connect to the next destination (here the sorry \
         server) without waiting for the checkers",
        on_b - stopped,
        out - stopped
    ));
    let log = s.lab.director("d1")?.log_text();
    let new = log.get(log_start..).unwrap_or_default();
    for line in LOG_LINES {
        s.check(
            &format!("d1 logs \"{line}\""),
            new.contains(line),
            String::new(),
            false,
        );
    }

    s.restart_and_hand_back(
        3306,
        "start MariaDB 253:3306 again",
        &[(Op::Write, 2), (Op::Read, 1)],
    )
}
