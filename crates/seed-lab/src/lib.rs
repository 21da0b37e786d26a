//! The seed's lab, behind `halb lab`: the seed document's topology rebuilt in network namespaces
//! and its test plan run against it.
//!
//! - [`topology`]: the bridge, the client, two directors running `halb run` on the seed's
//!   configurations, two database hosts with dual-master MariaDB pairs; built, detached for
//!   `halb lab up` and taken down again.
//! - [`mariadb`]: one throwaway MariaDB server (its own data directory, port and socket).
//! - [`mysql_client`]: the blocking MySQL client the application and the watchers use (halb's
//!   own, from `halb_check`).
//! - [`writer`]: the seed's application, writing one row a second through the VIP and reading.
//! - [`scenarios`]: the seed's test plan, one scenario per section, and the report.
//!
//! Everything here needs root, iproute2, mariadb-server and mariadb-client (`scripts/deps.sh`).

pub mod mariadb;
pub mod scenarios;
pub mod topology;
pub mod writer;

/// The blocking MySQL client, which lives beside MYSQL_CHECK.
pub use halb_check::mysql::client as mysql_client;
