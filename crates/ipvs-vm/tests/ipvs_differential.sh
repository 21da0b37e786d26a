#!/bin/bash
# The IPVS differential's payload, run by the IPVS VM's /init as /payload/run.sh.
#
# For each /payload/configs/N.conf, two network namespaces with the interfaces N.ifaces lists:
# kN runs keepalived, hN runs `halb run --dataplane ipvs`, both from the same file, all at once
# (IPVS tables are per namespace). No namespace has a route to any real server, so every health
# check fails the same way in both, quickly, and the tables settle into what the configuration
# says for failed servers: removed, inhibited to weight 0, sorry servers in, quorum lost.
# After SETTLE seconds, and again CONFIRM seconds later, each namespace's `ipvsadm -S -n`, its
# timeouts and its sync daemons are printed; then both daemons get SIGTERM and the tables are
# printed once more. Sections start with "@@ipvs-diff@@ NAME".
set -u

MARK='@@ipvs-diff@@'
# keepalived's first check waits a random time up to the warmup, which defaults to delay_loop (60 s
# in some samples); then retries. 90 s covers every file here.
SETTLE="${SETTLE:-90}"
CONFIRM="${CONFIRM:-6}"

section() {
    echo "$MARK $*"
}

# setup_ns NS IFACES_FILE: the namespace, its loopback, and one veth per interface name with an
# address of its own in 198.18.0.0/15 (benchmark space: no configuration uses it).
setup_ns() {
    local ns="$1" list="$2" i=0 name
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    while read -r name; do
        [ -n "$name" ] || continue
        if ! ip -n "$ns" link add "$name" type veth peer name "hlp$i" 2>/tmp/diff-ip.err; then
            echo "diff: $ns: cannot create interface $name: $(cat /tmp/diff-ip.err)" >&2
            continue
        fi
        ip -n "$ns" link set "hlp$i" up
        ip -n "$ns" link set "$name" up
        ip -n "$ns" addr add "198.18.$i.1/24" dev "$name"
        i=$((i + 1))
    done <"$list"
}

# dump NS: what the kernel holds in NS, in a stable order.
dump() {
    local ns="$1"
    ip netns exec "$ns" ipvsadm -S -n | sort
    ip netns exec "$ns" ipvsadm -L -n --timeout | sed 's/^/timeout: /'
    ip netns exec "$ns" ipvsadm -L -n --daemon | sort | sed 's/^/daemon: /'
}

dump_all() {
    local round="$1" n
    for n in $CONFIGS; do
        section "dump $round keepalived $n"
        dump "k$n"
        section "dump $round halb $n"
        dump "h$n"
    done
}

modprobe ip_vs 2>/dev/null
# keepalived's children also call syslog(), which without a /dev/log listener falls back to the
# console and would mix into the tables printed here.
busybox syslogd -O /tmp/syslog.log
CONFIGS=""
for conf in /payload/configs/*.conf; do
    n="$(basename "$conf" .conf)"
    CONFIGS="$CONFIGS $n"
    setup_ns "k$n" "/payload/configs/$n.ifaces"
    setup_ns "h$n" "/payload/configs/$n.ifaces"
done

start="$(date +%s)"
for n in $CONFIGS; do
    conf="/payload/configs/$n.conf"
    ip netns exec "k$n" keepalived -n -l -D -f "$conf" \
        -p "/run/k$n.pid" -c "/run/k$n-check.pid" -r "/run/k$n-vrrp.pid" -b "/run/k$n-bfd.pid" \
        >"/tmp/k$n.log" 2>&1 &
    echo $! >"/tmp/k$n.main"
    ip netns exec "h$n" halb run -f "$conf" --dataplane ipvs \
        --control-socket "/run/h$n.sock" >"/tmp/h$n.log" 2>&1 &
    echo $! >"/tmp/h$n.main"
done

sleep "$SETTLE"
dump_all 1
sleep "$CONFIRM"
dump_all 2
section elapsed $(($(date +%s) - start))

for n in $CONFIGS; do
    kill -TERM "$(cat "/tmp/k$n.main")" "$(cat "/tmp/h$n.main")" 2>/dev/null
done
for n in $CONFIGS; do
    for side in k h; do
        pid="$(cat "/tmp/$side$n.main")"
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "diff: $side$n ($pid) did not stop on SIGTERM" >&2
            kill -KILL "$pid" 2>/dev/null
        fi
        wait "$pid" 2>/dev/null
        section "exit $side$n $?"
    done
done
dump_all stopped

for n in $CONFIGS; do
    section "log keepalived $n"
    tail -n 60 "/tmp/k$n.log"
    section "log halb $n"
    tail -n 60 "/tmp/h$n.log"
done
exit 0
