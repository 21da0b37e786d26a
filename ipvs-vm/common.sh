# shellcheck shell=bash
# Shared helpers for the IPVS VM scripts. Sourced, not executed.

die() {
    echo "ipvs-vm: error: $*" >&2
    exit 1
}

note() {
    echo "ipvs-vm: $*" >&2
}

# ensure_packages PKG... : install the Debian packages that are missing (needs root).
# `apt-get update` is only run when a first install attempt fails (stale or empty lists).
ensure_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing Debian packages (${missing[*]}); install them as root: apt-get install -y ${missing[*]}"
    note "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
        note "install failed; running apt-get update and retrying"
        apt-get update >&2 || die "apt-get update failed"
        apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
            || die "could not install ${missing[*]}"
    fi
}

VM_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC2034 # used by the scripts that source this file
CACHE_DIR="${HALB_IPVS_VM_CACHE:-$VM_DIR/cache}"
