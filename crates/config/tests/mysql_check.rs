//! halb's MYSQL_CHECK: its keywords, defaults, the warning for a check without a user, and the
//! round trip through `to_keepalived_conf`.

use halb_config::diagnostic::{Format, Severity};
use halb_config::model::*;
use halb_config::{load_str, LoadOptions, Loaded};

fn read(text: &str) -> Loaded {
    let opts = LoadOptions {
        config_id: "mysql-test".into(),
        interfaces: None,
        max_lines: 100_000,
        script_search_path: None,
    };
    load_str("test.conf", text, &opts)
}

/// The checkers of the first real server of the first virtual server.
fn checkers(l: &Loaded) -> &[Checker] {
    &l.config.lvs.virtual_servers[0].real_servers[0].checkers
}

fn mysql(c: &Checker) -> &MysqlCheck {
    match c {
        Checker::Mysql(m) => m,
        other => panic!("expected MYSQL_CHECK, got {other:?}"),
    }
}

const FULL: &str = r#"
virtual_server 192.168.66.251 3306 {
    delay_loop 2
    lb_algo rr
    lb_kind DR
    protocol TCP
    real_server 192.168.66.253 3306 {
        weight 1
        MYSQL_CHECK {
            user halb_monitor
            password "s3cret pass"
            database shop
            query "SELECT COUNT(*) FROM orders WHERE id = 1"
            connect_timeout 3
            connect_port 3307
            connect_ip 192.168.66.254
            bindto 192.168.66.250
            retry 2
            delay_before_retry 1
            delay_loop 4
        }
    }
}
"#;

#[test]
fn reads_every_keyword() {
    let l = read(FULL);
    assert!(
        l.diagnostics.is_clean(),
        "{}",
        l.diagnostics.render(&l.sources, Format::Short, false)
    );
    let checkers = checkers(&l);
    assert_eq!(checkers.len(), 1);
    assert_eq!(checkers[0].kind_name(), "MYSQL_CHECK");
    let m = mysql(&checkers[0]);
    assert_eq!(m.user, "halb_monitor");
    assert_eq!(m.password, "s3cret pass");
    assert_eq!(m.database.as_deref(), Some("shop"));
    assert_eq!(m.query, "SELECT COUNT(*) FROM orders WHERE id = 1");
    let c = &m.common;
    assert_eq!(c.connect_timeout_us, Some(3_000_000));
    assert_eq!(c.connect_port, Some(3307));
    assert_eq!(c.connect_ip, Some("192.168.66.254".parse().unwrap()));
    assert_eq!(c.bindto, Some("192.168.66.250".parse().unwrap()));
    assert_eq!(c.retry, Some(2));
    assert_eq!(c.delay_before_retry_us, Some(1_000_000));
    assert_eq!(c.delay_loop_us, Some(4_000_000));
    assert_eq!(
        c.connect_to("192.168.66.253".parse().unwrap(), 3306),
        ("192.168.66.254".parse().unwrap(), 3307)
    );
}

#[test]
fn defaults() {
    let l = read(
        "virtual_server 192.168.66.251 3306 {\n  lb_algo rr\n  lb_kind DR\n  protocol TCP\n  real_server 192.168.66.253 3306 {\n    MYSQL_CHECK {\n      user halb_monitor\n    }\n  }\n}\n",
    );
    assert!(l.diagnostics.is_clean());
    let c = &checkers(&l)[0];
    let m = mysql(c);
    assert_eq!(m.password, "");
    assert_eq!(m.database, None);
    assert_eq!(m.query, DEFAULT_MYSQL_QUERY);
    assert_eq!(m.query, "SELECT 1");
    assert_eq!(m.common, CheckerCommon::default());
    // keepalived's defaults for a connecting checker.
    assert_eq!(c.default_retry(), 1);
    assert_eq!(c.default_delay_before_retry_us(), Some(1_000_000));
    assert!(c.has_connection());
    assert_eq!(
        m.common.connect_to("192.168.66.253".parse().unwrap(), 3306),
        ("192.168.66.253".parse().unwrap(), 3306)
    );
}

#[test]
fn missing_user_warns_at_the_block_end_and_skips_the_checker() {
    let text = "virtual_server 192.168.66.251 3306 {\n  lb_algo rr\n  lb_kind DR\n  protocol TCP\n  real_server 192.168.66.253 3306 {\n    MYSQL_CHECK {\n      password x\n    }\n    TCP_CHECK {\n      connect_timeout 2\n    }\n  }\n}\n";
    let l = read(text);
    let warnings: Vec<_> = l
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    let w = warnings[0];
    assert_eq!(w.message, "MYSQL_CHECK has no user - skipping it");
    let span = w.span.expect("the warning has a place");
    // The closing brace of the MYSQL_CHECK block: line 8, column 5.
    assert_eq!((span.line, span.start + 1), (8, 5));
    let short = l.diagnostics.render(&l.sources, Format::Short, false);
    assert!(
        short.contains("test.conf:8:5: warning: MYSQL_CHECK has no user - skipping it"),
        "{short}"
    );
    // The checker is dropped; the TCP_CHECK beside it stays.
    let checkers = checkers(&l);
    assert_eq!(checkers.len(), 1);
    assert_eq!(checkers[0].kind_name(), "TCP_CHECK");
}

#[test]
fn unknown_keyword_inside_warns_with_its_place() {
    let text = "virtual_server 192.168.66.251 3306 {\n  lb_algo rr\n  lb_kind DR\n  protocol TCP\n  real_server 192.168.66.253 3306 {\n    MYSQL_CHECK {\n      user mon\n      ssl_ca /etc/ca.pem\n    }\n  }\n}\n";
    let l = read(text);
    let short = l.diagnostics.render(&l.sources, Format::Short, false);
    assert!(short.contains("test.conf:8:7: warning:"), "{short}");
    assert!(short.contains("ssl_ca"), "{short}");
    assert_eq!(mysql(&checkers(&l)[0]).user, "mon");
}

#[test]
fn round_trip_through_keepalived_conf() {
    let first = read(FULL);
    let text = first.config.to_keepalived_conf();
    assert!(text.contains("MYSQL_CHECK {"), "{text}");
    assert!(text.contains("user halb_monitor"), "{text}");
    assert!(text.contains("\"s3cret pass\""), "{text}");
    let second = read(&text);
    assert!(
        second.diagnostics.is_clean(),
        "{}\n{text}",
        second
            .diagnostics
            .render(&second.sources, Format::Short, false)
    );
    assert_eq!(first.config.lvs, second.config.lvs, "written:\n{text}");

    // Defaults are not written out, and still come back the same.
    let minimal = read(
        "virtual_server 192.168.66.251 3306 {\n  lb_algo rr\n  lb_kind DR\n  protocol TCP\n  real_server 192.168.66.253 3306 {\n    MYSQL_CHECK {\n      user mon\n    }\n  }\n}\n",
    );
    let text = minimal.config.to_keepalived_conf();
    assert!(!text.contains("query"), "{text}");
    assert!(!text.contains("password"), "{text}");
    assert_eq!(
        minimal.config.lvs,
        read(&text).config.lvs,
        "written:\n{text}"
    );
}
