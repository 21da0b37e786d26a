#!/usr/bin/env bash
# Build the IPVS VM's initramfs: OUT.cpio.gz for the cloud kernel fetched by fetch-kernel.sh.
#
# usage: build-initramfs.sh OUT.cpio.gz PAYLOAD_DIR
#
# OUT is three gzip'd cpio archives one after the other (the kernel unpacks them in turn):
#   1. the base system, cached in ipvs-vm/cache/: busybox-static, bash (as /bin/sh), iproute2's
#      `ip`, keepalived, ipvsadm, kmod (modprobe), the libraries `ldd` lists for them, the kernel
#      modules the lab needs with their dependencies, and /init;
#   2. EXTRA_BINS (space-separated paths, e.g. the halb binary), each copied to /usr/local/bin with
#      its libraries; rebuilt every time since such binaries change between runs;
#   3. PAYLOAD_DIR's content under /payload; /payload/run.sh is what /init runs.
#
# /init prints the payload's output (stdout and stderr) between the lines
#   @@HALB-LAB-PAYLOAD-BEGIN@@
#   @@HALB-LAB-PAYLOAD-END rc=N@@
# on the console, then powers the machine off. run.sh reads those markers.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ "$#" -eq 2 ] || die "usage: build-initramfs.sh OUT.cpio.gz PAYLOAD_DIR"
out="$1"
payload_dir="$2"
[ -d "$payload_dir" ] || die "payload directory '$payload_dir' does not exist"
[ -f "$payload_dir/run.sh" ] || die "payload directory '$payload_dir' has no run.sh"
[ "$(id -u)" -eq 0 ] || die "building the initramfs needs root (it creates device nodes); run as root"

"$VM_DIR/fetch-kernel.sh"
ensure_packages busybox-static kmod cpio keepalived ipvsadm iproute2

version="$(cat "$CACHE_DIR/kernel-version")"
modroot="$CACHE_DIR/kernel/lib/modules/$version"

# Real binaries of the base system, at their host paths. bash is /bin/sh: Debian's busybox-static
# shell prefers its own applets to PATH, so under it `ip` would be busybox's, which cannot create
# veth pairs.
BASE_BINS=(/usr/bin/bash /usr/sbin/ip /usr/sbin/keepalived /usr/sbin/ipvsadm /usr/bin/kmod)

# Modules loaded by name; modprobe resolves and copies their dependencies. Missing ones are skipped
# with a note, so a future kernel that drops one still boots.
MODULES=(
    ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_wlc ip_vs_lblc ip_vs_lblcr ip_vs_dh ip_vs_sh
    ip_vs_sed ip_vs_nq ip_vs_fo ip_vs_ovf ip_vs_mh ip_vs_twos ip_vs_ftp ip_vs_pe_sip
    nf_conntrack nf_defrag_ipv4 nf_defrag_ipv6 libcrc32c nf_nat
    nf_tables nft_ct nft_nat nft_chain_nat
    veth bridge macvlan ipvlan dummy 8021q tun ipip sit ip_gre ip6_tunnel fou
)

# image_path PATH: where PATH lives in the image, whose /bin, /sbin, /lib and /lib64 are links into
# /usr (Debian's merged-/usr layout); writing through those links would turn them into directories.
image_path() {
    case "$1" in
        /bin/* | /sbin/* | /lib/* | /lib64/*) echo "/usr$1" ;;
        *) echo "$1" ;;
    esac
}

# copy_with_libs ROOT HOST_PATH IMAGE_PATH: copy a binary and every library `ldd` names for it.
# Each library lands at its real path, with a link at the path the binary asks for when that differs
# (for example /lib64/ld-linux-x86-64.so.2), so the dynamic loader finds everything as on the host.
copy_with_libs() {
    local root="$1" src="$2" dst="$3" listing lib real link
    if [ ! -f "$src" ] || [ ! -x "$src" ]; then
        die "binary '$src' does not exist or is not executable"
    fi
    install -D -m 0755 "$src" "$root$dst"
    # ldd fails on static binaries ("not a dynamic executable"): nothing more to copy then.
    listing="$(ldd "$src" 2>/dev/null)" || return 0
    if echo "$listing" | grep -q 'not found'; then
        die "'$src' needs libraries that are missing on this machine: $(echo "$listing" | grep 'not found' | tr -s ' \t' ' ')"
    fi
    for lib in $(echo "$listing" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
        real="$(readlink -f "$lib")"
        [ -f "$real" ] || die "library '$lib' needed by '$src' does not exist"
        real="$(image_path "$real")"
        [ -e "$root$real" ] || install -D -m 0755 "$lib" "$root$real"
        link="$(image_path "$lib")"
        if [ "$link" != "$real" ] && [ ! -e "$root$link" ]; then
            mkdir -p "$root$(dirname "$link")"
            ln -s "$real" "$root$link"
        fi
    done
}

# make_cpio DIR OUT: DIR's content as a gzip'd newc archive owned by root.
make_cpio() {
    (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -1 > "$2"
}

base_key() {
    {
        cat "$VM_DIR/build-initramfs.sh" "$VM_DIR/common.sh"
        echo "$version ${MODULES[*]}"
        stat -L -c '%n %s %Y' /bin/busybox "${BASE_BINS[@]}"
    } | sha256sum | cut -c1-16
}

build_base() {
    local stage="$1" bin mod
    mkdir -p "$stage"/{usr/bin,usr/sbin,usr/lib,usr/lib64,usr/local/bin,proc,sys,dev,run,tmp,etc,root,payload}
    ln -s usr/bin "$stage/bin"
    ln -s usr/sbin "$stage/sbin"
    ln -s usr/lib "$stage/lib"
    ln -s usr/lib64 "$stage/lib64"
    mknod -m 600 "$stage/dev/console" c 5 1
    mknod -m 666 "$stage/dev/null" c 1 3

    install -m 0755 /bin/busybox "$stage/usr/bin/busybox"
    # Applets as links, but never over the real binaries copied below.
    local applet
    for applet in $(/bin/busybox --list); do
        case "$applet" in sh|bash|ip|modprobe|insmod|rmmod|lsmod|depmod|modinfo|busybox) continue ;; esac
        ln -sf busybox "$stage/usr/bin/$applet"
    done
    for bin in "${BASE_BINS[@]}"; do
        copy_with_libs "$stage" "$bin" "$bin"
    done
    ln -sf bash "$stage/usr/bin/sh"
    for applet in modprobe insmod rmmod lsmod depmod modinfo; do
        ln -sf ../bin/kmod "$stage/usr/sbin/$applet"
    done

    # Modules with their dependencies, then a fresh modules.dep for exactly this set.
    local kdir="$stage/lib/modules/$version"
    mkdir -p "$kdir"
    cp "$modroot"/modules.order "$modroot"/modules.builtin "$modroot"/modules.builtin.modinfo "$kdir/"
    for mod in "${MODULES[@]}"; do
        local deps
        if ! deps="$(modprobe -d "$CACHE_DIR/kernel" -S "$version" --show-depends "$mod" 2>/dev/null)"; then
            note "module $mod is not in kernel $version; skipped"
            continue
        fi
        local path
        for path in $(echo "$deps" | awk '$1 == "insmod" { print $2 }'); do
            local rel="${path#"$CACHE_DIR/kernel"}"
            [ -e "$stage$rel" ] || install -D -m 0644 "$path" "$stage$rel"
        done
    done
    depmod -b "$stage" "$version" || die "depmod failed in the initramfs staging directory"

    cat > "$stage/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
    cat > "$stage/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
    echo "halb-ipvs-vm" > "$stage/etc/hostname"
    mkdir -p "$stage/etc/keepalived" "$stage/etc/iproute2"

    cat > "$stage/init" <<'INIT'
#!/bin/sh
# The IPVS VM's init: set the machine up, run /payload/run.sh between markers, power off.
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || true
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /dev/shm
# Keep kernel messages off the console: it carries the payload's output.
dmesg -n 1
hostname halb-ipvs-vm
ip link set lo up
if ! modprobe ip_vs; then
    echo "init: modprobe ip_vs failed" >&2
fi
cd /payload
echo "@@HALB-LAB-PAYLOAD-BEGIN@@"
sh /payload/run.sh </dev/null 2>&1
rc=$?
echo "@@HALB-LAB-PAYLOAD-END rc=$rc@@"
sync
poweroff -f
# poweroff should not return; if it does, a panic with panic=-1 and -no-reboot ends qemu.
exit 0
INIT
    chmod 0755 "$stage/init"
}

out_dir="$(dirname "$out")"
mkdir -p "$out_dir"
work="$(mktemp -d "${TMPDIR:-/tmp}/halb-initramfs.XXXXXX")"
trap 'rm -rf "$work"' EXIT

key="$(base_key)"
base="$CACHE_DIR/initramfs-base-$key.cpio.gz"
# Concurrent builds: one builds the base, the others wait and reuse it.
exec 9>"$CACHE_DIR/.initramfs.lock"
flock 9
if [ ! -s "$base" ]; then
    note "building the base initramfs ($key)"
    build_base "$work/base"
    make_cpio "$work/base" "$work/base.cpio.gz"
    for old in "$CACHE_DIR"/initramfs-base-*.cpio.gz; do
        [ "$old" = "$base" ] || rm -f "$old"
    done
    mv "$work/base.cpio.gz" "$base"
fi
# A reader holds a shared lock so that a build for a newer key does not delete this base under it.
flock -s 9

archives=("$base")

if [ -n "${EXTRA_BINS:-}" ]; then
    mkdir -p "$work/extra"
    for bin in $EXTRA_BINS; do
        copy_with_libs "$work/extra" "$bin" "/usr/local/bin/$(basename "$bin")"
    done
    make_cpio "$work/extra" "$work/extra.cpio.gz"
    archives+=("$work/extra.cpio.gz")
fi

mkdir -p "$work/payload-root/payload"
cp -a "$payload_dir/." "$work/payload-root/payload/"
make_cpio "$work/payload-root" "$work/payload.cpio.gz"
archives+=("$work/payload.cpio.gz")

cat "${archives[@]}" > "$out.tmp"
mv "$out.tmp" "$out"
