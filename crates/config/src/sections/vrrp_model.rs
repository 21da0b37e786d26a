//! Model types of the VRRP part: `vrrp_sync_group`, `vrrp_instance`, `vrrp_script`, `track_file`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct VrrpConfig {}
