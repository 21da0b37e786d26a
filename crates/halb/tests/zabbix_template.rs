//! contrib/zabbix/template_halb.yaml imported into a real Zabbix 6.0: Debian's frontend and
//! database schema, a PostgreSQL cluster in a temporary directory, the template sent through
//! the API's `configuration.import`, and its items, triggers and graphs read back
//! (contrib/zabbix/verify-import.sh does all of it and cleans up after itself).
//!
//! Needs postgresql, zabbix-server-pgsql (its schema), zabbix-frontend-php and PHP's CLI with
//! pgsql (scripts/deps.sh installs them).

use std::path::Path;
use std::process::Command;

use halb_test_support::{installed, skip};

#[test]
fn the_template_imports_into_a_zabbix_6_0_server() {
    for (program, package) in [
        ("php", "php8.2-cli"),
        ("psql", "postgresql"),
        ("setpriv", "util-linux"),
    ] {
        if !installed(program) {
            return skip(format!(
                "{program} is not installed ({package}; scripts/deps.sh)"
            ));
        }
    }
    if !Path::new("/usr/share/zabbix/api_jsonrpc.php").exists()
        || !Path::new("/usr/share/zabbix-server-pgsql/schema.sql.gz").exists()
    {
        return skip(
            "zabbix-frontend-php and zabbix-server-pgsql are not installed (scripts/deps.sh)",
        );
    }
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/zabbix/verify-import.sh");
    let out = Command::new(&script)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    let log = String::from_utf8_lossy(&out.stderr);
    eprintln!("{log}");
    assert!(out.status.success(), "{} failed: {log}", script.display());
    // What the script read back from Zabbix after the import.
    for expected in [
        "Zabbix API 6.0.",
        "halb.daemon, halb.daemon.line,",
        "halb.realservers,",
        "8 triggers, 2 graphs",
    ] {
        assert!(log.contains(expected), "no `{expected}` in:\n{log}");
    }
}
