//! keepalived 2.2.7 as the oracle of how a configuration is read.
//!
//! One boot of the IPVS VM handles a whole list of files. For each one, inside the machine:
//! the interfaces the file names are created (veth pairs, each with an address of its own), then
//! `keepalived -t -f FILE` gives its verdict, and unless that verdict is fatal (exit status 4),
//! keepalived runs in the foreground with `-n -l -D -d` until it has dumped the configuration it
//! parsed, and is stopped with SIGTERM.
//!
//! The VRRP child and the checker child run as two keepalived processes side by side (`-P` and
//! `-C`, each with its own pid files), because with `-l` both children would log to the same
//! stderr without saying which line is whose, and their dumps, written at the same moment, would
//! interleave. `-G` keeps them off syslog: with no syslog daemon in the machine, glibc would
//! otherwise copy every line onto the console that carries the results.

use crate::keepalived_dump;
use crate::kernel_vm::{KernelVm, Payload};
use anyhow::{bail, Context, Result};
use halb_config::summary::Summary;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The payload script, run as `/payload/run.sh`.
const ORACLE_SCRIPT: &str = include_str!("keepalived_oracle.sh");
/// Prefix of the lines that structure the payload's output.
const MARK: &str = "@@halb-oracle@@ ";

/// What keepalived made of one file.
#[derive(Debug, Clone, Default)]
pub struct OracleReport {
    /// The file as given to [`KeepalivedOracle::run`].
    pub path: PathBuf,
    /// The interfaces created for it (see [`interfaces_named`]).
    pub interfaces: Vec<String>,
    /// Exit status of `keepalived -t`: 0 clean, 4 fatal (keepalived would not start), 5 warnings,
    /// 6 script security problems.
    pub test_exit_code: i32,
    /// What `keepalived -t` wrote to stderr, one entry per line.
    pub test_diagnostics: Vec<String>,
    /// What `keepalived -t` wrote to stdout (normally nothing).
    pub test_stdout: Vec<String>,
    /// Whether keepalived was run to dump its configuration (not when `-t` exited 4).
    pub ran: bool,
    /// Exit status of the VRRP-only keepalived after SIGTERM.
    pub vrrp_exit_code: Option<i32>,
    /// Exit status of the checker-only keepalived after SIGTERM.
    pub check_exit_code: Option<i32>,
    /// stderr of the VRRP-only keepalived, timestamps removed.
    pub vrrp_log: Vec<String>,
    /// stderr of the checker-only keepalived, timestamps removed.
    pub check_log: Vec<String>,
    /// The VRRP child's configuration dump, if it made one.
    pub vrrp_dump: Option<ChildDump>,
    /// The checker child's configuration dump, if it made one.
    pub check_dump: Option<ChildDump>,
    /// Messages of the oracle script itself (for example a time-out), one per line.
    pub notes: Vec<String>,
    /// Time `keepalived -t` took, in the machine.
    pub test_time: Duration,
    /// Time from starting the two keepalived processes until both dumps were complete.
    pub run_time: Duration,
    /// Time from SIGTERM until both keepalived processes had exited.
    pub stop_time: Duration,
}

/// One child's configuration dump (`keepalived -d`), as lines without timestamps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChildDump {
    pub lines: Vec<String>,
    /// Whether the dump's end was seen (the line keepalived logs right after it).
    pub complete: bool,
}

impl OracleReport {
    /// The dump text: the VRRP child's dump, then the checker child's, one line per line.
    pub fn dump_text(&self) -> String {
        let mut text = String::new();
        for dump in [&self.vrrp_dump, &self.check_dump].into_iter().flatten() {
            for line in &dump.lines {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    /// The dump reduced to a [`Summary`]; an error when keepalived did not run or a dump is
    /// incomplete.
    pub fn summary(&self) -> Result<Summary> {
        if !self.ran {
            bail!(
                "keepalived did not run {} (keepalived -t exit status {})",
                self.path.display(),
                self.test_exit_code
            );
        }
        for (name, dump) in [("VRRP", &self.vrrp_dump), ("checker", &self.check_dump)] {
            if let Some(dump) = dump {
                if !dump.complete {
                    bail!("the {name} dump of {} is incomplete", self.path.display());
                }
            }
        }
        keepalived_dump::parse(&self.dump_text())
            .with_context(|| format!("in keepalived's dump of {}", self.path.display()))
    }
}

/// Runs keepalived over configuration files inside the IPVS VM.
#[derive(Debug, Clone)]
pub struct KeepalivedOracle {
    vm: KernelVm,
    file_timeout: Duration,
}

impl KeepalivedOracle {
    /// An oracle using this repository's IPVS VM.
    pub fn new() -> Result<Self> {
        Ok(KeepalivedOracle {
            vm: KernelVm::new()?,
            file_timeout: Duration::from_secs(20),
        })
    }

    /// How long keepalived may take to dump one file's configuration before it is stopped anyway.
    pub fn file_timeout(mut self, timeout: Duration) -> Self {
        self.file_timeout = timeout;
        self
    }

    /// Runs all `paths` in one boot; the reports come back in the same order.
    pub fn run<P: AsRef<Path>>(&self, paths: &[P]) -> Result<Vec<OracleReport>> {
        let file_timeout = self.file_timeout.as_secs().max(1);
        let script = format!("ORACLE_FILE_TIMEOUT={file_timeout}\n{ORACLE_SCRIPT}");
        let mut payload = Payload::new(script);
        let mut reports = Vec::with_capacity(paths.len());
        for (n, path) in paths.iter().enumerate() {
            let path = path.as_ref();
            let text = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let interfaces = interfaces_named(&String::from_utf8_lossy(&text));
            let mut list = interfaces.join("\n");
            list.push('\n');
            payload = payload
                .file(format!("configs/{n}.conf"), text)
                .file(format!("configs/{n}.ifaces"), list);
            reports.push(OracleReport {
                path: path.to_path_buf(),
                interfaces,
                ..OracleReport::default()
            });
        }
        // Boot and power-off take about 10 s under TCG; each file at most its time-out plus the
        // time to stop keepalived.
        let files = u64::try_from(paths.len()).unwrap_or(u64::MAX);
        let limit = Duration::from_secs(120 + files.saturating_mul(file_timeout + 15));
        let output = self.vm.clone().timeout(limit).run(&payload)?;
        if output.exit_code != 0 {
            bail!(
                "the oracle script failed with exit status {}:\n{}",
                output.exit_code,
                output.stdout
            );
        }
        parse_output(&output.stdout, &mut reports)?;
        Ok(reports)
    }
}

/// The interface names a configuration mentions, in order of first mention, so that the oracle can
/// create them. A scan of keywords, not a parse: `interface`, `dev`, `default_interface`,
/// `lvs_sync_daemon_interface`, `lvs_sync_daemon`, `bind_if`, `iif`, `oif`, and the entries of
/// `track_interface`, `linkbeat_interfaces` and `interfaces` blocks. `eth0` is added when there is a
/// `vrrp_instance`, since it is keepalived's default interface. `lo` is left out (it exists).
pub fn interfaces_named(config: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut add = |name: &str| {
        // "eth2:vip" is a label on eth2.
        let name = name.split(':').next().unwrap_or(name);
        let valid = !name.is_empty()
            && name.len() <= 15
            && name != "lo"
            && name != "."
            && name != ".."
            && !name.contains('/')
            && name
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '{' && c != '}');
        if valid && !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    };
    let mut list_depth: Option<usize> = None;
    let mut depth = 0usize;
    let mut has_instance = false;
    for raw in config.lines() {
        let line = raw.split(['#', '!']).next().unwrap_or("");
        let spaced = line.replace('{', " { ").replace('}', " } ");
        let words: Vec<&str> = spaced.split_whitespace().collect();
        if let (Some(start), Some(first)) = (list_depth, words.first()) {
            if depth == start + 1 && *first != "{" && *first != "}" {
                add(first);
            }
        }
        for (i, word) in words.iter().enumerate() {
            let next = words.get(i + 1).copied().filter(|w| *w != "{" && *w != "}");
            match *word {
                "{" => depth += 1,
                "}" => {
                    depth = depth.saturating_sub(1);
                    if list_depth.is_some_and(|start| depth <= start) {
                        list_depth = None;
                    }
                }
                "track_interface" | "linkbeat_interfaces" | "interfaces" => {
                    list_depth = Some(depth);
                    // Entries may follow on the same line: "track_interface { eth1 }".
                    for entry in words[i + 1..].iter().skip_while(|w| **w == "{") {
                        if *entry == "}" {
                            break;
                        }
                        if !entry.chars().all(|c| c.is_ascii_digit()) && *entry != "weight" {
                            add(entry);
                        }
                    }
                }
                "interface"
                | "dev"
                | "default_interface"
                | "lvs_sync_daemon_interface"
                | "lvs_sync_daemon"
                | "bind_if"
                | "iif"
                | "oif" => {
                    if let Some(name) = next {
                        add(name);
                    }
                }
                "vrrp_instance" => has_instance = true,
                _ => {}
            }
        }
    }
    if has_instance {
        add("eth0");
    }
    names
}

/// Removes the `strftime("%c")` timestamp and ": " that `keepalived -l` puts before each line,
/// for example `Mon Nov 23 19:32:01 2026: `.
pub fn strip_log_timestamp(line: &str) -> &str {
    // "Www Mmm dd hh:mm:ss yyyy: " with the day padded by a space.
    let bytes = line.as_bytes();
    let fixed = |i: usize, f: fn(u8) -> bool| bytes.get(i).copied().is_some_and(f);
    let shape = fixed(0, |b| b.is_ascii_uppercase())
        && fixed(1, |b| b.is_ascii_lowercase())
        && fixed(2, |b| b.is_ascii_lowercase())
        && fixed(3, |b| b == b' ')
        && fixed(4, |b| b.is_ascii_uppercase())
        && fixed(5, |b| b.is_ascii_lowercase())
        && fixed(6, |b| b.is_ascii_lowercase())
        && fixed(7, |b| b == b' ')
        && fixed(8, |b| b == b' ' || b.is_ascii_digit())
        && fixed(9, |b| b.is_ascii_digit())
        && fixed(10, |b| b == b' ')
        && fixed(11, |b| b.is_ascii_digit())
        && fixed(12, |b| b.is_ascii_digit())
        && fixed(13, |b| b == b':')
        && fixed(14, |b| b.is_ascii_digit())
        && fixed(15, |b| b.is_ascii_digit())
        && fixed(16, |b| b == b':')
        && fixed(17, |b| b.is_ascii_digit())
        && fixed(18, |b| b.is_ascii_digit())
        && fixed(19, |b| b == b' ');
    if !shape {
        return line;
    }
    let year_len = bytes[20..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let rest = 20 + year_len;
    if year_len > 0 && line[rest..].starts_with(": ") {
        &line[rest + 2..]
    } else {
        line
    }
}

/// Which child a log belongs to; they end their dumps differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Child {
    Vrrp,
    Checker,
}

/// The configuration dump inside a child's log (timestamps already removed), or `None` if the log
/// has none.
///
/// A dump starts at `------< Global definitions >------`; its lines are section titles
/// (`------<`) or indented. Other lines met inside it are messages logged meanwhile (by the parent,
/// for example "Startup complete", or by the dump itself, "Script user ... does not exist") and are
/// skipped. The VRRP dump ends with its `Interfaces` section: the first unindented line after that
/// title ends it. The checker dump ends where the checker logs "Activating BFD healthchecker" or
/// "(De)activating healthchecker for service ...".
pub fn extract_dump(log: &[String], child: Child) -> Option<ChildDump> {
    let start = log
        .iter()
        .position(|line| line == "------< Global definitions >------")?;
    let mut dump = ChildDump::default();
    let mut in_interfaces = false;
    for line in &log[start..] {
        let is_title = line.starts_with("------<");
        if is_title || line.starts_with(' ') {
            if line == "------< Interfaces >------" {
                in_interfaces = true;
            }
            dump.lines.push(line.clone());
            continue;
        }
        let ends = match child {
            Child::Vrrp => in_interfaces,
            Child::Checker => {
                line == "Activating BFD healthchecker"
                    || line.starts_with("Activating healthchecker for service ")
                    || line.starts_with("Deactivating healthchecker for service ")
            }
        };
        if ends {
            dump.complete = true;
            break;
        }
    }
    Some(dump)
}

/// Reads the oracle script's output into the reports (one per file, in order).
fn parse_output(output: &str, reports: &mut [OracleReport]) -> Result<()> {
    #[derive(Clone, Copy)]
    enum Text {
        None,
        TestStdout,
        TestStderr,
        VrrpLog,
        CheckLog,
    }
    let mut current: Option<usize> = None;
    let mut text = Text::None;
    let mut done = false;
    for (number, line) in output.lines().enumerate() {
        let Some(marker) = line.strip_prefix(MARK) else {
            let Some(n) = current else {
                continue;
            };
            let report = &mut reports[n];
            match text {
                Text::None => report.notes.push(line.to_owned()),
                Text::TestStdout => report.test_stdout.push(line.to_owned()),
                Text::TestStderr => report.test_diagnostics.push(line.to_owned()),
                Text::VrrpLog => report.vrrp_log.push(strip_log_timestamp(line).to_owned()),
                Text::CheckLog => report.check_log.push(strip_log_timestamp(line).to_owned()),
            }
            continue;
        };
        let context = || format!("oracle output line {}: {line:?}", number + 1);
        let (name, value) = marker.split_once(' ').unwrap_or((marker, ""));
        text = Text::None;
        if name == "file" {
            let n: usize = value.parse().with_context(context)?;
            if n >= reports.len() {
                bail!("{}: file number {n} out of range", context());
            }
            current = Some(n);
            continue;
        }
        if name == "done" {
            done = true;
            continue;
        }
        let Some(n) = current else {
            bail!("{}: marker before any file", context());
        };
        let report = &mut reports[n];
        let number = || value.parse::<i64>().with_context(context);
        match name {
            "interfaces" | "end" => {}
            "test-exit" => {
                report.test_exit_code = i32::try_from(number()?).with_context(context)?
            }
            "test-stdout" => text = Text::TestStdout,
            "test-stderr" => text = Text::TestStderr,
            "test-ms" => report.test_time = millis(number()?),
            "run-ms" => {
                report.ran = true;
                report.run_time = millis(number()?);
            }
            "stop-ms" => report.stop_time = millis(number()?),
            "vrrp-exit" => {
                report.vrrp_exit_code = Some(i32::try_from(number()?).with_context(context)?)
            }
            "check-exit" => {
                report.check_exit_code = Some(i32::try_from(number()?).with_context(context)?)
            }
            "vrrp-log" => text = Text::VrrpLog,
            "check-log" => text = Text::CheckLog,
            _ => bail!("{}: unknown marker", context()),
        }
    }
    if !done {
        bail!("the oracle's output ends before its last file was done:\n{output}");
    }
    for report in reports.iter_mut() {
        report.vrrp_dump = extract_dump(&report.vrrp_log, Child::Vrrp);
        report.check_dump = extract_dump(&report.check_log, Child::Checker);
    }
    Ok(())
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_interfaces_in_the_usual_places() {
        let config = r#"
global_defs {
    default_interface bond0   # comment eth9
    lvs_sync_daemon eth3 VI_1
}
vrrp_instance VI_1 {
    interface eth1
    track_interface {
        eth4 weight 5
        eth5
    }
    virtual_ipaddress {
        10.0.0.1/24 dev eth2 label eth2:vip
        10.0.0.2 dev lo
    }
}
virtual_server 10.0.0.1 80 {
    real_server 10.0.1.1 80 { TCP_CHECK { bind_if eth6 } }
}
"#;
        assert_eq!(
            interfaces_named(config),
            ["bond0", "eth3", "eth1", "eth4", "eth5", "eth2", "eth6", "eth0"]
        );
    }

    #[test]
    fn seed_needs_eth0_only() {
        let config = "vrrp_instance INT {\n interface eth0\n lvs_sync_daemon_interface eth0\n}\n";
        assert_eq!(interfaces_named(config), ["eth0"]);
        assert!(interfaces_named("virtual_server 1.2.3.4 80 {\n}\n").is_empty());
    }

    #[test]
    fn strips_keepalived_console_timestamps() {
        assert_eq!(
            strip_log_timestamp("Mon Nov 23 19:32:01 2026:    Priority = 100"),
            "   Priority = 100"
        );
        assert_eq!(
            strip_log_timestamp("Thu Jan  1 00:00:05 1970: Stopping"),
            "Stopping"
        );
        assert_eq!(
            strip_log_timestamp("   Priority = 100"),
            "   Priority = 100"
        );
        assert_eq!(
            strip_log_timestamp("Mon Nov 23 19:32:01 2026 no colon"),
            "Mon Nov 23 19:32:01 2026 no colon"
        );
    }

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn checker_dump_skips_interleaved_messages_and_ends_at_activation() {
        let log = lines(
            "Starting Keepalived v2.2.7 (01/16,2022)\n\
             ------< Global definitions >------\n \
             Router ID = lvs50\n\
             Startup complete\n\
             ------< Health checkers >------\n \
             [192.168.66.251]:tcp:3306 -> [192.168.66.253]:tcp:3306\n\
             Activating healthchecker for service [192.168.66.253]:tcp:3306 for VS [192.168.66.251]:tcp:3306\n   \
             late indented line\n",
        );
        let dump = extract_dump(&log, Child::Checker).expect("a dump");
        assert!(dump.complete);
        assert_eq!(
            dump.lines,
            [
                "------< Global definitions >------",
                " Router ID = lvs50",
                "------< Health checkers >------",
                " [192.168.66.251]:tcp:3306 -> [192.168.66.253]:tcp:3306",
            ]
        );
    }

    #[test]
    fn vrrp_dump_ends_after_the_interfaces_section() {
        let log = lines(
            "------< Global definitions >------\n\
             Script user 'keepalived_script' does not exist\n \
             Router ID = lvs50\n\
             ------< Interfaces >------\n \
             Name = lo\n\
             (INT) Entering BACKUP STATE (init)\n",
        );
        let dump = extract_dump(&log, Child::Vrrp).expect("a dump");
        assert!(dump.complete);
        assert_eq!(dump.lines.len(), 4);
        let cut = &log[..4];
        assert!(!extract_dump(cut, Child::Vrrp).expect("a dump").complete);
        assert!(extract_dump(&lines("Stopping\n"), Child::Vrrp).is_none());
    }

    #[test]
    fn reads_the_script_output() {
        let output = "\
@@halb-oracle@@ file 0
@@halb-oracle@@ interfaces eth0
@@halb-oracle@@ test-exit 5
@@halb-oracle@@ test-stdout
@@halb-oracle@@ test-stderr
(/payload/configs/0.conf: Line 37) Unknown keyword 'nb_get_retry'
@@halb-oracle@@ test-ms 409
@@halb-oracle@@ run-ms 1426
@@halb-oracle@@ vrrp-exit 0
@@halb-oracle@@ vrrp-log
Mon Nov 23 19:32:01 2026: ------< Global definitions >------
Mon Nov 23 19:32:01 2026: ------< Interfaces >------
Mon Nov 23 19:32:01 2026: (INT) Entering BACKUP STATE (init)
@@halb-oracle@@ check-exit 0
@@halb-oracle@@ check-log
Mon Nov 23 19:32:01 2026: Warning - keepalived has no configuration to run
@@halb-oracle@@ end 0
@@halb-oracle@@ done 1
";
        let mut reports = vec![OracleReport::default()];
        parse_output(output, &mut reports).expect("parses");
        let report = &reports[0];
        assert_eq!(report.test_exit_code, 5);
        assert_eq!(
            report.test_diagnostics,
            ["(/payload/configs/0.conf: Line 37) Unknown keyword 'nb_get_retry'"]
        );
        assert!(report.ran);
        assert_eq!(report.run_time, Duration::from_millis(1426));
        assert!(report.vrrp_dump.as_ref().is_some_and(|d| d.complete));
        assert!(report.check_dump.is_none());
        assert!(parse_output("@@halb-oracle@@ file 0\n", &mut reports).is_err());
    }
}
