//! Kernel parameters under `/proc/sys` (`net.ipv4.conf.lo.arp_ignore`, …), read and written
//! with the previous value returned so that a change can be undone (`halb realserver stop`).
//!
//! `/proc/sys/net` shows the network namespace of the thread that opens the file, so these
//! calls act on the caller's namespace.

use std::fmt;
use std::fs;
use std::path::PathBuf;

use crate::error::{Error, IoContext, Result};

/// A parameter, by its path under `/proc/sys`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SysctlKey(Vec<String>);

impl SysctlKey {
    /// A dotted name as `sysctl(8)` takes it: `net.ipv4.ip_forward`. Use [`SysctlKey::interface`]
    /// for per-interface keys, since interface names may contain dots (`eth0.100`).
    pub fn new(dotted: &str) -> SysctlKey {
        SysctlKey(dotted.split('.').map(str::to_string).collect())
    }

    /// `net.<family>.conf.<interface>.<name>`, with the interface name kept whole;
    /// `family` is `ipv4` or `ipv6`, `interface` may be `all` or `default`.
    pub fn interface(family: &str, interface: &str, name: &str) -> SysctlKey {
        SysctlKey(
            ["net", family, "conf", interface, name]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        )
    }

    fn path(&self) -> Result<PathBuf> {
        let mut path = PathBuf::from("/proc/sys");
        for part in &self.0 {
            // A part that climbs out of /proc/sys or spans directories is no sysctl name.
            if part.is_empty() || part == "." || part == ".." || part.contains('/') {
                return Err(Error::invalid(
                    format!("sysctl {self}"),
                    "not a sysctl name",
                ));
            }
            path.push(part);
        }
        Ok(path)
    }
}

impl fmt::Display for SysctlKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// The value, without the trailing newline.
pub fn read(key: &SysctlKey) -> Result<String> {
    let path = key.path()?;
    let text = fs::read_to_string(&path).context(|| format!("reading sysctl {key}"))?;
    Ok(text.trim_end_matches('\n').to_string())
}

/// Sets `value` and returns the value it had.
pub fn write(key: &SysctlKey, value: &str) -> Result<String> {
    let previous = read(key)?;
    let path = key.path()?;
    fs::write(&path, value).context(|| format!("setting sysctl {key} to {value}"))?;
    Ok(previous)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_interface_names_whole() {
        let key = SysctlKey::interface("ipv4", "eth0.100", "arp_ignore");
        assert_eq!(
            key.path().unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/arp_ignore")
        );
        assert_eq!(
            SysctlKey::new("net.ipv4.ip_forward").path().unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
        assert!(SysctlKey::interface("ipv4", "../../kernel", "x")
            .path()
            .is_err());
        assert!(SysctlKey::new("net..x").path().is_err());
    }

    #[test]
    fn reads_a_value_every_kernel_has() {
        let value = read(&SysctlKey::new("net.ipv4.ip_forward")).unwrap();
        assert!(value == "0" || value == "1", "{value:?}");
    }
}
