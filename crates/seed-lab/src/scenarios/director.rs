//! Section 5: halb on the MASTER director (d1, .6) stopped, then started again.
//!
//! The seed saw the BACKUP take over ("Transition to MASTER STATE", gratuitous ARPs) and give
//! the VIP back when the MASTER returned ("Received higher prio advert"). halb sends a
//! priority-0 advert when it stops, so d2 takes over without waiting three advert intervals.
//! The proxy's connections die with the director that carried them; the figures show how long
//! the application could not write and whether connections made through d2 stay open on A
//! after d1 takes the VIP back.

use super::Session;
use crate::topology::{server_label, Side};
use crate::writer::Op;
use anyhow::Result;
use std::time::Duration;

pub(super) fn run(s: &mut Session) -> Result<()> {
    super::expect_start_state(s.lab)?;
    let a = server_label(Side::A, 3306);
    s.wait_writes(3306, &a, Duration::from_secs(30))?;
    let d2_ip = s.lab.director("d2")?.ip.to_string();

    s.mark("stop halb on d1, the MASTER (SIGTERM, as `service keepalived stop`)");
    s.lab.director_mut("d1")?.stop(Duration::from_secs(10))?;
    s.observe("halb on d1 has exited");
    s.wait_vrrp("d2", "MASTER", Duration::from_secs(30))?;
    s.wait_writes(3306, &a, Duration::from_secs(60))?;
    s.status_of("d2", "halb status on d2 while it is MASTER");

    s.mark("start halb on d1 again");
    s.lab.director_mut("d1")?.start()?;
    s.wait_vrrp("d1", "MASTER", Duration::from_secs(60))?;
    let back = s.wait_vrrp("d2", "BACKUP", Duration::from_secs(30))?;
    s.wait_attempts(Op::Write, 3306, Some(&a), 2, back, Duration::from_secs(60))?;
    s.wait_attempts(Op::Read, 3308, None, 1, back, Duration::from_secs(60))?;
    // Connections the application made through d2 while it held the VIP.
    let a8 = server_label(Side::A, 3308);
    s.watch_lingering(&[(&a, Some(&d2_ip)), (&a8, Some(&d2_ip))], back);
    Ok(())
}
