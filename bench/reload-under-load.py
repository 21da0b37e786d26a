#!/usr/bin/env python3
"""Reload under load: halb's proxy data plane and HAProxy 2.6 (master-worker, reloaded with
SIGUSR2), side by side in one run, each serving C concurrent clients that open new connections
without pause for the whole run while each is reloaded N times, spread evenly over D seconds.

The segment: network namespaces on a bridge in another one, nothing routed out of them.
  dir    192.168.66.11  halb (MASTER, priority 150, VIP 192.168.66.251, proxy on VIP:8080)
                        and HAProxy (192.168.66.11:8090)
  peer   192.168.66.12  keepalived 2.2.7 as BACKUP (priority 100), the VRRP part of the seed
  rs1    192.168.66.21  real server :9001; nothing listens on :9003 (the dead real server)
  rs2    192.168.66.22  real servers :9002 and :9004 (the one added and removed)
  sorry  192.168.66.29  the sorry server :9009
  cli    192.168.66.100 the clients

Each client sends a line with its connection's id; each real server writes that id with its
own name to a shared file, answers with its name, holds the connection 0.2-1 s, then writes
END and closes. A client counts a connection served when it read both. A failed connection
whose real server (from the name line, or from that file when it was closed before the name
reached the client) was removed by a reload while the connection was open is counted apart
(the proxy closes those by design and logs how many); every other failure counts as failed.

halb's files cycle through: a weight changed, a real server added, the same removed, a virtual
server added, a checker's timing changed, a VIP added (virtual_ipaddress_excluded, so the
peer's advert check still matches), back to the first file, and a broken file (refused:
`halb reload` exits 4). HAProxy gets the same edits on its side (weight, server added and
removed, a frontend added, check interval, an unchanged file for the VIP, back, a broken file)
and a SIGUSR2 after each.

Figures: connections served and failed for each (halb's failures split by cause), the VIP's
absence in the director (probed every 10 ms by binding a socket to it), VRRP transitions of
the keepalived BACKUP, the dead real server down before and after every reload, halb's RSS
before the first reload, after every tenth, and after the last.

    sudo bench/reload-under-load.py [--clients 200] [--reloads 100] [--duration 300]
                                    [--halb target/release/halb] [--halb-arg=ARG]... [--keep]
"""

import argparse
import asyncio
import errno
import json
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[0]))
import netlab  # noqa: E402  (bench/netlab.py)
from netlab import sh  # noqa: E402

SCRIPT = Path(__file__).resolve()
NET = "192.168.66"
VIP, EXTRA_VIP = f"{NET}.251", f"{NET}.252"
DIRECTOR, PEER, RS1, RS2, SORRY, CLIENT = (f"{NET}.{h}" for h in (11, 12, 21, 22, 29, 100))
HALB_PORT, HAPROXY_PORT = 8080, 8090
A, B, DEAD, C = (RS1, 9001), (RS2, 9002), (RS1, 9003), (RS2, 9004)
SORRY_SERVER = (SORRY, 9009)
HOSTS = {"dir": 11, "peer": 12, "rs1": 21, "rs2": 22, "sorry": 29, "cli": 100}


def name(addr):
    return f"{addr[0]}:{addr[1]}"


# ---- the files --------------------------------------------------------------------------------

VRRP = """global_defs {
   router_id lvs50
}
vrrp_sync_group VG1 {
    group {
        INT
    }
}
vrrp_instance INT {
    state STATE
    interface eth0
    virtual_router_id 200
    priority PRIORITY
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass lvs50test
    }
EXTRA    virtual_ipaddress {
        192.168.66.251
    }
}
"""


def vrrp(state, priority, extra_vip=False):
    extra = f"    virtual_ipaddress_excluded {{\n        {EXTRA_VIP}\n    }}\n" if extra_vip else ""
    return (VRRP.replace("STATE", state).replace("PRIORITY", str(priority))
            .replace("EXTRA", extra))


# One step of the cycle: what the file holds. Index 7 is the broken file.
STEPS = [
    "a weight changed",
    "a real server added",
    "a real server removed",
    "a virtual server added",
    "a checker's timing changed",
    "a VIP added",
    "back to the first file",
    "a broken file",
]


def state_after(n):
    """The file's content after reload n (0 = the starting file): a dict of what is on."""
    s = dict(weight_b=1, with_c=False, second=False, timeout_a=1, extra_vip=False)
    for i in range(1, n + 1):
        step = (i - 1) % len(STEPS)
        if step == 0:
            s["weight_b"] = 3
        elif step == 1:
            s["with_c"] = True
        elif step == 2:
            s["with_c"] = False
        elif step == 3:
            s["second"] = True
        elif step == 4:
            s["timeout_a"] = 2
        elif step == 5:
            s["extra_vip"] = True
        elif step == 6:
            s = dict(weight_b=1, with_c=False, second=False, timeout_a=1, extra_vip=False)
    return s


def servers_of(s):
    """The real servers of the clients' virtual server in a file state."""
    out = [A, B, DEAD]
    if s["with_c"]:
        out.append(C)
    return {name(a) for a in out}


def halb_file(s, broken=False):
    def rs(addr, weight, timeout):
        return (f"    real_server {addr[0]} {addr[1]} {{\n        weight {weight}\n"
                f"        TCP_CHECK {{\n            connect_timeout {timeout}\n"
                f"            retry 0\n        }}\n    }}\n")

    servers = rs(A, 1, s["timeout_a"]) + rs(B, s["weight_b"], 1) + rs(DEAD, 1, 1)
    if s["with_c"]:
        servers += rs(C, 1, 1)
    text = vrrp("MASTER", 150, s["extra_vip"])
    text += (f"\nvirtual_server {VIP} {HALB_PORT} {{\n    delay_loop 1\n    lb_algo wrr\n"
             f"    lb_kind NAT\n    protocol TCP\n"
             f"    sorry_server {SORRY_SERVER[0]} {SORRY_SERVER[1]}\n{servers}}}\n")
    if s["second"]:
        text += (f"\nvirtual_server {VIP} {HALB_PORT + 1} {{\n    delay_loop 1\n    lb_algo rr\n"
                 f"    lb_kind NAT\n    protocol TCP\n{rs(A, 1, 1)}}}\n")
    if broken:
        text += f"virtual_server {VIP} 80 {{\n"
    return text


def haproxy_file(s, pidfile, broken=False):
    text = f"""global
    master-worker
    pidfile {pidfile}
    maxconn 4000
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend f
    bind {DIRECTOR}:{HAPROXY_PORT}
    default_backend b
backend b
    balance roundrobin
    server s1 {name(A)} weight 1 check inter {s["timeout_a"]}s
    server s2 {name(B)} weight {s["weight_b"]} check inter 1s
"""
    if s["with_c"]:
        text += f"    server s3 {name(C)} weight 1 check inter 1s\n"
    if s["second"]:
        text += f"frontend f2\n    bind {DIRECTOR}:{HAPROXY_PORT + 1}\n    default_backend b\n"
    if broken:
        text += "backend\n    server\n"
    return text


# ---- the roles that run inside the namespaces --------------------------------------------------

async def role_server(host, ports, seen_log):
    """Reads the client's id line and writes it to `seen_log` (so that a connection closed
    before the client read the name can still be placed), answers with its own name, holds the
    connection a little, then END."""
    netlab.raise_nofile()
    seen = open(seen_log, "a", buffering=1)

    def serve_as(me):
        async def serve(reader, writer):
            try:
                hello = await asyncio.wait_for(reader.readline(), 5)
                if hello:
                    seen.write(f"{hello.decode(errors='replace').strip()} {me}\n")
                writer.write(f"{me}\n".encode())
                await writer.drain()
                await asyncio.sleep(random.uniform(0.2, 1.0))
                writer.write(b"END\n")
                await writer.drain()
            except (OSError, asyncio.TimeoutError):
                pass
            finally:
                writer.close()
        return serve

    servers = [await asyncio.start_server(serve_as(f"{host}:{p}"), host, p, backlog=4096)
               for p in ports]
    await asyncio.gather(*(s.serve_forever() for s in servers))


async def role_clients(host, port, count, out, stop_file):
    """`count` clients connecting to host:port without pause until `stop_file` exists."""
    netlab.raise_nofile()
    served = {}
    failures = []
    stop = asyncio.Event()

    async def watch():
        while not os.path.exists(stop_file):
            await asyncio.sleep(0.1)
        stop.set()

    async def one(me):
        n = 0
        while not stop.is_set():
            n += 1
            cid = f"{me}-{n}"
            began, who, stage = time.time(), None, "connect"
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
                try:
                    stage = "name"
                    writer.write(f"{cid}\n".encode())
                    line = await asyncio.wait_for(reader.readline(), 5)
                    if not line:
                        raise ConnectionError("closed before the server's name")
                    who = line.decode(errors="replace").strip()
                    stage = "end"
                    rest = await asyncio.wait_for(reader.read(), 5)
                    if rest != b"END\n":
                        raise ConnectionError(f"closed without END ({rest!r})")
                finally:
                    writer.close()
                served[who] = served.get(who, 0) + 1
            except (OSError, asyncio.TimeoutError) as e:
                failures.append(dict(id=cid, began=began, failed=time.time(), server=who, stage=stage,
                                     error=f"{type(e).__name__}: {e}"))
                await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    await asyncio.gather(*(one(f"{port}.{i}") for i in range(count)))
    watcher.cancel()
    with open(out, "w") as f:
        json.dump(dict(served=served, failures=failures), f)


def role_vip_sampler(address, out, stop_file):
    """Every 10 ms: is `address` on this namespace? Binding to it tells without a netlink dump
    (ip_nonlocal_bind is 0 in a fresh namespace)."""
    samples = absent = run = longest = 0
    while not os.path.exists(stop_file):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((address, 0))
            run = 0
        except OSError as e:
            if e.errno != errno.EADDRNOTAVAIL:
                raise
            absent += 1
            run += 1
            longest = max(longest, run)
        finally:
            s.close()
        samples += 1
        time.sleep(0.01)
    with open(out, "w") as f:
        json.dump(dict(samples=samples, absent=absent, longest_absent_samples=longest), f)


# ---- the lab ----------------------------------------------------------------------------------

def new_lab(tmp):
    lab = netlab.Lab("reload-bench", HOSTS, NET, tmp, SCRIPT)
    if lab.exec("dir", "sysctl", "-n", "net.ipv4.ip_nonlocal_bind").stdout.strip() != "0":
        lab.close()
        raise RuntimeError("ip_nonlocal_bind is on in the director: the VIP probe needs it off")
    return lab


def dead_is_down(halb, sock):
    out = sh(halb, "status", "--json", "--control-socket", sock, check=False)
    if out.returncode != 0:
        return False
    for vs in json.loads(out.stdout)["virtual_servers"]:
        for rs in vs["real_servers"]:
            if rs["addr"] == name(DEAD):
                return not rs["alive"]
    return False


def attribute(failures, removals, margin=0.5):
    """Splits failures into those on a real server the file removed while the connection was
    open (a removal reload's window overlaps the connection's life) and all others."""
    by_removal, others = [], []
    for f in failures:
        hit = f["server"] is not None and any(
            f["server"] in removed and f["began"] <= end + margin and f["failed"] >= start - margin
            for start, end, removed in removals)
        (by_removal if hit else others).append(f)
    return by_removal, others


def main_run(args):
    netlab.raise_nofile()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, raw sockets)")
    halb = str(Path(args.halb).resolve())
    if not Path(halb).exists():
        sys.exit(f"{halb} not found: cargo build --release -p halb (or pass --halb)")
    tmp = tempfile.mkdtemp(prefix="halb-reload-bench-")
    conf, hconf = os.path.join(tmp, "halb.conf"), os.path.join(tmp, "haproxy.cfg")
    hpid, sock = os.path.join(tmp, "haproxy.pid"), os.path.join(tmp, "halb.sock")
    stop_file = os.path.join(tmp, "stop")
    state = state_after(0)
    Path(conf).write_text(halb_file(state))
    Path(hconf).write_text(haproxy_file(state, hpid))
    Path(tmp, "peer.conf").write_text(vrrp("BACKUP", 100))
    lab = new_lab(tmp)
    try:
        seen_log = os.path.join(tmp, "seen.txt")
        lab.role("rs1", "rs1.log", "server", seen_log, RS1, A[1])
        lab.role("rs2", "rs2.log", "server", seen_log, RS2, B[1], C[1])
        lab.role("sorry", "sorry.log", "server", seen_log, SORRY, SORRY_SERVER[1])
        d = lab.spawn("dir", [halb, "run", "-f", conf, "--dataplane", "proxy",
                              "--control-socket", sock, *args.halb_arg], "halb.log")
        end = time.time() + 15
        while f" {VIP}/" not in sh("ip", "-n", lab.ns["dir"], "-o", "addr", "show").stdout:
            if time.time() > end or d.poll() is not None:
                sys.exit(f"halb never took the VIP; see {tmp}/halb.log")
            time.sleep(0.1)
        peer_log = os.path.join(tmp, "keepalived.log")
        lab.spawn("peer", ["keepalived", "--dont-fork", "--log-console", "--log-detail", "--vrrp",
                           "-f", os.path.join(tmp, "peer.conf"), "-p", f"{tmp}/k.pid",
                           "-r", f"{tmp}/k-vrrp.pid", "-c", f"{tmp}/k-chk.pid"], "keepalived.log")
        hap = lab.spawn("dir", ["haproxy", "-W", "-f", hconf], "haproxy.log")
        end = time.time() + 15
        while not (dead_is_down(halb, sock) and "Entering BACKUP STATE" in Path(peer_log).read_text()):
            if time.time() > end:
                sys.exit(f"no steady start (dead server up or peer not BACKUP); see {tmp}")
            time.sleep(0.2)
        lab.role("dir", "vip-sampler.log", "vip-sampler", VIP, f"{tmp}/vip.json", stop_file)
        lab.role("cli", "clients-halb.log", "clients", VIP, HALB_PORT, args.clients,
                 f"{tmp}/clients-halb.json", stop_file)
        lab.role("cli", "clients-haproxy.log", "clients", DIRECTOR, HAPROXY_PORT, args.clients,
                 f"{tmp}/clients-haproxy.json", stop_file)
        interval = args.duration / args.reloads
        time.sleep(min(interval, 5))  # the clients reach their full number first
        rss = [("before", netlab.rss_kib(d.pid))]
        removals_halb, removals_haproxy = [], []
        applied = refused = good = broken_total = down_before = down_after = 0
        started = time.monotonic()
        for n in range(1, args.reloads + 1):
            # Evenly over the duration, whatever one reload took.
            time.sleep(max(0.0, started + (n - 1) * interval - time.monotonic()))
            broken = (n - 1) % len(STEPS) == len(STEPS) - 1
            # A broken step changes nothing in the file's content: it appends an open block.
            before, state_now = state, state_after(n)
            Path(conf).write_text(halb_file(state_now, broken))
            Path(hconf).write_text(haproxy_file(state_now, hpid, broken))
            down_before += dead_is_down(halb, sock)
            t0 = time.time()
            out = sh(halb, "reload", "--control-socket", sock, check=False)
            t1 = time.time()
            os.kill(hap.pid, signal.SIGUSR2)
            removed = servers_of(before) - servers_of(state_now)
            if removed:
                removals_halb.append((t0, t1, removed))
                removals_haproxy.append((t1, t1, removed))
            if broken:
                broken_total += 1
                refused += out.returncode == 4
            else:
                good += 1
                applied += out.returncode == 0
                state = state_now
            down_after += dead_is_down(halb, sock)
            if n % 10 == 0:
                rss.append((f"after {n}", netlab.rss_kib(d.pid)))
        took = time.monotonic() - started
        rss.append(("last reload", netlab.rss_kib(d.pid)))
        time.sleep(interval)
        Path(stop_file).touch()
        for p in lab.procs:
            if p.args[-1] == stop_file:
                p.wait(30)
        time.sleep(2)
        rss.append(("load stopped", netlab.rss_kib(d.pid)))
        halb_alive = d.poll() is None

        res = {k: json.loads(Path(tmp, f"clients-{k}.json").read_text())
               for k in ("halb", "haproxy")}
        # A connection closed before its client read the name: the real server that got the
        # client's id line, if one did.
        wanted = {f["id"] for k in res for f in res[k]["failures"] if f["server"] is None}
        placed = {}
        with open(seen_log) as seen:
            for line in seen:
                cid, _, server = line.strip().partition(" ")
                if cid in wanted:
                    placed[cid] = server
        for k in res:
            for f in res[k]["failures"]:
                if f["server"] is None and f["id"] in placed:
                    f["server"], f["placed_by"] = placed[f["id"]], "the real server's log"
        vip = json.loads(Path(tmp, "vip.json").read_text())
        peer_text = Path(peer_log).read_text(errors="replace")
        entering = [l for l in peer_text.splitlines() if "Entering " in l and " STATE" in l]
        closed_in_log = 0
        for line in Path(tmp, "halb.log").read_text(errors="replace").splitlines():
            if "removed from the configuration" in line and "Closed " in line:
                closed_in_log += int(line.split("Closed ")[1].split()[0])

        print(f"{args.reloads} reloads over {took:.0f} s ({interval:.1f} s apart), "
              f"{args.clients} concurrent clients for halb and for HAProxy, {halb}")
        print(f"{'':44} {'halb':>10} {'haproxy':>10}")
        split = {k: attribute(res[k]["failures"],
                              removals_halb if k == "halb" else removals_haproxy)
                 for k in res}
        rows = [
            ("connections served", lambda k: sum(res[k]["served"].values())),
            ("connections failed (all)", lambda k: len(res[k]["failures"])),
            ("  on a real server removed while open", lambda k: len(split[k][0])),
            ("    (placed by the real server's log)",
             lambda k: sum("placed_by" in f for f in split[k][0])),
            ("  failed otherwise", lambda k: len(split[k][1])),
            ("served by the sorry server", lambda k: res[k]["served"].get(name(SORRY_SERVER), 0)),
        ]
        for label, f in rows:
            print(f"{label:<44} {f('halb'):>10} {f('haproxy'):>10}")
        for k in res:
            removals = removals_halb if k == "halb" else removals_haproxy
            for f in split[k][1][:10]:
                # How far from the nearest reload that removed a real server: a connection the
                # proxy closed before any real server read its id would fail right then.
                near = min((f["failed"] - end for _, end, _ in removals), key=abs, default=None)
                when = f", {near * 1000:+.0f} ms from a removal" if near is not None else ""
                print(f"  {k} failure ({f['stage']}{when}): {f['error']}")
        print(f"halb's log: {closed_in_log} connection(s) closed because their real server was removed")
        print(f"VIP absent in the director: {vip['absent']} of {vip['samples']} samples "
              f"(every 10 ms), longest {vip['longest_absent_samples']} in a row")
        print(f"keepalived BACKUP: {len(entering)} state entries "
              f"({len(entering) - 1} transitions after its first BACKUP), "
              f"MASTER {sum('Entering MASTER STATE' in l for l in entering)} times")
        print(f"halb: {applied}/{good} files applied, {refused}/{broken_total} broken files refused "
              f"(exit 4); dead real server down before {down_before}/{args.reloads} reloads, "
              f"after {down_after}/{args.reloads}; still running: {halb_alive}")
        print("halb RSS (KiB): " + ", ".join(f"{w} {v}" for w, v in rss) +
              f"; last reload / before = {rss[-2][1] / max(rss[0][1], 1):.2f}")
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
        if role == "server":
            asyncio.run(role_server(rest[1], [int(p) for p in rest[2:]], rest[0]))
        elif role == "clients":
            asyncio.run(role_clients(rest[0], int(rest[1]), int(rest[2]), rest[3], rest[4]))
        elif role == "vip-sampler":
            role_vip_sampler(*rest)
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--reloads", type=int, default=100)
    ap.add_argument("--duration", type=float, default=300, help="seconds the reloads are spread over")
    ap.add_argument("--halb", default="target/release/halb")
    ap.add_argument("--halb-arg", action="append", default=[],
                    help="one more argument for `halb run` (as --halb-arg=--http-listen=none)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the working directory (the files, every log)")
    main_run(ap.parse_args())


if __name__ == "__main__":
    main()
