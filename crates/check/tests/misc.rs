//! MISC_CHECK: exit codes, misc_dynamic, the timeout that kills the whole process group, no
//! shell in between, the script user.

use halb_check::probe::misc::MiscProbe;
use halb_sys::script::RunAs;
use halb_test_support::{is_root, skip};
use std::time::Duration;

fn misc(argv: &[&str]) -> MiscProbe {
    MiscProbe {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        credentials: None,
        timeout: Duration::from_secs(10),
        dynamic: false,
        base_weight: 3,
        term_grace: Duration::from_millis(300),
    }
}

fn sh(script: &str) -> MiscProbe {
    misc(&["/bin/sh", "-c", script])
}

/// A scratch directory removed on drop.
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix(&format!("halb-check-{name}-"))
            .tempdir()
            .unwrap();
        Scratch(dir)
    }

    fn file(&self, name: &str) -> String {
        self.0.path().join(name).to_string_lossy().into_owned()
    }
}

#[tokio::test]
async fn exit_codes() {
    let ok = sh("exit 0").check().await.unwrap();
    assert_eq!(ok.weight, None);
    let err = sh("exit 1").check().await.unwrap_err();
    assert_eq!(err.message, "exited with status 1");
    let err = sh("exit 7").check().await.unwrap_err();
    assert_eq!(
        err.message, "exited with status 7",
        "not dynamic: any non-zero fails"
    );
    let err = sh("kill -9 $$").check().await.unwrap_err();
    assert_eq!(err.message, "due to signal 9");
    let err = misc(&["/nonexistent/halb-check"])
        .check()
        .await
        .unwrap_err();
    assert!(
        err.message
            .starts_with("cannot run /nonexistent/halb-check"),
        "{err}"
    );
}

#[tokio::test]
async fn misc_dynamic_weights() {
    let dynamic = |code: u32| {
        let mut p = sh(&format!("exit {code}"));
        p.dynamic = true;
        p
    };
    assert_eq!(
        dynamic(0).check().await.unwrap().weight,
        Some(3),
        "the configured weight"
    );
    assert!(dynamic(1).check().await.is_err());
    assert_eq!(dynamic(2).check().await.unwrap().weight, Some(0));
    assert_eq!(dynamic(7).check().await.unwrap().weight, Some(5));
    assert_eq!(dynamic(255).check().await.unwrap().weight, Some(253));
}

/// Whether a process is gone (or only a zombie waiting for a reaper that is not ours).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

async fn pids_in(file: &str, count: usize) -> Vec<i32> {
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(file) {
            let pids: Vec<i32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
            if pids.len() >= count {
                return pids;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the script did not write {count} pids to {file}");
}

async fn all_gone(pids: &[i32]) -> bool {
    // The kernel may take a moment to tear a killed process down.
    for _ in 0..100 {
        if pids.iter().all(|&p| gone(p)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn timeout_kills_the_process_group() {
    let scratch = Scratch::new("timeout");
    let pids = scratch.file("pids");
    // The script starts a child, records both pids, and waits.
    let mut p = sh(&format!(
        "sleep 60 & echo $! > {pids}; echo $$ >> {pids}; wait"
    ));
    p.timeout = Duration::from_millis(500);
    let err = p.check().await.unwrap_err();
    assert!(err.timed_out(), "{err}");
    let pids = pids_in(&pids, 2).await;
    assert!(all_gone(&pids).await, "still running: {pids:?}");
}

#[tokio::test]
async fn timeout_kills_a_script_that_ignores_sigterm() {
    let scratch = Scratch::new("ignore-term");
    let pids = scratch.file("pids");
    let mut p = sh(&format!(
        "trap '' TERM; sleep 60 & echo $! > {pids}; echo $$ >> {pids}; wait; wait"
    ));
    p.timeout = Duration::from_millis(500);
    let err = p.check().await.unwrap_err();
    assert!(err.timed_out(), "{err}");
    let pids = pids_in(&pids, 2).await;
    assert!(all_gone(&pids).await, "still running: {pids:?}");
}

#[tokio::test]
async fn dropping_a_running_probe_kills_its_group() {
    let scratch = Scratch::new("drop");
    let pids = scratch.file("pids");
    let p = sh(&format!(
        "sleep 60 & echo $! > {pids}; echo $$ >> {pids}; wait"
    ));
    let run = tokio::spawn(async move { p.check().await });
    let found = pids_in(&pids, 2).await;
    run.abort();
    let _ = run.await;
    assert!(all_gone(&found).await, "still running: {found:?}");
}

#[tokio::test]
async fn arguments_reach_the_program_without_a_shell() {
    let scratch = Scratch::new("argv");
    let out = scratch.file("args");
    // /bin/sh here is the program itself; the arguments after "sh" are handed over verbatim.
    let args = ["$HOME", "a b", ";", "*", "`id`", "$(true)", "'q'"];
    let mut argv = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        format!("printf '%s\\n' \"$@\" > {out}"),
        "sh".to_string(),
    ];
    argv.extend(args.iter().map(|s| s.to_string()));
    let p = MiscProbe {
        argv,
        ..misc(&["unused"])
    };
    p.check().await.unwrap();
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(written.lines().collect::<Vec<_>>(), args);
}

#[tokio::test]
async fn runs_as_the_script_user() {
    if !is_root() {
        return skip("changing user needs root");
    }
    let Ok(credentials) = RunAs::lookup("nobody", None) else {
        return skip("no user nobody");
    };
    let scratch = Scratch::new("user");
    std::fs::set_permissions(
        scratch.0.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let out = scratch.file("id");
    let mut p = sh(&format!("id -u > {out}; id -g >> {out}"));
    p.credentials = Some(credentials);
    p.check().await.unwrap();
    let ids = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        ids.lines().collect::<Vec<_>>(),
        vec![
            credentials.uid.to_string().as_str(),
            credentials.gid.to_string().as_str()
        ]
    );
    assert!(RunAs::lookup("halb-no-such-user", None).is_err());
}
