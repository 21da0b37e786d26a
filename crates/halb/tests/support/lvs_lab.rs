//! The seed's LVS segment in network namespaces: a director (.6), the two database hosts
//! (.253 real server, .254 sorry server) and a client (.100) on one bridge, nothing routed
//! out. The "databases" are [`Backend`]s: TCP servers that greet with their name and echo,
//! and that can be stopped (every open connection closed, as a stopped mysqld does) and
//! started again.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use halb_test_support::{Bridge, Netns};

pub const VIP: &str = "192.168.66.251";

/// One host of the segment.
pub struct Host {
    pub ns: Netns,
    pub ipv4: String,
}

pub struct LvsLab {
    pub director: Host,
    pub rs_a: Host,
    pub rs_b: Host,
    pub client: Host,
    /// The scenario's name, for hosts added later.
    what: String,
    /// Holds the segment; last to go.
    bridge: Bridge,
    pub dir: tempfile::TempDir,
}

impl LvsLab {
    /// `what` names the scenario; namespaces are `halbt-lvs-<what>-<host>-…`.
    pub fn new(what: &str) -> LvsLab {
        let bridge = Bridge::new(&format!("lvs-{what}-br"));
        let host = |tag: &str, host: u8| {
            let ns = Netns::new(&format!("lvs-{what}-{tag}"));
            bridge.attach(&ns, &format!("{tag}0"), "eth0");
            let ipv4 = format!("192.168.66.{host}");
            ns.ip(&["addr", "add", &format!("{ipv4}/24"), "dev", "eth0"]);
            ns.ip(&["link", "set", "eth0", "up"]);
            Host { ns, ipv4 }
        };
        LvsLab {
            director: host("d", 6),
            rs_a: host("a", 253),
            rs_b: host("b", 254),
            client: host("c", 100),
            what: what.to_string(),
            bridge,
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// One more host on the segment (a second director), at `192.168.66.<host>`. Declare it
    /// after the lab, so that it goes before the bridge.
    pub fn add_host(&self, tag: &str, host: u8) -> Host {
        let ns = Netns::new(&format!("lvs-{}-{tag}", self.what));
        self.bridge.attach(&ns, &format!("{tag}0"), "eth0");
        let ipv4 = format!("192.168.66.{host}");
        ns.ip(&["addr", "add", &format!("{ipv4}/24"), "dev", "eth0"]);
        ns.ip(&["link", "set", "eth0", "up"]);
        Host { ns, ipv4 }
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write a file");
        path
    }

    /// Opens a connection from the client to `addr` and reads the greeting (the backend's
    /// name). The socket stays in the client's namespace.
    pub fn connect(&self, addr: SocketAddr) -> std::io::Result<(TcpStream, String)> {
        self.client.ns.run_in(move || {
            let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            stream.set_read_timeout(Some(Duration::from_secs(2)))?;
            let mut reader = BufReader::new(stream.try_clone()?);
            let mut greeting = String::new();
            reader.read_line(&mut greeting)?;
            if greeting.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "closed before the greeting",
                ));
            }
            Ok((stream, greeting.trim().to_string()))
        })
    }
}

/// Whether a connection opened by [`LvsLab::connect`] is still open: it echoes a line.
pub fn still_open(stream: &TcpStream) -> bool {
    let Ok(mut s) = stream.try_clone() else {
        return false;
    };
    if s.write_all(b"ping\n").is_err() {
        return false;
    }
    let mut line = String::new();
    matches!(BufReader::new(s).read_line(&mut line), Ok(n) if n > 0 && line.trim() == "ping")
}

/// A TCP server in a namespace: greets each connection with its name, then echoes lines.
pub struct Backend {
    pub name: String,
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    pub fn start(ns: &Netns, port: u16, name: &str) -> Backend {
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::<TcpStream>::new()));
        let path = ns.path();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stopping, conns, greeting) = (Arc::clone(&stop), Arc::clone(&open), name.to_string());
        let thread = std::thread::spawn(move || {
            halb_sys::netns::enter(&path).expect("enter the backend's namespace");
            let listener = TcpListener::bind(("0.0.0.0", port)).expect("bind the backend port");
            listener.set_nonblocking(true).expect("non-blocking");
            let _ = ready_tx.send(());
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        if let Ok(clone) = stream.try_clone() {
                            conns.lock().unwrap().push(clone);
                        }
                        let greeting = greeting.clone();
                        std::thread::spawn(move || echo(stream, &greeting));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the backend started");
        Backend {
            name: name.to_string(),
            stop,
            open,
            thread: Some(thread),
        }
    }

    /// Connections accepted and not yet closed by the peer.
    pub fn open_connections(&self) -> usize {
        let mut open = self.open.lock().unwrap();
        open.retain(|s| {
            let mut buf = [0u8; 1];
            let _ = s.set_nonblocking(true);
            let alive = match s.peek(&mut buf) {
                Ok(0) => false,
                Ok(_) => true,
                Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
            };
            let _ = s.set_nonblocking(false);
            alive
        });
        open.len()
    }

    /// Stops listening and closes every connection, as a stopped server does.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

fn echo(stream: TcpStream, greeting: &str) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    if writer
        .write_all(format!("{greeting}\n").as_bytes())
        .is_err()
    {
        return;
    }
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
        if writer.write_all(line.as_bytes()).is_err() {
            return;
        }
        line.clear();
    }
}
