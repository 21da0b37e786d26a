//! `halb dist-files --out DIR` (hidden): the files a package ships that come from the CLI
//! definition itself, so they never drift from it: a section-8 man page per command
//! (`halb.8`, `halb-run.8`, `halb-lab-run.8`, …) and the bash, zsh and fish completions.
//! `scripts/package.sh` calls it on the binary it packages.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use clap_complete::Shell;

#[derive(ClapArgs)]
pub struct Args {
    /// Where to write `man/*.8` and `completions/{halb.bash,_halb,halb.fish}`.
    #[arg(long)]
    out: PathBuf,
}

/// Appended to `halb.8`: what the generated page cannot know.
const MAIN_PAGE_EXTRA: &str = r#".SH FILES
.TP
\fI/etc/keepalived/keepalived.conf\fR
The configuration the packaged unit runs, the file keepalived reads: a director migrates from keepalived to halb without changing it.
.TP
\fI/etc/default/halb\fR
\fBHALB_OPTIONS\fR, more arguments for \fBhalb run\fR in halb.service (for example \fB\-\-dataplane proxy\fR), and \fBHALB_CONFIG\fR, the configuration file.
.TP
\fI/run/halb/halb.sock\fR
The control socket \fBhalb status\fR reads (mode 0600).
.TP
\fI/usr/share/doc/halb/examples/\fR
The seed's two directors' configurations.
.SH SYSTEMD
halb.service is \fBType=notify\fR: halb sends READY=1 once its first configuration is applied, RELOADING=1 and READY=1 around a reload, STOPPING=1 when it stops, a one-line STATUS= (for example "MASTER on VI_1, 2/2 virtual servers up") and, with \fBWatchdogSec=\fR, WATCHDOG=1 from its VRRP loop, so that a wedged daemon is restarted.
When its standard error is the journal (\fBJOURNAL_STREAM\fR), its lines carry syslog priorities (<3> error, <4> warning, <6> info, <7> debug) and no timestamp.
.SH UPGRADE
Upgrading halb is not a failover. \fBhalb upgrade\fR (which the package's postinst runs when halb.service is active) asks the running daemon to start the halb binary now on disk with its own arguments and \fB--takeover\fR.
The daemon starts it itself, so that the new process belongs to the same service: its cgroup, notification socket, watchdog, journal stream, capabilities and sandbox.
The new process takes the listening sockets (passed over CONTROL.handover) and the MASTER role without a priority 0 advert; the old one tells systemd that the new one is the service's main process (MAINPID=, accepted from the main process under the default NotifyAccess=main), stops its VRRP part, and drains its established connections (at most \fB--drain-timeout\fR) before it exits.
The new process then sends READY=1 and its STATUS=, and pings the watchdog.
\fBsystemctl restart\fR, by contrast, stops the MASTER (priority 0 advert, VIPs removed), so the peer takes over for the moment of the restart.
.SH SEE ALSO
\fBhalb-keepalived.conf\fR(5), \fBkeepalived.conf\fR(5), \fBkeepalived\fR(8), \fBipvsadm\fR(8), \fBsystemd.service\fR(5)
"#;

pub fn run(args: &Args, cli: clap::Command) -> ExitCode {
    match write_all(&args.out, cli) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("halb dist-files: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn write_all(out: &Path, cli: clap::Command) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let man = out.join("man");
    std::fs::create_dir_all(&man).with_context(|| format!("cannot create {}", man.display()))?;
    let mut cli = cli.disable_help_subcommand(true);
    cli.build();
    man_pages(&cli, &man, true, &mut written)?;

    let completions = out.join("completions");
    std::fs::create_dir_all(&completions)
        .with_context(|| format!("cannot create {}", completions.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path = clap_complete::generate_to(shell, &mut cli.clone(), "halb", &completions)
            .with_context(|| format!("writing the {shell} completions"))?;
        written.push(path);
    }
    Ok(written)
}

/// The page of `cmd` and of each visible subcommand, recursively.
fn man_pages(
    cmd: &clap::Command,
    dir: &Path,
    root: bool,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(sub, dir, false, written)?;
    }
    let page = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual("System Administration")
        .source(format!("halb {}", env!("CARGO_PKG_VERSION")));
    let path = dir.join(page.get_filename());
    let mut text = Vec::new();
    page.render(&mut text)
        .with_context(|| format!("rendering {}", path.display()))?;
    if root {
        text.extend_from_slice(MAIN_PAGE_EXTRA.as_bytes());
    }
    let mut file = std::fs::File::create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(&text)
        .with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    Ok(())
}
