//! `flap`: the real server (A:3306) fails and returns five times, 25 s apart (a clean stop, a
//! start with its replication running), under the application. Per return, the time until
//! traffic went back to it (when the checkers had taken it out at all).

use super::Session;
use crate::topology::{server_label, Side};
use anyhow::Result;
use std::time::Duration;

const TIMES: usize = 5;
const APART: Duration = Duration::from_secs(25);

pub(super) fn run(s: &mut Session) -> Result<()> {
    super::expect_start_state(s.lab)?;
    let a = server_label(Side::A, 3306);
    s.wait_writes(3306, &a, Duration::from_secs(30))?;

    for i in 1..=TIMES {
        s.mark(&format!("flap {i}/{TIMES}: stop MariaDB 253:3306"));
        s.lab.db_mut(Side::A, 3306)?.server.stop()?;
        s.pause(APART)?;
        let out = s.lab.director("d1")?.sorry_server_active(3306)?;
        let returned = s.mark(&format!("flap {i}/{TIMES}: start MariaDB 253:3306 again"));
        s.lab.db_mut(Side::A, 3306)?.server.restart()?;
        if out {
            let handback = s.watch_handback(3306, APART)?;
            s.returned(returned, handback);
        } else {
            s.note(format!(
                "flap {i}: the checkers had not taken 253:3306 out within {} s",
                APART.as_secs()
            ));
            s.pause(APART)?;
        }
    }
    let since = s.timeline.now();
    if s.lab.director("d1")?.sorry_server_active(3306)? {
        let handback = s.wait_sorry_server(3306, false)?;
        if let Some(last) = s.returns.last_mut() {
            if last.handback_at.is_none() {
                last.handback_at = Some(handback);
            }
        }
    }
    s.wait_attempts(
        crate::writer::Op::Write,
        3306,
        Some(&a),
        2,
        since,
        Duration::from_secs(120),
    )?;
    Ok(())
}
