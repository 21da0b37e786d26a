#!/bin/bash
# The reload payload, run by the IPVS VM's /init as /payload/run.sh.
#
# Two copies of the same LAN, one per daemon (IPVS state is per network namespace, so they do not
# see each other): on bridge brk keepalived directs, on brh halb. In each, every host a network
# namespace (prefix k- or h-) with no route out of 10.0.0.0/24: cl 10.0.0.10 (client), d1
# 10.0.0.2 (director), r1..r4 10.0.0.21..24 (direct-routing real servers echoing lines on :9000
# and :9001). Nothing answers at 10.0.0.25, the real server that stays down. VIP 10.0.0.100.
#
# Both daemons start from configs/base.conf, each traced by strace (the netlink messages it
# sends), and a client in each LAN holds one connection through the VIP, a line every second.
# Then every line "FILE NAME" of /payload/steps is applied to both at once: the file copied over
# the running one, keepalived sent SIGHUP, `halb reload` run; once both tables have settled, each
# director's table (`ipvsadm -S -n`), counters and addresses are printed. At the end the daemons
# stop and their traces are reduced to the IPVS commands they sent, with times, so that the
# caller can tell which step sent which. Results are printed in sections that start with
# "@@ipvs-reload@@ NAME".
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u
# shellcheck source=lan.sh
source /payload/lan.sh

MARK='@@ipvs-reload@@'
VIP=10.0.0.100
DEAD=10.0.0.25
PREFIXES="k h"

daemon_of() {
    if [ "$1" = k ]; then echo keepalived; else echo halb; fi
}

setup() {
    local p i
    modprobe ip_vs
    busybox syslogd -O /tmp/syslog.log
    for p in $PREFIXES; do
        bridge "br$p"
        host "$p-cl" 10.0.0.10 "br$p"
        host "$p-d1" 10.0.0.2 "br$p"
        for i in 1 2 3 4; do
            host "$p-r$i" "10.0.0.2$i" "br$p"
            ip netns exec "$p-r$i" busybox nc -ll -p 9000 -e cat &
            ip netns exec "$p-r$i" busybox nc -ll -p 9001 -e cat &
            ip netns exec "$p-r$i" halb realserver start --vip "$VIP"
        done
    done
    # The generic-netlink family id of IPVS, the message type of every IPVS command.
    IPVS_FAMILY="$(strace -f -xx -e trace=sendmsg,sendto ipvsadm -L -n 2>&1 >/dev/null |
        grep -o 'nlmsg_type=0x[0-9a-f]*' | grep -v '=0x10$' | head -n 1 | cut -d= -f2)"
    echo "ipvs_family: $IPVS_FAMILY"
    # Let the bridge ports forward before anything counts on them.
    sleep 2
}

# start_daemon P: the daemon of LAN P on its director, under strace (only the calls that can
# carry an IPVS command stop it: --seccomp-bpf).
start_daemon() {
    local p="$1"
    cp /payload/configs/base.conf "/tmp/$p.conf"
    local trace=(strace -f --seccomp-bpf -ttt -xx -s 4096 -e trace=sendmsg,sendto,setsockopt
        -o "/tmp/$p.trace")
    if [ "$p" = k ]; then
        ip netns exec "$p-d1" "${trace[@]}" keepalived -n -l -D -f "/tmp/$p.conf" \
            -p "/run/$p-k.pid" -c "/run/$p-kc.pid" -r "/run/$p-kv.pid" -b "/run/$p-kb.pid" \
            >"/tmp/$p.log" 2>&1 &
    else
        ip netns exec "$p-d1" "${trace[@]}" halb run -f "/tmp/$p.conf" --dataplane ipvs \
            --control-socket "/run/$p-halb.sock" >"/tmp/$p.log" 2>&1 &
    fi
    echo $! >"/tmp/$p.strace.pid"
}

# daemon_pid P: the traced daemon's pid (strace's child; busybox has no pgrep).
daemon_pid() {
    local want stat pid comm state ppid rest
    want="$(cat "/tmp/$1.strace.pid")"
    for stat in /proc/[0-9]*/stat; do
        read -r pid comm state ppid rest <"$stat" 2>/dev/null || continue
        if [ "$ppid" = "$want" ]; then
            echo "$pid"
            return
        fi
    done
}

stop_daemon() {
    local p="$1" pid tracer i
    pid="$(daemon_pid "$p")"
    tracer="$(cat "/tmp/$p.strace.pid")"
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
    for i in $(seq 100); do
        kill -0 "$tracer" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$tracer" 2>/dev/null; then
        echo "$(daemon_of "$p") did not stop within 10 s of SIGTERM"
        [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
        sleep 1
        kill -KILL "$tracer" 2>/dev/null
    fi
    wait "$tracer" 2>/dev/null
}

table() {
    ip netns exec "$1-d1" ipvsadm -S -n | sort
}

# signature PID: the IPVS table of PID's network namespace without its connection counts, into
# SIG, read from /proc without starting a process (the machine has one emulated CPU).
signature() {
    local a b c d rest
    SIG=""
    while read -r a b c d rest; do
        if [ "$a" = "->" ]; then
            SIG+="$a $b $c $d;"
        else
            SIG+="$a $b $c $d $rest;"
        fi
    done <"/proc/$1/net/ip_vs"
}

# ready P: the VIP is up, both real servers of the first file are in and the dead one is out.
ready() {
    local t
    ip -n "$1-d1" -4 addr show dev eth0 | grep -q "inet $VIP/" || return 1
    t="$(table "$1")"
    echo "$t" | grep -q -- "-r 10.0.0.21:9000" && echo "$t" | grep -q -- "-r 10.0.0.22:9000" &&
        ! echo "$t" | grep -q -- "-r $DEAD:"
}

# settle: both tables and both directors' addresses (not their lifetimes) unchanged over three polls 500 ms apart, 1 s
# after the change at the earliest (keepalived applies a SIGHUP in the background), 60 s at most.
settle() {
    local prev="" cur same=0 polls=0 started limit p
    started="$(now_ms)"
    sleep 1
    limit=$((started + 60000))
    while [ "$(now_ms)" -lt "$limit" ]; do
        cur=""
        for p in $PREFIXES; do
            signature "${PIDS[$p]}"
            # The addresses alone: halb's VIPs carry a lease whose remaining lifetime `ip`
            # prints and which changes at every poll.
            cur+="$SIG|$(ip -n "$p-d1" -4 -o addr show dev eth0 | awk '{print $4}')|"
        done
        polls=$((polls + 1))
        if [ "$cur" = "$prev" ]; then
            same=$((same + 1))
            if [ "$same" -ge 3 ]; then
                echo "settled_after_ms $(($(now_ms) - started)) polls $polls"
                return 0
            fi
        else
            same=0
        fi
        prev="$cur"
        sleep 0.5
    done
    echo "settle: the tables kept changing for 60 s"
}

# report P: what the director of LAN P holds now.
report() {
    local p="$1"
    ip netns exec "$p-d1" sh -c \
        'ipvsadm -S -n | sort | sed "s/^/table /"; ipvsadm -L -n --stats --exact | sed "s/^/stats /"'
    ip -n "$p-d1" -4 -o addr show dev eth0 | awk '{print "vip " $4}' | sort
}

# client P: one connection to VIP:9000 from P-cl that sends a numbered line every second and
# reads its echo (10 s at most: a stall, not a slow machine), until /tmp/P.stop appears. It waits
# by reading a FIFO nobody writes (no process started per line: the machine has one slow CPU).
client() {
    local p="$1"
    mkfifo "/tmp/$p.pace"
    ip netns exec "$p-cl" bash -c '
        trap "" PIPE
        exec 3<>/dev/tcp/'"$VIP"'/9000 || { echo "client: connect failed"; exit 0; }
        exec 4<>/tmp/'"$p"'.pace
        i=0
        while [ ! -e /tmp/'"$p"'.stop ]; do
            i=$((i + 1))
            echo "line $i" >&3 2>/dev/null ||
                { echo "client: ended at ${EPOCHREALTIME} writing line $i"; exit 0; }
            read -r -t 10 l <&3
            rc=$?
            [ "$rc" -eq 0 ] ||
                { echo "client: ended at ${EPOCHREALTIME} reading line $i (rc $rc)"; exit 0; }
            [ "$l" = "line $i" ] ||
                { echo "client: ended at ${EPOCHREALTIME}: line $i answered with \"$l\""; exit 0; }
            [ "$i" -eq 3 ] && touch /tmp/'"$p"'.connected
            read -r -t 1 -u 4
        done
        echo "client: open, $i lines echoed"
    ' >"/tmp/$p.client.log" 2>&1 &
    echo $! >"/tmp/$p.client.pid"
}

# ipvs_commands P: every IPVS command in P's trace as "TIME HEX" (the generic-netlink message
# after its netlink header), several per line when one call sent several.
ipvs_commands() {
    awk -v fam="nlmsg_type=$IPVS_FAMILY " '
        {
            t = ""
            for (f = 1; f <= 3; f++) if ($f ~ /^[0-9]+\.[0-9]+$/) { t = $f; break }
            line = $0
            while ((i = index(line, fam)) > 0) {
                line = substr(line, i + length(fam))
                j = index(line, "}, \"")
                if (j == 0) break
                line = substr(line, j + 4)
                k = index(line, "\"")
                print t, substr(line, 1, k - 1)
                line = substr(line, k + 1)
            }
        }' "/tmp/$1.trace"
    # The older socket-option interface, had a daemon used it.
    grep -c 'setsockopt([^,]*, SOL_IP, 0x4[89]' "/tmp/$1.trace" | sed 's/^/sockopt_commands /'
}

setup
for p in $PREFIXES; do
    start_daemon "$p"
done
for p in $PREFIXES; do
    if ! wait_for 120 ready "$p"; then
        section "failed $(daemon_of "$p")"
        echo "the director never became ready"
        ip netns exec "$p-d1" ipvsadm -S -n
        tail -n 40 "/tmp/$p.log"
        section end
        exit 0
    fi
done
declare -A PIDS
for p in $PREFIXES; do
    PIDS[$p]="$(daemon_pid "$p")"
done
settle
for p in $PREFIXES; do
    client "$p"
done
for p in $PREFIXES; do
    wait_for 30 test -e "/tmp/$p.connected" || echo "the $(daemon_of "$p") client never connected"
done
section "step 0 start"
for p in $PREFIXES; do
    echo "$p applied $EPOCHREALTIME"
    report "$p" | sed "s/^/$p /"
done

n=0
while read -r file name; do
    n=$((n + 1))
    for p in $PREFIXES; do
        cp "/payload/configs/$file" "/tmp/$p.conf"
    done
    section "step $n $name"
    echo "k applied $EPOCHREALTIME"
    kill -HUP "$(cat /run/k-k.pid)"
    echo "h applied $EPOCHREALTIME"
    ip netns exec h-d1 halb reload --control-socket /run/h-halb.sock >/tmp/h.reload 2>&1
    echo "h reload_rc $?"
    sed 's/^/h reload_out /' /tmp/h.reload
    settle
    echo "settled $EPOCHREALTIME"
    for p in $PREFIXES; do
        report "$p" | sed "s/^/$p /"
    done
done </payload/steps

# What the daemons send from here on is their shutdown, no step's.
section "stopping"
echo "at $EPOCHREALTIME"
for p in $PREFIXES; do
    touch "/tmp/$p.stop"
done
for p in $PREFIXES; do
    wait "$(cat "/tmp/$p.client.pid")"
    section "client $(daemon_of "$p")"
    cat "/tmp/$p.client.log"
    stop_daemon "$p"
    section "trace $(daemon_of "$p")"
    ipvs_commands "$p"
    section "log $(daemon_of "$p")"
    grep -i 'reload\|10\.0\.0\.22\|error\|warn\|fail\|down\|remov' "/tmp/$p.log" | tail -n 80
done
section end
exit 0
