//! Section 4.2: the VIP forwards both ports to A (`telnet 192.168.66.251 3306`, then 3308), and
//! `ipvsadm` on the MASTER lists both services routed to A. The seed also wondered (5.1) why
//! the BACKUP's `ipvsadm` never changed: keepalived loads the table on both directors, and so
//! does halb; both directors' `halb status` go into the report.

use super::Session;
use crate::topology::{server_label, Side};
use crate::writer::Op;
use anyhow::Result;
use std::time::Duration;

pub(super) fn run(s: &mut Session) -> Result<()> {
    super::expect_start_state(s.lab)?;
    let since = s.timeline.now();
    for port in [3306, 3308] {
        let server = server_label(Side::A, port);
        let answered = s.wait_attempts(
            Op::Read,
            port,
            Some(&server),
            3,
            since,
            Duration::from_secs(30),
        );
        s.check(
            &format!("the VIP answers on {port}, served by {server}"),
            answered.is_ok(),
            answered.err().map(|e| format!("{e:#}")).unwrap_or_default(),
            true,
        );
    }
    let written = s.wait_writes(3306, &server_label(Side::A, 3306), Duration::from_secs(30));
    s.check(
        "writes through the VIP land on 253:3306",
        written.is_ok(),
        written.err().map(|e| format!("{e:#}")).unwrap_or_default(),
        true,
    );

    let d1 = s.lab.director("d1")?.status_text().unwrap_or_default();
    for (what, line) in [
        (
            "d1 lists 3306 as the seed's ipvsadm did",
            "TCP  192.168.66.251:3306 wrr persistent 120",
        ),
        ("d1 routes 3306 to A", "-> 192.168.66.253:3306"),
        (
            "d1 lists 3308 as the seed's ipvsadm did",
            "TCP  192.168.66.251:3308 wrr persistent 120",
        ),
        ("d1 routes 3308 to A", "-> 192.168.66.253:3308"),
    ] {
        s.check(
            what,
            d1.contains(line),
            format!("looked for {line:?}"),
            false,
        );
    }
    let d2 = s.lab.director("d2")?.status_text().unwrap_or_default();
    let line = "TCP  192.168.66.251:3306 wrr persistent 120";
    s.check(
        "d2, the BACKUP, holds the same table (the seed's question in 5.1)",
        d2.contains(line),
        "halb, like keepalived, loads the virtual servers on both directors",
        false,
    );
    s.status_of("d1", "halb status on d1 (MASTER)");
    s.status_of("d2", "halb status on d2 (BACKUP)");
    Ok(())
}
