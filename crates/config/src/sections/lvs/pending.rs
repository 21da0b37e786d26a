//! What reading the LVS sections keeps to find things by name: a file of thousands of groups
//! and services must not be read with a scan per service.

use std::collections::HashMap;

use super::model::{VirtualServer, VirtualServerGroup, VirtualServerKey};

/// Kept by the reader beside the model while the file is read.
#[derive(Debug, Default)]
pub struct Pending {
    /// The first `virtual_server_group` of each name (keepalived uses the first), as positions
    /// in `LvsConfig::groups`.
    group_at: HashMap<String, usize>,
    /// The services read before their group, by the group's name: positions in
    /// `LvsConfig::virtual_servers`, in file order.
    waiting: HashMap<String, Vec<usize>>,
}

impl Pending {
    /// The group of that name among `groups` (the model's, as read so far).
    pub fn group<'a>(
        &self,
        groups: &'a [VirtualServerGroup],
        name: &str,
    ) -> Option<&'a VirtualServerGroup> {
        self.group_at.get(name).and_then(|&i| groups.get(i))
    }

    /// Records a group about to be pushed at `position`; false when one of that name exists.
    pub fn add_group(&mut self, name: &str, position: usize) -> bool {
        if self.group_at.contains_key(name) {
            return false;
        }
        self.group_at.insert(name.to_string(), position);
        true
    }

    /// Records a service about to be pushed at `position`, when it waits for its group.
    pub fn add_service(&mut self, vs: &VirtualServer, position: usize) {
        if let VirtualServerKey::Group(name) = &vs.key {
            if !self.group_at.contains_key(name) {
                self.waiting.entry(name.clone()).or_default().push(position);
            }
        }
    }

    /// The services that waited for the group `name`, now read.
    pub fn take_waiting(&mut self, name: &str) -> Vec<usize> {
        self.waiting.remove(name).unwrap_or_default()
    }

    /// Finds the waiting services anew after some were taken out of `services`.
    pub fn index_waiting(&mut self, services: &[VirtualServer]) {
        self.waiting.clear();
        for (i, vs) in services.iter().enumerate() {
            self.add_service(vs, i);
        }
    }
}
