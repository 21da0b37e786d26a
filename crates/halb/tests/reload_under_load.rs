//! Reloads of a running MASTER (proxy data plane) next to the real keepalived as its BACKUP,
//! while a client connects through the VIP without pause: the file goes through a weight
//! change, a real server added and removed, a virtual server added, a checker's timing changed,
//! a VIP added, and a broken file. The peer must see no transition, the VIP must never leave,
//! the real server that was down must stay down, and the broken file must be refused with a
//! non-zero `halb reload`. Needs root and keepalived (see `support::vrrp_lab`).

mod support;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use halb_test_support::{installed, is_root, skip};
use support::vrrp_lab::{seed_vrrp, wait_for, Banner, Daemon, Lab, VIP};

/// The virtual service the client uses.
const PORT: u16 = 8080;
/// Real servers: banners in the client's namespace; nothing listens on `DEAD`.
const RS_A: u16 = 9001;
const RS_B: u16 = 9002;
const RS_C: u16 = 9004;
const DEAD: u16 = 9003;
const CLIENT: &str = "192.168.66.100";

fn real_server(port: u16, weight: u32, connect_timeout: u32) -> String {
    format!(
        "    real_server {CLIENT} {port} {{\n        weight {weight}\n        TCP_CHECK {{\n            connect_timeout {connect_timeout}\n            retry 0\n        }}\n    }}\n"
    )
}

/// One step of the cycle: the MASTER's file.
#[derive(Clone, Copy, Default)]
struct Step {
    weight_b: u32,
    with_c: bool,
    second_service: bool,
    timeout_a: u32,
    extra_vip: bool,
}

fn master_file(step: Step) -> String {
    let mut vrrp = seed_vrrp("MASTER", 150);
    if step.extra_vip {
        // Not advertised, so the peer's address list stays the same.
        vrrp = vrrp.replacen(
            "    virtual_ipaddress {",
            "    virtual_ipaddress_excluded {\n        192.168.66.252\n    }\n    virtual_ipaddress {",
            1,
        );
    }
    let mut servers = real_server(RS_A, 1, step.timeout_a.max(1));
    servers += &real_server(RS_B, step.weight_b.max(1), 1);
    servers += &real_server(DEAD, 1, 1);
    if step.with_c {
        servers += &real_server(RS_C, 1, 1);
    }
    let mut text = format!(
        "{vrrp}\nvirtual_server {VIP} {PORT} {{\n    delay_loop 1\n    lb_algo wrr\n    lb_kind NAT\n    protocol TCP\n{servers}}}\n"
    );
    if step.second_service {
        text += &format!(
            "\nvirtual_server {VIP} {} {{\n    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n{}}}\n",
            PORT + 1,
            real_server(RS_A, 1, 1)
        );
    }
    text
}

/// What one step changes in the file.
type Edit = fn(&mut Step);

/// `halb ARGS --control-socket SOCKET`: exit code and output.
fn halb(args: &[&str], socket: &Path) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_halb"))
        .args(args)
        .arg("--control-socket")
        .arg(socket)
        .output()
        .expect("run halb");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Whether the real server on `port` is alive in the daemon's status.
fn alive(socket: &Path, port: u16) -> Option<bool> {
    let (code, out) = halb(&["status", "--json"], socket);
    if code != 0 {
        return None;
    }
    let json: serde_json::Value = serde_json::from_str(&out).ok()?;
    let wanted = format!("{CLIENT}:{port}");
    json["virtual_servers"]
        .as_array()?
        .iter()
        .flat_map(|vs| vs["real_servers"].as_array().cloned().unwrap_or_default())
        .find(|rs| rs["addr"].as_str() == Some(wanted.as_str()))
        .and_then(|rs| rs["alive"].as_bool())
}

#[test]
fn reloads_under_load_keep_the_master_the_vip_and_the_verdicts() {
    if !is_root() {
        return skip("reload_under_load: needs root for network namespaces");
    }
    if !installed("keepalived") {
        return skip("reload_under_load: keepalived is not installed");
    }
    let lab = Lab::new("reload");
    let _servers: Vec<Banner> = [RS_A, RS_B, RS_C]
        .into_iter()
        .map(|p| Banner::start_on(&lab.client.ns, p))
        .collect();
    let mut step = Step {
        weight_b: 1,
        timeout_a: 1,
        ..Step::default()
    };
    let config = lab.write("halb.conf", &master_file(step));
    let peer_config = lab.write("keepalived.conf", &seed_vrrp("BACKUP", 100));
    let log = lab.dir.path().join("halb.log");
    let socket = log.with_extension("sock");
    let mut master = Daemon::halb_with(&lab.a.ns, &config, log, &["--dataplane", "proxy"]);
    assert!(
        wait_for(Duration::from_secs(10), || lab.a.has(VIP)).is_some(),
        "halb never took the VIP:\n{}",
        master.log_text()
    );
    let peer = Daemon::keepalived(
        &lab.b.ns,
        &peer_config,
        lab.dir.path(),
        lab.dir.path().join("keepalived.log"),
    );
    assert!(
        wait_for(Duration::from_secs(10), || peer
            .log_text()
            .contains("Entering BACKUP STATE"))
        .is_some(),
        "keepalived never settled as BACKUP:\n{}",
        peer.log_text()
    );
    assert!(
        wait_for(Duration::from_secs(10), || alive(&socket, DEAD)
            == Some(false))
        .is_some(),
        "the dead real server was never taken out:\n{}",
        master.log_text()
    );

    // A client connecting without pause, and a sampler of the VIP's presence.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, vip_absent, samples) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let client = {
        let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        let path = lab.client.ns.path();
        std::thread::spawn(move || {
            halb_sys::netns::enter(&path).expect("enter the client's namespace");
            let to = SocketAddr::new(VIP.parse().expect("the VIP"), PORT);
            while !stop.load(Ordering::Relaxed) {
                let served = TcpStream::connect_timeout(&to, Duration::from_secs(2))
                    .and_then(|mut s| {
                        s.set_read_timeout(Some(Duration::from_secs(2)))?;
                        let mut banner = String::new();
                        s.read_to_string(&mut banner)?;
                        Ok(banner)
                    })
                    .is_ok_and(|banner| !banner.is_empty());
                if served { &ok } else { &failed }.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let sampler = {
        let (stop, absent, samples) = (
            Arc::clone(&stop),
            Arc::clone(&vip_absent),
            Arc::clone(&samples),
        );
        let path = lab.a.ns.path();
        std::thread::spawn(move || {
            // `ip` runs where this thread is: in the MASTER's namespace.
            halb_sys::netns::enter(&path).expect("enter the MASTER's namespace");
            while !stop.load(Ordering::Relaxed) {
                let out = std::process::Command::new("ip")
                    .args(["-o", "addr", "show", "dev", "eth0"])
                    .output();
                samples.fetch_add(1, Ordering::Relaxed);
                if !out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(VIP)) {
                    absent.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    let steps: [(&str, Edit); 7] = [
        ("a weight changed", |s| s.weight_b = 3),
        ("a real server added", |s| s.with_c = true),
        ("a real server removed", |s| s.with_c = false),
        ("a virtual server added", |s| s.second_service = true),
        ("a checker's timing changed", |s| s.timeout_a = 2),
        ("a VIP added", |s| s.extra_vip = true),
        ("back to the first file", |s| {
            *s = Step {
                weight_b: 1,
                timeout_a: 1,
                ..Step::default()
            }
        }),
    ];
    let mut reloads = 0;
    for round in 0..2 {
        for (what, change) in steps {
            change(&mut step);
            std::fs::write(&config, master_file(step)).expect("write the file");
            let (code, out) = halb(&["reload"], &socket);
            assert_eq!(code, 0, "round {round}, {what}: {out}");
            reloads += 1;
            assert_eq!(
                alive(&socket, DEAD),
                Some(false),
                "round {round}, {what}: the dead real server came back"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        // A broken file: refused, the diagnostics printed, the running file stays.
        std::fs::write(
            &config,
            format!("{}virtual_server {VIP} 80 {{\n", master_file(step)),
        )
        .expect("write the broken file");
        let (code, out) = halb(&["reload"], &socket);
        assert_eq!(code, 4, "the broken file was not refused: {out}");
        assert!(
            out.contains("halb.conf:") && out.contains("error"),
            "no diagnostic with its place: {out}"
        );
        let (_, status) = halb(&["status"], &socket);
        assert!(
            status.contains("Last reload") && status.contains("refused"),
            "{status}"
        );
        std::fs::write(&config, master_file(step)).expect("write the file back");
    }
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    client.join().expect("the client");
    sampler.join().expect("the sampler");

    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let (absent, samples) = (
        vip_absent.load(Ordering::Relaxed),
        samples.load(Ordering::Relaxed),
    );
    let peer_log = peer.log_text();
    let master_log = master.log_text();
    // A connection the client had open to a real server the file removed is closed, as
    // keepalived's removal does: those are counted apart, from halb's own lines.
    let closed_by_removal: usize = master_log
        .lines()
        .filter(|l| l.contains("removed from the configuration"))
        .filter_map(|l| {
            l.split("Closed ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    eprintln!(
        "{reloads} reloads: {ok} connections served, {failed} failed ({closed_by_removal} \
         closed because their real server was removed); VIP absent in {absent}/{samples} samples"
    );
    assert!(ok > 100, "the client was barely served: {ok}");
    assert!(
        failed <= closed_by_removal,
        "{failed} connections failed, {closed_by_removal} of them explained by a removed real \
         server:\n{master_log}"
    );
    assert_eq!(absent, 0, "the VIP left the MASTER:\n{}", master.log_text());
    assert!(
        !peer_log.contains("Entering MASTER STATE"),
        "the BACKUP took over during the reloads:\n{peer_log}\n{}",
        master.log_text()
    );
    assert_eq!(
        peer_log.matches("Entering BACKUP STATE").count(),
        1,
        "the peer moved:\n{peer_log}"
    );
    assert!(
        master.exited().is_none(),
        "halb exited:\n{}",
        master.log_text()
    );
    assert!(master.terminate(Duration::from_secs(10)).is_some());
}
