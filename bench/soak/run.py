#!/usr/bin/env python3
"""Soak: a day of a director's life compressed into minutes, sampling halb's RSS along the way.

halb runs as a VRRP instance against a keepalived 2.2.7 peer and proxies a virtual server
whose real servers it health-checks, all at once, until each target is reached:

  checker cycles     TCP_CHECKs of 20 real servers every second (delay_loop 1)
  VRRP transitions   halb's priority moved below and above the peer's through a track_file
                     (VRRPv3, advert_int 0.1): each move makes halb leave or take MASTER
  proxied connections  clients open, use and close connections through the virtual server
                     (on the director's own address, so the VRRP moves do not stop them)

Full run: 10,000 checker cycles, 1,000 transitions, 1,000,000 connections (about 10 minutes
here). `--short`: a tenth of each (about a minute). halb's RSS is sampled every few seconds;
the first quarter of the samples is the warm-up; the verdict is whether every later sample is
within +-5 % of their median.

The segment: network namespaces on a bridge in another one, nothing routed out of them.
  dir    192.168.66.11  halb (priority 150, VIP 192.168.66.251; proxy on 192.168.66.11:8080)
  peer   192.168.66.12  keepalived 2.2.7 (priority 100)
  rs     192.168.66.21  real servers :9001-9020 (answer "OK" to a line)
  cli    192.168.66.100 the clients (and .101-.116 as source addresses)

    sudo bench/soak/run.py [--short] [--halb target/release/halb] [--keep]
"""

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import netlab  # noqa: E402  (bench/netlab.py)
from netlab import sh  # noqa: E402

SCRIPT = Path(__file__).resolve()
NET = "192.168.66"
VIP = f"{NET}.251"
DIRECTOR, PEER, RS, CLIENT = (f"{NET}.{h}" for h in (11, 12, 21, 100))
HOSTS = {"dir": 11, "peer": 12, "rs": 21, "cli": 100}
SOURCES = [f"{NET}.{h}" for h in range(101, 117)]
PORT = 8080
REAL_SERVERS = [9001 + i for i in range(20)]
METRICS = "http://127.0.0.1:9165/metrics"

FULL = dict(checks=10_000, transitions=1_000, connections=1_000_000)
SHORT = {k: v // 10 for k, v in FULL.items()}


def halb_file(flip):
    servers = "".join(
        f"    real_server {RS} {p} {{\n        weight 1\n"
        f"        TCP_CHECK {{\n            connect_timeout 1\n            retry 0\n        }}\n    }}\n"
        for p in REAL_SERVERS)
    return f"""global_defs {{
    router_id soak
    vrrp_version 3
}}
track_file flip {{
    file {flip}
    weight -100
}}
vrrp_instance SOAK {{
    state BACKUP
    interface eth0
    virtual_router_id 77
    priority 150
    advert_int 0.1
    track_file {{
        flip
    }}
    virtual_ipaddress {{
        {VIP}
    }}
}}
virtual_server {DIRECTOR} {PORT} {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
{servers}}}
"""


PEER_FILE = f"""global_defs {{
    router_id soak-peer
    vrrp_version 3
}}
vrrp_instance SOAK {{
    state BACKUP
    interface eth0
    virtual_router_id 77
    priority 100
    advert_int 0.1
    virtual_ipaddress {{
        {VIP}
    }}
}}
"""


# ---- the roles that run inside the namespaces --------------------------------------------------

async def role_servers(host, ports):
    """Answers "OK" to every line until the peer closes."""
    netlab.raise_nofile()

    async def serve(reader, writer):
        try:
            while await reader.readline():
                writer.write(b"OK\n")
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    servers = [await asyncio.start_server(serve, host, p, backlog=4096) for p in ports]
    await asyncio.gather(*(s.serve_forever() for s in servers))


async def role_clients(host, port, concurrency, count_file, stop_file):
    """`concurrency` loops of connect, "GET", read "OK", close, from the source addresses in
    turn; the running totals go to `count_file` every second."""
    netlab.raise_nofile()
    done = failed = 0
    stop = False

    async def one(i):
        nonlocal done, failed
        n = i
        while not stop:
            n += concurrency
            source = SOURCES[n % len(SOURCES)]
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port, local_addr=(source, 0)), 5)
                try:
                    writer.write(b"GET\n")
                    line = await asyncio.wait_for(reader.readline(), 5)
                    if line != b"OK\n":
                        raise ConnectionError(f"got {line!r}")
                finally:
                    writer.close()
                done += 1
            except (OSError, asyncio.TimeoutError):
                failed += 1
                await asyncio.sleep(0.05)

    async def report():
        nonlocal stop
        while True:
            Path(count_file + ".tmp").write_text(json.dumps(dict(done=done, failed=failed)))
            os.replace(count_file + ".tmp", count_file)
            if os.path.exists(stop_file):
                stop = True
                return
            await asyncio.sleep(1)

    reporter = asyncio.create_task(report())
    await asyncio.gather(*(one(i) for i in range(concurrency)))
    await reporter


# ---- the lab ----------------------------------------------------------------------------------

def new_lab(tmp):
    lab = netlab.Lab("soak", HOSTS, NET, tmp, SCRIPT)
    for a in SOURCES:
        lab.add_address("cli", a)
    # Every connection is closed first by the client and by the proxy: reuse their
    # TIME_WAIT ports (these namespaces only) rather than run out of them.
    for tag in ("cli", "dir"):
        lab.sysctl(tag, "net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=1024 65000")
    return lab


def halb_pid(wrapper):
    """The halb process under `ip netns exec` (which execs it: the same pid)."""
    return wrapper.pid


def checker_cycles(ns):
    """Probes halb has made: the count of its probe-duration histogram, over every series."""
    code = ("import urllib.request,sys;"
            f"sys.stdout.write(urllib.request.urlopen('{METRICS}',timeout=5).read().decode())")
    out = sh("ip", "netns", "exec", ns, sys.executable, "-c", code, check=False)
    total = 0
    for line in out.stdout.splitlines():
        if line.startswith("halb_checker_duration_seconds_count"):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def transitions(log):
    text = Path(log).read_text(errors="replace")
    return text.count("Entering MASTER STATE") + text.count("Entering BACKUP STATE")


def main_run(args):
    netlab.raise_nofile()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, raw sockets)")
    halb = str(Path(args.halb).resolve())
    if not Path(halb).exists():
        sys.exit(f"{halb} not found: cargo build --release -p halb (or pass --halb)")
    target = SHORT if args.short else FULL
    tmp = tempfile.mkdtemp(prefix="halb-soak-")
    conf, flip = os.path.join(tmp, "halb.conf"), os.path.join(tmp, "flip")
    Path(flip).write_text("0\n")
    Path(conf).write_text(halb_file(flip))
    Path(tmp, "peer.conf").write_text(PEER_FILE)
    stop_file, counts = os.path.join(tmp, "stop"), os.path.join(tmp, "clients.json")
    lab = new_lab(tmp)
    try:
        lab.role("rs", "servers.log", "servers", RS, *REAL_SERVERS)
        lab.spawn("peer", ["keepalived", "--dont-fork", "--log-console", "--log-detail", "--vrrp",
                           "-f", os.path.join(tmp, "peer.conf"), "-p", f"{tmp}/k.pid",
                           "-r", f"{tmp}/k-vrrp.pid", "-c", f"{tmp}/k-chk.pid"], "keepalived.log")
        halb_log = os.path.join(tmp, "halb.log")
        d = lab.spawn("dir", [halb, "run", "-f", conf, "--dataplane", "proxy",
                              "--control-socket", os.path.join(tmp, "halb.sock")], "halb.log")
        end = time.time() + 20
        while "Entering MASTER STATE" not in Path(halb_log).read_text(errors="replace"):
            if time.time() > end or d.poll() is not None:
                sys.exit(f"halb never became MASTER; see {tmp}/halb.log")
            time.sleep(0.1)
        pid = halb_pid(d)
        lab.role("cli", "clients.log", "clients", DIRECTOR, PORT, args.concurrency, counts,
                 stop_file)

        stop_flips = threading.Event()
        flip_errors = []

        def flipper():
            """Moves halb's priority across the peer's and waits for halb to follow."""
            value = 0
            while not stop_flips.is_set() and transitions(halb_log) < target["transitions"] + 1:
                before = transitions(halb_log)
                value = 1 - value
                tmp_flip = flip + ".tmp"
                Path(tmp_flip).write_text(f"{value}\n")
                os.replace(tmp_flip, flip)
                limit = time.time() + 10
                while transitions(halb_log) == before and not stop_flips.is_set():
                    if time.time() > limit:
                        flip_errors.append(f"no transition within 10 s of writing {value}")
                        break
                    time.sleep(0.02)
                time.sleep(random.uniform(0.05, 0.15))

        flips = threading.Thread(target=flipper, daemon=True)
        flips.start()
        started = time.monotonic()
        samples = []

        def progress():
            try:
                c = json.loads(Path(counts).read_text())
            except (OSError, ValueError):
                c = dict(done=0, failed=0)
            # The first MASTER entry is the start, not a transition.
            return dict(checks=checker_cycles(lab.ns["dir"]),
                        transitions=max(0, transitions(halb_log) - 1),
                        connections=c["done"], failed=c["failed"])

        print(f"targets: {target['checks']:,} checker cycles, {target['transitions']:,} VRRP "
              f"transitions, {target['connections']:,} proxied connections; {halb}")
        print(f"{'s':>6} {'RSS KiB':>9} {'checks':>8} {'transitions':>11} {'connections':>11} "
              f"{'failed':>6}")
        while True:
            p = progress()
            if d.poll() is not None:
                sys.exit(f"halb exited ({d.returncode}); see {tmp}/halb.log")
            rss = netlab.rss_kib(pid)
            t = time.monotonic() - started
            samples.append((t, rss, p))
            print(f"{t:6.0f} {rss:9} {p['checks']:8} {p['transitions']:11} "
                  f"{p['connections']:11} {p['failed']:6}", flush=True)
            if all(p[k] >= target[k] for k in target):
                break
            if t > args.timeout:
                print(f"timeout after {args.timeout} s before every target was reached")
                break
            time.sleep(args.every)
        stop_flips.set()
        Path(stop_file).touch()
        flips.join(15)

        warm = max(1, len(samples) // 4)
        after = [s[1] for s in samples[warm:]]
        if len(after) < 3:
            print("verdict: too few samples after the warm-up to judge")
            return 2
        median = statistics.median(after)
        low, high = min(after), max(after)
        worst = max(abs(low - median), abs(high - median)) / median * 100
        first, last = after[0], after[-1]
        print(f"warm-up: the first {warm} sample(s) ({samples[warm - 1][0]:.0f} s)")
        print(f"after it: {len(after)} samples, median {median:.0f} KiB, min {low}, max {high} "
              f"({worst:.1f} % from the median); first {first}, last {last} "
              f"({(last - first) / first * 100:+.1f} %)")
        for e in flip_errors[:5]:
            print("problem:", e)
        flat = worst <= 5.0
        print(f"verdict: RSS {'flat' if flat else 'NOT flat'} within +-5 % after warm-up")
        return 0 if flat else 1
    finally:
        Path(stop_file).touch()
        lab.close()
        if args.keep:
            print(f"files and logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--role":
        role, rest = sys.argv[2], sys.argv[3:]
        if role == "servers":
            asyncio.run(role_servers(rest[0], [int(p) for p in rest[1:]]))
        elif role == "clients":
            asyncio.run(role_clients(rest[0], int(rest[1]), int(rest[2]), rest[3], rest[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--short", action="store_true", help="a tenth of each target (about a minute)")
    ap.add_argument("--halb", default="target/release/halb")
    ap.add_argument("--concurrency", type=int, default=64, help="client connections at once")
    ap.add_argument("--every", type=float, default=5, help="seconds between RSS samples")
    ap.add_argument("--timeout", type=float, default=3600,
                    help="give up (and judge what was sampled) after this many seconds")
    ap.add_argument("--keep", action="store_true",
                    help="keep the working directory (the files, every log)")
    sys.exit(main_run(ap.parse_args()))


if __name__ == "__main__":
    main()
