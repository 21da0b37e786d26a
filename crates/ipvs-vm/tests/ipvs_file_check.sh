#!/bin/bash
# The FILE_CHECK payload, run by the IPVS VM's /init as /payload/run.sh.
#
# Two directors, each in its own network namespace (IPVS state is per namespace): k-d1 runs
# keepalived, h-d1 halb, both from configs/a.conf, whose FILE_CHECKs follow one file, /tmp/flag.
# Nothing needs to answer: FILE_CHECK probes nothing. Every line "NAME ACTION [ARG]" of
# /payload/steps changes the file (write VALUE, rename VALUE: written beside it and renamed over
# it, remove) or the configuration (reload FILE: copied over the running one, keepalived sent
# SIGHUP, `halb reload` run); once both tables have settled, each director's `ipvsadm -S -n` is
# printed. Results are printed in sections that start with "@@ipvs-file@@ NAME".
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u
# shellcheck source=lan.sh
source /payload/lan.sh

MARK='@@ipvs-file@@'
PREFIXES="k h"
FLAG=/tmp/flag

start_daemon() {
    local p="$1"
    cp /payload/configs/a.conf "/tmp/$p.conf"
    if [ "$p" = k ]; then
        ip netns exec "$p-d1" keepalived -n -l -C -f "/tmp/$p.conf" \
            -p "/run/$p-k.pid" -c "/run/$p-kc.pid" >"/tmp/$p.log" 2>&1 &
    else
        # No DR_PATH_CHECK: no real server exists here, and keepalived has no such check.
        ip netns exec "$p-d1" halb run -f "/tmp/$p.conf" --dataplane ipvs --no-dr-path-check \
            --control-socket "/run/$p-halb.sock" >"/tmp/$p.log" 2>&1 &
    fi
    echo $! >"/tmp/$p.pid"
}

table() {
    ip netns exec "$1-d1" ipvsadm -S -n | sort
}

has_service() {
    table "$1" | grep -q '^-A'
}

# settle: both tables unchanged over three polls 300 ms apart, 30 s at most.
settle() {
    local prev="" cur same=0 limit
    limit=$(($(now_ms) + 30000))
    sleep 0.3
    while [ "$(now_ms)" -lt "$limit" ]; do
        cur="$(table k)|$(table h)"
        if [ "$cur" = "$prev" ]; then
            same=$((same + 1))
            [ "$same" -ge 3 ] && return 0
        else
            same=0
        fi
        prev="$cur"
        sleep 0.3
    done
    echo "settle: the tables kept changing for 30 s"
}

report() {
    local p
    for p in $PREFIXES; do
        table "$p" | sed "s/^/$p table /"
    done
}

modprobe ip_vs
for p in $PREFIXES; do
    ip netns add "$p-d1"
    ip -n "$p-d1" link set lo up
done
echo 0 >"$FLAG"
for p in $PREFIXES; do
    start_daemon "$p"
done
for p in $PREFIXES; do
    if ! wait_for 60 has_service "$p"; then
        section "failed $p"
        tail -n 40 "/tmp/$p.log"
        section end
        exit 0
    fi
done
settle
section "step 0 start"
report

n=0
while read -r name action arg; do
    n=$((n + 1))
    case "$action" in
    write) printf '%s\n' "$arg" >"$FLAG" ;;
    rename)
        printf '%s\n' "$arg" >"$FLAG.new"
        mv "$FLAG.new" "$FLAG"
        ;;
    remove) rm -f "$FLAG" ;;
    reload)
        for p in $PREFIXES; do
            cp "/payload/configs/$arg" "/tmp/$p.conf"
        done
        kill -HUP "$(cat /run/k-k.pid)"
        ip netns exec h-d1 halb reload --control-socket /run/h-halb.sock >/tmp/h.reload 2>&1 ||
            sed 's/^/halb reload: /' /tmp/h.reload
        sleep 1
        ;;
    esac
    settle
    section "step $n $name"
    report
done </payload/steps

for p in $PREFIXES; do
    section "log $p"
    grep -i 'track\|file\|weight\|remov\|adding\|invalid' "/tmp/$p.log" | tail -n 60
done
section end
exit 0
