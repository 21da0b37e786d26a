//! Keywords halb knows and keeps, but does not act on (yet).
//!
//! They are accepted without a warning, because keepalived accepts them, and written back out
//! unchanged, so that no line of a user's configuration is lost on a round trip.

use serde::{Deserialize, Serialize};

/// A keyword line with its arguments and block, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    pub keyword: String,
    pub args: Vec<String>,
    /// `None` when the keyword had no block.
    pub block: Option<Vec<Setting>>,
}

impl Setting {
    /// Captures a node as written.
    pub fn from_node(node: &crate::tree::Node) -> Self {
        Setting {
            keyword: node.name().to_string(),
            args: node.args().iter().map(|w| w.text.clone()).collect(),
            block: node
                .block
                .as_ref()
                .map(|b| b.nodes.iter().map(Setting::from_node).collect()),
        }
    }

    pub fn write(&self, w: &mut crate::write::ConfWriter) {
        let mut words = vec![crate::write::quote(&self.keyword)];
        words.extend(self.args.iter().map(|a| crate::write::quote(a)));
        match &self.block {
            Some(children) => {
                w.open(&words.join(" "));
                for c in children {
                    c.write(w);
                }
                w.close();
            }
            None => w.line(&words.join(" ")),
        }
    }
}
