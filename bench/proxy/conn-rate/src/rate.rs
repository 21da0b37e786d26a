//! New short connections per second: C loops of connect, request, reply, close.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::args::RateOpts;
use crate::net::{connect, exchange};

/// A connection that has not completed in this long counts as an error (a proxy that drops
/// a SYN makes the kernel retry after 1 s, 3 s, ...: such stalls must show, not hang the run).
const PER_CONNECTION_LIMIT: Duration = Duration::from_secs(5);

pub async fn run(opts: RateOpts) -> io::Result<()> {
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + opts.duration;
    // One sequence for all loops: connection n goes to target n % T from source (n / T) % S,
    // so every (source, target) pair gets its share whatever C, T and S are. (Each loop
    // counting on its own would pin a loop to one pair when C is a multiple of S.)
    let sequence = Arc::new(AtomicU64::new(0));
    let opts = Arc::new(opts);
    let mut loops = Vec::with_capacity(opts.concurrency);
    for _ in 0..opts.concurrency {
        let (ok, errors, opts, sequence) =
            (ok.clone(), errors.clone(), opts.clone(), sequence.clone());
        loops.push(tokio::spawn(async move {
            let mut first_error = None;
            while Instant::now() < deadline {
                let n = sequence.fetch_add(1, Ordering::Relaxed) as usize;
                let target = opts.targets[n % opts.targets.len()];
                let source = (!opts.sources.is_empty())
                    .then(|| opts.sources[(n / opts.targets.len()) % opts.sources.len()]);
                let one = async {
                    let mut stream = connect(target, source).await?;
                    exchange(&mut stream).await
                };
                match tokio::time::timeout(PER_CONNECTION_LIMIT, one).await {
                    Ok(Ok(())) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert_with(|| format!("{target}: {e}"));
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert_with(|| format!("{target}: no reply in 5 s"));
                    }
                }
            }
            first_error
        }));
    }
    let mut first_error = None;
    for l in loops {
        if let Some(e) = l.await.map_err(io::Error::other)? {
            first_error.get_or_insert(e);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let conns = ok.load(Ordering::Relaxed);
    let errors = errors.load(Ordering::Relaxed);
    println!(
        "rate {:.0} conns {conns} errors {errors} seconds {seconds:.2}",
        conns as f64 / seconds
    );
    if let Some(e) = first_error {
        eprintln!("conn-bench rate: first error: {e}");
    }
    Ok(())
}
