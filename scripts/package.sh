#!/usr/bin/env bash
# Builds halb's Debian package from this repository with dpkg-deb (no debhelper): the binary
# from the `dist` profile as /usr/sbin/halb, the systemd unit, /etc/default/halb (a conffile),
# the man pages (generated from the CLI by `halb dist-files`, plus halb-keepalived.conf(5)),
# bash/zsh/fish completions, and the seed's two configurations as examples. Then lintian.
#
#   scripts/package.sh [OUT_DIR]     (default target/debian; prints the .deb's path last)
#
# HALB_BINARY=PATH packages that binary instead of building one (it must be a dist build of
# this tree). Needs dpkg-dev (dpkg-shlibdeps) and, for the check, lintian.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
out=${1:-target/debian}
mkdir -p "$out"
out=$(cd "$out" && pwd)

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
binary=${HALB_BINARY:-}
if [ -z "$binary" ]; then
    cargo build --profile dist --locked -p halb >&2
    binary=target/dist/halb
fi

# Reproducible: file times from the last commit, and gzip without names or times.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

stage=$(mktemp -d "$out/stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root
doc=$root/usr/share/doc/halb
install -d "$root/DEBIAN" "$root/usr/sbin" "$root/lib/systemd/system" "$root/etc/default" \
    "$root/usr/share/man/man5" "$root/usr/share/man/man8" "$doc/examples" \
    "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
    "$root/usr/share/fish/vendor_completions.d"

install -m 0755 "$binary" "$root/usr/sbin/halb"
install -m 0644 dist/halb.service "$root/lib/systemd/system/halb.service"
install -m 0644 dist/halb.default "$root/etc/default/halb"

generated=$stage/generated
"$root/usr/sbin/halb" dist-files --out "$generated" >/dev/null
for page in "$generated"/man/*.8; do
    install -m 0644 "$page" "$root/usr/share/man/man8/"
done
install -m 0644 dist/halb-keepalived.conf.5 "$root/usr/share/man/man5/"
gzip -9n "$root"/usr/share/man/man5/* "$root"/usr/share/man/man8/*
install -m 0644 "$generated/completions/halb.bash" "$root/usr/share/bash-completion/completions/halb"
install -m 0644 "$generated/completions/_halb" "$root/usr/share/zsh/vendor-completions/_halb"
install -m 0644 "$generated/completions/halb.fish" "$root/usr/share/fish/vendor_completions.d/halb.fish"

# The seed's directors, as `halb lab` runs them (the lab has them compiled in as well).
install -m 0644 crates/seed-lab/seed/keepalived-master.conf crates/seed-lab/seed/keepalived-backup.conf \
    "$doc/examples/"
install -m 0644 dist/copyright "$doc/copyright"
{
    echo "halb ($version) unstable; urgency=medium"
    echo
    echo "  * Built from the halb repository."
    echo
    echo " -- halb maintainers <maintainers@users.noreply.r-seed-c55549d0.example>  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"

for script in postinst prerm postrm; do
    install -m 0755 "dist/debian/$script" "$root/DEBIAN/$script"
done
echo /etc/default/halb >"$root/DEBIAN/conffiles"

# Depends from the libraries the binary links (dpkg-shlibdeps wants a debian/control).
mkdir -p "$stage/debian"
printf 'Source: halb\n\nPackage: halb\nArchitecture: any\n' >"$stage/debian/control"
depends=$(cd "$stage" && dpkg-shlibdeps -O -e root/usr/sbin/halb 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
installed_size=$(du -k -s --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@DEPENDS@/$depends/" \
    -e "s/@SIZE@/$installed_size/" dist/debian/control >"$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
    >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

deb=$out/halb_${version}_${arch}.deb
# HALB_DEB_COMPRESSION=gzip: a quicker build (tests); xz for what is shipped.
dpkg-deb --root-owner-group "-Z${HALB_DEB_COMPRESSION:-xz}" --build "$root" "$deb" >&2

if command -v lintian >/dev/null 2>&1; then
    # Clean: no error or warning tag is left (and none is overridden).
    lintian --fail-on error,warning "$deb" >&2
else
    echo "package.sh: lintian not installed; not checked" >&2
fi
echo "$deb"
