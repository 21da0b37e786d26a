//! Route announcement by BGP through BIRD, with real BIRD 2 on both sides.
//!
//! A router namespace runs BIRD with ECMP (`merge paths on` in its kernel protocol, L4 hashing
//! by `fib_multipath_hash_policy=1`) and BFD; two director namespaces each run `halb run` with
//! `bgp_announce` (proxy data plane), each with its supervised BIRD, and a backend of their
//! own. The test shows, printing the measured times:
//! - the router's kernel table has the VIP with one nexthop per director, and new connections
//!   from the router reach both;
//! - a director's virtual server loses quorum: its nexthop leaves the router within 1 s of halb
//!   withdrawing, and comes back with the quorum;
//! - `halb drain`: the route is withdrawn within 1 s, new connections go to the other director,
//!   and `halb drain` reports the director idle; `halb drain --resume` announces again;
//! - halb SIGKILLed: its BIRD dies with it (PR_SET_PDEATHSIG) and the router drops the path
//!   within 1 s (the kernel closes the dead BIRD's TCP session; BFD would catch a silent loss);
//! - SIGTERM: the route is withdrawn before halb exits.
//!
//! Requires root and BIRD 2 (`bird2`, installed by scripts/deps.sh).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use halb_test_support::{skip, Bridge, Netns};
use support::vrrp_lab::{wait_for, Daemon};

const VIP: &str = "192.168.66.251";
const ROUTER: &str = "192.168.66.1";
const PORT: u16 = 80;
const BACKEND_PORT: u16 = 8080;

/// A backend in a namespace: greets with its name, echoes lines, and closes when the client
/// does (unlike a server that keeps its sockets, it lets the proxy's connections end).
struct Backend {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Backend {
    fn start(ns: &Netns, port: u16, name: &str) -> Backend {
        let stop = Arc::new(AtomicBool::new(false));
        let (path, stopping, name) = (ns.path(), stop.clone(), name.to_string());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            halb_sys::netns::enter(&path).expect("enter the backend's namespace");
            let listener = TcpListener::bind(("0.0.0.0", port)).expect("bind the backend port");
            listener.set_nonblocking(true).expect("non-blocking");
            let _ = ready_tx.send(());
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let name = name.clone();
                        std::thread::spawn(move || {
                            let Ok(mut w) = stream.try_clone() else {
                                return;
                            };
                            if w.write_all(format!("{name}\n").as_bytes()).is_err() {
                                return;
                            }
                            let mut r = BufReader::new(stream);
                            let mut line = String::new();
                            while matches!(r.read_line(&mut line), Ok(n) if n > 0) {
                                if w.write_all(line.as_bytes()).is_err() {
                                    return;
                                }
                                line.clear();
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the backend started");
        Backend {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops listening (its checker fails from now on).
    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Director {
    ns: Netns,
    addr: String,
    backend: Backend,
    halb: Option<Daemon>,
    socket: std::path::PathBuf,
}

fn router_conf(directors: &[&str]) -> String {
    let mut c = format!(
        "router id {ROUTER};\n\
         protocol device {{ scan time 1; }}\n\
         protocol kernel {{ ipv4 {{ import none; export all; }}; merge paths on; }}\n\
         protocol bfd {{ interface \"*\" {{ interval 100 ms; multiplier 5; }}; }}\n"
    );
    for (i, d) in directors.iter().enumerate() {
        c.push_str(&format!(
            "protocol bgp d{i} {{\n  local {ROUTER} as 65000;\n  neighbor {d} as 65001;\n  direct;\n  \
             hold time 3; keepalive time 1; connect delay time 1; connect retry time 1; error wait time 1, 5;\n  \
             bfd on;\n  ipv4 {{ import all; export none; }};\n}}\n"
        ));
    }
    c
}

fn halb_conf(addr: &str) -> String {
    format!(
        r#"global_defs {{
    router_id {addr}
}}
virtual_server {VIP} {PORT} {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server {addr} {BACKEND_PORT} {{
        TCP_CHECK {{
            connect_timeout 1
            retry 0
        }}
    }}
}}
bgp_announce {{
    local_as 65001
    router_id {addr}
    bfd
    drain_timeout 30
    neighbor {ROUTER} {{
        remote_as 65000
        source_address {addr}
    }}
    announce {VIP}
}}
"#
    )
}

/// The router's nexthops for the VIP.
fn nexthops(router: &Netns) -> Vec<String> {
    let out = router
        .command("ip")
        .args(["-j", "route", "show", VIP])
        .output()
        .expect("ip route");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut hops = Vec::new();
    for r in v.as_array().cloned().unwrap_or_default() {
        if let Some(g) = r.get("gateway").and_then(|g| g.as_str()) {
            hops.push(g.to_string());
        }
        for h in r
            .get("nexthops")
            .and_then(|n| n.as_array())
            .cloned()
            .unwrap_or_default()
        {
            if let Some(g) = h.get("gateway").and_then(|g| g.as_str()) {
                hops.push(g.to_string());
            }
        }
    }
    hops.sort();
    hops
}

/// A connection from the router to the VIP, with the greeting (the backend's name).
fn connect(router: &Netns) -> std::io::Result<(TcpStream, String)> {
    let addr: SocketAddr = format!("{VIP}:{PORT}").parse().unwrap();
    router.run_in(move || {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut greeting = String::new();
        reader.read_line(&mut greeting)?;
        Ok((stream, greeting.trim().to_string()))
    })
}

/// halb's /metrics in `ns` (the endpoint's default address, inside the namespace).
fn metrics(ns: &Netns) -> String {
    ns.run_in(|| {
        let Ok(mut s) = TcpStream::connect("127.0.0.1:9165") else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut s, &mut out);
        out
    })
}

fn status(d: &Director) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_halb"))
        .args(["status", "--json", "--control-socket"])
        .arg(&d.socket)
        .output()
        .expect("halb status");
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

fn announced(d: &Director) -> Option<bool> {
    status(d)["bgp"]["announcements"][0]["announced"].as_bool()
}

/// The pid of the BIRD started with `conf`, read from /proc (nothing is signalled).
fn bird_pid(conf: &Path) -> Option<u32> {
    let conf = conf.to_str()?;
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        if args.iter().any(|a| a.ends_with(b"bird")) && args.contains(&conf.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

#[test]
fn routes_follow_health_drain_kill_and_stop() {
    if !skip::is_root() {
        return skip::skip("needs root for network namespaces");
    }
    if !skip::installed("bird") {
        return skip::skip("needs BIRD 2 (scripts/deps.sh installs bird2)");
    }
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::new("bgp-br");
    let router = Netns::new("bgp-r");
    bridge.attach(&router, "r0", "eth0");
    router.ip(&["addr", "add", &format!("{ROUTER}/24"), "dev", "eth0"]);
    router.ip(&["link", "set", "eth0", "up"]);
    router.sysctl("net.ipv4.fib_multipath_hash_policy", "1");
    let mut directors: Vec<Director> = ["2", "3"]
        .iter()
        .map(|h| {
            let ns = Netns::new(&format!("bgp-d{h}"));
            bridge.attach(&ns, &format!("d{h}0"), "eth0");
            let addr = format!("192.168.66.{h}");
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
            ns.ip(&["link", "set", "eth0", "up"]);
            ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
            let backend = Backend::start(&ns, BACKEND_PORT, &format!("d{h}"));
            // A directory each: the supervised BIRD's files go beside the control socket.
            let own = dir.path().join(format!("d{h}"));
            std::fs::create_dir_all(&own).unwrap();
            let conf = own.join("halb.conf");
            std::fs::write(&conf, halb_conf(&addr)).unwrap();
            let log = own.join("halb.log");
            let socket = log.with_extension("sock");
            let halb = Daemon::halb_with(&ns, &conf, log, &["--dataplane", "proxy"]);
            Director {
                ns,
                addr,
                backend,
                halb: Some(halb),
                socket,
            }
        })
        .collect();
    let addrs: Vec<&str> = directors.iter().map(|d| d.addr.as_str()).collect();
    let router_conf_path = dir.path().join("router.conf");
    std::fs::write(&router_conf_path, router_conf(&addrs)).unwrap();
    let router_sock = dir.path().join("router.ctl");
    let _router_bird = Daemon::spawn(
        &router,
        &[
            "bird",
            "-f",
            "-c",
            router_conf_path.to_str().unwrap(),
            "-s",
            router_sock.to_str().unwrap(),
        ],
        dir.path().join("router-bird.log"),
        "router's BIRD",
    );
    let logs = |directors: &[Director]| {
        directors
            .iter()
            .filter_map(|d| d.halb.as_ref())
            .map(|h| format!("--- {}:\n{}", h.log.display(), h.log_text()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let both = vec!["192.168.66.2".to_string(), "192.168.66.3".to_string()];

    // Both directors announce: one nexthop each.
    let up = wait_for(Duration::from_secs(30), || nexthops(&router) == both);
    assert!(
        up.is_some(),
        "the router never had both paths: {:?}\n{}",
        nexthops(&router),
        logs(&directors)
    );
    println!(
        "both paths in the router's table {:?} after start",
        up.unwrap()
    );

    // halb status and /metrics show the route and the session.
    let text = Command::new(env!("CARGO_BIN_EXE_halb"))
        .args(["status", "--control-socket"])
        .arg(&directors[0].socket)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    println!("halb status:\n{text}");
    assert!(text.contains("192.168.66.251/32    announced"), "{text}");
    let established = wait_for(Duration::from_secs(5), || {
        metrics(&directors[0].ns).contains(
            "halb_bgp_session_established{neighbor=\"192.168.66.1\",protocol=\"halb_n0\",state=\"Established\"} 1",
        )
    });
    let m = metrics(&directors[0].ns);
    assert!(established.is_some(), "{m}");
    assert!(
        m.contains("halb_bgp_route_announced{prefix=\"192.168.66.251/32\"} 1"),
        "{m}"
    );

    // New connections reach both directors (L4 hashing over the two paths).
    let mut seen = std::collections::BTreeMap::new();
    let mut held = Vec::new();
    for _ in 0..40 {
        let (s, who) = connect(&router).expect("a connection to the VIP");
        *seen.entry(who.clone()).or_insert(0) += 1;
        held.push((s, who));
    }
    println!("40 new connections: {seen:?}");
    assert_eq!(seen.len(), 2, "both directors get connections: {seen:?}");
    drop(held);

    // Quorum loss on the first director: its path leaves.
    directors[0].backend.stop();
    let t0 = Instant::now();
    let withdrawn = wait_for(Duration::from_secs(10), || {
        announced(&directors[0]) == Some(false)
    })
    .expect("halb withdrew after its quorum was lost");
    let t_withdrawn = Instant::now();
    let gone = wait_for(Duration::from_secs(5), || {
        nexthops(&router) == ["192.168.66.3".to_string()]
    })
    .expect("the router dropped the path");
    let after = t_withdrawn.elapsed().max(gone);
    println!(
        "quorum lost: halb withdrew {withdrawn:?} after the backend stopped; the router's path gone {:?} after that ({:?} in all)",
        gone,
        t0.elapsed()
    );
    assert!(
        after < Duration::from_secs(1),
        "the path stayed {after:?} after the withdrawal"
    );
    directors[0].backend = Backend::start(&directors[0].ns, BACKEND_PORT, "d2");
    wait_for(Duration::from_secs(15), || nexthops(&router) == both)
        .expect("the path came back with the quorum");

    // Drain the second director. Its open connections are not kept here: once the route is
    // gone the router sends their packets to the other director, whose userspace proxy knows
    // nothing of them (keeping them needs IPVS with `mh` and `sloppy_tcp` on every director).
    // So the drain waits for the connections this director still counts, and there are none.
    let mut drain = Command::new(env!("CARGO_BIN_EXE_halb"));
    drain
        .args(["drain", "--control-socket"])
        .arg(&directors[1].socket)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let drain = drain.spawn().expect("halb drain");
    let t_drain = Instant::now();
    let gone = wait_for(Duration::from_secs(5), || {
        nexthops(&router) == ["192.168.66.2".to_string()]
    })
    .expect("the router dropped the drained path");
    println!("halb drain: the router's path gone after {gone:?}");
    assert!(gone < Duration::from_secs(1), "{gone:?}");
    for _ in 0..10 {
        let (_, who) = connect(&router).expect("connect while draining");
        assert_eq!(who, "d2", "a new connection went to the drained director");
    }
    let out = drain.wait_with_output().unwrap();
    println!(
        "halb drain returned {:?} after the drain began: {}",
        t_drain.elapsed(),
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .replace('\n', "; ")
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no connection left"),
        "{out:?}"
    );
    let s = status(&directors[1]);
    assert_eq!(
        s["bgp"]["announcements"][0]["reason"], "drained (halb drain)",
        "{s}"
    );
    let resumed = Command::new(env!("CARGO_BIN_EXE_halb"))
        .args(["drain", "--resume", "--control-socket"])
        .arg(&directors[1].socket)
        .status()
        .unwrap();
    assert!(resumed.success());
    wait_for(Duration::from_secs(10), || nexthops(&router) == both)
        .expect("the path came back after the drain ended");

    // SIGKILL: BIRD dies with halb, the router drops the path.
    let bird_conf = dir.path().join("d2/bird-halb.conf");
    assert!(bird_pid(&bird_conf).is_some(), "a supervised BIRD runs");
    directors[0].halb.as_mut().unwrap().kill();
    let t_kill = Instant::now();
    let gone = wait_for(Duration::from_secs(5), || {
        nexthops(&router) == ["192.168.66.3".to_string()]
    })
    .expect("the router dropped the killed director's path");
    println!("halb SIGKILLed: the router's path gone after {gone:?}");
    assert!(gone < Duration::from_secs(1), "{gone:?}");
    let bird_gone = wait_for(Duration::from_secs(2), || bird_pid(&bird_conf).is_none());
    println!(
        "its BIRD gone {bird_gone:?} after the kill ({:?} since)",
        t_kill.elapsed()
    );
    assert!(bird_gone.is_some(), "the killed halb's BIRD lives on");
    let bird_conf = dir.path().join("d3/bird-halb.conf");

    // SIGTERM: withdrawn before exit.
    let t_term = Instant::now();
    let status = directors[1]
        .halb
        .as_mut()
        .unwrap()
        .terminate(Duration::from_secs(10));
    let exited = t_term.elapsed();
    let log = directors[1].halb.as_ref().unwrap().log_text();
    assert!(status.is_some(), "halb exited on SIGTERM");
    let gone = wait_for(Duration::from_secs(2), || nexthops(&router).is_empty());
    println!("SIGTERM: halb exited after {exited:?}; the router's table empty {gone:?} after that");
    assert!(gone.is_some(), "{:?}", nexthops(&router));
    assert!(
        log.contains("Withdrawing route 192.168.66.251/32 from BGP: halb is stopping"),
        "{log}"
    );
    // No supervised BIRD is left.
    assert_eq!(
        bird_pid(&bird_conf),
        None,
        "a supervised BIRD outlived its halb"
    );
}
