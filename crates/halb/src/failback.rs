//! `halb failback VS`: asks the running daemon to hand virtual server VS back from its sorry
//! server to its real servers now, past `failback manual` and `failback_limit`. For a
//! `mysql_writer` the returning server must still have caught up with the sorry server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args as ClapArgs;

use crate::control::protocol::Request;
use crate::control::{client, DEFAULT_SOCKET};

/// Nothing was handed back (an unknown virtual server, nothing to fail back, a writer that
/// has not caught up).
const EXIT_NOT_DONE: u8 = 2;
const EXIT_FAILURE: u8 = 1;

#[derive(ClapArgs)]
pub struct Args {
    /// The virtual server as `halb status` names it (`[192.168.66.251]:tcp:3306`), or its
    /// address and port (`192.168.66.251:3306`).
    vs: String,
    /// The daemon's control socket.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    control_socket: PathBuf,
}

pub fn run(args: &Args) -> ExitCode {
    let request = Request {
        failback: Some(args.vs.clone()),
        ..Request::default()
    };
    // The daemon may wait for a MySQL writer's catch-up; it gives up within two minutes.
    let answer = client::query_within(&args.control_socket, &request, Duration::from_secs(130));
    match answer.map(|s| s.failback) {
        Ok(Some(a)) if a.done => {
            println!("halb failback: {}", a.message);
            ExitCode::SUCCESS
        }
        Ok(Some(a)) => {
            eprintln!("halb failback: {}", a.message);
            ExitCode::from(EXIT_NOT_DONE)
        }
        Ok(None) => {
            eprintln!("halb failback: the daemon does not know this request (an older halb?)");
            ExitCode::from(EXIT_FAILURE)
        }
        Err(e) => {
            eprintln!("halb failback: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
