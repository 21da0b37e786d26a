//! halb's `MYSQL_CHECK`: log in as a monitor user and run a query.
//!
//! ```text
//! MYSQL_CHECK {
//!     user halb_monitor
//!     password "secret"
//!     database mysql        # optional
//!     query "SELECT 1"      # optional, the default
//!     connect_timeout 3     # and every other keyword TCP_CHECK takes
//! }
//! ```

use super::common::{read_keyword, write_keywords};
use super::model::{Checker, CheckerCommon, CheckerKind, MysqlCheck, DEFAULT_MYSQL_QUERY};
use crate::read::Ctx;
use crate::sections::lvs::block_end;
use crate::tree::Node;
use crate::write::{quote, ConfWriter};

/// Reads a MYSQL_CHECK; `None` (with a warning) when it names no `user`.
pub fn read(node: &Node, ctx: &mut Ctx) -> Option<Checker> {
    let kind = CheckerKind::Mysql;
    let mut common = CheckerCommon::default();
    let mut user = None;
    let mut password = String::new();
    let mut database = None;
    let mut query = DEFAULT_MYSQL_QUERY.to_string();
    for n in ctx.block(node) {
        if read_keyword(n, ctx, &mut common, kind) {
            continue;
        }
        ctx.no_block(n);
        match n.name() {
            "user" => user = ctx.string(n, 0).or(user),
            "password" => password = ctx.string(n, 0).unwrap_or(password),
            "database" => database = ctx.string(n, 0).or(database),
            "query" => query = ctx.string(n, 0).unwrap_or(query),
            _ => ctx.unknown(n),
        }
    }
    let Some(user) = user else {
        ctx.diags
            .warn(block_end(node), "MYSQL_CHECK has no user - skipping it");
        return None;
    };
    Some(Checker::Mysql(MysqlCheck {
        common,
        user,
        password,
        database,
        query,
    }))
}

pub fn write(m: &MysqlCheck, w: &mut ConfWriter) {
    write_keywords(&m.common, CheckerKind::Mysql, w);
    w.line(&format!("user {}", quote(&m.user)));
    if !m.password.is_empty() {
        w.line(&format!("password {}", quote(&m.password)));
    }
    if let Some(d) = &m.database {
        w.line(&format!("database {}", quote(d)));
    }
    if m.query != DEFAULT_MYSQL_QUERY {
        w.line(&format!("query {}", quote(&m.query)));
    }
}
