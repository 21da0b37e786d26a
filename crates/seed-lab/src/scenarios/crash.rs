//! Section 6.3: `kill -9` of one instance (A:3308) while writers and readers run on both
//! ports; the seed checked that the other instances kept running (`mysqld_multi report`) and
//! logged nothing. Then the killed instance starts again (crash recovery) and takes its traffic
//! back.

use super::Session;
use crate::topology::{server_label, Side, PORTS};
use crate::writer::Op;
use anyhow::Result;
use std::time::Duration;

pub(super) fn run(s: &mut Session) -> Result<()> {
    super::expect_start_state(s.lab)?;
    let a8 = server_label(Side::A, 3308);
    let b8 = server_label(Side::B, 3308);
    s.wait_writes(3306, &server_label(Side::A, 3306), Duration::from_secs(30))?;
    s.wait_writes(3308, &a8, Duration::from_secs(30))?;
    let others: Vec<(String, Option<u32>)> = [Side::A, Side::B]
        .into_iter()
        .flat_map(|side| PORTS.map(|port| (side, port)))
        .filter(|&(side, port)| !(side == Side::A && port == 3308))
        .map(|(side, port)| {
            let pid = s.lab.db(side, port).ok().and_then(|d| d.server.pid());
            (server_label(side, port), pid)
        })
        .collect();

    let killed = s.mark("kill -9 MariaDB 253:3308");
    s.lab.db_mut(Side::A, 3308)?.kill()?;
    s.observe("mariadbd 253:3308 is gone");
    s.wait_writes(3308, &b8, Duration::from_secs(60))?;
    s.wait_sorry_server(3308, true)?;

    let still: Vec<String> = others
        .iter()
        .filter(|(label, pid)| {
            super::parse_label(label).is_some_and(|(side, port)| {
                s.lab
                    .db(side, port)
                    .is_ok_and(|d| d.is_running() && d.server.pid() == *pid)
            })
        })
        .map(|(l, _)| l.clone())
        .collect();
    s.check(
        "the other three instances kept running",
        still.len() == 3,
        format!("running with the same pid: {}", still.join(", ")),
        true,
    );
    let records = s.timeline.records();
    let failed_3306: Vec<String> = records
        .attempts
        .iter()
        .filter(|a| a.port == 3306 && a.at >= killed && !a.ok)
        .map(crate::writer::describe_attempt)
        .collect();
    s.check(
        "nothing on :3306 failed after the kill",
        failed_3306.is_empty(),
        failed_3306.join("; "),
        false,
    );

    s.restart_and_hand_back(
        3308,
        "start MariaDB 253:3308 again (crash recovery)",
        &[(Op::Write, 2)],
    )
}
