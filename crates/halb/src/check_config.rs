//! `halb check-config`: keepalived's `-t`, with positions and the effective model.

use clap::{Args as ClapArgs, ValueEnum};
use halb_config::diagnostic::{Format, Severity};
use halb_config::load;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

/// keepalived's `--config-test` exit codes (KEEPALIVED_CHK_EXIT_*).
pub const EXIT_CLEAN: u8 = 0;
pub const EXIT_FATAL: u8 = 4;
pub const EXIT_WARNINGS: u8 = 5;

#[derive(ClapArgs)]
pub struct Args {
    #[command(flatten)]
    config: crate::config_args::ConfigArgs,
    /// Print the effective model after the diagnostics.
    #[arg(long, value_enum)]
    dump: Option<Dump>,
    /// How to print diagnostics.
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    message_format: MessageFormat,
    /// Do not check that the interfaces the file names exist on this host.
    #[arg(long)]
    no_interface_check: bool,
    /// Exit 0 when the file has warnings but no errors (a file `halb run` runs), for a unit's
    /// ExecStartPre= and ExecReload=, which fail on any other status.
    #[arg(long)]
    accept_warnings: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Dump {
    /// The whole typed model, as JSON.
    Json,
    /// The key values compared with keepalived's own reading, as JSON.
    Summary,
    /// The model written back out as keepalived.conf.
    Conf,
}

#[derive(Clone, Copy, ValueEnum)]
enum MessageFormat {
    /// With the offending source line.
    Human,
    /// One line per diagnostic: `file:line:col: severity: message`.
    Short,
}

pub fn run(args: &Args) -> ExitCode {
    let opts = args.config.load_options(!args.no_interface_check);
    let loaded = load(&args.config.file, &opts);
    let format = match args.message_format {
        MessageFormat::Human => Format::Human,
        MessageFormat::Short => Format::Short,
    };
    let color = std::io::stderr().is_terminal();
    let rendered = loaded.diagnostics.render(&loaded.sources, format, color);
    // Under journald (a unit's ExecReload=): each line at the priority of its worst finding.
    let journal = crate::journal::stderr_is_journal();
    let worst = if loaded.diagnostics.has_errors() {
        tracing::Level::ERROR
    } else {
        tracing::Level::WARN
    };
    let rendered = if journal {
        crate::journal::prefixed(crate::journal::priority(worst), &rendered)
    } else {
        rendered
    };
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(rendered.as_bytes());
    let count = |s: Severity| {
        loaded
            .diagnostics
            .iter()
            .filter(|d| d.severity == s)
            .count()
    };
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
    if matches!(args.message_format, MessageFormat::Human) && (errors > 0 || warnings > 0) {
        let summary = format!(
            "{}: {errors} error(s), {warnings} warning(s)",
            args.config.file.display()
        );
        let summary = if journal {
            crate::journal::prefixed(crate::journal::priority(worst), &summary)
        } else {
            summary + "\n"
        };
        let _ = stderr.write_all(summary.as_bytes());
    }
    drop(stderr);

    if let Some(dump) = args.dump {
        let text = match dump {
            Dump::Json => serde_json::to_string_pretty(&loaded.config),
            Dump::Summary => serde_json::to_string_pretty(&loaded.config.summary()),
            Dump::Conf => Ok(loaded.config.to_keepalived_conf()),
        };
        match text {
            Ok(t) => println!("{t}"),
            Err(e) => {
                eprintln!("halb: cannot serialize the model: {e}");
                return ExitCode::from(EXIT_FATAL);
            }
        }
    }

    ExitCode::from(if errors > 0 {
        EXIT_FATAL
    } else if warnings > 0 && !args.accept_warnings {
        EXIT_WARNINGS
    } else {
        EXIT_CLEAN
    })
}
