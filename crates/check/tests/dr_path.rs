//! DR_PATH_CHECK against a real server in a network namespace: a director namespace and a real
//! server namespace joined by a veth pair, the real server prepared for direct routing (VIP on
//! `lo`, arp_ignore/arp_announce), as `halb realserver start` does. Needs root.

use halb_check::probe::dr_path::DrPathProbe;
use halb_test_support::Netns;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A director and a real server joined by a veth pair (`dr0`, `rs0`), in namespaces removed on
/// drop.
struct Lab {
    director: Netns,
    real_server: Netns,
    net: u8,
}

impl Lab {
    fn new() -> Lab {
        let lab = Lab {
            director: Netns::new("dr-director"),
            real_server: Netns::new("dr-real-server"),
            // A /24 of its own in 10.213.0.0/16, so parallel runs do not meet.
            net: (std::process::id() % 250) as u8,
        };
        lab.director.add_veth("dr0", &lab.real_server, "rs0");
        lab.director
            .ip(&["addr", "add", &lab.addr(1, 24), "dev", "dr0"]);
        lab.real_server
            .ip(&["addr", "add", &lab.addr(2, 24), "dev", "rs0"]);
        lab.director.ip(&["link", "set", "dr0", "up"]);
        lab.real_server.ip(&["link", "set", "rs0", "up"]);
        for key in ["all", "lo"] {
            for (what, value) in [("arp_ignore", "1"), ("arp_announce", "2")] {
                lab.real_server
                    .sysctl(&format!("net.ipv4.conf.{key}.{what}"), value);
            }
        }
        lab
    }

    fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.net, host)
    }

    fn addr(&self, host: u8, len: u8) -> String {
        format!("{}/{len}", self.ip(host))
    }

    fn vip_on_lo(&self, present: bool) {
        let verb = if present { "add" } else { "del" };
        self.real_server
            .ip(&["addr", verb, &self.addr(100, 32), "dev", "lo"]);
    }

    /// A listener in the real server's namespace on every address (so on RIP and VIP).
    fn listen(&self, port: u16) -> TcpListener {
        self.real_server.run_in(move || {
            TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).expect("listen in the real server")
        })
    }

    fn probe(&self, port: u16, rs: u8, interface: Option<&str>) -> halb_check::probe::ProbeResult {
        let probe = DrPathProbe {
            vip: self.ip(100),
            port,
            real_server: self.ip(rs),
            interface: interface.map(str::to_string),
            timeout: Duration::from_secs(2),
        };
        self.director
            .block_on(move || async move { probe.check().await })
    }

    /// An ordinary connection from the director to RIP:port, what TCP_CHECK does.
    fn tcp_check(&self, port: u16) -> bool {
        let target = (self.ip(2), port);
        self.director.run_in(move || {
            TcpStream::connect_timeout(&target.into(), Duration::from_secs(2)).is_ok()
        })
    }
}

#[test]
fn finds_a_real_server_that_lost_its_vip() {
    let lab = Lab::new();
    let listener = lab.listen(8080);
    listener.set_nonblocking(true).expect("nonblocking");
    lab.vip_on_lo(true);

    let ok = lab
        .probe(8080, 2, None)
        .expect("VIP on lo and a listener: the path works");
    println!("with the VIP: {}", ok.detail);
    assert!(ok.detail.contains("SYN-ACK"), "{}", ok.detail);
    // The same through the interface named in the check.
    lab.probe(8080, 2, Some("dr0")).expect("bind_if dr0");

    // The seed's case: the VIP is gone from lo, the real server's own address still answers.
    lab.vip_on_lo(false);
    let started = Instant::now();
    let failure = lab
        .probe(8080, 2, None)
        .expect_err("without the VIP the path is broken");
    println!(
        "without the VIP: {} ({:?})",
        failure.message,
        started.elapsed()
    );
    assert!(failure.timed_out(), "{failure:?}");
    assert!(failure.message.contains("loopback"), "{}", failure.message);
    assert!(
        lab.tcp_check(8080),
        "a TCP_CHECK to RIP:port still succeeds"
    );

    // VIP back, nothing on the port: the server refuses.
    lab.vip_on_lo(true);
    let refused = lab
        .probe(8081, 2, None)
        .expect_err("nothing listens on 8081");
    println!("closed port: {}", refused.message);
    assert!(
        !refused.timed_out() && refused.message.contains("refused"),
        "{refused:?}"
    );

    // No host at the address: ARP goes unanswered.
    let nobody = lab.probe(8080, 77, None).expect_err("nobody at .77");
    println!("no host: {}", nobody.message);
    assert!(
        nobody.message.contains("no ARP answer") && nobody.message.contains("dr0"),
        "{nobody:?}"
    );

    // No route at all.
    let probe = DrPathProbe {
        vip: lab.ip(100),
        port: 8080,
        real_server: Ipv4Addr::new(192, 0, 2, 1),
        interface: None,
        timeout: Duration::from_secs(1),
    };
    let unroutable = lab
        .director
        .block_on(move || async move { probe.check().await })
        .expect_err("no route to 192.0.2.1");
    println!("no route: {}", unroutable.message);
    assert!(unroutable.message.contains("no route"), "{unroutable:?}");
    drop(listener);
}
