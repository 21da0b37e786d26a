#!/usr/bin/env bash
# Boot Debian's cloud kernel (it has IPVS) under qemu with PAYLOAD_DIR as /payload and run
# /payload/run.sh in it.
#
# usage: run.sh PAYLOAD_DIR
#
# stdout: the payload's output (its stdout and stderr), nothing else; exit status: the payload's.
# When the machine fails to run the payload (no kernel, qemu failure, timeout, no end marker) this
# prints "ipvs-vm: error: ..." with the console's last lines on stderr and exits 125.
#
# Environment:
#   EXTRA_BINS            binaries to add to the image under /usr/local/bin (with their libraries)
#   HALB_LAB_TIMEOUT      seconds before the machine is killed (default 300)
#   HALB_LAB_MEMORY       guest memory in MiB (default 1024)
#   HALB_LAB_SMP          emulated CPUs (default 1); more than one runs TCG multi-threaded, one
#                         host thread per emulated CPU
#   HALB_LAB_STATUS_FILE  if set, "payload_exit=N" is written there once the payload has run, so a
#                         caller can tell the payload's exit status from a failure of the lab itself
#   HALB_LAB_CONSOLE_LOG  if set, the whole console output is copied there
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

LAB_FAILURE=125
fail() {
    echo "ipvs-vm: error: $*" >&2
    exit "$LAB_FAILURE"
}

[ "$#" -eq 1 ] || fail "usage: run.sh PAYLOAD_DIR"
payload_dir="$1"
[ -f "$payload_dir/run.sh" ] || fail "payload directory '$payload_dir' has no run.sh"
timeout_s="${HALB_LAB_TIMEOUT:-300}"
memory="${HALB_LAB_MEMORY:-1024}"
smp="${HALB_LAB_SMP:-1}"
case "$smp" in '' | *[!0-9]* | 0) fail "HALB_LAB_SMP must be a number of CPUs, not '$smp'" ;; esac
accel=tcg
[ "$smp" -gt 1 ] && accel=tcg,thread=multi
if [ -n "${HALB_LAB_STATUS_FILE:-}" ]; then
    rm -f "$HALB_LAB_STATUS_FILE"
fi

"$VM_DIR/fetch-kernel.sh" || fail "fetching the kernel failed"
ensure_packages qemu-system-x86 || fail "cannot install qemu-system-x86"

work="$(mktemp -d "${TMPDIR:-/tmp}/halb-ipvs-vm-run.XXXXXX")"
qemu_pid=""
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
    if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$VM_DIR/build-initramfs.sh" "$work/initrd.cpio.gz" "$payload_dir" || fail "building the initramfs failed"

console="$work/console.log"
# -nographic puts the serial console on stdio; stdin is /dev/null so that nothing is typed into it.
# The timeout is the wall-clock limit of the whole boot: TCG is slow, but the lab is small.
set +e
timeout --kill-after=5 "$timeout_s" \
    qemu-system-x86_64 -accel "$accel" -smp "$smp" -m "$memory" -nographic -no-reboot -nic none \
    -kernel "$CACHE_DIR/vmlinuz" -initrd "$work/initrd.cpio.gz" \
    -append "console=ttyS0 quiet panic=-1" \
    </dev/null >"$console" 2>"$work/qemu.err" &
qemu_pid=$!
wait "$qemu_pid"
qemu_rc=$?
qemu_pid=""
set -e

# The serial line turns "\n" into "\r\n".
tr -d '\r' <"$console" >"$console.txt"
if [ -n "${HALB_LAB_CONSOLE_LOG:-}" ]; then
    cp "$console.txt" "$HALB_LAB_CONSOLE_LOG"
fi

explain() {
    {
        echo "ipvs-vm: error: $*"
        if [ -s "$work/qemu.err" ]; then
            echo "--- qemu stderr ---"
            tail -n 20 "$work/qemu.err"
        fi
        echo "--- last console lines ---"
        tail -n 40 "$console.txt"
    } >&2
    exit "$LAB_FAILURE"
}

begin='@@HALB-LAB-PAYLOAD-BEGIN@@'
end_re='^@@HALB-LAB-PAYLOAD-END rc=([0-9]+)@@$'
# The begin marker may follow the firmware's terminal escape sequences on the same line.
grep -q "$begin\$" "$console.txt" || {
    [ "$qemu_rc" -eq 124 ] && explain "the machine did not reach the payload within ${timeout_s}s"
    explain "the machine did not reach the payload (qemu exit status $qemu_rc)"
}
end_line="$(grep -E "$end_re" "$console.txt" | tail -n 1 || true)"
if [ -z "$end_line" ]; then
    # Show what the payload printed before it was cut off.
    sed -n "/$begin\$/,\$p" "$console.txt" | sed 1d >&2
    [ "$qemu_rc" -eq 124 ] && explain "the payload did not finish within ${timeout_s}s"
    explain "the payload did not finish (qemu exit status $qemu_rc)"
fi
rc="$(echo "$end_line" | sed -E "s/$end_re/\\1/")"

# Print only what lies between the first begin marker and the last end marker.
awk -v b="$begin" -v e="$end_line" '
    !started && substr($0, length($0) - length(b) + 1) == b { started = 1; next }
    started { lines[n++] = $0 }
    END { last = n - 1; while (last >= 0 && lines[last] != e) last--; for (i = 0; i < last; i++) print lines[i] }
' "$console.txt"

if [ -n "${HALB_LAB_STATUS_FILE:-}" ]; then
    echo "payload_exit=$rc" >"$HALB_LAB_STATUS_FILE"
fi
exit "$rc"
