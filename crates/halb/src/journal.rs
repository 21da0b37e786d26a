//! Log lines for journald. When stderr is the journal's stream (systemd sets `JOURNAL_STREAM`
//! to its `device:inode`), journald adds the time itself and reads a line's priority from an
//! `sd-daemon(3)` prefix (`<3>` error … `<7>` debug); so the lines carry that prefix and no
//! timestamp. Anywhere else (a terminal, a file) the usual format stays.

use std::fmt::Write as _;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;

/// Whether `JOURNAL_STREAM` (`DEVICE:INODE`, decimal) names the file stderr is, `dev`/`ino`.
/// A child started with the variable but another stderr (redirected to a file) must not
/// write prefixes into that file.
pub fn stream_matches(journal_stream: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = journal_stream.trim().split_once(':') else {
        return false;
    };
    d.parse::<u64>().ok() == Some(dev) && i.parse::<u64>().ok() == Some(ino)
}

/// Whether this process's stderr goes to journald.
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stat) = nix::sys::stat::fstat(std::io::stderr()) else {
        return false;
    };
    // dev_t and ino_t are u64 on Linux.
    stream_matches(&value.to_string_lossy(), stat.st_dev, stat.st_ino)
}

/// syslog's priority for a tracing level (`<3>` err, `<4>` warning, `<6>` info, `<7>` debug).
pub fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// `text` with the priority prefix on each of its lines: journald makes every line a
/// record of its own, and a line without a prefix would be logged at info.
pub fn prefixed(priority: u8, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for line in text.lines() {
        let _ = writeln!(out, "<{priority}>{line}");
    }
    out
}

/// The event's fields, each line prefixed with its level's priority; no time, no level word.
pub struct JournalFormat;

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: format::Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut message = String::new();
        ctx.format_fields(format::Writer::new(&mut message), event)?;
        writer.write_str(&prefixed(priority(*event.metadata().level()), &message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_must_be_stderrs_own() {
        assert!(stream_matches("8:12345", 8, 12345));
        assert!(stream_matches("8:12345\n", 8, 12345));
        assert!(!stream_matches("8:12345", 8, 12346));
        assert!(!stream_matches("9:12345", 8, 12345));
        assert!(!stream_matches("", 8, 12345));
        assert!(!stream_matches("8", 8, 12345));
        assert!(!stream_matches("x:y", 8, 12345));
    }

    #[test]
    fn levels_map_to_sd_daemon_priorities() {
        assert_eq!(priority(Level::ERROR), 3);
        assert_eq!(priority(Level::WARN), 4);
        assert_eq!(priority(Level::INFO), 6);
        assert_eq!(priority(Level::DEBUG), 7);
        assert_eq!(priority(Level::TRACE), 7);
    }

    #[test]
    fn every_line_gets_the_prefix() {
        assert_eq!(
            prefixed(6, "(VI_1) Entering MASTER STATE"),
            "<6>(VI_1) Entering MASTER STATE\n"
        );
        assert_eq!(prefixed(3, "first\nsecond"), "<3>first\n<3>second\n");
    }

    /// What a subscriber built with the format writes for each level.
    #[test]
    fn lines_carry_the_prefix_and_no_timestamp() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JournalFormat)
            .with_writer(move || writer.clone())
            .with_max_level(Level::DEBUG)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!("cannot open eth9");
            tracing::warn!("(VI_1) Received advert from 192.168.66.12 with lower priority 90");
            tracing::info!("(VI_1) Entering MASTER STATE");
            tracing::debug!("peer {} answered", "192.168.66.12");
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "<3>cannot open eth9\n\
             <4>(VI_1) Received advert from 192.168.66.12 with lower priority 90\n\
             <6>(VI_1) Entering MASTER STATE\n\
             <7>peer 192.168.66.12 answered\n"
        );
    }
}
