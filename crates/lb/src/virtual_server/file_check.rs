//! FILE_CHECK: a real server's checker that follows a tracked file's value instead of probing
//! (keepalived's `process_update_checker_track_file_status()` in track_file.c). The value is
//! turned into a [`FileStatus`] by the caller; this module moves the checker and the real
//! server's effective weight.

use super::output::Output;
use super::state::VsState;

/// What a tracked file's value means for one FILE_CHECK: keepalived's `IPVS_WEIGHT_FAULT` (the
/// checker is down), or what the checker adds to the real server's configured weight
/// (`cur_weight`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStatus {
    Fault,
    Weight(i64),
}

impl VsState {
    pub(crate) fn is_file_check(&self, rs: usize, checker: usize) -> bool {
        self.real_servers
            .get(rs)
            .and_then(|r| r.checkers.get(checker))
            .is_some_and(|c| c.kind == "FILE_CHECK")
    }

    /// keepalived's three cases: into FAULT the checker goes down and its share of the weight
    /// leaves silently; out of FAULT its new share is added silently before it comes up; from
    /// one weight to another the real server's weight changes ("Changing weight from …").
    pub(crate) fn handle_file_status(
        &mut self,
        rs: usize,
        checker: usize,
        status: FileStatus,
        out: &mut Vec<Output>,
    ) {
        let c = &self.real_servers[rs].checkers[checker];
        match (status, c.up) {
            (FileStatus::Fault, true) => self.handle_verdict(rs, checker, false, None, out),
            (FileStatus::Fault, false) => {}
            (FileStatus::Weight(w), false) => {
                let server = &mut self.real_servers[rs];
                server.checkers[checker].weight_delta = w;
                server.effective_weight += w;
                self.handle_verdict(rs, checker, true, None, out);
            }
            (FileStatus::Weight(w), true) => {
                let server = &mut self.real_servers[rs];
                let old = std::mem::replace(&mut server.checkers[checker].weight_delta, w);
                if old != w {
                    let effective = server.effective_weight - old + w;
                    self.update_weight(rs, effective, out);
                }
            }
        }
    }

    /// The state a FILE_CHECK starts in, before anything is said (check_file.c
    /// `set_track_file_weights()` and `set_track_file_checkers_down()`).
    pub(crate) fn init_file_status(&mut self, rs: usize, checker: usize, status: FileStatus) {
        let server = &mut self.real_servers[rs];
        let c = &mut server.checkers[checker];
        server.effective_weight -= c.weight_delta;
        match status {
            FileStatus::Fault => {
                c.up = false;
                c.weight_delta = 0;
            }
            FileStatus::Weight(w) => {
                c.up = true;
                c.weight_delta = w;
            }
        }
        server.effective_weight += c.weight_delta;
        server.alive = server.checkers.iter().all(|c| !c.counted || c.up);
    }
}
