//! conn-bench: the load tool of bench/proxy.
//!
//! One small request ("GET\n") and one small reply ("OK\n") per connection, so that what is
//! measured is the cost of a connection through a proxy, not of moving bytes.
//!
//!   conn-bench serve --listen ADDR[,ADDR...]
//!       The backend: answers "OK\n" to every line and keeps the connection open until the
//!       peer closes it. Prints "listening" once every address is bound.
//!   conn-bench rate --target ADDR[,ADDR...] --concurrency C --duration SECONDS [--sources SPEC]
//!       C loops, each: connect, send, read the reply, close. Prints
//!       "rate CONN_PER_S conns N errors E seconds S".
//!   conn-bench hold --target ADDR --count N [--parallel P] [--sources SPEC]
//!       Opens N connections, does one exchange on each, prints "held N errors E skipped S"
//!       (after 100 failures the rest are skipped: the proxy is at its limit), then keeps
//!       them open until killed.
//!
//! SPEC for --sources is FIRST-LAST of one /24, e.g. 127.77.10.1-64: the client binds its
//! sockets to these addresses in turn, so that a high connection rate does not run out of
//! ephemeral ports of one (source, destination) pair while closed connections sit in TIME_WAIT.

mod args;
mod hold;
mod net;
mod rate;
mod serve;

use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args::parse(&argv) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("conn-bench: {e}\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(parsed.threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("conn-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match parsed.command {
            args::Command::Serve { listen } => serve::run(listen).await,
            args::Command::Rate(opts) => rate::run(opts).await,
            args::Command::Hold(opts) => hold::run(opts).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conn-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
