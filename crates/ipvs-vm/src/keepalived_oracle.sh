#!/bin/bash
# The keepalived oracle's payload, run by the IPVS VM's /init as /payload/run.sh.
#
# For each /payload/configs/N.conf (N = 0, 1, ...), with the interfaces listed in
# /payload/configs/N.ifaces created first:
#   - `keepalived -t` (exit status, stdout, stderr);
#   - unless that status is 4 (keepalived would not start), two keepalived processes side by side,
#     in the foreground with `-n -l -D -d -G`: one with only the VRRP child (-P), one with only the
#     checker child (-C). Each writes its own stderr, so the two configuration dumps never
#     interleave. They run until their dumps are complete, then get SIGTERM.
# Everything is printed in sections that start with a line "@@halb-oracle@@ NAME [VALUE]".
set -u

MARK='@@halb-oracle@@'
FILE_TIMEOUT="${ORACLE_FILE_TIMEOUT:-20}"
# The stderr line prefix of `keepalived -l`: strftime's %c in the C locale, then ": ".
STAMP='^[A-Z][a-z][a-z] [A-Z][a-z][a-z] [ 0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9] [0-9]+: '

now_ms() {
    local t="${EPOCHREALTIME/./}"
    echo $((t / 1000))
}

# no_child LOG: keepalived found nothing to run for this subsystem; it waits for a signal then.
no_child() {
    grep -q 'keepalived has no configuration to run' "$1"
}

# vrrp_dump_done LOG: the VRRP child dumps the interfaces last, then logs its first state change.
vrrp_dump_done() {
    awk -v stamp="$STAMP" '
        { sub(stamp, "") }
        $0 == "------< Interfaces >------" { seen = 1; next }
        seen && $0 !~ /^ / && $0 !~ /^------</ { found = 1 }
        END { exit !found }
    ' "$1"
}

# check_dump_done LOG: the checker child logs "Activating BFD healthchecker" right after its dump.
check_dump_done() {
    grep -qE '(^|: )(Activating BFD healthchecker|(A|Dea)ctivating healthchecker for service )' "$1"
}

# stop_both VPID CPID N: SIGTERM to both keepalived processes at once, SIGKILL (to them and, through
# their pid files, to their children) after 5 s. Sets VEXIT and CEXIT to their exit statuses; they
# are variables, not output, because `wait` only works in the shell that started the process.
stop_both() {
    local vpid="$1" cpid="$2" n="$3" i f killed=0
    kill -TERM "$vpid" "$cpid" 2>/dev/null
    for i in $(seq 100); do
        # Done when neither is alive any more.
        kill -0 "$vpid" 2>/dev/null || kill -0 "$cpid" 2>/dev/null || break
        sleep 0.05
    done
    for i in "$vpid" "$cpid"; do
        if kill -0 "$i" 2>/dev/null; then
            echo "oracle: keepalived $i did not stop on SIGTERM; killing it" >&2
            kill -KILL "$i" 2>/dev/null
            killed=1
        fi
    done
    if [ "$killed" -eq 1 ]; then
        # A killed parent leaves its children and their pid files behind.
        for f in /run/oracle-[vc]"$n"-*.pid; do
            [ -s "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null
        done
    fi
    wait "$vpid" 2>/dev/null
    VEXIT=$?
    wait "$cpid" 2>/dev/null
    CEXIT=$?
}

section() {
    echo "$MARK $*"
}

print_file() {
    [ -f "$1" ] && cat "$1"
    # Make sure the next marker starts a line of its own.
    [ -s "$1" ] && [ -n "$(tail -c 1 "$1")" ] && echo
    return 0
}

run_one() {
    local n="$1" conf="/payload/configs/$1.conf" ifaces=() i name
    [ -f "/payload/configs/$n.ifaces" ] && mapfile -t ifaces <"/payload/configs/$n.ifaces"
    section file "$n"

    # One veth pair per interface name; the peer stays nameless to the file. Each interface gets an
    # IPv4 address of its own (198.18.0.0/15 is for benchmarks, so configurations do not use it)
    # and, once up, an IPv6 link-local address, enough for VRRP to start without a peer.
    i=0
    for name in "${ifaces[@]}"; do
        [ -n "$name" ] || continue
        if ! ip link add "$name" type veth peer name "hlp$i" 2>/tmp/oracle-ip.err; then
            echo "oracle: cannot create interface $name: $(cat /tmp/oracle-ip.err)" >&2
            continue
        fi
        ip link set "hlp$i" up
        ip link set "$name" up
        ip addr add "198.18.$i.1/24" dev "$name"
        i=$((i + 1))
    done
    section interfaces "${ifaces[*]}"

    local start
    start="$(now_ms)"
    keepalived -t -f "$conf" >/tmp/oracle-t.out 2>/tmp/oracle-t.err
    local test_exit=$?
    section test-exit "$test_exit"
    section test-stdout
    print_file /tmp/oracle-t.out
    section test-stderr
    print_file /tmp/oracle-t.err
    section test-ms $(($(now_ms) - start))

    if [ "$test_exit" -ne 4 ]; then
        rm -f /tmp/oracle-vrrp.log /tmp/oracle-check.log
        start="$(now_ms)"
        keepalived -n -l -D -d -G -P -f "$conf" -p "/run/oracle-v$n.pid" -r "/run/oracle-v$n-vrrp.pid" \
            -c "/run/oracle-v$n-check.pid" -b "/run/oracle-v$n-bfd.pid" \
            >/dev/null 2>/tmp/oracle-vrrp.log &
        local vpid=$!
        keepalived -n -l -D -d -G -C -f "$conf" -p "/run/oracle-c$n.pid" -r "/run/oracle-c$n-vrrp.pid" \
            -c "/run/oracle-c$n-check.pid" -b "/run/oracle-c$n-bfd.pid" \
            >/dev/null 2>/tmp/oracle-check.log &
        local cpid=$!

        local vdone=0 cdone=0 deadline=$(($(now_ms) + FILE_TIMEOUT * 1000)) size quiet_since=""
        while [ "$vdone" -eq 0 ] || [ "$cdone" -eq 0 ]; do
            if [ "$vdone" -eq 0 ]; then
                if ! kill -0 "$vpid" 2>/dev/null || no_child /tmp/oracle-vrrp.log \
                    || vrrp_dump_done /tmp/oracle-vrrp.log; then
                    vdone=1
                elif grep -q -- '------< Interfaces >------' /tmp/oracle-vrrp.log; then
                    # Nothing may follow the dump (no instance to start): accept 1 s of silence.
                    size="$(wc -c </tmp/oracle-vrrp.log)"
                    if [ "$size:" != "${quiet_since%%:*}:" ]; then
                        quiet_since="$size:$(now_ms)"
                    elif [ $(($(now_ms) - ${quiet_since#*:})) -ge 1000 ]; then
                        vdone=1
                    fi
                fi
            fi
            if [ "$cdone" -eq 0 ]; then
                if ! kill -0 "$cpid" 2>/dev/null || no_child /tmp/oracle-check.log \
                    || check_dump_done /tmp/oracle-check.log; then
                    cdone=1
                fi
            fi
            if [ "$(now_ms)" -ge "$deadline" ]; then
                echo "oracle: file $n: keepalived did not finish its dumps within ${FILE_TIMEOUT}s" >&2
                break
            fi
            sleep 0.05
        done
        section run-ms $(($(now_ms) - start))
        start="$(now_ms)"
        stop_both "$vpid" "$cpid" "$n"
        section stop-ms $(($(now_ms) - start))
        section vrrp-exit "$VEXIT"
        section vrrp-log
        print_file /tmp/oracle-vrrp.log
        section check-exit "$CEXIT"
        section check-log
        print_file /tmp/oracle-check.log
    fi

    # Leave nothing behind for the next file.
    ipvsadm -C 2>/dev/null
    for name in "${ifaces[@]}"; do
        [ -n "$name" ] && ip link del "$name" 2>/dev/null
    done
    section end "$n"
}

n=0
while [ -f "/payload/configs/$n.conf" ]; do
    run_one "$n"
    n=$((n + 1))
done
section "done" "$n"
