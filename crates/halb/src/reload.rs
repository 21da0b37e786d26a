//! `halb reload`: asks the running daemon to read its configuration file again and apply it,
//! as SIGHUP does, and waits for the outcome: what changed, or the diagnostics of a refused
//! file (the daemon then keeps running its configuration).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args as ClapArgs;

use crate::control::{client, DEFAULT_SOCKET};

/// A refused file: keepalived's exit status for a configuration with errors.
const EXIT_REFUSED: u8 = 4;
const EXIT_FAILURE: u8 = 1;

#[derive(ClapArgs)]
pub struct Args {
    /// The daemon's control socket.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    control_socket: PathBuf,
}

pub fn run(args: &Args) -> ExitCode {
    let answer = match client::reload(&args.control_socket) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("halb reload: {e:#}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    if answer.applied {
        for line in &answer.details {
            println!("{line}");
        }
        println!("halb reload: applied ({} change(s))", answer.details.len());
        ExitCode::SUCCESS
    } else {
        for line in &answer.details {
            eprintln!("{line}");
        }
        eprintln!("halb reload: refused; the running configuration stays");
        ExitCode::from(EXIT_REFUSED)
    }
}
