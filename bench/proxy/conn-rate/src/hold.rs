//! Idle connections: open N, prove each reaches the backend with one exchange, then hold them.
//!
//! A proxy that runs out of file descriptors accepts no more (the connections sit in its
//! listen backlog with no reply) or closes them: after `MAX_ERRORS` failures the rest are not
//! tried, so that a proxy at its limit yields "held what it could" in seconds, not a timeout
//! per remaining connection.

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{Mutex, Semaphore};

use crate::args::HoldOpts;
use crate::net::{connect, exchange};

const MAX_ERRORS: usize = 100;
const PER_CONNECTION_LIMIT: Duration = Duration::from_secs(5);

pub async fn run(opts: HoldOpts) -> io::Result<()> {
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::with_capacity(opts.count)));
    let errors = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(opts.parallel));
    let mut opens = Vec::with_capacity(opts.count);
    let mut skipped = 0usize;
    for i in 0..opts.count {
        let permit = gate
            .clone()
            .acquire_owned()
            .await
            .map_err(io::Error::other)?;
        if errors.load(Ordering::Relaxed) >= MAX_ERRORS {
            skipped = opts.count - i;
            break;
        }
        let (held, errors) = (held.clone(), errors.clone());
        let target = opts.target;
        let source = (!opts.sources.is_empty()).then(|| opts.sources[i % opts.sources.len()]);
        opens.push(tokio::spawn(async move {
            let _permit = permit;
            let one = async {
                let mut stream = connect(target, source).await?;
                exchange(&mut stream).await?;
                Ok::<_, io::Error>(stream)
            };
            let failure = match tokio::time::timeout(PER_CONNECTION_LIMIT, one).await {
                Ok(Ok(stream)) => {
                    held.lock().await.push(stream);
                    return None;
                }
                Ok(Err(e)) => format!("{target}: {e}"),
                Err(_) => format!("{target}: no reply in {PER_CONNECTION_LIMIT:?}"),
            };
            errors.fetch_add(1, Ordering::Relaxed);
            Some(failure)
        }));
    }
    let mut first_error = None;
    for o in opens {
        if let Some(e) = o.await.map_err(io::Error::other)? {
            first_error.get_or_insert(e);
        }
    }
    let n = held.lock().await.len();
    let errors = errors.load(Ordering::Relaxed);
    println!("held {n} errors {errors} skipped {skipped}");
    if let Some(e) = first_error {
        println!("first error: {e}");
    }
    io::stdout().flush()?;
    // Hold until killed; the kernel closes every socket then.
    std::future::pending::<()>().await;
    Ok(())
}
