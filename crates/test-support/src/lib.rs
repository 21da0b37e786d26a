//! What halb's integration tests share, and nothing else uses (`publish = false`, a
//! dev-dependency only):
//!
//! - [`halb_binary()`]: the halb binary under test, for packages other than `halb`;
//! - [`netns`]: network namespaces, veth pairs and bridges that a test makes and that go away
//!   when the value is dropped, also when the test panics; nothing in them routes out;
//! - [`process`]: a child process killed (with its process group) when the value is dropped;
//! - [`shared`]: the seed's files, in `shared/` beside the checkout (as CI lays it out) or
//!   where `HALB_SHARED_DIR` says;
//! - [`skip`]: a visible "skipped" line for a test that cannot run here, and a failure instead
//!   under `CI=true`, where everything the tests need is installed.

pub mod halb_binary;
pub mod netns;
pub mod process;
pub mod shared;
pub mod skip;

pub use halb_binary::halb_binary;
pub use netns::{Bridge, Netns};
pub use process::ChildGuard;
pub use shared::{seed_path, seed_text, shared_dir};
pub use skip::{installed, is_root, skip};
