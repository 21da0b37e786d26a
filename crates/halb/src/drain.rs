//! `halb drain`: withdraw every route the daemon announces by BGP (`bgp_announce`), so the
//! router sends this director no new connection, then wait until the connections it carries
//! have ended; after that the daemon can be stopped without resetting any. `--resume` lets the
//! routes follow their health again.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args as ClapArgs;

use crate::control::protocol::Request;
use crate::control::{client, DEFAULT_SOCKET};

const EXIT_FAILURE: u8 = 1;
/// The daemon's `drain_timeout` passed with connections still open.
const EXIT_TIMED_OUT: u8 = 2;

#[derive(ClapArgs)]
pub struct Args {
    /// Announce again (end a drain) instead.
    #[arg(long)]
    resume: bool,
    /// Return once the routes are withdrawn, without waiting for the connections to end.
    #[arg(long)]
    no_wait: bool,
    /// The daemon's control socket.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    control_socket: PathBuf,
}

pub fn run(args: &Args) -> ExitCode {
    let request = Request {
        drain: Some(!args.resume),
        ..Request::default()
    };
    let snapshot = match client::query(&args.control_socket, &request) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("halb drain: {e:#}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let Some(bgp) = snapshot.bgp else {
        eprintln!("halb drain: the daemon announces no route (no bgp_announce, or an older halb)");
        return ExitCode::from(EXIT_FAILURE);
    };
    if args.resume {
        println!("halb drain: ended; routes follow their health again");
        return ExitCode::SUCCESS;
    }
    for a in &bgp.announcements {
        println!("{} withdrawn", a.prefix);
    }
    if args.no_wait {
        return ExitCode::SUCCESS;
    }
    let mut last = None;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let snapshot = match client::query(&args.control_socket, &Request::default()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("halb drain: {e:#}");
                return ExitCode::from(EXIT_FAILURE);
            }
        };
        let Some(drain) = snapshot.bgp.map(|b| b.drain) else {
            eprintln!("halb drain: the daemon stopped announcing");
            return ExitCode::from(EXIT_FAILURE);
        };
        if drain.finished {
            return if drain.timed_out {
                eprintln!(
                    "halb drain: drain_timeout passed with {} connection(s) open",
                    drain.connections.unwrap_or(0)
                );
                ExitCode::from(EXIT_TIMED_OUT)
            } else {
                match drain.connections {
                    // On IPVS: entries of flows the router now sends to other directors.
                    Some(n) if n > 0 => println!(
                        "halb drain: no packet arrives any more; the {n} connection(s) left in the table are carried elsewhere; the director can stop"
                    ),
                    _ => println!("halb drain: no connection left; the director can stop"),
                }
                ExitCode::SUCCESS
            };
        }
        if drain.connections != last {
            if let Some(n) = drain.connections {
                println!("{n} connection(s) left");
            }
            last = drain.connections;
        }
    }
}
