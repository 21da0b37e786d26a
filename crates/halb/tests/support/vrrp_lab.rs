//! A small VRRP lab: two directors and a client on one Ethernet segment, each in its own
//! network namespace, the segment a bridge in a fourth one. Every director's interface is
//! called `eth0`, so the seed's configuration runs unchanged.
//!
//! Addresses (inside the namespaces only): director A 192.168.66.11 / fd66::11, director B
//! .12 / fd66::12, the client .100 / fd66::100; the VIP 192.168.66.251.
//!
//! Daemons (halb or keepalived) run in their own process group and are killed by it on drop
//! ([`ChildGuard`]), so a failing test leaves nothing behind.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use halb_test_support::{Bridge, ChildGuard, Netns};

pub const VIP: &str = "192.168.66.251";
pub const VIP6: &str = "fd66::251";

/// One host on the segment.
pub struct Node {
    pub ns: Netns,
    pub ipv4: String,
    pub ipv6: String,
}

impl Node {
    /// The MAC address of `eth0`.
    pub fn mac(&self) -> String {
        let links = self.ns.ip_json(&["link", "show", "dev", "eth0"]);
        links[0]["address"]
            .as_str()
            .expect("eth0 has an address")
            .to_string()
    }

    /// The addresses on `eth0`.
    pub fn addresses(&self) -> Vec<String> {
        let links = self.ns.ip_json(&["addr", "show", "dev", "eth0"]);
        links[0]["addr_info"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["local"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether `eth0` has `address` (IPv6 compared as addresses, not as text).
    pub fn has(&self, address: &str) -> bool {
        if let Ok(wanted) = address.parse::<std::net::IpAddr>() {
            return self
                .addresses()
                .iter()
                .any(|a| a.parse::<std::net::IpAddr>().ok() == Some(wanted));
        }
        self.addresses().iter().any(|a| a == address)
    }
}

/// The segment and its three hosts; dropping it removes every namespace.
pub struct Lab {
    /// Declared first: dropped (stopped) before the namespaces go.
    _banners: Vec<Banner>,
    pub a: Node,
    pub b: Node,
    pub client: Node,
    /// Holds the segment; last to go.
    _bridge: Bridge,
    pub dir: tempfile::TempDir,
}

impl Lab {
    /// `what` names the scenario; namespaces are `halbt-vrrp-<what>-<node>-…`.
    pub fn new(what: &str) -> Lab {
        let bridge = Bridge::new(&format!("vrrp-{what}-br"));
        let node = |tag: &str, port: &str, host: u8| {
            let ns = Netns::new(&format!("vrrp-{what}-{tag}"));
            bridge.attach(&ns, port, "eth0");
            // No duplicate address detection: link-local addresses usable at once.
            ns.sysctl("net.ipv6.conf.eth0.accept_dad", "0");
            let ipv4 = format!("192.168.66.{host}");
            let ipv6 = format!("fd66::{host}");
            ns.ip(&["addr", "add", &format!("{ipv4}/24"), "dev", "eth0"]);
            ns.ip(&["addr", "add", &format!("{ipv6}/64"), "dev", "eth0"]);
            ns.ip(&["link", "set", "eth0", "up"]);
            Node { ns, ipv4, ipv6 }
        };
        let a = node("a", "a0", 11);
        let b = node("b", "b0", 12);
        let client = node("c", "c0", 100);
        Lab {
            _banners: vec![Banner::start(&a.ns), Banner::start(&b.ns)],
            a,
            b,
            client,
            _bridge: bridge,
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// Writes a configuration file into the lab's directory.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write a configuration");
        path
    }

    /// Which director answers a TCP connection from the client to `address`:3306 (its
    /// namespace name, from the banner of its [`Banner`]); `None` when nothing answers.
    pub fn client_reaches(&self, address: &str) -> Option<String> {
        let to = SocketAddr::new(address.parse().ok()?, BANNER_PORT);
        self.client.ns.run_in(move || {
            let mut stream = TcpStream::connect_timeout(&to, Duration::from_millis(500)).ok()?;
            stream
                .set_read_timeout(Some(Duration::from_millis(500)))
                .ok()?;
            let mut banner = String::new();
            stream.read_to_string(&mut banner).ok()?;
            Some(banner.trim().to_string())
        })
    }
}

/// The seed's MySQL port: the banner answers there.
pub const BANNER_PORT: u16 = 3306;

/// A TCP listener on every IPv4 and IPv6 address of a namespace (so also on the VIP whenever
/// it is there)
/// that writes the namespace's name to each connection and closes it. Stopped on drop.
pub struct Banner {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Banner {
    pub fn start(ns: &Netns) -> Banner {
        Banner::start_on(ns, BANNER_PORT)
    }

    /// The same on another port.
    pub fn start_on(ns: &Netns, port: u16) -> Banner {
        let stop = Arc::new(AtomicBool::new(false));
        let name = ns.name().to_string();
        let path = ns.path();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            halb_sys::netns::enter(&path).expect("enter the director's namespace");
            let listener = TcpListener::bind(("::", port)).expect("bind the banner port");
            listener
                .set_nonblocking(true)
                .expect("non-blocking listener");
            let _ = ready_tx.send(());
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.write_all(format!("{name}\n").as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the banner listener started");
        Banner {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Banner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The seed's VRRP part (everything before the first `virtual_server`) with this director's
/// state and priority. Without `lvs_sync_daemon_interface`: it makes keepalived start the
/// IPVS sync daemon, and keepalived exits where the kernel has no IPVS (as here).
pub fn seed_vrrp(state: &str, priority: u8) -> String {
    let text = halb_test_support::seed_text("keepalived-master.conf");
    let vrrp = text.split("\nvirtual_server ").next().unwrap_or(&text);
    let mut out = String::new();
    for line in vrrp.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first() {
            Some(&"state") => out.push_str(&format!("    state {state}\n")),
            Some(&"priority") => out.push_str(&format!("    priority {priority}\n")),
            Some(&"lvs_sync_daemon_interface") => {}
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// A daemon in a namespace, with its stderr and stdout in a log file; killed (with its whole
/// process group) on drop.
pub struct Daemon {
    process: ChildGuard,
    pub log: PathBuf,
    pub what: String,
}

impl Daemon {
    /// `argv` in the namespace, its output in `log`.
    pub fn spawn(ns: &Netns, argv: &[&str], log: PathBuf, what: &str) -> Daemon {
        let out = File::create(&log).expect("create a log file");
        let err = out.try_clone().expect("clone a log file");
        // halb and keepalived write their signal dumps to $TMPDIR: the lab's directory, not
        // the machine's /tmp.
        let tmpdir = log.parent().expect("a log file in the lab's directory");
        let process = ChildGuard::spawn(
            ns.command(argv[0])
                .args(&argv[1..])
                .env("TMPDIR", tmpdir)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err),
        )
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Daemon {
            process,
            log,
            what: what.to_string(),
        }
    }

    /// `halb run -f CONFIG` in the namespace.
    pub fn halb(ns: &Netns, config: &Path, log: PathBuf) -> Daemon {
        Daemon::halb_with(ns, config, log, &[])
    }

    /// `halb run` with more arguments; its control socket is the log's path with `.sock`.
    pub fn halb_with(ns: &Netns, config: &Path, log: PathBuf, extra: &[&str]) -> Daemon {
        let config = config.to_str().expect("a UTF-8 path");
        // One control socket per daemon: tests run several at once.
        let socket = log.with_extension("sock");
        let socket = socket.to_str().expect("a UTF-8 path");
        Daemon::spawn(
            ns,
            &[
                env!("CARGO_BIN_EXE_halb"),
                "run",
                "-f",
                config,
                "--control-socket",
                socket,
            ]
            .into_iter()
            .chain(extra.iter().copied())
            .collect::<Vec<_>>(),
            log,
            "halb",
        )
    }

    /// keepalived's VRRP process alone, in the foreground, logging to the console, with its
    /// pid files in `dir`.
    pub fn keepalived(ns: &Netns, config: &Path, dir: &Path, log: PathBuf) -> Daemon {
        // Pid files named after the log, so a restart does not meet the killed instance's
        // files: keepalived refuses to start ("daemon is already running") while a pid in them
        // is alive, and the killed parent's VRRP child may still be exiting.
        let stem = log
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "keepalived".into());
        let path = |suffix: &str| {
            dir.join(format!("{stem}{suffix}"))
                .to_str()
                .expect("UTF-8")
                .to_string()
        };
        let (main, vrrp, check) = (path(".pid"), path("-vrrp.pid"), path("-check.pid"));
        Daemon::spawn(
            ns,
            &[
                "keepalived",
                "--dont-fork",
                "--log-console",
                "--log-detail",
                "--vrrp",
                "-f",
                config.to_str().expect("UTF-8"),
                "-p",
                &main,
                "-r",
                &vrrp,
                "-c",
                &check,
            ],
            log,
            "keepalived",
        )
    }

    pub fn pid(&self) -> i32 {
        self.process
            .pid()
            .map(|pid| i32::try_from(pid).expect("a pid"))
            .expect("the daemon is running")
    }

    /// SIGKILL to the whole group, and reaps it.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGTERM to the daemon and waits up to `timeout` for it to exit (then SIGKILL to its
    /// group: keepalived's children follow their parent; make sure).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.process.terminate(timeout)
    }

    /// Whether the daemon has exited on its own.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.process.try_wait()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes; returns how long it took.
pub fn wait_for(timeout: Duration, mut condition: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if condition() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
