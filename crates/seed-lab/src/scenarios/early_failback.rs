//! `early-failback`: the real server (A:3306) stops, the sorry server B takes the writes, then
//! A starts again with its replication from B held back (started with `--skip-slave-start`,
//! then only its IO thread: it receives B's changes but applies none) for
//! [`super::PlanOptions::replication_hold`] (40 s); then its SQL thread starts and it catches up.
//!
//! The seed's TCP_CHECK hands back as soon as A accepts connections: the application then
//! writes to a master that lacks B's rows and counter updates, and they meet later in
//! replication. halb with `mysql_writer` hands back only once A has applied B's GTID position.

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

    s.mark("stop MariaDB 253:3306 under the application");
    s.lab.db_mut(Side::A, 3306)?.server.stop()?;
    s.observe("mariadbd 253:3306 has exited");
    s.wait_sorry_server(3306, true)?;
    s.wait_writes(3306, &b, Duration::from_secs(60))?;
    s.pause(Duration::from_secs(5))?;

    let hold = s.replication_hold();
    s.mark(&format!(
        "start MariaDB 253:3306 again, its replication from 254:3306 held back for {} s",
        hold.as_secs()
    ));
    {
        let db = s.lab.db_mut(Side::A, 3306)?;
        db.server.restart_with(&["--skip-slave-start"])?;
        db.server.sql("START SLAVE IO_THREAD")?;
    }
    let returned = s.observe("mariadbd 253:3306 accepts connections, applies nothing from 254");
    let early = s.watch_handback(3306, hold)?;

    s.mark("253:3306 applies 254:3306's changes (START SLAVE SQL_THREAD)");
    s.lab
        .db(Side::A, 3306)?
        .server
        .sql("START SLAVE SQL_THREAD")?;
    let handback = match early {
        Some(at) => at,
        None => s.wait_sorry_server(3306, false)?,
    };
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
