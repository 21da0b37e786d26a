//! The seed's files, which live outside the repository: in `shared/` beside the checkout, as CI
//! lays it out (`…/main` the clone, `…/shared` the seed), or wherever `HALB_SHARED_DIR` points.
//!
//! Found at run time, not with `include_str!`: a checkout without `shared/` still builds, and the
//! test that needs the seed says which path it tried.

use std::path::{Path, PathBuf};

/// Overrides where the shared directory is (a path; relative to the test's working directory).
pub const SHARED_DIR_VAR: &str = "HALB_SHARED_DIR";

/// The shared directory: `$HALB_SHARED_DIR`, or `shared/` beside the checkout. Panics, naming the
/// path tried, when it is not a directory.
pub fn shared_dir() -> PathBuf {
    let (dir, origin) = match std::env::var_os(SHARED_DIR_VAR) {
        Some(dir) => (PathBuf::from(dir), format!("from {SHARED_DIR_VAR}")),
        None => (beside_checkout(), "beside the checkout".to_string()),
    };
    assert!(
        dir.is_dir(),
        "the shared directory {} ({origin}) does not exist: the seed's files must sit in `shared/` \
         beside the checkout, or set {SHARED_DIR_VAR} to where they are",
        dir.display()
    );
    dir
}

/// A file of the seed (`shared/seed/NAME`); panics, naming the path, when it is missing.
pub fn seed_path(name: &str) -> PathBuf {
    let path = shared_dir().join("seed").join(name);
    assert!(
        path.is_file(),
        "the seed's {name} is not at {}",
        path.display()
    );
    path
}

/// The text of a file of the seed (`shared/seed/NAME`).
pub fn seed_text(name: &str) -> String {
    let path = seed_path(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read the seed's {}: {e}", path.display()))
}

/// The root of the checkout this crate was built from (crates/test-support is two levels below
/// it).
pub(crate) fn checkout_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// `shared/` beside the checkout this crate was built from.
fn beside_checkout() -> PathBuf {
    let root = checkout_root();
    match root.parent() {
        Some(parent) => parent.join("shared"),
        None => root.join("../shared"),
    }
}
