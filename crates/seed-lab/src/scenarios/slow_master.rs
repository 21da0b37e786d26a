//! `slow-master`: the real server (A:3306) stays alive, but new connections from the MASTER
//! director to it get no answer (its SYNs are dropped, as an overloaded master's overflowing
//! listen queue drops them), while the application's established connections go on writing.
//! A second instance of the application starts then: the proxy gives up on A after its connect
//! timeout and sends it to the sorry server B, so new connections write to B while the old
//! pool still writes to A, until the checkers (the seed's TCP_CHECK, or MYSQL_CHECK with the
//! same timings) take A out. Then A answers again and traffic is handed back.
//!
//! With the seed's files both masters take writes for the checkers' detection time; with
//! `mysql_writer` the sorry server is read-only until halb switches, and A is fenced first.

use super::Session;
use crate::topology::{server_label, Side};
use crate::writer::Op;
use anyhow::Result;
use std::time::Duration;

pub(super) fn run(s: &mut Session) -> Result<()> {
    super::expect_start_state(s.lab)?;
    let a = server_label(Side::A, 3306);
    let b = server_label(Side::B, 3306);
    s.wait_writes(3306, &a, Duration::from_secs(30))?;
    s.wait_attempts(Op::Update, 3306, Some(&a), 2, 0.0, Duration::from_secs(30))?;

    s.mark("d1's new connections to 253:3306 get no answer (SYNs dropped); established ones go on");
    s.lab.refuse_new_connections("d1", Side::A.ip())?;
    s.start_another_application("client", &format!("{}b", s.scenario_id()))?;
    s.wait_sorry_server(3306, true)?;
    s.wait_writes(3306, &b, Duration::from_secs(60))?;
    // A few seconds of writes on the sorry server.
    s.pause(Duration::from_secs(5))?;

    let returned = s.mark("253:3306 answers new connections from d1 again");
    s.lab.clear_faults("d1")?;
    let handback = s.wait_sorry_server(3306, false)?;
    s.returned(returned, Some(handback));
    s.wait_attempts(
        Op::Write,
        3306,
        Some(&a),
        2,
        handback,
        Duration::from_secs(60),
    )?;
    s.watch_lingering(&[(&b, None)], handback);
    Ok(())
}
