//! `keepalived.stats` (SIGUSR2): vrrp_print.c `vrrp_print_stats`, one block per instance.

use std::fmt::Write as _;

use super::DumpInput;

pub fn render_stats(input: &DumpInput) -> String {
    let mut out = String::new();
    for i in &input.instances {
        let s = &i.stats;
        let _ = write!(
            out,
            "VRRP Instance: {}\n  \
             Advertisements:\n    Received: {}\n    Sent: {}\n  \
             Became master: {}\n  Released master: {}\n  \
             Packet Errors:\n    Length: {}\n    TTL: {}\n    Invalid Type: {}\n    \
             Advertisement Interval: {}\n    Address List: {}\n  \
             Authentication Errors:\n    Invalid Type: {}\n    Type Mismatch: {}\n    \
             Failure: {}\n  \
             Priority Zero:\n    Received: {}\n    Sent: {}\n",
            i.name,
            s.adverts_received,
            s.adverts_sent,
            s.became_master,
            s.released_master,
            s.packet_length_errors,
            s.ttl_errors,
            s.invalid_type,
            s.advert_interval_errors,
            s.address_list_errors,
            s.invalid_auth_type,
            s.auth_type_mismatch,
            s.auth_failures,
            s.priority_zero_received,
            s.priority_zero_sent,
        );
    }
    out
}
