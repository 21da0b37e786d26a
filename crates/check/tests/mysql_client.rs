//! The blocking MySQL client against a real MariaDB. Needs root and Debian's mariadb-server and
//! mariadb-client (`scripts/deps.sh`).

use halb_check::mysql::client::{ConnectOptions, Connection, SqlError};
use halb_seed_lab::mariadb::{MariaDb, MariaDbOptions};

/// Against a real MariaDB: a login, an OK with the insert id, a result set with a NULL, an
/// error with its SQL state, a refused password, and an auth switch to a plugin this client
/// declines. Needs root and Debian's mariadb-server and mariadb-client (`scripts/deps.sh`).
#[test]
fn talks_to_mariadb() {
    let db = MariaDb::start(
        MariaDbOptions::new()
            .option("plugin-load-add", "auth_ed25519")
            .option("auto_increment_increment", 2),
    )
    .expect("start MariaDB (run scripts/deps.sh as root)");
    db.sql(
        "CREATE DATABASE lab; CREATE TABLE lab.t (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT);
         CREATE USER app@'%' IDENTIFIED BY 'pw'; GRANT ALL ON lab.* TO app@'%';
         CREATE USER ed_only@'%' IDENTIFIED VIA ed25519 USING PASSWORD('pw');",
    )
    .expect("create the lab's users");
    let options = ConnectOptions::new(db.addr(), "app", "pw").database("lab");
    let mut conn = Connection::connect(&options).expect("log in as app");
    assert!(
        conn.server_version.contains("MariaDB"),
        "{}",
        conn.server_version
    );
    let inserted = conn
        .query("INSERT INTO t (v) VALUES ('a'), (NULL)")
        .unwrap();
    assert_eq!((inserted.affected_rows, inserted.last_insert_id), (2, 1));
    let rows = conn.query("SELECT id, v FROM t ORDER BY id").unwrap();
    assert_eq!(rows.columns, vec!["id", "v"]);
    assert_eq!(
        rows.rows,
        vec![
            vec![Some("1".to_string()), Some("a".to_string())],
            vec![Some("3".to_string()), None]
        ]
    );
    assert_eq!(rows.get(1, "id"), Some("3"));
    let id = conn.query("SELECT CONNECTION_ID()").unwrap();
    assert_eq!(id.first(), Some(conn.connection_id.to_string().as_str()));
    match conn.query("SELECT * FROM missing") {
        Err(SqlError::Server { code, state, .. }) => {
            assert_eq!((code, state.as_str()), (1146, "42S02"))
        }
        other => panic!("{other:?}"),
    }
    conn.close();

    let wrong = ConnectOptions::new(db.addr(), "app", "wrong");
    match Connection::connect(&wrong) {
        Err(SqlError::Server { code, .. }) => assert_eq!(code, 1045),
        other => panic!("{other:?}"),
    }
    let ed = ConnectOptions::new(db.addr(), "ed_only", "pw");
    match Connection::connect(&ed) {
        Err(SqlError::Protocol { message, .. }) => {
            assert!(message.contains("client_ed25519"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}
