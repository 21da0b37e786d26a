//! Section 6.2: the seed's program writes one row per second through the VIP (to A:3306 only,
//! reads from both ports); A:3306 is stopped, the program gets an exception, reconnects and
//! writes land on B with odd ids; the program is restarted while A is down and still writes to
//! B; A is started again and traffic goes back to A.
//!
//! The seed's problems: the program errored again at the switch back, its old connection to B
//! stayed open for 5–10 minutes, and with asynchronous replication rows could be lost or differ
//! between the masters. The figures answer each: the failed writes, the connections left on B,
//! rows acknowledged but missing afterwards, rows on both masters at once, and the replication
//! state of each pair.

use super::Session;
use crate::topology::{server_label, Side};
use crate::writer::Op;
use anyhow::Result;
use std::time::Duration;

pub(super) fn run(s: &mut Session) -> Result<()> {
    super::expect_start_state(s.lab)?;
    let a = server_label(Side::A, 3306);
    let b = server_label(Side::B, 3306);
    s.wait_attempts(Op::Write, 3306, Some(&a), 3, 0.0, Duration::from_secs(30))?;

    s.mark("stop MariaDB 253:3306 under the writer");
    s.lab.db_mut(Side::A, 3306)?.server.stop()?;
    s.observe("mariadbd 253:3306 has exited");
    s.wait_writes(3306, &b, Duration::from_secs(60))?;
    s.wait_sorry_server(3306, true)?;

    // The seed restarted its program while A was down: the new connections go to B.
    s.restart_application()?;
    s.wait_writes(3306, &b, Duration::from_secs(60))?;

    s.restart_and_hand_back(3306, "start MariaDB 253:3306 again", &[(Op::Write, 3)])?;

    // The seed's observation: A hands out even ids, B odd ones.
    let records = s.timeline.records();
    let wrong: Vec<String> = records
        .attempts
        .iter()
        .filter(|x| x.op == Op::Write && x.ok)
        .filter_map(|x| {
            let id = x.id?;
            let server = x.server.as_deref()?;
            let even = id % 2 == 0;
            let expected_even = server.starts_with("253:");
            (even != expected_even).then(|| format!("id {id} on {server}"))
        })
        .collect();
    s.check(
        "ids are even on A and odd on B (auto_increment_increment 2, offsets 2 and 1)",
        wrong.is_empty(),
        wrong.join(", "),
        false,
    );
    Ok(())
}
