//! A network namespace owned by one test, removed on drop (also when the test fails).
//!
//! Names carry the test's prefix and the process id, so tests can run in parallel and a
//! leftover can be traced to its run. Only `lo` exists inside until the test adds interfaces;
//! nothing routes out.

use std::process::{Command, Output};

pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let name = format!("halbt-{tag}-{}", std::process::id());
        // A namespace of the same name can only be left by a killed earlier run of this pid.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("run ip netns add (is iproute2 installed?)");
        assert!(
            out.status.success(),
            "ip netns add {name} failed (tests need root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ns = Netns { name };
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs a command inside the namespace and panics with its output if it fails.
    pub fn run(&self, argv: &[&str]) -> Output {
        let out = self
            .command(argv[0])
            .args(&argv[1..])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {argv:?} in {}: {e}", self.name));
        assert!(
            out.status.success(),
            "{argv:?} in {} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
