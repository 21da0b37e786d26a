//! halb's IPVS data plane against the real kernel: one boot of the IPVS VM (Debian's cloud
//! kernel under qemu, which has IPVS) with the halb binary inside, and ipvsadm as the oracle.
//!
//! Inside the machine, `halb ipvs` (a hidden subcommand that drives `halb_dataplane::ipvs`
//! directly) applies tables covering TCP, UDP, SCTP, firewall marks, IPv6, persistence, every
//! scheduler, DR, NAT and the three tunnel types, and the test checks that:
//! - `ipvsadm -S -n` shows what the table says, and the same as when ipvsadm itself loads it;
//! - halb reads back exactly the table it wrote;
//! - edits (a diff applied through `Dataplane::apply`) land as ipvsadm would make them;
//! - reconciliation repairs drift made with ipvsadm and leaves a foreign service alone;
//! - timeouts and sync daemons are set and read back as ipvsadm shows them;
//! - counters and the connection table follow real traffic through a NAT service, and removing
//!   a destination drops its connections;
//! - `halb run`, when one service cannot go in (its scheduler's module cannot be loaded), puts
//!   the others in at once and retries the failed one within seconds, not at the next minute's
//!   reconciliation.
//!
//! The halb binary: `HALB_BIN` when set, else `cargo build -p halb` from here (a test cannot
//! name another package's binary), stripped of debug information to keep the initramfs small.
//!
//! Needs root on Debian (missing packages are installed). Run with
//! `cargo test -p halb-ipvs-vm --test ipvs_dataplane -- --nocapture` to see the timings.

use anyhow::{Context, Result};
use halb_ipvs_vm::kernel_vm::{KernelVm, Payload};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Instant;

// ---------------------------------------------------------------------------------------------
// The tables, in a small model of the test's own, so that the expected ipvsadm lines and the
// JSON halb reads come from here and not from the code under test.

#[derive(Clone, Copy)]
enum Kind {
    Tcp(&'static str),
    Udp(&'static str),
    Sctp(&'static str),
    Fwm(u32, bool),
}

#[derive(Clone, Copy)]
enum Gran {
    Mask(&'static str),
    Prefix(u8),
}

#[derive(Clone, Copy)]
enum Csum {
    No,
    Yes,
    Rem,
}

#[derive(Clone, Copy)]
enum Fwd {
    Dr,
    Nat,
    Ipip,
    Gue(u16, Csum),
    Gre(Csum),
}

#[derive(Clone)]
struct Dst {
    addr: &'static str,
    weight: u32,
    fwd: Fwd,
    upper: u32,
    lower: u32,
}

#[derive(Clone)]
struct Svc {
    kind: Kind,
    sched: &'static str,
    ops: bool,
    flags: [bool; 3],
    persist: Option<(u32, Option<Gran>)>,
    dests: Vec<Dst>,
}

fn dst(addr: &'static str, weight: u32, fwd: Fwd) -> Dst {
    Dst {
        addr,
        weight,
        fwd,
        upper: 0,
        lower: 0,
    }
}

fn svc(kind: Kind, sched: &'static str, dests: Vec<Dst>) -> Svc {
    Svc {
        kind,
        sched,
        ops: false,
        flags: [false; 3],
        persist: None,
        dests,
    }
}

impl Svc {
    fn persistent(mut self, timeout: u32, gran: Option<Gran>) -> Svc {
        self.persist = Some((timeout, gran));
        self
    }

    fn flags(mut self, ops: bool, flags: [bool; 3]) -> Svc {
        self.ops = ops;
        self.flags = flags;
        self
    }

    /// How ipvsadm names the service in a rule.
    fn spec(&self) -> String {
        match self.kind {
            Kind::Tcp(a) => format!("-t {a}"),
            Kind::Udp(a) => format!("-u {a}"),
            Kind::Sctp(a) => format!("--sctp-service {a}"),
            Kind::Fwm(m, false) => format!("-f {m}"),
            Kind::Fwm(m, true) => format!("-f {m} -6"),
        }
    }

    /// `halb_lb::table::ServiceKey` as serde writes it.
    fn key_json(&self) -> Value {
        let addr = |protocol: &str, a: &str| json!({"Addr": {"protocol": protocol, "addr": a}});
        match self.kind {
            Kind::Tcp(a) => addr("Tcp", a),
            Kind::Udp(a) => addr("Udp", a),
            Kind::Sctp(a) => addr("Sctp", a),
            Kind::Fwm(m, inet6) => json!({"Fwmark": {"mark": m, "inet6": inet6}}),
        }
    }

    /// `halb_lb::table::Service` as serde writes it.
    fn to_json(&self) -> Value {
        let mut sched = self.sched.to_string();
        sched[..1].make_ascii_uppercase();
        let persistence = self.persist.map(|(timeout, gran)| {
            json!({
                "timeout_s": timeout,
                "granularity": match gran {
                    None => Value::Null,
                    Some(Gran::Mask(m)) => json!({"Netmask": m}),
                    Some(Gran::Prefix(p)) => json!({"Prefix": p}),
                }
            })
        });
        let dests: serde_json::Map<String, Value> = self
            .dests
            .iter()
            .map(|d| {
                let csum = |c: Csum| match c {
                    Csum::No => "NoCsum",
                    Csum::Yes => "Csum",
                    Csum::Rem => "RemCsum",
                };
                let forwarding = match d.fwd {
                    Fwd::Dr => json!("Dr"),
                    Fwd::Nat => json!("Nat"),
                    Fwd::Ipip => json!({"Tun": {"tunnel_type": "Ipip", "checksum": "NoCsum"}}),
                    Fwd::Gue(port, c) => {
                        json!({"Tun": {"tunnel_type": {"Gue": {"port": port}}, "checksum": csum(c)}})
                    }
                    Fwd::Gre(c) => json!({"Tun": {"tunnel_type": "Gre", "checksum": csum(c)}}),
                };
                (
                    d.addr.to_string(),
                    json!({
                        "addr": d.addr,
                        "weight": d.weight,
                        "forwarding": forwarding,
                        "uthreshold": d.upper,
                        "lthreshold": d.lower,
                    }),
                )
            })
            .collect();
        json!({
            "key": self.key_json(),
            "scheduler": sched,
            "flags": {"ops": self.ops, "flag_1": self.flags[0], "flag_2": self.flags[1], "flag_3": self.flags[2]},
            "persistence": persistence,
            // The kernel differential covers `--pe sip` (all_keywords.conf).
            "persistence_engine": null,
            "fallback": null,
            "destinations": dests,
        })
    }

    /// The service's lines as `ipvsadm -S -n` prints them (ipvsadm 1.31), with the thresholds
    /// (which `-S` leaves out) when `thresholds` is set, for `ipvsadm -R`.
    fn rules(&self, thresholds: bool) -> Vec<String> {
        let spec = self.spec();
        let mut line = format!("-A {spec} -s {}", self.sched);
        if let Some((timeout, gran)) = self.persist {
            line += &format!(" -p {timeout}");
            match gran {
                Some(Gran::Mask(m)) => line += &format!(" -M {m}"),
                Some(Gran::Prefix(p)) => line += &format!(" -M {p}"),
                None => {}
            }
        }
        if self.ops {
            line += " -o";
        }
        let names: [&str; 3] = match self.sched {
            "sh" => ["sh-fallback", "sh-port", "flag-3"],
            "mh" => ["mh-fallback", "mh-port", "flag-3"],
            _ => ["flag-1", "flag-2", "flag-3"],
        };
        let set: Vec<&str> = (0..3)
            .filter(|i| self.flags[*i])
            .map(|i| names[i])
            .collect();
        if !set.is_empty() {
            line += &format!(" -b {}", set.join(","));
        }
        let mut lines = vec![line];
        for d in &self.dests {
            let csum = |c: Csum| match c {
                Csum::No => "--tun-nocsum",
                Csum::Yes => "--tun-csum",
                Csum::Rem => "--tun-remcsum",
            };
            let how = match d.fwd {
                Fwd::Dr => format!("-g -w {}", d.weight),
                Fwd::Nat => format!("-m -w {}", d.weight),
                Fwd::Ipip => format!("-i -w {} --tun-type ipip", d.weight),
                Fwd::Gue(port, c) => format!(
                    "-i -w {} --tun-type gue --tun-port {port} {}",
                    d.weight,
                    csum(c)
                ),
                Fwd::Gre(c) => format!("-i -w {} --tun-type gre {}", d.weight, csum(c)),
            };
            let mut line = format!("-a {spec} -r {} {how}", d.addr);
            if thresholds && (d.upper != 0 || d.lower != 0) {
                line += &format!(" -x {} -y {}", d.upper, d.lower);
            }
            lines.push(line);
        }
        lines
    }
}

fn tables_json(services: &[Svc]) -> Vec<u8> {
    serde_json::to_vec_pretty(&services.iter().map(Svc::to_json).collect::<Vec<_>>())
        .expect("JSON of a table")
}

fn rules(services: &[Svc], thresholds: bool) -> Vec<String> {
    services.iter().flat_map(|s| s.rules(thresholds)).collect()
}

/// Every scheduler this kernel has (`twos` came with Linux 6.3; the lab's kernel is 6.1).
const SCHEDULERS: [&str; 13] = [
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh",
];

fn scheduler_services(edited: bool) -> Vec<Svc> {
    SCHEDULERS
        .iter()
        .enumerate()
        .map(|(i, sched)| {
            let sched = if edited && *sched == "rr" {
                "wlc"
            } else {
                sched
            };
            let addr: &'static str =
                Box::leak(format!("192.168.66.251:{}", 1000 + i).into_boxed_str());
            let rs: &'static str =
                Box::leak(format!("192.168.66.253:{}", 1000 + i).into_boxed_str());
            svc(Kind::Tcp(addr), sched, vec![dst(rs, 1, Fwd::Dr)])
        })
        .collect()
}

/// The first table: a bit of everything IPVS offers.
fn table_one() -> Vec<Svc> {
    let mut t = vec![
        // The seed's service, with the sorry server quiescent.
        svc(
            Kind::Tcp("192.168.66.251:3306"),
            "wrr",
            vec![
                dst("192.168.66.253:3306", 1, Fwd::Dr),
                dst("192.168.66.254:3306", 0, Fwd::Dr),
            ],
        )
        .persistent(120, None),
        svc(
            Kind::Udp("192.168.66.251:53"),
            "sh",
            vec![Dst {
                upper: 100,
                lower: 10,
                ..dst("192.168.66.253:53", 2, Fwd::Nat)
            }],
        )
        .flags(true, [true, true, false]),
        svc(
            Kind::Sctp("192.168.66.251:9"),
            "dh",
            vec![dst("192.168.66.253:9", 1, Fwd::Dr)],
        )
        .flags(false, [false, false, true]),
        svc(
            Kind::Tcp("[2001:db8::251]:80"),
            "lblcr",
            vec![dst("[2001:db8::253]:8080", 4, Fwd::Nat)],
        )
        .persistent(30, Some(Gran::Prefix(64))),
        svc(
            Kind::Fwm(5, false),
            "mh",
            vec![
                Dst {
                    upper: 5,
                    lower: 2,
                    ..dst("192.168.66.252:0", 3, Fwd::Ipip)
                },
                dst("192.168.66.253:0", 3, Fwd::Gue(6080, Csum::Yes)),
                dst("192.168.66.254:0", 3, Fwd::Gre(Csum::Yes)),
                dst("192.168.66.255:0", 1, Fwd::Gue(6081, Csum::Rem)),
            ],
        )
        .flags(false, [true, true, false])
        .persistent(60, Some(Gran::Mask("255.255.255.0"))),
        // An IPv6 service with an IPv4 tunnel destination: the one case of mixed families.
        svc(
            Kind::Fwm(6, true),
            "rr",
            vec![
                dst("[2001:db8::253]:0", 1, Fwd::Dr),
                dst("192.168.66.253:0", 1, Fwd::Ipip),
            ],
        ),
    ];
    t.extend(scheduler_services(false));
    t
}

/// The first table edited: settings, destinations and services changed, added and removed.
fn table_two() -> Vec<Svc> {
    let mut t = vec![
        svc(
            Kind::Tcp("192.168.66.251:3306"),
            "wrr",
            vec![
                dst("192.168.66.253:3306", 1, Fwd::Dr),
                dst("192.168.66.254:3306", 1, Fwd::Dr),
            ],
        )
        .persistent(300, None),
        svc(
            Kind::Tcp("192.168.66.251:3308"),
            "wrr",
            vec![dst("192.168.66.253:3308", 1, Fwd::Dr)],
        )
        .persistent(120, None),
        svc(
            Kind::Udp("192.168.66.251:53"),
            "sh",
            vec![dst("192.168.66.253:53", 2, Fwd::Nat)],
        )
        .flags(false, [true, false, false]),
        svc(
            Kind::Tcp("[2001:db8::251]:80"),
            "lblcr",
            vec![
                dst("[2001:db8::253]:8080", 4, Fwd::Nat),
                dst("[2001:db8::254]:8080", 1, Fwd::Nat),
            ],
        )
        .persistent(30, Some(Gran::Prefix(48))),
        svc(
            Kind::Fwm(5, false),
            "mh",
            vec![
                dst("192.168.66.253:0", 3, Fwd::Gue(6081, Csum::No)),
                dst("192.168.66.254:0", 3, Fwd::Gre(Csum::No)),
                dst("192.168.66.255:0", 1, Fwd::Gue(6081, Csum::Rem)),
            ],
        )
        .flags(false, [true, true, false])
        .persistent(60, Some(Gran::Mask("255.255.255.0"))),
        svc(
            Kind::Fwm(6, true),
            "rr",
            vec![
                dst("[2001:db8::253]:0", 1, Fwd::Dr),
                dst("192.168.66.253:0", 1, Fwd::Ipip),
            ],
        ),
    ];
    t.extend(scheduler_services(true));
    t
}

/// ipvsadm's drift on top of the second table: each line breaks one thing reconciliation must
/// put back, and the last two add a service halb does not own.
const DRIFT: &str = "
ipvsadm -E -t 192.168.66.251:3306 -s rr -p 300
ipvsadm -d -t 192.168.66.251:3306 -r 192.168.66.254:3306
ipvsadm -e -u 192.168.66.251:53 -r 192.168.66.253:53 -m -w 9
ipvsadm -a -f 5 -r 192.168.66.99:0 -g -w 1
ipvsadm -D -t 192.168.66.251:3308
ipvsadm -A --sctp-service 192.168.66.251:9 -s dh
ipvsadm -A -t 10.1.1.1:8080 -s lc
ipvsadm -a -t 10.1.1.1:8080 -r 10.1.1.2:8080 -m -w 5
";
const FOREIGN: [&str; 2] = [
    "-A -t 10.1.1.1:8080 -s lc",
    "-a -t 10.1.1.1:8080 -r 10.1.1.2:8080 -m -w 5",
];

// ---------------------------------------------------------------------------------------------
// The machine's script.

const SCRIPT: &str = r#"
set -u
section() { echo "=== $1"; }
for s in rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh; do modprobe ip_vs_$s; done

section available
halb ipvs available; echo "rc=$?"
section info
halb ipvs info

# 1. The first table, applied by halb from an empty table.
section apply1
halb ipvs apply --table t1.json | grep '"changes"'
section S1
ipvsadm -S -n
section thresholds1
ipvsadm -L -n --thresholds
section dump1
halb ipvs dump

# The same table loaded by ipvsadm.
ipvsadm -C
section restore1
ipvsadm -R < t1.rules; echo "rc=$?"
section S1-ipvsadm
ipvsadm -S -n
section thresholds1-ipvsadm
ipvsadm -L -n --thresholds

# 2. Edited: the diff from the first table to the second, applied by halb.
ipvsadm -C
halb ipvs apply --table t1.json >/dev/null
section apply2
halb ipvs apply --from t1.json --table t2.json | grep '"changes"'
section S2
ipvsadm -S -n
section dump2
halb ipvs dump
ipvsadm -C
ipvsadm -R < t2.rules
section S2-ipvsadm
ipvsadm -S -n

# 3. Drift made with ipvsadm, repaired by reconciliation.
ipvsadm -C
halb ipvs apply --table t2.json >/dev/null
sh drift.sh
section drifted
ipvsadm -S -n
section reconcile
halb ipvs reconcile --table t2.json --own t1.json | grep '"changes"'
section S3
ipvsadm -S -n
section reconcile-again
halb ipvs reconcile --table t2.json --own t1.json | grep '"changes"'

# 4. twos, which this kernel may not have.
section twos-module
modprobe ip_vs_twos >/dev/null 2>&1; echo "rc=$?"
section twos
halb ipvs apply --table twos.json 2>&1; echo "rc=$?"
ipvsadm -S -n | grep twos

# 5. Timeouts.
section timeouts
halb ipvs timeouts --tcp 7200 --tcpfin 120 --udp 300 | tr -d ' \n'; echo
ipvsadm -L --timeout
section timeouts-udp-only
halb ipvs timeouts --udp 60 >/dev/null
ipvsadm -L --timeout

# 6. Sync daemons (which the kernel refuses while a service mixes families).
ipvsadm -C
ip link add eth0 type veth peer name eth0-peer
ip addr add 192.168.66.6/24 dev eth0
ip link set eth0 up
ip link set eth0-peer up
section daemon-master
halb ipvs daemon-start --state master --interface eth0 --syncid 7 --maxlen 1400 --group 224.0.0.82 --port 8849 --ttl 2 | tr -d ' \n'; echo
ipvsadm -L -n --daemon
section daemon-backup
halb ipvs daemon-start --state backup --interface eth0 --syncid 8 >/dev/null
ipvsadm -L -n --daemon
section daemon-stop
halb ipvs daemon-stop --state master | tr -d ' \n'; echo
halb ipvs daemon-stop --state backup | tr -d ' \n'; echo
ipvsadm -L -n --daemon

# 7. Traffic through a NAT service: client namespace -> director (this namespace) -> server.
ipvsadm -C
ip link del eth0
ip netns add client
ip netns add server
ip link add c-dir type veth peer name eth0 netns client
ip link add s-dir type veth peer name eth0 netns server
ip addr add 192.168.66.6/24 dev c-dir
ip addr add 192.168.67.1/24 dev s-dir
ip addr add 192.168.66.251/32 dev lo
ip link set c-dir up
ip link set s-dir up
echo 1 > /proc/sys/net/ipv4/ip_forward
ip netns exec client ip addr add 192.168.66.100/24 dev eth0
ip netns exec client ip link set lo up
ip netns exec client ip link set eth0 up
ip netns exec server ip addr add 192.168.67.2/24 dev eth0
ip netns exec server ip link set lo up
ip netns exec server ip link set eth0 up
ip netns exec server ip route add default via 192.168.67.1
mkdir -p /tmp/www
echo "hello from the real server" > /tmp/www/index.html
ip netns exec server httpd -p 8080 -h /tmp/www
halb ipvs apply --table nat.json >/dev/null
section http
# bash's /dev/tcp as the client: busybox's static wget cannot resolve even a numeric address.
for i in 1 2 3; do
    ip netns exec client timeout 10 bash -c 'exec 3<>/dev/tcp/192.168.66.251/80
        printf "GET /index.html HTTP/1.0\r\n\r\n" >&3; cat <&3' | tail -n 1
done
# The kernel folds its per-CPU counters into what it reports every 2 s.
for i in $(seq 100); do
    ipvsadm -L -n --stats --exact | grep -q '^TCP  192.168.66.251:80 *3 ' && break
    sleep 0.1
done
section stats
halb ipvs stats
section ipvsadm-stats
ipvsadm -L -n --stats --exact
section ipvsadm-list
ipvsadm -L -n
section connections
halb ipvs connections
section proc-conn
cat /proc/net/ip_vs_conn
section drop
halb ipvs drop-dest --service tcp:192.168.66.251:80 --dest 192.168.67.2:8080 | tr -d ' \n'; echo
cat /proc/sys/net/ipv4/vs/expire_nodest_conn
section conns-after-drop
for i in $(seq 50); do grep -qi ' C0A84302 ' /proc/net/ip_vs_conn || break; sleep 0.1; done
grep -ci ' C0A84302 ' /proc/net/ip_vs_conn

# 8. halb run while the kernel cannot load ip_vs_mh (its file hidden, as on a kernel built
# without it): the wrr service must land at once, and the mh one within seconds of the module
# coming back.
ms() {
    local t="${EPOCHREALTIME/./}"
    echo $((t / 1000))
}
ipvsadm -C
section hide-mh
rmmod ip_vs_mh; echo "rc=$?"
ipvs_dir="/lib/modules/$(uname -r)/kernel/net/netfilter/ipvs"
mkdir -p /tmp/hidden
mv "$ipvs_dir"/ip_vs_mh.ko* /tmp/hidden/
started=$(ms)
halb run -f daemon.conf --dataplane ipvs --control-socket /run/lab-halb.sock >/tmp/halb-run.log 2>&1 &
halb_pid=$!
until [ "$(ipvsadm -S -n | grep -c -- '^-a -t 192.168.66.251:3306 ')" = 2 ] ||
    [ $(($(ms) - started)) -gt 20000 ]; do
    sleep 0.05
done
section daemon-first
echo "ms=$(($(ms) - started))"
ipvsadm -S -n
mv /tmp/hidden/ip_vs_mh.ko* "$ipvs_dir"/
back=$(ms)
until ipvsadm -S -n | grep -q -- '^-a -t 192.168.66.251:2000 -r 192.168.66.254:2000 ' ||
    [ $(($(ms) - back)) -gt 90000 ]; do
    sleep 0.1
done
section daemon-retried
echo "ms=$(($(ms) - back))"
ipvsadm -S -n
kill -TERM "$halb_pid"
wait "$halb_pid"
section daemon-log
cat /tmp/halb-run.log
section end
"#;

/// `halb run`'s configuration for case 8: two NAT services with no checkers (their real servers
/// are up from the start), the first on a scheduler whose module the kernel will not find.
const DAEMON_CONF: &str = "
global_defs {
    router_id lab
}
virtual_server 192.168.66.251 2000 {
    lb_algo mh
    lb_kind NAT
    protocol TCP
    real_server 192.168.66.253 2000 {
        weight 1
    }
    real_server 192.168.66.254 2000 {
        weight 1
    }
}
virtual_server 192.168.66.251 3306 {
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    real_server 192.168.66.253 3306 {
        weight 1
    }
    real_server 192.168.66.254 3306 {
        weight 1
    }
}
";

const DAEMON_WRR: [&str; 3] = [
    "-A -t 192.168.66.251:3306 -s wrr",
    "-a -t 192.168.66.251:3306 -r 192.168.66.253:3306 -m -w 1",
    "-a -t 192.168.66.251:3306 -r 192.168.66.254:3306 -m -w 1",
];
const DAEMON_MH: [&str; 3] = [
    "-A -t 192.168.66.251:2000 -s mh",
    "-a -t 192.168.66.251:2000 -r 192.168.66.253:2000 -m -w 1",
    "-a -t 192.168.66.251:2000 -r 192.168.66.254:2000 -m -w 1",
];

// ---------------------------------------------------------------------------------------------

/// The machine's output split at `=== NAME` lines.
fn sections(stdout: &str) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in stdout.lines() {
        if let Some(name) = line.strip_prefix("=== ") {
            current = Some(name.to_string());
            map.insert(name.to_string(), Vec::new());
        } else if let Some(lines) = current.as_ref().and_then(|name| map.get_mut(name)) {
            lines.push(line.to_string());
        }
    }
    map
}

fn sorted(lines: impl IntoIterator<Item = impl Into<String>>) -> Vec<String> {
    let mut v: Vec<String> = lines.into_iter().map(Into::into).collect();
    v.sort();
    v
}

/// The number of changes in `halb ipvs apply|reconcile`'s `"changes": N` line.
fn changes(lines: &[String]) -> Option<usize> {
    let [line] = lines else { return None };
    line.trim()
        .strip_prefix("\"changes\":")?
        .trim()
        .trim_end_matches(',')
        .parse()
        .ok()
}

/// halb's JSON list of services, keyed by the service's key, for comparisons that ignore order.
fn by_key(services: &Value) -> BTreeMap<String, Value> {
    services
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| (s["key"].to_string(), s.clone()))
        .collect()
}

#[test]
fn halb_programs_ipvs_as_ipvsadm_does() -> Result<()> {
    halb_ipvs_vm::ensure_prerequisites()?;
    let work = tempfile::tempdir()?;
    let halb = halb_ipvs_vm::halb_binary::stripped_into(work.path())?;

    let t1 = table_one();
    let t2 = table_two();
    let twos = vec![svc(
        Kind::Tcp("192.168.66.251:2000"),
        "twos",
        vec![dst("192.168.66.253:2000", 1, Fwd::Dr)],
    )];
    let nat = vec![svc(
        Kind::Tcp("192.168.66.251:80"),
        "rr",
        vec![dst("192.168.67.2:8080", 1, Fwd::Nat)],
    )];
    let payload = Payload::new(SCRIPT)
        .file("t1.json", tables_json(&t1))
        .file("t2.json", tables_json(&t2))
        .file("twos.json", tables_json(&twos))
        .file("nat.json", tables_json(&nat))
        .file("t1.rules", rules(&t1, true).join("\n") + "\n")
        .file("t2.rules", rules(&t2, true).join("\n") + "\n")
        .file("drift.sh", DRIFT)
        .file("daemon.conf", DAEMON_CONF);

    let started = Instant::now();
    let output = KernelVm::new()?.extra_bin(&halb).run(&payload)?;
    eprintln!(
        "ipvs lab: initramfs + boot + payload in {:?}",
        started.elapsed()
    );
    if let Some(path) = std::env::var_os("IPVS_LAB_OUTPUT") {
        std::fs::write(&path, &output.stdout)?;
    }
    let out = sections(&output.stdout);
    let section = |name: &str| -> Vec<String> {
        out.get(name)
            .cloned()
            .unwrap_or_else(|| panic!("section {name} missing from:\n{}", output.stdout))
    };
    assert!(
        out.contains_key("end"),
        "the payload stopped early:\n{}",
        output.stdout
    );

    assert_eq!(section("available"), ["true", "rc=0"]);
    let info: Value = serde_json::from_str(&section("info").join("\n"))?;
    assert_eq!(info["version"], "1.2.1");

    // 1. What halb wrote is what the table says, as ipvsadm shows it and loads it.
    let changes1 = t1.len() + t1.iter().map(|s| s.dests.len()).sum::<usize>();
    assert_eq!(
        changes(&section("apply1")),
        Some(changes1),
        "{:?}",
        section("apply1")
    );
    assert_eq!(sorted(section("S1")), sorted(rules(&t1, false)));
    assert_eq!(section("restore1"), ["rc=0"]);
    assert_eq!(section("S1"), section("S1-ipvsadm"));
    assert_eq!(section("thresholds1"), section("thresholds1-ipvsadm"));
    assert!(
        section("thresholds1").iter().any(|l| l
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .starts_with("-> 192.168.66.253:53 100 10 ")),
        "{:#?}",
        section("thresholds1")
    );
    // And halb reads back exactly what it wrote.
    let dump1: Value = serde_json::from_str(&section("dump1").join("\n"))?;
    let want1: Value = t1.iter().map(Svc::to_json).collect();
    assert_eq!(by_key(&dump1), by_key(&want1));

    // 2. Edits.
    assert_eq!(sorted(section("S2")), sorted(rules(&t2, false)));
    assert_eq!(section("S2"), section("S2-ipvsadm"));
    let dump2: Value = serde_json::from_str(&section("dump2").join("\n"))?;
    let want2: Value = t2.iter().map(Svc::to_json).collect();
    assert_eq!(by_key(&dump2), by_key(&want2));

    // 3. Reconciliation: seven repairs, the foreign service untouched, then nothing to do.
    let drifted = section("drifted");
    assert!(drifted.contains(&"-A -t 192.168.66.251:3306 -s rr -p 300".to_string()));
    assert_eq!(
        changes(&section("reconcile")),
        Some(7),
        "{:?}",
        section("reconcile")
    );
    let mut want3 = rules(&t2, false);
    want3.extend(FOREIGN.iter().map(|s| s.to_string()));
    assert_eq!(sorted(section("S3")), sorted(want3));
    assert_eq!(changes(&section("reconcile-again")), Some(0));

    // 4. twos: applied when the kernel has it, refused with the reason when not.
    let twos_out = section("twos").join("\n");
    if section("twos-module") == ["rc=0"] {
        assert!(
            twos_out.contains("-A -t 192.168.66.251:2000 -s twos"),
            "{twos_out}"
        );
    } else {
        assert!(twos_out.contains("rc=1"), "{twos_out}");
        assert!(
            twos_out.contains("adding service TCP  192.168.66.251:2000 (scheduler twos)")
                && twos_out.contains("no IPVS scheduler twos (module ip_vs_twos)"),
            "{twos_out}"
        );
    }

    // 5. Timeouts.
    assert_eq!(
        section("timeouts"),
        [
            r#"{"tcp_s":7200,"tcp_fin_s":120,"udp_s":300}"#,
            "Timeout (tcp tcpfin udp): 7200 120 300"
        ]
    );
    assert_eq!(
        section("timeouts-udp-only"),
        ["Timeout (tcp tcpfin udp): 7200 120 60"]
    );

    // 6. Sync daemons.
    let master = section("daemon-master");
    assert_eq!(
        master[0],
        r#"[{"state":"Master","interface":"eth0","sync_id":7,"max_len":1400,"group":"224.0.0.82","port":8849,"ttl":2}]"#
    );
    assert_eq!(
        master[1..],
        ["master sync daemon (mcast=eth0, syncid=7, maxlen=1400, group=224.0.0.82, port=8849, ttl=2)"]
    );
    let backup = section("daemon-backup");
    assert!(
        backup
            .iter()
            .any(|l| l.starts_with("backup sync daemon (mcast=eth0, syncid=8")),
        "{backup:#?}"
    );
    let stop = section("daemon-stop");
    assert!(stop[0].starts_with(r#"[{"state":"Backup""#), "{stop:#?}");
    assert_eq!(stop[1..], ["[]"]);

    // 7. Traffic: three requests through the NAT service.
    assert_eq!(section("http"), ["hello from the real server"; 3]);
    let stats: Value = serde_json::from_str(&section("stats").join("\n"))?;
    let service = &stats[0];
    assert_eq!(
        service["key"],
        json!({"Addr": {"protocol": "Tcp", "addr": "192.168.66.251:80"}})
    );
    assert_eq!(service["counters"]["conns"], 3);
    let dest = &service["dests"][0];
    assert_eq!(dest["addr"], "192.168.67.2:8080");
    assert_eq!(dest["counters"]["conns"], 3);
    // The counters are ipvsadm's: `--stats --exact` prints the same numbers.
    let c = &service["counters"];
    let line = format!(
        "TCP 192.168.66.251:80 {} {} {} {} {}",
        c["conns"], c["inpkts"], c["outpkts"], c["inbytes"], c["outbytes"]
    );
    let ipvsadm_stats: Vec<String> = section("ipvsadm-stats")
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert!(
        ipvsadm_stats.contains(&line),
        "{line:?} not in {ipvsadm_stats:#?}"
    );
    assert!(c["inpkts"].as_u64().unwrap_or(0) >= 3 * 4, "{c}");
    assert!(c["outbytes"].as_u64().unwrap_or(0) > 3 * 27, "{c}");
    // ActiveConn / InActConn as ipvsadm lists them.
    let listed: Vec<String> = section("ipvsadm-list")
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let counts = format!(
        "-> 192.168.67.2:8080 Masq 1 {} {}",
        dest["active"], dest["inactive"]
    );
    assert!(listed.contains(&counts), "{counts:?} not in {listed:#?}");
    assert_eq!(
        dest["active"].as_u64().unwrap_or(0) + dest["inactive"].as_u64().unwrap_or(0),
        3
    );

    // The connection table, read from /proc, names the three connections.
    let conns: Value = serde_json::from_str(&section("connections").join("\n"))?;
    let conns = conns.as_array().context("connections are a list")?;
    assert_eq!(conns.len(), 3, "{conns:#?}\n{:#?}", section("proc-conn"));
    for conn in conns {
        assert_eq!(conn["protocol"], "Tcp");
        assert!(conn["client"]
            .as_str()
            .unwrap_or("")
            .starts_with("192.168.66.100:"));
        assert_eq!(conn["virtual_addr"], "192.168.66.251:80");
        assert_eq!(conn["dest"], "192.168.67.2:8080");
    }

    // Removing the destination drops its connections.
    assert_eq!(section("drop"), [r#"{"dropped":3}"#, "1"]);
    assert_eq!(section("conns-after-drop"), ["0"]);

    // 8. A failed service does not hold the others back, and is retried within seconds.
    let elapsed_ms =
        |lines: &[String]| -> Option<u64> { lines.first()?.strip_prefix("ms=")?.parse().ok() };
    assert_eq!(section("hide-mh"), ["rc=0"]);
    let log = section("daemon-log").join("\n");
    let first = section("daemon-first");
    let first_ms = elapsed_ms(&first).context("daemon-first: no ms= line")?;
    assert_eq!(
        sorted(first[1..].iter().cloned()),
        sorted(DAEMON_WRR),
        "the wrr service, alone, {first_ms} ms after halb started:\n{first:#?}\n{log}"
    );
    assert!(
        log.contains("adding service TCP  192.168.66.251:2000 (scheduler mh)")
            && log.contains("ENOENT")
            && log.contains("no IPVS scheduler mh (module ip_vs_mh)"),
        "{log}"
    );
    let retried = section("daemon-retried");
    let retried_ms = elapsed_ms(&retried).context("daemon-retried: no ms= line")?;
    let mut want = DAEMON_WRR.to_vec();
    want.extend(DAEMON_MH);
    assert_eq!(
        sorted(retried[1..].iter().cloned()),
        sorted(want),
        "{retried:#?}\n{log}"
    );
    assert!(
        retried_ms < 10_000,
        "the mh service came {retried_ms} ms after its module:\n{log}"
    );
    assert!(
        log.contains("IPVS table repaired after a failed change"),
        "{log}"
    );
    eprintln!(
        "ipvs lab: halb run put the wrr service in {first_ms} ms after starting, with the mh \
         service refused; the mh service landed {retried_ms} ms after its module came back"
    );

    eprintln!(
        "ipvs lab: {} lines of output, machine run {:?}",
        output.stdout.lines().count(),
        output.elapsed
    );
    Ok(())
}
