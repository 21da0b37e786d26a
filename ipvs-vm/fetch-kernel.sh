#!/usr/bin/env bash
# Fetch Debian's cloud kernel (it ships the IPVS modules) into ipvs-vm/cache/ and index its modules.
#
# Result: cache/kernel/ (the unpacked package), cache/vmlinuz (link to the kernel image),
# cache/kernel-version (the module directory name, e.g. 6.1.0-56-cloud-amd64).
# Idempotent: does nothing when cache/kernel-version and its modules.dep already exist.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

mkdir -p "$CACHE_DIR"
# Several test processes may start at once: one fetches, the others wait for it.
exec 9>"$CACHE_DIR/.fetch.lock"
flock 9
if [ -s "$CACHE_DIR/kernel-version" ]; then
    version="$(cat "$CACHE_DIR/kernel-version")"
    if [ -s "$CACHE_DIR/kernel/lib/modules/$version/modules.dep" ] && [ -e "$CACHE_DIR/vmlinuz" ]; then
        exit 0
    fi
fi

ensure_packages kmod
command -v apt-get >/dev/null || die "apt-get not found: the IPVS VM needs a Debian system"

work="$(mktemp -d "$CACHE_DIR/fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# apt-get download drops privileges to _apt, which must be able to write here (otherwise it warns
# and downloads as root).
if id _apt >/dev/null 2>&1; then
    chown _apt "$work"
fi
cd "$work"

# The meta package only depends on the real image package; fetch it to learn the name.
if ! apt-get download linux-image-cloud-amd64 >&2; then
    note "apt-get download failed; running apt-get update and retrying"
    apt-get update >&2 || die "apt-get update failed"
    apt-get download linux-image-cloud-amd64 >&2 || die "cannot download linux-image-cloud-amd64"
fi
meta_deb="$(ls linux-image-cloud-amd64_*.deb)"
image_pkg="$(dpkg-deb -f "$meta_deb" Depends | tr ',' '\n' | sed -n 's/^ *\(linux-image-[0-9][^ ]*-cloud-amd64\).*/\1/p' | head -n1)"
[ -n "$image_pkg" ] || die "cannot find the kernel image package in the Depends of $meta_deb"

apt-get download "$image_pkg" >&2 || die "cannot download $image_pkg"
image_deb="$(ls "${image_pkg}"_*.deb)"
rm -rf "$CACHE_DIR/kernel"
mkdir -p "$work/kernel"
dpkg-deb -x "$image_deb" "$work/kernel" || die "cannot unpack $image_deb"

version="$(find "$work/kernel/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | head -n1)"
[ -n "$version" ] || die "$image_deb has no lib/modules/VERSION"
[ -f "$work/kernel/boot/vmlinuz-$version" ] || die "$image_deb has no boot/vmlinuz-$version"
depmod -b "$work/kernel" "$version" || die "depmod failed for $version"

mv "$work/kernel" "$CACHE_DIR/kernel"
ln -sfn "kernel/boot/vmlinuz-$version" "$CACHE_DIR/vmlinuz"
echo "$version" > "$CACHE_DIR/kernel-version"
note "kernel $version ready in $CACHE_DIR"
