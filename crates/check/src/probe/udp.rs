//! UDP_CHECK, as keepalived's `udp_check_thread()`:
//!
//! - the payload is sent on a connected socket (without a payload, keepalived's 32-byte filler
//!   "keepalived check - keepalived ch");
//! - without `require_reply`, the probe succeeds unless an ICMP destination unreachable comes
//!   back within the timeout (a connected socket sees it as a receive error such as
//!   ECONNREFUSED); a datagram back is a success too;
//! - with `require_reply`, a datagram must come back within the timeout; when `reply` is set,
//!   its length must be within `min_reply_length..=max_reply_length` and its first bytes must
//!   match `reply` (nibbles written `x` match anything). As in keepalived, the lengths are only
//!   checked together with `reply`, and only the shorter of the reply and `reply` is compared.

use super::net::{Step, Target};
use super::{ProbeFailure, ProbeOk, ProbeResult};
use halb_config::model::HexBytes;

/// What keepalived sends when no payload is configured (`set_buf()` over 32 bytes).
pub fn default_payload() -> Vec<u8> {
    b"keepalived check - keepalived check - "[..32].to_vec()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpProbe {
    pub target: Target,
    pub payload: Vec<u8>,
    pub require_reply: bool,
    pub reply: Option<HexBytes>,
    pub min_reply_length: u16,
    pub max_reply_length: u16,
}

impl UdpProbe {
    pub async fn check(&self) -> ProbeResult {
        let step = Step::new("sending to");
        match tokio::time::timeout(self.target.timeout, self.exchange(&step)).await {
            Ok(result) => result,
            Err(_) if !self.require_reply => Ok(ProbeOk::new(format!(
                "no ICMP error from {} within {:?}",
                self.target.peer(),
                self.target.timeout
            ))),
            Err(_) => Err(ProbeFailure::timeout(format!(
                "no UDP reply from {} within {:?}",
                self.target.peer(),
                self.target.timeout
            ))),
        }
    }

    async fn exchange(&self, step: &Step) -> ProbeResult {
        let peer = self.target.peer();
        let socket = self.target.udp()?;
        socket
            .send(&self.payload)
            .await
            .map_err(|e| ProbeFailure::io(&e, format!("UDP send to {peer}: {e}")))?;
        step.set("waiting for a reply from");
        // One byte more than the longest accepted reply, so that a longer one shows.
        let mut buf = vec![0u8; usize::from(self.max_reply_length) + 1];
        let n = socket
            .recv(&mut buf)
            .await
            .map_err(|e| ProbeFailure::io(&e, format!("UDP connection to {peer} failed: {e}")))?;
        if self.require_reply {
            if let Some(reply) = &self.reply {
                if let Err(why) = check_reply(
                    &buf[..n],
                    reply,
                    self.min_reply_length,
                    self.max_reply_length,
                ) {
                    return Err(ProbeFailure::protocol(format!(
                        "UDP reply data mismatch from {peer}: {why}"
                    )));
                }
            }
        }
        Ok(ProbeOk::new(format!("UDP reply of {n} bytes from {peer}")))
    }
}

/// keepalived's `check_udp_reply()`.
pub fn check_reply(got: &[u8], want: &HexBytes, min: u16, max: u16) -> Result<(), String> {
    if got.len() < usize::from(min) || got.len() > usize::from(max) {
        return Err(format!("length {} not within {min}..={max}", got.len()));
    }
    for (i, (g, w)) in got.iter().zip(&want.data).enumerate() {
        let wildcard = want
            .mask
            .as_ref()
            .and_then(|m| m.get(i))
            .copied()
            .unwrap_or(0);
        if (g ^ w) & !wildcard != 0 {
            return Err(format!("byte {i} is {g:#04x}, expected {w:#04x}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filler() {
        assert_eq!(default_payload(), b"keepalived check - keepalived ch");
    }

    #[test]
    fn reply_matching() {
        let want = HexBytes {
            data: vec![0xab, 0x10],
            mask: Some(vec![0x00, 0x0f]),
        };
        assert!(check_reply(&[0xab, 0x1f], &want, 0, 255).is_ok());
        assert!(check_reply(&[0xab, 0x2f], &want, 0, 255).is_err());
        assert!(
            check_reply(&[0xab], &want, 0, 255).is_ok(),
            "shorter: compared as far as it goes"
        );
        assert!(check_reply(&[0xab], &want, 2, 255).is_err(), "too short");
        assert!(
            check_reply(&[0xab, 0x10, 0], &want, 0, 2).is_err(),
            "too long"
        );
    }
}
