#!/usr/bin/env bash
# Imports template_halb.yaml into a real Zabbix 6.0 server's database through the frontend's
# API, and checks that the template's items, triggers and graphs are there afterwards.
#
# Usage: contrib/zabbix/verify-import.sh [--keep]
#   --keep   leave the working directory (database, logs) in place and say where
#
# Needs Debian's zabbix-frontend-php, zabbix-server-pgsql (for its schema), postgresql and
# php-cli with php-pgsql (scripts/deps.sh installs them). Everything runs in a temporary
# directory as an unprivileged user: a PostgreSQL cluster listening only on a unix socket there,
# Zabbix's schema and data loaded into it, a copy of the frontend with its own
# conf/zabbix.conf.php served by PHP's built-in server on a free loopback port. Nothing is
# installed, no system service is started, and everything started is stopped on exit.
#
# Exit status: 0 imported and checked, 1 the import or the check failed, 2 a prerequisite is
# missing (the message says which).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
template=$here/template_halb.yaml
keep=0
[ "${1:-}" = --keep ] && keep=1

log() { echo "verify-import: $*" >&2; }
need() { log "$*"; exit 2; }

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -n "$pgbin" ] && [ -x "$pgbin/initdb" ] || need "PostgreSQL's server is missing (apt-get install postgresql)"
schema_dir=/usr/share/zabbix-server-pgsql
[ -f $schema_dir/schema.sql.gz ] || need "Zabbix's PostgreSQL schema is missing (apt-get install zabbix-server-pgsql)"
ui=/usr/share/zabbix
[ -f $ui/api_jsonrpc.php ] || need "Zabbix's frontend is missing (apt-get install zabbix-frontend-php)"
command -v php >/dev/null || need "php is missing (apt-get install php-cli)"
php -m | grep -qx pgsql || need "PHP's pgsql module is missing (apt-get install php-pgsql)"
command -v python3 >/dev/null || need "python3 is missing"

# PostgreSQL refuses to run as root: as root, run it as nobody.
as_user=()
if [ "$(id -u)" -eq 0 ]; then
    as_user=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
fi

work=$(mktemp -d /tmp/halb-zabbix-import.XXXXXX)
chmod 755 "$work"
php_pid=""
pg_started=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$php_pid" ] && kill -0 "$php_pid" 2>/dev/null; then
        kill -TERM "$php_pid" 2>/dev/null || true
        wait "$php_pid" 2>/dev/null || true
    fi
    if [ "$pg_started" -eq 1 ]; then
        "${as_user[@]}" "$pgbin/pg_ctl" -D "$work/pg" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [ "$keep" -eq 1 ]; then
        log "kept $work"
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

started=$SECONDS
mkdir "$work/pg" "$work/sock"
[ ${#as_user[@]} -eq 0 ] || chown nobody:nogroup "$work/pg" "$work/sock"
log "PostgreSQL cluster in $work/pg (unix socket only)"
LC_ALL=C "${as_user[@]}" "$pgbin/initdb" -D "$work/pg" -U zabbix -A trust -E UTF8 \
    >"$work/initdb.log" 2>&1 || { cat "$work/initdb.log" >&2; exit 1; }
# No TCP listener at all; fsync off: the database lives only as long as this script.
LC_ALL=C "${as_user[@]}" "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg/server.log" -w -t 60 \
    -o "-c listen_addresses='' -k $work/sock -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null || { cat "$work/pg/server.log" >&2; exit 1; }
pg_started=1
psql() { "${as_user[@]}" "$pgbin/psql" -h "$work/sock" -U zabbix -X -q -v ON_ERROR_STOP=1 "$@"; }
psql -d postgres -c "CREATE DATABASE zabbix ENCODING 'UTF8' TEMPLATE template0"

log "loading Zabbix's schema, images and data ($((SECONDS - started)) s)"
for part in schema images data; do
    zcat "$schema_dir/$part.sql.gz" | psql -1 -d zabbix >"$work/load-$part.log" 2>&1 \
        || { tail -n 20 "$work/load-$part.log" >&2; exit 1; }
done

# Debian's frontend reads /etc/zabbix/zabbix.conf.php (a constant in CConfigFile.php): it runs
# from a copy whose constant names this directory's file instead, and /etc stays untouched.
cp -a "$ui" "$work/ui"
sed -i "s|const CONFIG_FILE_PATH = '[^']*';|const CONFIG_FILE_PATH = '$work/zabbix.conf.php';|" \
    "$work/ui/include/classes/core/CConfigFile.php"
grep -q "$work/zabbix.conf.php" "$work/ui/include/classes/core/CConfigFile.php" \
    || { log "CConfigFile.php of this frontend has no CONFIG_FILE_PATH to point elsewhere"; exit 1; }
cat >"$work/zabbix.conf.php" <<EOF
<?php
\$DB['TYPE'] = 'POSTGRESQL';
\$DB['SERVER'] = '$work/sock';
\$DB['PORT'] = '0';
\$DB['DATABASE'] = 'zabbix';
\$DB['USER'] = 'zabbix';
\$DB['PASSWORD'] = '';
\$DB['SCHEMA'] = '';
\$DB['ENCRYPTION'] = false;
\$DB['KEY_FILE'] = '';
\$DB['CERT_FILE'] = '';
\$DB['CA_FILE'] = '';
\$DB['VERIFY_HOST'] = false;
\$DB['CIPHER_LIST'] = '';
\$DB['VAULT_URL'] = '';
\$DB['VAULT_DB_PATH'] = '';
\$DB['VAULT_TOKEN'] = '';
\$DB['DOUBLE_IEEE754'] = true;
\$ZBX_SERVER_NAME = 'halb template check';
\$IMAGE_FORMAT_DEFAULT = IMAGE_FORMAT_PNG;
EOF

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log "Zabbix frontend on 127.0.0.1:$port ($((SECONDS - started)) s)"
"${as_user[@]}" php -S "127.0.0.1:$port" -t "$work/ui" >"$work/php.log" 2>&1 </dev/null &
php_pid=$!

log "importing $(basename "$template") through configuration.import"
python3 - "http://127.0.0.1:$port/api_jsonrpc.php" "$template" <<'EOF'
import json, sys, time, urllib.request

url, path = sys.argv[1], sys.argv[2]
calls = 0

def call(method, params, auth=None):
    global calls
    calls += 1
    body = {"jsonrpc": "2.0", "method": method, "params": params, "id": calls}
    if auth:
        body["auth"] = auth
    req = urllib.request.Request(url, json.dumps(body).encode(),
                                 {"Content-Type": "application/json-rpc"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        answer = json.load(resp)
    if "error" in answer:
        e = answer["error"]
        sys.exit(f"verify-import: {method} failed: {e.get('message')} {e.get('data')}")
    return answer["result"]

for _ in range(100):
    try:
        version = call("apiinfo.version", {})
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("verify-import: the frontend did not answer within 10 s")
print(f"verify-import: Zabbix API {version}", file=sys.stderr)
auth = call("user.login", {"user": "Admin", "password": "zabbix"})

with open(path) as f:
    source = f.read()
rules = {
    "template_groups" if version >= "6.2" else "groups": {"createMissing": True},
    "templates": {"createMissing": True, "updateExisting": True},
    "items": {"createMissing": True, "updateExisting": True},
    "triggers": {"createMissing": True, "updateExisting": True},
    "graphs": {"createMissing": True, "updateExisting": True},
    "valueMaps": {"createMissing": True, "updateExisting": True},
    "discoveryRules": {"createMissing": True, "updateExisting": True},
}
call("configuration.import", {"format": "yaml", "rules": rules, "source": source}, auth)

import re
expected_items = re.findall(r"^\s+key: '([^']+)'", source, re.M)
expected_triggers = re.findall(r"^\s+- uuid: \w+\n\s+expression: ", source, re.M)
expected_graphs = len(re.findall(r"^  graphs:", source, re.M))

templates = call("template.get", {"output": ["templateid", "host"],
                                  "filter": {"host": ["halb by Zabbix agent"]}}, auth)
if len(templates) != 1:
    sys.exit(f"verify-import: template 'halb by Zabbix agent' not found after the import: {templates}")
tid = templates[0]["templateid"]
items = call("item.get", {"templateids": tid, "output": ["key_", "value_type"]}, auth)
triggers = call("trigger.get", {"templateids": tid, "output": ["description", "expression"],
                                "expandExpression": True}, auth)
graphs = call("graph.get", {"templateids": tid, "output": ["name"]}, auth)
keys = sorted(i["key_"] for i in items)
missing = sorted(set(expected_items) - set(keys))
if missing:
    sys.exit(f"verify-import: items missing after the import: {missing} (have {keys})")
if len(triggers) != len(expected_triggers):
    sys.exit(f"verify-import: {len(triggers)} triggers after the import, the file has "
             f"{len(expected_triggers)}")
print(f"verify-import: template {tid}: {len(items)} items ({', '.join(keys)}), "
      f"{len(triggers)} triggers, {len(graphs)} graphs", file=sys.stderr)
for t in triggers:
    print(f"verify-import:   trigger {t['description']!r}: {t['expression']}", file=sys.stderr)
for g in graphs:
    print(f"verify-import:   graph {g['name']!r}", file=sys.stderr)
if expected_graphs and not graphs:
    sys.exit("verify-import: the file has graphs but none were imported")
EOF
log "OK in $((SECONDS - started)) s"
