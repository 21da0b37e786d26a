//! `director-partition`: the two directors disagree about the real server (d2's new
//! connections to A:3306 get no answer, so d2's checkers take A out and put the sorry server B
//! in, while d1 still sees A healthy), then lose sight of each other: both are MASTER. The client follows d2's gratuitous ARPs to d2 and B; a second application host
//! (client2, .101) whose ARP cache still names d1 goes on through d1 to A. After 30 s VRRP
//! comes back, d2 returns to BACKUP, and only then does d2 reach A again.
//! VRRP is dropped on the way into both directors.

use super::Session;
use crate::topology::{server_label, Side, VIP};
use anyhow::Result;
use std::net::Ipv4Addr;
use std::time::Duration;

const CLIENT2: Ipv4Addr = Ipv4Addr::new(192, 168, 66, 101);
const BOTH_MASTER: Duration = Duration::from_secs(30);

pub(super) fn run(s: &mut Session) -> Result<()> {
    super::expect_start_state(s.lab)?;
    let a = server_label(Side::A, 3306);
    let b = server_label(Side::B, 3306);
    s.wait_writes(3306, &a, Duration::from_secs(30))?;
    s.lab.add_host("client2", CLIENT2)?;
    s.lab.pin_neighbour("client2", VIP, "d1")?;

    s.mark("d2's new connections to 253:3306 get no answer: d2 sees it down, d1 sees it up");
    s.lab.refuse_new_connections("d2", Side::A.ip())?;
    s.wait_sorry_server_on("d2", 3306, true)?;

    s.mark("the directors lose sight of each other (VRRP dropped on the way into each)");
    s.lab.cut_vrrp("d1")?;
    s.lab.cut_vrrp("d2")?;
    s.wait_vrrp("d2", "MASTER", Duration::from_secs(30))?;
    s.start_another_application("client2", &format!("{}c2", s.scenario_id()))?;
    let since = s.timeline.now();
    let got_b = s.wait_attempts(
        crate::writer::Op::Write,
        3306,
        Some(&b),
        1,
        since,
        Duration::from_secs(60),
    );
    if let Err(e) = got_b {
        s.note(format!("no write through d2 reached 254:3306: {e:#}"));
    }
    s.pause(BOTH_MASTER)?;

    s.mark("VRRP between the directors again");
    s.lab.restore_vrrp("d1")?;
    s.lab.restore_vrrp("d2")?;
    s.wait_vrrp("d2", "BACKUP", Duration::from_secs(30))?;
    s.stop_other_applications();
    s.lab.remove_host("client2");
    s.mark("d2 reaches 253:3306 again; the client's ARP entry for the VIP is flushed");
    s.lab.clear_faults("d2")?;
    s.lab.flush_neighbour("client", VIP)?;
    s.wait_sorry_server_on("d2", 3306, false)?;
    let since = s.timeline.now();
    s.wait_attempts(
        crate::writer::Op::Write,
        3306,
        Some(&a),
        2,
        since,
        Duration::from_secs(60),
    )?;
    Ok(())
}
