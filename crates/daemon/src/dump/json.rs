//! `keepalived.json` (`SIGRTMIN+2`): vrrp_json.c `vrrp_json_dump`, an array with one
//! `{"data": …, "stats": …}` object per instance, keys in keepalived's order and numbers in
//! its formats (`%f` for the last transition, `%g` for the other times). Written by hand
//! because the order of the keys is part of the layout scripts may rely on.

use std::fmt::Write as _;
use std::time::UNIX_EPOCH;

use halb_vrrp::packet::Auth;

use super::{state_number, DumpInput, InstanceDump};

pub fn render_json(input: &DumpInput) -> String {
    let objects: Vec<String> = input
        .instances
        .iter()
        .map(|i| format!("{{\"data\":{},\"stats\":{}}}", data(i), stats(i)))
        .collect();
    format!("[{}]", objects.join(","))
}

fn string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// C's `%g` for the values keepalived prints with it (whole seconds in practice).
fn g(x: f64) -> String {
    format!("{x}")
}

fn data(i: &InstanceDump) -> String {
    let mut o = Fields::default();
    o.raw("iname", string(&i.name));
    o.raw("dont_track_primary", "0".into());
    o.raw("skip_check_adv_addr", "0".into());
    o.raw("strict_mode", "0".into());
    o.raw("vmac_ifname", string(""));
    o.raw("ifp_ifname", string(&i.interface));
    o.raw(
        "master_priority",
        i.master.map_or(0, |(_, p)| p).to_string(),
    );
    let since = i
        .last_transition
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    o.raw("last_transition", format!("{:.6}", since.as_secs_f64()));
    o.raw("garp_delay", g(i.garp.master_delay.as_secs_f64()));
    o.raw(
        "garp_refresh",
        i.garp
            .master_refresh
            .unwrap_or_default()
            .as_secs()
            .to_string(),
    );
    o.raw("garp_rep", i.garp.master_repeat.to_string());
    o.raw("garp_refresh_rep", i.garp.master_refresh_repeat.to_string());
    o.raw(
        "garp_lower_prio_delay",
        i.garp.lower_prio_delay.as_secs().to_string(),
    );
    o.raw("garp_lower_prio_rep", i.garp.lower_prio_repeat.to_string());
    o.raw(
        "lower_prio_no_advert",
        u8::from(i.lower_prio_no_advert).to_string(),
    );
    o.raw(
        "higher_prio_send_advert",
        u8::from(i.higher_prio_send_advert).to_string(),
    );
    o.raw("vrid", i.vrid.to_string());
    o.raw("base_priority", i.priority.to_string());
    o.raw("effective_priority", i.effective_priority.to_string());
    o.raw("vipset", i.vips_set.to_string());
    o.raw("promote_secondaries", "false".into());
    o.raw("adver_int", g(i.advert_interval.as_secs_f64()));
    o.raw("master_adver_int", g(i.master_adver_int.as_secs_f64()));
    o.raw("nopreempt", (!i.preempt).to_string());
    o.raw("preempt_delay", i.preempt_delay.as_secs().to_string());
    o.raw("state", state_number(i.state).to_string());
    o.raw("wantstate", state_number(i.wantstate).to_string());
    o.raw("version", i.version.to_string());
    o.raw("smtp_alert", "false".into());
    o.raw("notify_deleted", "false".into());
    // vrrp_json_array_dump leaves out empty lists.
    for (key, list) in [("vips", &i.vips), ("evips", &i.excluded_vips)] {
        if !list.is_empty() {
            let items: Vec<String> = list.iter().map(|v| string(v)).collect();
            o.raw(key, format!("[{}]", items.join(",")));
        }
    }
    let (auth_type, auth_data) = match &i.auth {
        Auth::None => (0, String::new()),
        Auth::Pass(data) => {
            let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
            (1, String::from_utf8_lossy(&data[..end]).into_owned())
        }
        Auth::Ah => (2, String::new()),
    };
    o.raw("auth_type", auth_type.to_string());
    if auth_type == 1 {
        o.raw("auth_data", string(&auth_data));
    }
    o.finish()
}

fn stats(i: &InstanceDump) -> String {
    let s = &i.stats;
    let mut o = Fields::default();
    for (key, value) in [
        ("advert_rcvd", s.adverts_received),
        ("advert_sent", s.adverts_sent),
        ("become_master", s.became_master),
        ("release_master", s.released_master),
        ("packet_len_err", s.packet_length_errors),
        ("advert_interval_err", s.advert_interval_errors),
        ("ip_ttl_err", s.ttl_errors),
        ("invalid_type_rcvd", s.invalid_type),
        ("addr_list_err", s.address_list_errors),
        ("invalid_authtype", s.invalid_auth_type),
        ("authtype_mismatch", s.auth_type_mismatch),
        ("auth_failure", s.auth_failures),
        ("pri_zero_rcvd", s.priority_zero_received),
        ("pri_zero_sent", s.priority_zero_sent),
    ] {
        o.raw(key, value.to_string());
    }
    o.finish()
}

/// A JSON object built in order.
#[derive(Default)]
struct Fields(String);

impl Fields {
    fn raw(&mut self, key: &str, value: String) {
        if !self.0.is_empty() {
            self.0.push(',');
        }
        let _ = write!(self.0, "{}:{value}", string(key));
    }

    fn finish(self) -> String {
        format!("{{{}}}", self.0)
    }
}
