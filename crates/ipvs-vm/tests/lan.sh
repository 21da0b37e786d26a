#!/bin/bash
# What the IPVS VM's network payloads share, sourced as /payload/lan.sh: hosts as network
# namespaces on a bridge with no route out of 10.0.0.0/24, a clock in milliseconds, waiting for a
# condition, and result sections. The payload sets MARK before it calls `section`.

section() {
    echo "$MARK $*"
}

now_ms() {
    local t="${EPOCHREALTIME/./}"
    echo $((t / 1000))
}

# host NS ADDR [BRIDGE]: a namespace with ADDR/24 on eth0, the other end of its veth pair
# ("v-NS") a port of BRIDGE (default br0).
host() {
    local ns="$1" addr="$2" bridge="${3:-br0}"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip link add "v-$ns" type veth peer name eth0 netns "$ns"
    ip link set "v-$ns" master "$bridge" up
    ip -n "$ns" link set eth0 up
    ip -n "$ns" addr add "$addr/24" dev eth0
}

# bridge NAME: an empty LAN.
bridge() {
    ip link add "$1" type bridge
    ip link set "$1" up
}

# wait_for SECONDS COMMAND...: until COMMAND succeeds (polled every 100 ms); false when time runs
# out.
wait_for() {
    local limit=$(($(now_ms) + $1 * 1000))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$(now_ms)" -lt "$limit" ] || return 1
        sleep 0.1
    done
}
