#!/usr/bin/env python3
"""Reload under load: halb's proxy data plane and HAProxy 2.6 (master-worker, reloaded with
SIGUSR2), side by side in one run, each serving C concurrent clients that open new connections
without pause while it is reloaded N times.

halb cycles through files that change a weight, add and remove a real server, add a virtual
server, change a checker's timing and (every seventh reload) a broken file that must be
refused; HAProxy cycles a weight. A real server that is down (nothing listens) must stay down
in halb after every reload. Figures: connections served and failed for each, halb's refused
files, and halb's RSS after the reloads against before.

Everything runs on loopback in the root namespace: backends on 127.0.0.1, halb's virtual
address 127.77.3.1, HAProxy's 127.77.2.1. It does not cover the VIP and VRRP (the test
`crates/halb/tests/reload_under_load.rs` does, beside keepalived). Every process it starts is
ended by pid.

    sudo bench/reload-under-load.py [--clients 200] [--reloads 100] [--halb target/debug/halb]
"""

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BACKENDS = [25001, 25002, 25003]
DEAD = 25009
HALB_VIP, HALB_PORT = "127.77.3.1", 25100
HAPROXY_VIP, HAPROXY_PORT = "127.77.2.1", 25200


def halb_file(step, broken=False):
    weight = 1 + step % 3
    servers = [(25001, 1, 1), (25002, weight, 1), (DEAD, 1, 1)]
    if step % 2:
        servers.append((25003, 1, 1))
    if step % 5 == 4:
        servers[0] = (25001, 1, 2)  # a checker's timing
    text = "".join(
        f"""
virtual_server {HALB_VIP} {HALB_PORT} {{
    delay_loop 1
    lb_algo wrr
    lb_kind NAT
    protocol TCP
"""
        for _ in [0]
    )
    for port, w, timeout in servers:
        text += f"""    real_server 127.0.0.1 {port} {{
        weight {w}
        TCP_CHECK {{
            connect_timeout {timeout}
            retry 0
        }}
    }}
"""
    text += "}\n"
    if step % 4 == 3:
        text += f"""
virtual_server {HALB_VIP} {HALB_PORT + 1} {{
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 127.0.0.1 25001 {{
        weight 1
    }}
}}
"""
    if broken:
        text += "virtual_server 127.77.3.1 80 {\n"
    return text


def haproxy_file(step, pidfile):
    weight = 1 + step % 3
    return f"""global
    master-worker
    pidfile {pidfile}
    maxconn 4000
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend f
    bind {HAPROXY_VIP}:{HAPROXY_PORT}
    default_backend b
backend b
    balance roundrobin
    server s1 127.0.0.1:25001 weight 1 check inter 1s
    server s2 127.0.0.1:25002 weight {weight} check inter 1s
"""


async def backend(port):
    async def serve(reader, writer):
        writer.write(b"OK\n")
        try:
            await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", port, backlog=1024)


async def clients(addr, count, stop, tally):
    async def one():
        while not stop.is_set():
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(*addr), 5
                )
                data = await asyncio.wait_for(reader.read(), 5)
                writer.close()
                tally["ok" if data == b"OK\n" else "failed"] += 1
            except (OSError, asyncio.TimeoutError):
                tally["failed"] += 1

    await asyncio.gather(*(one() for _ in range(count)))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def dead_is_down(halb, socket):
    out = subprocess.run(
        [halb, "status", "--json", "--control-socket", socket],
        capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        return False
    for vs in json.loads(out.stdout)["virtual_servers"]:
        for rs in vs["real_servers"]:
            if rs["addr"] == f"127.0.0.1:{DEAD}":
                return not rs["alive"]
    return False


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--reloads", type=int, default=100)
    ap.add_argument("--interval", type=float, default=0.3, help="seconds between reloads")
    ap.add_argument("--halb", default="target/debug/halb")
    ap.add_argument("--keep", action="store_true",
                    help="keep the working directory (the files, halb's and HAProxy's logs)")
    args = ap.parse_args()
    import resource
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = tempfile.mkdtemp(prefix="halb-reload-bench-")
    conf = os.path.join(tmp, "keepalived.conf")
    socket = os.path.join(tmp, "halb.sock")
    hconf = os.path.join(tmp, "haproxy.cfg")
    hpid = os.path.join(tmp, "haproxy.pid")
    with open(conf, "w") as f:
        f.write(halb_file(0))
    with open(hconf, "w") as f:
        f.write(haproxy_file(0, hpid))
    servers = [await backend(p) for p in BACKENDS]
    procs = []
    try:
        halb = subprocess.Popen(
            [args.halb, "run", "-f", conf, "--dataplane", "proxy", "--control-socket", socket],
            stdout=open(os.path.join(tmp, "halb.log"), "w"), stderr=subprocess.STDOUT,
        )
        procs.append(halb)
        haproxy = subprocess.Popen(
            ["haproxy", "-W", "-f", hconf],
            stdout=open(os.path.join(tmp, "haproxy.log"), "w"), stderr=subprocess.STDOUT,
        )
        procs.append(haproxy)
        deadline = time.time() + 15
        while not dead_is_down(args.halb, socket):
            if time.time() > deadline:
                sys.exit(f"halb never took the dead server out; see {tmp}/halb.log")
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)
        stop = asyncio.Event()
        tallies = {"halb": {"ok": 0, "failed": 0}, "haproxy": {"ok": 0, "failed": 0}}
        load = [
            asyncio.create_task(clients((HALB_VIP, HALB_PORT), args.clients, stop, tallies["halb"])),
            asyncio.create_task(
                clients((HAPROXY_VIP, HAPROXY_PORT), args.clients, stop, tallies["haproxy"])
            ),
        ]
        await asyncio.sleep(1)
        rss_before = rss_kib(halb.pid)
        refused = applied = stayed_down = 0
        started = time.time()
        for n in range(1, args.reloads + 1):
            broken = n % 7 == 0
            with open(conf, "w") as f:
                f.write(halb_file(n, broken))
            with open(hconf, "w") as f:
                f.write(haproxy_file(n, hpid))
            out = await asyncio.to_thread(
                subprocess.run,
                [args.halb, "reload", "--control-socket", socket],
                capture_output=True, text=True, check=False,
            )
            if broken:
                refused += out.returncode == 4
            else:
                applied += out.returncode == 0
            stayed_down += await asyncio.to_thread(dead_is_down, args.halb, socket)
            haproxy.send_signal(signal.SIGUSR2)
            await asyncio.sleep(args.interval)
        took = time.time() - started
        await asyncio.sleep(2)
        stop.set()
        await asyncio.gather(*load)
        rss_after = rss_kib(halb.pid)
        closed_removed = 0
        with open(os.path.join(tmp, "halb.log")) as f:
            for line in f:
                if "removed from the configuration" in line and " Closed " in line:
                    closed_removed += int(line.split(" Closed ")[1].split()[0])
        broken_total = args.reloads // 7
        print(f"{args.reloads} reloads each in {took:.1f} s, {args.clients} concurrent clients each")
        print(f"{'':24} {'halb':>10} {'haproxy':>10}")
        for what in ("ok", "failed"):
            print(f"connections {what:<12} {tallies['halb'][what]:>10} {tallies['haproxy'][what]:>10}")
        print(f"of halb's failed: {closed_removed} closed because their real server was removed "
              f"(counted in its log)")
        print(f"halb: {applied}/{args.reloads - broken_total} files applied, "
              f"{refused}/{broken_total} broken files refused (exit 4), "
              f"dead server down after {stayed_down}/{args.reloads} reloads")
        print(f"halb RSS: {rss_before} KiB before, {rss_after} KiB after "
              f"({rss_after / max(rss_before, 1):.2f}x)")
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        for s in servers:
            s.close()
        if args.keep:
            print(f"files and logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
