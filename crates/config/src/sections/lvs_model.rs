//! Model types of the LVS part: `virtual_server_group`, `virtual_server`, `real_server`,
//! `sorry_server` and the health checkers.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LvsConfig {}
