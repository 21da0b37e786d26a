"""The network lab the Python benchmarks share: hosts as network namespaces on one bridge.

Every host is a namespace whose eth0 sits on a bridge living in a namespace of its own, with
NET.HOST/24 on it and no route out of that subnet, so nothing a benchmark sends can leave the
machine. The namespaces' names end in the benchmark's pid, so that two runs never collide;
`close()` ends every process started through `spawn()` (by its process group) and deletes every
namespace, and is meant for a `finally`.
"""

import os
import resource
import signal
import subprocess
import sys


def sh(*argv, check=True):
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def raise_nofile():
    """Lifts this process's open-file limit to its hard limit (thousands of sockets)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib(pid):
    """The resident set of process `pid` in KiB (0 once it has gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


class Lab:
    """Hosts `hosts` ({tag: last octet}) on NET.0/24, namespaces named halbt-PREFIX-TAG-PID.

    `tmp`, when given, is where relative log paths go and the spawned processes' TMPDIR;
    `script`, the benchmark whose roles `role()` runs.
    """

    def __init__(self, prefix, hosts, net="192.168.66", tmp=None, script=None):
        self.net = net
        self.tmp = tmp
        self.script = script
        self.ns = {tag: f"halbt-{prefix}-{tag}-{os.getpid()}" for tag in ("br", *hosts)}
        self.procs = []
        try:
            for n in self.ns.values():
                sh("ip", "netns", "add", n)
                sh("ip", "-n", n, "link", "set", "lo", "up")
            br = self.ns["br"]
            sh("ip", "-n", br, "link", "add", "br0", "type", "bridge")
            sh("ip", "-n", br, "link", "set", "br0", "up")
            for tag, host in hosts.items():
                ns = self.ns[tag]
                sh("ip", "-n", br, "link", "add", f"p-{tag}", "type", "veth", "peer", "name",
                   "eth0", "netns", ns)
                sh("ip", "-n", br, "link", "set", f"p-{tag}", "master", "br0", "up")
                sh("ip", "-n", ns, "addr", "add", f"{net}.{host}/24", "dev", "eth0")
                sh("ip", "-n", ns, "link", "set", "eth0", "up")
        except BaseException:
            self.close()
            raise

    def exec(self, tag, *argv, check=True):
        """Runs a short command in host `tag`'s namespace and returns its result."""
        return sh("ip", "netns", "exec", self.ns[tag], *argv, check=check)

    def sysctl(self, tag, *settings):
        for setting in settings:
            self.exec(tag, "sysctl", "-qw", setting)

    def add_address(self, tag, address):
        sh("ip", "-n", self.ns[tag], "addr", "add", f"{address}/24", "dev", "eth0")

    def has_address(self, tag, address):
        out = sh("ip", "-n", self.ns[tag], "-o", "addr", "show", "dev", "eth0").stdout
        return f" {address}/" in out

    def spawn(self, tag, argv, log):
        """Starts `argv` in host `tag`'s namespace, in a process group of its own, its output
        appended to `log` (relative to `tmp` when that is set)."""
        out = open(os.path.join(self.tmp or "", log), "a")
        env = {**os.environ, "TMPDIR": self.tmp} if self.tmp else None
        p = subprocess.Popen(["ip", "netns", "exec", self.ns[tag], *argv], stdout=out,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, env=env)
        out.close()
        self.procs.append(p)
        return p

    def role(self, tag, log, *args):
        """Runs `SCRIPT --role ARGS...` (one of the benchmark's own roles) in host `tag`."""
        return self.spawn(tag, [sys.executable, str(self.script), "--role", *map(str, args)], log)

    def kill(self, p, sig=signal.SIGKILL):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        p.wait()

    def close(self, grace=10):
        """Ends what `spawn()` started (SIGTERM, then SIGKILL after `grace` seconds; SIGKILL
        at once with `grace=None`) and deletes the namespaces."""
        for p in reversed(self.procs):
            if p.poll() is not None:
                continue
            if grace is None:
                self.kill(p)
                continue
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill(p)
            except ProcessLookupError:
                pass
        for n in reversed(list(self.ns.values())):
            sh("ip", "netns", "del", n, check=False)


BANNER_SERVER = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_INET6);s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
    "s.bind(('::',int(sys.argv[1])));s.listen(64)\n"
    "while True:\n c,_=s.accept();c.sendall(sys.argv[2].encode());c.close()\n"
)


def start_banner(lab, tag, port):
    """A tiny server in host `tag` answering every connection to `port` with the tag, so
    that a client can tell which director holds the VIP."""
    lab.spawn(tag, [sys.executable, "-c", BANNER_SERVER, str(port), tag], os.devnull)


def probe_banner(lab, client, address, port, want, timeout):
    """Connects from host `client` to address:port until `want` answers; returns the wall
    time at which it did, or None after `timeout` seconds."""
    code = (
        "import socket,sys,time\n"
        f"end=time.monotonic()+{timeout}\n"
        "while time.monotonic()<end:\n"
        " try:\n"
        f"  c=socket.create_connection(('{address}',{port}),timeout=0.05);d=c.recv(64);c.close()\n"
        "  if d.decode()==sys.argv[1]:\n   print(time.time());sys.exit(0)\n"
        " except OSError: pass\n"
        " time.sleep(0.01)\n"
        "sys.exit(1)\n"
    )
    r = lab.exec(client, sys.executable, "-c", code, want, check=False)
    return float(r.stdout) if r.returncode == 0 else None

