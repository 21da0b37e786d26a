//! The Debian package under a real systemd: a Debian 12 tree made with mmdebstrap (cached as a
//! tarball in `target/systemd-tree/`, so only the first run downloads), unpacked afresh and booted
//! with `systemd-nspawn --boot`. Inside it: `dpkg -i` next to Debian's keepalived package,
//! `halb --version`, `man halb`, `halb check-config` on the packaged example,
//! `systemd-analyze verify` on the unit, `systemctl start` with the example as
//! /etc/keepalived/keepalived.conf (the VIP comes up, `systemctl status` shows the STATUS= line,
//! the journal has the lines at their priorities), `systemctl reload` (and one with a broken file,
//! which fails while halb keeps serving), a SIGSTOPped halb restarted by the watchdog, an
//! upgrade of the package while a client connects through the VIP every 10 ms (`halb upgrade`
//! from the postinst: a new main process, no failed connection, the VIP never gone),
//! `systemctl stop` taking the VIP away, `halb lab run forwarding` from the installed files
//! (the tree has MariaDB), and `dpkg --purge` leaving nothing.
//!
//! Needs root, mmdebstrap, systemd-container (systemd-nspawn), dpkg-dev and, for the package's
//! check, lintian (`scripts/deps.sh`). Prints how long each step took.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use halb_test_support::{installed, is_root, skip, ChildGuard, Netns};

/// What the cached tree holds besides the `apt` variant's packages. Part of the cache's name:
/// changing the list makes a new tree.
/// (MariaDB: what `halb lab` needs, as the package's Recommends and Suggests name it.)
const TREE_PACKAGES: &str =
    "systemd,systemd-sysv,dbus,iproute2,man-db,keepalived,mariadb-server,mariadb-client";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(command: &mut Command) -> Output {
    let shown = format!("{command:?}");
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The cached Debian 12 tree as a tarball, made with mmdebstrap when missing.
fn tree_tarball() -> PathBuf {
    let dir = repo().join("target/systemd-tree");
    std::fs::create_dir_all(&dir).expect("create target/systemd-tree");
    let tag: u32 = TREE_PACKAGES
        .bytes()
        .fold(17u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let tarball = dir.join(format!("bookworm-{tag:08x}.tar"));
    if !tarball.is_file() {
        let started = Instant::now();
        let partial = tarball.with_extension("tar.partial");
        run(Command::new("mmdebstrap")
            .args(["--quiet", "--variant=apt", "--format=tar"])
            .arg(format!("--include={TREE_PACKAGES}"))
            .arg("bookworm")
            .arg(&partial));
        std::fs::rename(&partial, &tarball).expect("keep the tree");
        eprintln!(
            "timing: mmdebstrap of the Debian 12 tree: {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    tarball
}

/// The .deb of the binary under test: `scripts/package.sh` on a stripped copy of it, with
/// lintian when installed.
fn build_package(dir: &Path) -> PathBuf {
    let binary = dir.join("halb");
    run(Command::new("strip")
        .arg("-o")
        .arg(&binary)
        .arg(env!("CARGO_BIN_EXE_halb")));
    let out = run(Command::new(repo().join("scripts/package.sh"))
        .arg(dir)
        .env("HALB_BINARY", &binary)
        .env("HALB_DEB_COMPRESSION", "gzip"));
    let text = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(
        text.lines()
            .last()
            .expect("package.sh prints the .deb")
            .trim(),
    )
}

/// The same package as a later version (its control file's `Version:` raised): what an upgrade
/// installs. dpkg replaces /usr/sbin/halb with a new file, so the running halb's binary is the
/// old, deleted one.
fn later_version(deb: &Path, dir: &Path) -> (PathBuf, String) {
    let root = dir.join("later");
    run(Command::new("dpkg-deb").arg("-R").arg(deb).arg(&root));
    let control_path = root.join("DEBIAN/control");
    let control = std::fs::read_to_string(&control_path).expect("read the control file");
    let version = control
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .expect("a Version: line")
        .to_string();
    let later = format!("{version}+upgrade1");
    std::fs::write(
        &control_path,
        control.replace(
            &format!("Version: {version}\n"),
            &format!("Version: {later}\n"),
        ),
    )
    .expect("write the control file");
    let out = dir.join("halb-later.deb");
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "--build"])
        .arg(&root)
        .arg(&out));
    (out, later)
}

/// An echo server on `addr` in the namespace `path`, a thread per connection, until `stop`.
fn echo_server(path: PathBuf, addr: SocketAddr, stop: Arc<AtomicBool>) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        halb_sys::netns::enter(&path).expect("enter the real server's namespace");
        let listener = TcpListener::bind(addr).expect("bind the echo port");
        listener.set_nonblocking(true).expect("non-blocking");
        let _ = ready_tx.send(());
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    std::thread::spawn(move || {
                        let mut reader = stream.try_clone().expect("clone");
                        let _ = std::io::copy(&mut reader, &mut stream);
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the echo server started");
}

/// One short exchange through the VIP: connect, send, read the echo, close.
fn exchange(to: SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"ping\n")?;
    let mut echo = [0u8; 5];
    stream.read_exact(&mut echo)?;
    if &echo != b"ping\n" {
        return Err(std::io::Error::other("wrong echo"));
    }
    Ok(())
}

/// A client in the namespace `path`: an exchange with `to` every 10 ms until `stop`; the
/// attempts, and the errors of those that failed.
fn client_loop(
    path: PathBuf,
    to: SocketAddr,
    stop: Arc<AtomicBool>,
    attempts: Arc<AtomicU32>,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        halb_sys::netns::enter(&path).expect("enter the client's namespace");
        let mut errors = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            attempts.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = exchange(to) {
                errors.push(e.to_string());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        errors
    })
}

/// `/run/systemd/nspawn` must be writable for nspawn; a tmpfs there, unmounted on drop when
/// this test mounted it.
struct NspawnRun {
    mounted: bool,
}

impl NspawnRun {
    fn prepare() -> NspawnRun {
        let dir = Path::new("/run/systemd/nspawn");
        let mounted_already = Command::new("mountpoint")
            .args(["-q"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if mounted_already {
            return NspawnRun { mounted: false };
        }
        std::fs::create_dir_all(dir).expect("create /run/systemd/nspawn");
        run(Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(dir));
        NspawnRun { mounted: true }
    }
}

impl Drop for NspawnRun {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg("/run/systemd/nspawn").status();
        }
    }
}

/// A booted container; on drop its init is killed (which ends every process in it) and nspawn
/// reaped.
struct Container {
    nspawn: ChildGuard,
    init: i32,
}

impl Container {
    fn boot(tree: &Path, name: &str) -> Container {
        let mut nspawn = ChildGuard::spawn(
            Command::new("systemd-nspawn")
                .arg("-D")
                .arg(tree)
                .args([
                    "--boot",
                    "--console=pipe",
                    "--private-network",
                    "--register=no",
                    "--keep-unit",
                    "-M",
                    name,
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .expect("start systemd-nspawn");
        let nspawn_pid = nspawn.pid().expect("nspawn's pid");
        let started = Instant::now();
        let init = loop {
            if let Some(pid) = child_named(nspawn_pid, "systemd") {
                break pid;
            }
            if let Some(status) = nspawn.try_wait() {
                panic!("systemd-nspawn exited: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no systemd under nspawn"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Container { nspawn, init }
    }

    /// `argv` inside the container (all its namespaces): its output, whatever the status.
    fn try_run(&self, argv: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.init.to_string(), "-a", "--"])
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .expect("run nsenter")
    }

    /// `argv` inside; its stdout. Panics with its output when it fails.
    fn run(&self, argv: &[&str]) -> String {
        let out = self.try_run(argv);
        assert!(
            out.status.success(),
            "{argv:?} in the container: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn sh(&self, script: &str) -> String {
        self.run(&["/bin/sh", "-c", script])
    }

    fn show(&self, property: &str) -> String {
        self.run(&["systemctl", "show", "-p", property, "--value", "halb"])
            .trim()
            .to_string()
    }

    fn has_vip(&self) -> bool {
        self.run(&["ip", "-br", "addr", "show", "eth0"])
            .contains("192.168.66.251/")
    }

    fn wait(&self, what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> Duration {
        let started = Instant::now();
        while !ok() {
            assert!(
                started.elapsed() < timeout,
                "{what}: not after {timeout:?}\n{}",
                self.try_run(&["journalctl", "-u", "halb", "--no-pager", "-n", "40"])
                    .stdout
                    .escape_ascii()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        started.elapsed()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the container's init, a child of the nspawn this test started;
        // PID 1 of a pid namespace takes every process of the namespace with it.
        unsafe { libc::kill(self.init, libc::SIGKILL) };
        self.nspawn.terminate(Duration::from_secs(10));
    }
}

/// The child of `parent` whose command is `comm`.
fn child_named(parent: u32, comm: &str) -> Option<i32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((head, tail)) = stat.rsplit_once(") ") else {
            continue;
        };
        let name = head.split_once(" (").map(|(_, n)| n);
        let ppid = tail
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if name == Some(comm) && ppid == Some(parent) {
            return Some(pid);
        }
    }
    None
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[test]
fn the_package_under_systemd() {
    if !is_root() {
        skip("needs root (systemd-nspawn, network namespaces)");
        return;
    }
    for program in [
        "mmdebstrap",
        "systemd-nspawn",
        "nsenter",
        "dpkg-deb",
        "dpkg-shlibdeps",
    ] {
        if !installed(program) {
            skip(format!(
                "{program} is not installed (scripts/deps.sh installs it)"
            ));
            return;
        }
    }
    let total = Instant::now();
    let work = tempfile::Builder::new()
        .prefix("halbt-systemd-")
        .tempdir_in(repo().join("target"))
        .expect("a work directory");

    let t = Instant::now();
    let deb = build_package(work.path());
    eprintln!(
        "timing: package.sh (with lintian when installed): {}",
        secs(t.elapsed())
    );

    let t = Instant::now();
    let tarball = tree_tarball();
    let tree = work.path().join("tree");
    std::fs::create_dir(&tree).expect("create the tree's directory");
    run(Command::new("tar")
        .arg("-C")
        .arg(&tree)
        .arg("-xf")
        .arg(&tarball));
    std::fs::copy(&deb, tree.join("root/halb.deb")).expect("copy the .deb into the tree");
    let (later_deb, later) = later_version(&deb, work.path());
    std::fs::copy(&later_deb, tree.join("root/halb-later.deb")).expect("copy the later .deb");
    // The tree's own MariaDB service is not what the lab runs: it would only slow the boot.
    std::os::unix::fs::symlink("/dev/null", tree.join("etc/systemd/system/mariadb.service"))
        .expect("mask mariadb.service");
    eprintln!(
        "timing: tree ready (cached tarball unpacked): {}",
        secs(t.elapsed())
    );

    let _nspawn_run = NspawnRun::prepare();
    let t = Instant::now();
    let ct = Container::boot(&tree, &format!("halbt-sd-{}", std::process::id()));
    ct.wait(
        "the container's systemd running",
        Duration::from_secs(60),
        || {
            let out = ct.try_run(&["systemctl", "is-system-running"]);
            let state = String::from_utf8_lossy(&out.stdout);
            matches!(state.trim(), "running" | "degraded")
        },
    );
    eprintln!("timing: boot to is-system-running: {}", secs(t.elapsed()));

    // The seed's segment: eth0 in the container, its peer in a namespace of the test's.
    let peer = Netns::new("sd-peer");
    peer.ip(&[
        "link", "add", "sdp0", "type", "veth", "peer", "name", "sdc0",
    ]);
    peer.ip(&["link", "set", "sdc0", "netns", &ct.init.to_string()]);
    peer.ip(&["addr", "add", "192.168.66.12/24", "dev", "sdp0"]);
    peer.ip(&["link", "set", "sdp0", "up"]);
    ct.sh(
        "ip link set sdc0 name eth0 && ip addr add 192.168.66.6/24 dev eth0 && ip link set eth0 up",
    );

    // Package: installs next to keepalived; the binary, the man page, the example.
    let t = Instant::now();
    let installed_out = ct.run(&["dpkg", "-i", "/root/halb.deb"]);
    eprintln!("timing: dpkg -i: {}", secs(t.elapsed()));
    assert!(installed_out.contains("Setting up halb"), "{installed_out}");
    ct.run(&["dpkg", "-s", "keepalived"]);
    let version = ct.run(&["halb", "--version"]);
    assert_eq!(
        version.trim(),
        format!("halb {}", env!("CARGO_PKG_VERSION"))
    );
    let man = ct.sh("MANWIDTH=80 man halb 2>&1");
    assert!(
        man.contains("halb-run(8)") && man.contains("SYSTEMD"),
        "{man}"
    );
    let man5 = ct.sh("MANWIDTH=80 man 5 halb-keepalived.conf 2>&1");
    assert!(man5.contains("MYSQL_CHECK"), "{man5}");
    let example = "/usr/share/doc/halb/examples/keepalived-master.conf";
    let check = ct.try_run(&["halb", "check-config", "-f", example]);
    // keepalived's own verdict on the seed's file: warnings (exit 5), no error.
    assert_eq!(
        check.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let verify = ct.try_run(&[
        "systemd-analyze",
        "verify",
        "/lib/systemd/system/halb.service",
    ]);
    assert!(
        verify.status.success() && verify.stderr.is_empty() && verify.stdout.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );

    // The example as the director's configuration, on the proxy data plane (this kernel has
    // no IPVS), and a short watchdog so that the restart below is quick.
    ct.run(&["cp", example, "/etc/keepalived/keepalived.conf"]);
    ct.sh("echo 'HALB_OPTIONS=\"--dataplane proxy --http-listen none\"' >>/etc/default/halb");
    ct.sh("mkdir -p /etc/systemd/system/halb.service.d && printf '[Service]\\nWatchdogSec=2s\\n' >/etc/systemd/system/halb.service.d/test.conf && systemctl daemon-reload");

    let t = Instant::now();
    ct.run(&["systemctl", "start", "halb"]);
    eprintln!(
        "timing: systemctl start (returns after READY=1): {}",
        secs(t.elapsed())
    );
    assert_eq!(ct.show("ActiveState"), "active");
    ct.wait("STATUS= MASTER on INT", Duration::from_secs(15), || {
        ct.show("StatusText").starts_with("MASTER on INT")
    });
    eprintln!("timing: start to STATUS=MASTER: {}", secs(t.elapsed()));
    assert!(ct.has_vip(), "the MASTER holds the VIP");
    let status = ct.try_run(&["systemctl", "status", "halb", "--no-pager"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("Status: \"MASTER on INT, ") && status.contains("virtual servers up"),
        "{status}"
    );
    eprintln!("systemctl status halb:\n{status}");
    // journald: the line at info, the diagnostics at warning, no timestamp of halb's own.
    let journal = ct.run(&["journalctl", "-u", "halb", "-o", "json", "--no-pager"]);
    let priority_of = |needle: &str| {
        journal
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|j| j["MESSAGE"].as_str().is_some_and(|m| m.contains(needle)))
            .map(|j| (j["PRIORITY"].clone(), j["MESSAGE"].clone()))
    };
    let (priority, message) = priority_of("Entering MASTER STATE").expect("the MASTER line");
    assert_eq!(priority, "6");
    assert_eq!(message, "(INT) Entering MASTER STATE");
    let (priority, _) = priority_of("Truncating auth_pass").expect("a warning");
    assert_eq!(priority, "4");

    // Reload: through "reloading" back to active.
    let t = Instant::now();
    ct.run(&["systemctl", "reload", "halb"]);
    eprintln!("timing: systemctl reload: {}", secs(t.elapsed()));
    assert_eq!(ct.show("ActiveState"), "active");
    let journal = ct.run(&["journalctl", "-u", "halb", "--no-pager"]);
    assert!(
        journal.contains("Reloading halb")
            && journal.contains("Reload finished")
            && journal.contains("Reloaded halb"),
        "{journal}"
    );
    assert!(ct.has_vip());
    // A broken file fails the reload visibly; the running halb keeps serving.
    ct.sh("cp /etc/keepalived/keepalived.conf /root/good.conf && echo 'vrrp_instance {' >>/etc/keepalived/keepalived.conf");
    let refused = ct.try_run(&["systemctl", "reload", "halb"]);
    assert!(
        !refused.status.success(),
        "a broken file must fail the reload"
    );
    assert_eq!(ct.show("ActiveState"), "active");
    assert!(ct.has_vip(), "the old configuration keeps serving");
    ct.run(&["cp", "/root/good.conf", "/etc/keepalived/keepalived.conf"]);

    // Watchdog: a stopped halb is killed and restarted; the restarted one is MASTER again.
    let pid = ct.show("MainPID");
    ct.sh(&format!("kill -STOP {pid}"));
    let restarted = ct.wait("the watchdog's restart", Duration::from_secs(30), || {
        let now = ct.show("MainPID");
        now != pid && now != "0" && ct.show("ActiveState") == "active"
    });
    eprintln!(
        "timing: SIGSTOP to a new halb running (WatchdogSec=2s, RestartSec=1s): {}",
        secs(restarted)
    );
    assert_eq!(ct.show("NRestarts"), "1");
    assert_eq!(ct.show("Result"), "success");
    let journal = ct.run(&["journalctl", "-u", "halb", "--no-pager"]);
    assert!(journal.contains("Watchdog timeout"), "{journal}");
    ct.wait("MASTER again", Duration::from_secs(15), || {
        ct.show("StatusText").starts_with("MASTER on INT")
    });

    // Upgrade: dpkg -i of a later version while a client on the segment connects through the
    // VIP every 10 ms to a real server on the segment. The postinst runs `halb upgrade`: the
    // running halb starts the new binary in the service, which takes over and becomes the
    // main process; the old one drains and exits. Not a failover: no client fails, the VIP
    // stays, the unit stays active without a restart.
    peer.ip(&["addr", "add", "192.168.66.253/24", "dev", "sdp0"]);
    let stop_echo = Arc::new(AtomicBool::new(false));
    echo_server(
        peer.path(),
        "192.168.66.253:3306".parse().unwrap(),
        stop_echo.clone(),
    );
    let to: SocketAddr = "192.168.66.251:3306".parse().unwrap();
    let through = ct.wait("an echo through the VIP", Duration::from_secs(15), || {
        peer.run_in(move || exchange(to).is_ok())
    });
    eprintln!("timing: first echo through the VIP: {}", secs(through));
    let old_pid = ct.show("MainPID");
    let restarts = ct.show("NRestarts");
    let stop_client = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(AtomicU32::new(0));
    let client = client_loop(peer.path(), to, stop_client.clone(), attempts.clone());
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let upgraded = ct.run(&["dpkg", "-i", "/root/halb-later.deb"]);
    eprintln!(
        "timing: dpkg -i of the later version (postinst: halb upgrade): {}",
        secs(t.elapsed())
    );
    assert!(upgraded.contains("took over from pid"), "{upgraded}");
    eprintln!("{}", upgraded.trim());
    let new_pid = ct.show("MainPID");
    assert_ne!(new_pid, old_pid, "the main process is the new halb");
    assert_eq!(ct.show("ActiveState"), "active");
    assert_eq!(ct.show("SubState"), "running");
    assert_eq!(
        ct.show("NRestarts"),
        restarts,
        "an upgrade is not a restart"
    );
    assert_eq!(
        ct.run(&["dpkg-query", "-W", "-f", "${Version}", "halb"]),
        later
    );
    assert_eq!(
        ct.run(&["readlink", &format!("/proc/{new_pid}/exe")])
            .trim(),
        "/usr/sbin/halb",
        "the new main process runs the new binary"
    );
    let drained = ct.wait("the old halb's exit", Duration::from_secs(15), || {
        !ct.try_run(&["test", "-e", &format!("/proc/{old_pid}")])
            .status
            .success()
    });
    eprintln!(
        "timing: the old halb drained and exited {} after the upgrade",
        secs(drained)
    );
    // Past the 2 s watchdog: the new main process pings (else systemd would restart it).
    std::thread::sleep(Duration::from_millis(3000));
    stop_client.store(true, Ordering::Relaxed);
    let errors = client.join().expect("the client");
    let attempts = attempts.load(Ordering::Relaxed);
    eprintln!(
        "upgrade under systemd: {} of {attempts} client connections failed, main PID {old_pid} -> {new_pid}",
        errors.len()
    );
    assert!(errors.is_empty(), "failed connections: {errors:?}");
    assert!(attempts > 100, "the client ran ({attempts} attempts)");
    assert_eq!(ct.show("MainPID"), new_pid, "no restart after the upgrade");
    assert_eq!(ct.show("NRestarts"), restarts);
    assert!(ct.has_vip(), "the VIP stays through the upgrade");
    assert!(ct.show("StatusText").starts_with("MASTER on INT"));
    let status = ct.try_run(&["systemctl", "status", "halb", "--no-pager"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("Active: active (running)")
            && status.contains(&format!("Main PID: {new_pid} (halb)")),
        "{status}"
    );
    eprintln!("systemctl status halb after the upgrade:\n{status}");
    let journal = ct.run(&["journalctl", "-u", "halb", "--no-pager"]);
    for line in [
        "Upgrade: started the new halb",
        "The previous halb let go",
        "Drained; exiting",
    ] {
        assert!(
            journal.contains(line),
            "the journal lacks {line:?}\n{journal}"
        );
    }
    for line in ["reception only permitted for main PID", "sent 0 priority"] {
        let since_upgrade = journal
            .rsplit_once("Upgrade: started the new halb")
            .map_or("", |(_, after)| after);
        assert!(
            !since_upgrade.contains(line),
            "after the upgrade the journal has {line:?}\n{journal}"
        );
    }
    // The new main process reloads as the old one did.
    ct.run(&["systemctl", "reload", "halb"]);
    assert_eq!(ct.show("ActiveState"), "active");
    stop_echo.store(true, Ordering::Relaxed);
    // systemd supervises it though it is not systemd's child (it was the old halb's, and is
    // PID 1's since the old one exited): a crash is seen and restarted (Restart=on-failure).
    ct.sh(&format!("kill -KILL {new_pid}"));
    let restarted = ct.wait(
        "a restart of the upgraded halb after SIGKILL",
        Duration::from_secs(30),
        || {
            let now = ct.show("MainPID");
            now != new_pid && now != "0" && ct.show("ActiveState") == "active"
        },
    );
    eprintln!(
        "timing: SIGKILL of the upgraded halb to a restarted one: {}",
        secs(restarted)
    );
    let restarts: u32 = restarts.parse().expect("NRestarts is a number");
    assert_eq!(ct.show("NRestarts"), (restarts + 1).to_string());
    ct.wait("MASTER after the restart", Duration::from_secs(15), || {
        ct.show("StatusText").starts_with("MASTER on INT")
    });

    // Stop: the VIP goes with it.
    let t = Instant::now();
    ct.run(&["systemctl", "stop", "halb"]);
    eprintln!("timing: systemctl stop: {}", secs(t.elapsed()));
    assert!(!ct.has_vip(), "systemctl stop left the VIP");
    let left =
        ct.sh("cat /sys/fs/cgroup/system.slice/halb.service/cgroup.procs 2>/dev/null || true");
    assert_eq!(
        left.trim(),
        "",
        "processes left in halb.service after systemctl stop"
    );

    // The seed's lab from the installed files: its namespaces inside the container, MariaDB
    // from the tree, the directors run by /usr/sbin/halb. mariadb-install-db resolves the
    // host's name: the /etc/hosts Debian's installer writes (mmdebstrap writes none).
    ct.sh("printf '127.0.0.1\\tlocalhost\\n127.0.1.1\\t%s\\n' \"$(hostname)\" >/etc/hosts");
    let t = Instant::now();
    let lab = ct.try_run(&["halb", "lab", "run", "forwarding", "--quiet"]);
    let lab_out = String::from_utf8_lossy(&lab.stdout);
    eprintln!(
        "timing: halb lab run forwarding in the container: {}",
        secs(t.elapsed())
    );
    assert!(
        lab.status.success(),
        "halb lab run forwarding: {}\n{lab_out}{}",
        lab.status,
        String::from_utf8_lossy(&lab.stderr)
    );
    let summary = lab_out
        .lines()
        .skip_while(|l| !l.starts_with("== summary"))
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!("{summary}");
    assert!(
        summary.contains("forwarding     ok")
            && summary.contains("teardown: every namespace removed, every process stopped"),
        "{lab_out}"
    );
    assert_eq!(
        ct.run(&["ip", "netns", "list"]).trim(),
        "",
        "the lab left namespaces"
    );

    // Purge, also of an enabled unit: nothing of halb stays. man-db's cache of formatted
    // pages (made by `man` above) is man-db's, which cleans it itself.
    ct.run(&["systemctl", "enable", "halb"]);
    ct.run(&["rm", "-r", "/etc/systemd/system/halb.service.d"]);
    let t = Instant::now();
    ct.run(&["dpkg", "--purge", "halb"]);
    eprintln!("timing: dpkg --purge: {}", secs(t.elapsed()));
    let left = ct.sh(
        "find / -xdev \\( -path /proc -o -path /sys -o -path /root -o -path /var/cache/man \\) -prune -o -name '*halb*' -print",
    );
    assert_eq!(left.trim(), "", "left after dpkg --purge");
    assert!(
        !tree.join("etc/default/halb").exists() && !tree.join("usr/sbin/halb").exists(),
        "files left"
    );
    eprintln!("timing: the whole test: {}", secs(total.elapsed()));
}
