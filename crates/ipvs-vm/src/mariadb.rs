//! A real MariaDB server for the IPVS machine: Debian's `mariadbd` (installed when missing) goes
//! into the image with its libraries, and a data directory made on the host with
//! `mariadb-install-db` goes into the payload, so the machine only copies it and starts the
//! server (bootstrapping the system tables under an emulated CPU would take minutes).
//!
//! In the machine, `/payload/mariadb/start.sh NAMESPACE NAME` starts a server in a network
//! namespace on 0.0.0.0:3306 with its own copy of the data directory, and prints its pid once it
//! accepts connections. Its version string ends in `-NAME` (`--version=...-NAME`), so a client can
//! tell from the server's greeting which server answered: in DR mode every server answers from
//! the virtual IP.
//!
//! The data directory has one account besides root: `app`@`192.168.66.%` without a password, the
//! seed's application. The server refuses a connection from a host no account matches before it
//! sends its greeting, so without that account a client would see an error instead of a greeting.

use anyhow::{bail, Context, Result};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The server binary on the host (and, as an extra binary, in the machine's /usr/local/bin).
pub const MARIADBD: &str = "/usr/sbin/mariadbd";

/// The messages file the server needs at its start (`--lc-messages-dir`).
const ERRMSG: &str = "/usr/share/mysql/english/errmsg.sys";

/// Small buffers: a lab server holds no data, and an emulated machine runs several.
pub const INNODB_OPTIONS: &[&str] = &[
    "--innodb-buffer-pool-size=16M",
    "--innodb-log-file-size=4M",
    "--innodb-log-buffer-size=1M",
];

/// What [`prepare`] made: payload files (relative to `/payload`) and the binary for the image.
pub struct MariaDbPayload {
    pub files: Vec<(PathBuf, Vec<u8>)>,
    pub binary: PathBuf,
}

/// The server's start script in the machine. `$1` namespace, `$2` name (version suffix).
const START: &str = r#"#!/bin/bash
# start.sh NAMESPACE NAME: a MariaDB server in NAMESPACE on 0.0.0.0:3306, version ending in -NAME;
# prints its pid once it accepts connections on its socket, or fails after 120 s.
ns="$1" name="$2" dir="/run/mariadb-$1"
rm -rf "$dir"
mkdir -p "$dir/tmp"
cp -a /payload/mariadb/data "$dir/data"
ip netns exec "$ns" mariadbd --no-defaults --user=root --datadir="$dir/data" \
    --socket="$dir/sock" --pid-file="$dir/pid" --log-error="$dir/error.log" --tmpdir="$dir/tmp" \
    --lc-messages-dir=/payload/mariadb/share --port=3306 --bind-address=0.0.0.0 \
    --skip-name-resolve --log-warnings=0 --version="10.11-$name" \
    --performance-schema=0 --innodb-buffer-pool-size=16M --innodb-log-file-size=4M \
    --innodb-log-buffer-size=1M --innodb-flush-log-at-trx-commit=2 --thread-cache-size=64 \
    --max-connections=2000 --max-connect-errors=1000000000 </dev/null >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1200); do
    if grep -q 'ready for connections' "$dir/error.log" 2>/dev/null; then
        echo "$pid"
        exit 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
echo "mariadbd in $ns did not start:" >&2
tail -n 20 "$dir/error.log" >&2
exit 1
"#;

/// Installs mariadb-server when missing, makes the data directory in `work`, and returns the
/// payload's files: `mariadb/start.sh`, `mariadb/data/...` and `mariadb/share/english/errmsg.sys`.
pub fn prepare(work: &Path) -> Result<MariaDbPayload> {
    crate::ensure_packages(&["mariadb-server"])?;
    let dir = work.join("mariadb");
    let datadir = dir.join("data");
    let tmpdir = dir.join("tmp");
    fs::create_dir_all(&tmpdir).with_context(|| format!("creating {}", tmpdir.display()))?;
    let out = Command::new("mariadb-install-db")
        .arg("--no-defaults")
        .arg("--user=root")
        .arg(format!("--tmpdir={}", tmpdir.display()))
        .arg(format!("--datadir={}", datadir.display()))
        .args(["--auth-root-authentication-method=socket", "--skip-test-db"])
        .args(INNODB_OPTIONS)
        .stdin(Stdio::null())
        .output()
        .context("cannot run mariadb-install-db (is mariadb-server installed?)")?;
    if !out.status.success() {
        bail!(
            "mariadb-install-db --datadir={} failed ({}):\n{}{}",
            datadir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    add_account(&datadir, &tmpdir)?;
    let mut files = vec![
        (PathBuf::from("mariadb/start.sh"), START.as_bytes().to_vec()),
        (
            PathBuf::from("mariadb/share/english/errmsg.sys"),
            fs::read(ERRMSG).with_context(|| format!("reading {ERRMSG}"))?,
        ),
    ];
    collect(&datadir, Path::new("mariadb/data"), &mut files)?;
    Ok(MariaDbPayload {
        files,
        binary: PathBuf::from(MARIADBD),
    })
}

/// The seed's application account, added with the server in bootstrap mode (no network).
fn add_account(datadir: &Path, tmpdir: &Path) -> Result<()> {
    let mut child = Command::new(MARIADBD)
        .arg("--no-defaults")
        .arg("--user=root")
        .arg("--bootstrap")
        .arg(format!("--datadir={}", datadir.display()))
        .arg(format!("--tmpdir={}", tmpdir.display()))
        .args(INNODB_OPTIONS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run mariadbd --bootstrap")?;
    child
        .stdin
        .take()
        .context("mariadbd's stdin")?
        // Bootstrap mode runs without the grant tables, so no CREATE USER: the row it would write.
        .write_all(
            b"INSERT INTO mysql.global_priv (Host, User, Priv) VALUES \
              ('192.168.66.%', 'app', '{\"access\":0,\"plugin\":\"mysql_native_password\",\
              \"authentication_string\":\"\"}');\n",
        )
        .context("writing to mariadbd --bootstrap")?;
    let out = child
        .wait_with_output()
        .context("waiting for mariadbd --bootstrap")?;
    if !out.status.success() {
        bail!(
            "adding the account app@192.168.66.% to {} failed ({}):\n{}",
            datadir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Every file under `dir`, as payload files under `under`.
fn collect(dir: &Path, under: &Path, files: &mut Vec<(PathBuf, Vec<u8>)>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let path = entry.path();
        let name = under.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            collect(&path, &name, files)?;
        } else {
            files.push((
                name,
                fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
            ));
        }
    }
    Ok(())
}
