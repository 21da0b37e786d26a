//! The Internet checksum (RFC 1071) and the pseudo-headers VRRP puts in front of it.
//!
//! VRRPv2 over IPv4 sums the VRRP message alone (RFC 3768 §5.3.8). VRRPv3 (RFC 5798 §5.2.8), and
//! VRRPv2 over IPv6 as keepalived sends it (the kernel's `IPV6_CHECKSUM`), prepend the IP
//! pseudo-header with next header 112.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::packet::VRRP_PROTOCOL;

/// A running one's-complement sum of 16-bit big-endian words.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sum(u32);

impl Sum {
    /// Adds `bytes`; an odd trailing byte is padded with zero, as RFC 1071 says.
    ///
    /// Only the last chunk fed may have an odd length (all callers feed whole words before).
    pub(crate) fn add(mut self, bytes: &[u8]) -> Self {
        let mut words = bytes.chunks_exact(2);
        for word in &mut words {
            self.0 += u32::from(u16::from_be_bytes([word[0], word[1]]));
            self.fold_once();
        }
        if let [last] = words.remainder() {
            self.0 += u32::from(*last) << 8;
            self.fold_once();
        }
        self
    }

    fn fold_once(&mut self) {
        // Keeping the accumulator below 2^17 means no input length can overflow it.
        self.0 = (self.0 & 0xffff) + (self.0 >> 16);
    }

    /// The checksum to write into the header: the complement of the folded sum.
    pub(crate) fn finish(mut self) -> u16 {
        self.fold_once();
        self.fold_once();
        // Truncation is the point: the fold above leaves at most 16 significant bits.
        !(self.0 as u16)
    }
}

/// The IPv4 pseudo-header of RFC 5798 §5.2.8 (the same as TCP's, protocol 112).
pub(crate) fn ipv4_pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, vrrp_len: u16) -> Sum {
    let len = vrrp_len.to_be_bytes();
    Sum::default()
        .add(&src.octets())
        .add(&dst.octets())
        .add(&[0, VRRP_PROTOCOL, len[0], len[1]])
}

/// The IPv6 pseudo-header of RFC 8200 §8.1, next header 112.
pub(crate) fn ipv6_pseudo_header(src: Ipv6Addr, dst: Ipv6Addr, vrrp_len: u32) -> Sum {
    let len = vrrp_len.to_be_bytes();
    Sum::default()
        .add(&src.octets())
        .add(&dst.octets())
        .add(&len)
        .add(&[0, 0, 0, VRRP_PROTOCOL])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2, so the checksum is 220d.
        let sum = Sum::default().add(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
        assert_eq!(sum.finish(), !0xddf2);
    }

    #[test]
    fn odd_length_is_zero_padded() {
        assert_eq!(
            Sum::default().add(&[0xab]).finish(),
            Sum::default().add(&[0xab, 0]).finish()
        );
    }

    #[test]
    fn a_message_with_its_checksum_sums_to_zero() {
        let mut msg = [0x21, 0xc8, 0x64, 0x01, 0x01, 0x01, 0, 0, 192, 168, 66, 251];
        let csum = Sum::default().add(&msg).finish().to_be_bytes();
        msg[6] = csum[0];
        msg[7] = csum[1];
        assert_eq!(Sum::default().add(&msg).finish(), 0);
    }
}
