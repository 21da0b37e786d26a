//! `halb upgrade`: replaces the running daemon by the halb binary now on disk without a
//! failover. The daemon starts its successor itself (`halb run --takeover` with its own
//! arguments, in its own systemd service), which takes the listening sockets and the VRRP
//! role over; this command waits until the control socket answers from the new process.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args as ClapArgs;

use crate::control::client::{self, UpgradeStart};
use crate::control::protocol::Request;
use crate::control::DEFAULT_SOCKET;

/// The hand-over did not happen: the running halb carries on.
const EXIT_FAILURE: u8 = 1;
/// The running halb predates `halb upgrade`: only a restart (a failover) replaces it.
const EXIT_NOT_SUPPORTED: u8 = 3;

#[derive(ClapArgs)]
pub struct Args {
    /// The daemon's control socket.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    control_socket: PathBuf,
    /// How long the new halb may take to take over.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    timeout: u64,
}

pub fn run(args: &Args) -> ExitCode {
    let path = &args.control_socket;
    let before = match client::query(path, &Request::default()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("halb upgrade: {e:#}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let old = before.daemon.pid;
    let started = match client::upgrade(path) {
        Ok(UpgradeStart::Started(answer)) => answer,
        Ok(UpgradeStart::NotSupported { version }) => {
            eprintln!(
                "halb upgrade: the running halb ({version}, pid {old}) cannot start its \
                 successor; only a restart replaces it, and that is a failover"
            );
            return ExitCode::from(EXIT_NOT_SUPPORTED);
        }
        Err(e) => {
            eprintln!("halb upgrade: {e:#}; halb (pid {old}) carries on");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let new = started.successor_pid;
    println!(
        "halb upgrade: halb (pid {old}) started {} as pid {new}",
        started.command.join(" ")
    );
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(now) = client::query_within(path, &Request::default(), Duration::from_secs(2)) {
            if now.daemon.pid == new {
                println!(
                    "halb upgrade: halb {} (pid {new}) took over from pid {old}",
                    now.version
                );
                return ExitCode::SUCCESS;
            }
        }
        if !running(new) {
            eprintln!(
                "halb upgrade: the new halb (pid {new}) ended before taking over; halb (pid \
                 {old}) carries on (its log says why)"
            );
            return ExitCode::from(EXIT_FAILURE);
        }
        if Instant::now() >= deadline {
            eprintln!(
                "halb upgrade: the new halb (pid {new}) has not taken over after {} s",
                args.timeout
            );
            return ExitCode::from(EXIT_FAILURE);
        }
    }
}

/// Whether process `pid` exists and has not ended (a zombie waits for its parent to reap it).
fn running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // pid (comm) state …
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next())
        .is_some_and(|state| state != 'Z' && state != 'X')
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_runs_and_a_free_pid_does_not() {
        assert!(super::running(std::process::id()));
        assert!(!super::running(u32::MAX));
    }
}
