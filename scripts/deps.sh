#!/usr/bin/env bash
# Installs the Debian packages halb's tests and lab need, when they are missing.
# Idempotent: does nothing (and touches no package list) when everything is there.
set -euo pipefail

packages=(
    keepalived      # the oracle for config verdicts and the VRRP peer
    bird2           # the BFD peer of bfd_interop (protocol bfd); bgp_announce's BIRD and the test router's
    ipvsadm         # the oracle for IPVS tables (inside the IPVS VM)
    iproute2        # ip netns, veth, bridge
    kmod            # depmod for the IPVS VM's modules
    cpio            # the IPVS VM's initramfs
    busybox-static  # the IPVS VM's userland
    qemu-system-x86 # the IPVS VM (IPVS runs in a real kernel under TCG)
    strace          # ipvs_reload traces the IPVS commands each daemon sends (inside the IPVS VM)
    mariadb-server  # MYSQL_CHECK's peer and the dual-master lab (tests start their own mariadbd)
    mariadb-client  # the lab runs SQL on those servers through their sockets
    percona-toolkit # the lab's unkind scenarios compare the masters with pt-table-checksum
    nftables        # the lab's unkind scenarios drop SYNs and VRRP inside a namespace
    zabbix-agent    # zabbix_agentd -t runs the UserParameters of contrib/zabbix
    dpkg-dev        # scripts/package.sh: dpkg-shlibdeps for the package's Depends
    lintian         # scripts/package.sh checks the .deb
    mmdebstrap      # systemd_unit: the Debian 12 tree the package is installed into
    systemd-container # systemd_unit: systemd-nspawn boots that tree with a real systemd
    prometheus      # scrapes halb's /metrics in a test; promtool checks the text
    chromium        # loads the dashboard in a test (headless)
    chromium-driver # drives that Chromium over WebDriver
    postgresql      # contrib/zabbix/verify-import.sh: the Zabbix server's database (its own cluster)
    zabbix-server-pgsql # ... Zabbix 6.0's schema and data for PostgreSQL
    zabbix-frontend-php # ... Zabbix 6.0's API, which imports the template
    php8.2-cli      # ... runs that frontend (PHP's built-in server) with the CGI flavour below
    php8.2-cgi      #     named so that php8.2's web-server dependency needs no Apache
    php8.2-pgsql    # ... the frontend's PostgreSQL driver
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "deps.sh: missing packages (${missing[*]}); run as root to install them" >&2
    exit 1
fi

echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages' services are not wanted: tests start their own processes (mariadbd with its own
# datadir and port, PostgreSQL its own cluster). A system mariadb left running would hold 127.0.0.1:3306 in the root
# namespace, where a test or the lab may want that port, and take memory from the test run.
for svc in keepalived bird mariadb prometheus postgresql zabbix-server; do
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
done
# Without systemd (a container), the package's init script may have started it instead.
if [ -x /etc/init.d/mariadb ] && [ -e /run/mysqld/mysqld.pid ]; then
    /etc/init.d/mariadb stop >/dev/null 2>&1 || true
fi
# PostgreSQL's package creates and starts a cluster (port 5432) when it can; the Zabbix check
# runs a cluster of its own in a temporary directory.
if [ -x /etc/init.d/postgresql ] && ls /run/postgresql/*.pid >/dev/null 2>&1; then
    /etc/init.d/postgresql stop >/dev/null 2>&1 || true
fi
