//! The seed's addresses, ports, schema, accounts and directors' configurations, and how the
//! lab names its MariaDB instances.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// A director's keepalived.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectorConfig {
    /// One of the seed's two files, compiled into the program (copies of the seed's
    /// `keepalived-master.conf` and `keepalived-backup.conf`, kept in `crates/seed-lab/seed/`),
    /// so that an installed `halb lab` needs no file beside it. Written into the lab's
    /// directory when the lab starts.
    Seed {
        file_name: &'static str,
        text: &'static str,
    },
    /// A file of the user's, used where it is.
    File(PathBuf),
    /// A text made by the lab (the seed's file with halb's safety keywords), written into the
    /// lab's directory as `file_name`; `described` says what it is.
    Made {
        file_name: String,
        text: String,
        described: String,
    },
}

impl DirectorConfig {
    /// The seed's MASTER director (.6, priority 100).
    pub const SEED_MASTER: DirectorConfig = DirectorConfig::Seed {
        file_name: "keepalived-master.conf",
        text: include_str!("../../seed/keepalived-master.conf"),
    };
    /// The seed's BACKUP director (.12, priority 90).
    pub const SEED_BACKUP: DirectorConfig = DirectorConfig::Seed {
        file_name: "keepalived-backup.conf",
        text: include_str!("../../seed/keepalived-backup.conf"),
    };

    /// The file `halb run -f` reads: the user's, or the seed's written into `dir`.
    pub fn write_into(&self, dir: &Path) -> Result<PathBuf> {
        match self {
            DirectorConfig::Seed { file_name, text } => {
                let path = dir.join(file_name);
                std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Ok(path)
            }
            DirectorConfig::File(path) => Ok(path.clone()),
            DirectorConfig::Made {
                file_name, text, ..
            } => {
                let path = dir.join(file_name);
                std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Ok(path)
            }
        }
    }

    /// The seed's file with halb's safety keywords: every virtual server a `mysql_writer` with
    /// `connection_fencing close`, and each TCP_CHECK a MYSQL_CHECK with the same timings (as
    /// the lab's `monitor` account, which may set `read_only` and end sessions). Everything else
    /// is left as it is, so the two runs differ only in what halb is asked to guard.
    pub fn with_safety_keywords(&self) -> Result<DirectorConfig> {
        let (file_name, text) = match self {
            DirectorConfig::Seed { file_name, text } => (file_name.to_string(), text.to_string()),
            DirectorConfig::File(path) => (
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "keepalived.conf".into()),
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
            ),
            DirectorConfig::Made { .. } => return Ok(self.clone()),
        };
        Ok(DirectorConfig::Made {
            file_name: format!("safe-{file_name}"),
            text: add_safety_keywords(&text),
            described: format!("{self} with halb's safety keywords"),
        })
    }
}

/// See [`DirectorConfig::with_safety_keywords`]. Works line by line on the seed's layout: a
/// `delay_loop` line inside a `virtual_server` gets the two keywords after it, and a
/// `TCP_CHECK {` line becomes `MYSQL_CHECK {` followed by the account.
pub fn add_safety_keywords(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 512);
    let mut in_virtual_server = false;
    for line in text.lines() {
        let code = line.split('#').next().unwrap_or("").trim();
        let indent: String = line.chars().take_while(|c| c.is_whitespace()).collect();
        if code.starts_with("virtual_server ") {
            in_virtual_server = true;
        }
        if let Some(rest) = code.strip_prefix("TCP_CHECK") {
            if rest.trim_start().starts_with('{') {
                out.push_str(&format!("{indent}MYSQL_CHECK {{\n"));
                out.push_str(&format!(
                    "{indent}    user {}\n{indent}    password {}\n",
                    MONITOR.user, MONITOR.password
                ));
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
        if in_virtual_server && code.starts_with("delay_loop") {
            out.push_str(&format!(
                "{indent}mysql_writer\n{indent}connection_fencing close\n"
            ));
        }
    }
    out
}

impl fmt::Display for DirectorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirectorConfig::Seed { file_name, .. } => write!(f, "the seed's {file_name}"),
            DirectorConfig::File(path) => write!(f, "{}", path.display()),
            DirectorConfig::Made { described, .. } => f.write_str(described),
        }
    }
}

pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 66, 251);
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 66, 100);
/// The seed's two MySQL ports, each a virtual server and a dual-master pair.
pub const PORTS: [u16; 2] = [3306, 3308];
pub const DATABASE: &str = "lab";
pub const TABLE: &str = "vip_wealth_log";

/// The seed's table (section 6.1), without its comments.
pub const TABLE_DDL: &str = "CREATE TABLE `vip_wealth_log` (\
 `id` bigint(20) NOT NULL AUTO_INCREMENT,\
 `account` varchar(40) NOT NULL,\
 `cert_no` varchar(40) DEFAULT NULL,\
 `name` varchar(40) DEFAULT NULL,\
 PRIMARY KEY (`id`),\
 KEY `vip_user_wealth_index` (`cert_no`,`name`)\
) ENGINE=InnoDB DEFAULT CHARSET=utf8";

/// The application's counter: one row (`id` 1) that the updater increments with a
/// read-modify-write transaction, so that lost updates show in its final value.
pub const COUNTER: &str = "counter";
pub const COUNTER_DDL: &str = "CREATE TABLE `counter` (\
 `id` int NOT NULL,\
 `n` bigint NOT NULL,\
 PRIMARY KEY (`id`)\
) ENGINE=InnoDB; INSERT INTO `counter` VALUES (1, 0)";

/// A MariaDB account the lab creates.
#[derive(Debug, Clone, Copy)]
pub struct Account {
    pub user: &'static str,
    pub password: &'static str,
}

/// The application's writer: INSERT, UPDATE and SELECT on the lab database.
pub const WRITER: Account = Account {
    user: "writer",
    password: "writer",
};
/// The application's reader: SELECT on the lab database.
pub const READER: Account = Account {
    user: "reader",
    password: "reader",
};
/// The lab's own eyes (process list, replication state); local to each server, never
/// replicated.
pub const MONITOR: Account = Account {
    user: "monitor",
    password: "monitor",
};
/// Replication between the two masters of a pair; local to each server.
pub const REPLICATION: Account = Account {
    user: "repl",
    password: "repl",
};

/// A database host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Side {
    /// .253, the real server of both virtual servers; even ids.
    A,
    /// .254, the sorry server; odd ids.
    B,
}

impl Side {
    pub fn ip(self) -> Ipv4Addr {
        match self {
            Side::A => Ipv4Addr::new(192, 168, 66, 253),
            Side::B => Ipv4Addr::new(192, 168, 66, 254),
        }
    }

    pub fn peer(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    /// `auto_increment_offset`: the seed's A wrote ids 2, 4, 6…
    pub fn offset(self) -> u32 {
        match self {
            Side::A => 2,
            Side::B => 1,
        }
    }

    pub(super) fn host_role(self) -> &'static str {
        match self {
            Side::A => "db253",
            Side::B => "db254",
        }
    }
}

/// `253:3306`: how the report names a MariaDB instance.
pub fn server_label(side: Side, port: u16) -> String {
    format!("{}:{port}", side.ip().octets()[3])
}

/// The instance's `server_id` (also its GTID domain).
pub fn server_id(side: Side, port: u16) -> u32 {
    let base = if port == 3306 { 1 } else { 3 };
    base + u32::from(side == Side::B)
}

/// The instance a `server_id` belongs to.
pub fn instance_of_server_id(id: u32) -> Option<(Side, u16)> {
    PORTS
        .iter()
        .flat_map(|&p| [(Side::A, p), (Side::B, p)])
        .find(|&(s, p)| server_id(s, p) == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compiled-in files are the seed's, byte for byte (`../shared/seed` beside the
    /// repository, as on CI).
    #[test]
    fn the_compiled_in_configurations_are_the_seeds() {
        let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/seed");
        if !shared.is_dir() {
            assert!(
                std::env::var_os("CI").is_none_or(|v| v != "true"),
                "{} is missing",
                shared.display()
            );
            eprintln!("skipped: {} is missing", shared.display());
            return;
        }
        for config in [DirectorConfig::SEED_MASTER, DirectorConfig::SEED_BACKUP] {
            let DirectorConfig::Seed { file_name, text } = config else {
                unreachable!("a seed configuration")
            };
            let path = shared.join(file_name);
            let original = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            assert!(
                text == original,
                "crates/seed-lab/seed/{file_name} differs from {}",
                path.display()
            );
        }
    }

    #[test]
    fn safety_keywords_go_into_every_virtual_server() {
        let DirectorConfig::Seed { text, .. } = DirectorConfig::SEED_MASTER else {
            unreachable!("a seed configuration")
        };
        let safe = add_safety_keywords(text);
        assert_eq!(safe.matches("mysql_writer").count(), 2, "{safe}");
        assert_eq!(safe.matches("connection_fencing close").count(), 2);
        assert_eq!(safe.matches("MYSQL_CHECK {").count(), 2);
        assert!(!safe.contains("TCP_CHECK"));
        assert_eq!(safe.matches("user monitor").count(), 2);
        // The seed's timings stay.
        assert_eq!(safe.matches("connect_timeout 5").count(), 2);
        assert_eq!(safe.matches("delay_loop 20").count(), 2);
        // Only lines were added: every line of the seed's but the checkers' is still there.
        for line in text.lines().filter(|l| !l.contains("TCP_CHECK")) {
            assert!(safe.contains(line), "{line:?} lost");
        }
        let config = DirectorConfig::SEED_BACKUP.with_safety_keywords().unwrap();
        assert_eq!(
            config.to_string(),
            "the seed's keepalived-backup.conf with halb's safety keywords"
        );
    }

    #[test]
    fn server_ids_are_distinct_and_map_back() {
        let mut seen = Vec::new();
        for port in PORTS {
            for side in [Side::A, Side::B] {
                let id = server_id(side, port);
                assert!(!seen.contains(&id));
                seen.push(id);
                assert_eq!(instance_of_server_id(id), Some((side, port)));
            }
        }
        assert_eq!(server_label(Side::B, 3308), "254:3308");
        assert_eq!(instance_of_server_id(9), None);
    }
}
