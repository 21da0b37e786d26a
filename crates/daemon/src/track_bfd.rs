//! `track_bfd` in a `vrrp_instance`: each line names a `bfd_instance` whose session moves the
//! instance's priority or puts it in FAULT, as vrrp_track.c (`alloc_track_bfd`,
//! `initialise_track_bfd_state`) has it in keepalived 2.2.7. The lines are kept as written in
//! the instance's `other` settings; they are read here, where the `bfd_instance`s are known.

use halb_config::model::{BfdInstance, VrrpInstance};
use halb_vrrp::{TrackerConfig, TrackerStatus};

/// The tracker name of a BFD instance: apart from the scripts' and interfaces' names, which
/// could be the same words.
pub fn tracker_name(bfd: &str) -> String {
    format!("BFD {bfd}")
}

/// The trackers of `instance`'s `track_bfd` lines; lines keepalived ignores are reported in
/// `unsupported` with its words.
pub fn trackers(
    instance: &VrrpInstance,
    bfd: &[BfdInstance],
    unsupported: &mut Vec<String>,
) -> Vec<TrackerConfig> {
    let name = &instance.name;
    let mut out: Vec<TrackerConfig> = Vec::new();
    let lines = instance
        .other
        .iter()
        .filter(|s| s.keyword == "track_bfd")
        .flat_map(|s| s.block.iter().flatten());
    for line in lines {
        let tracked = &line.keyword;
        let Some(b) = bfd.iter().find(|b| &b.name == tracked && b.vrrp) else {
            unsupported.push(format!(
                "({name}) track bfd {tracked} not found, ignoring..."
            ));
            continue;
        };
        if out.iter().any(|t| t.name == tracker_name(tracked)) {
            unsupported.push(format!("({name}) duplicate track_bfd {tracked} - ignoring"));
            continue;
        }
        let (mut weight, mut reverse) = (b.weight, b.weight_reverse);
        match line.args.as_slice() {
            [] => {}
            [w, ..] if w != "weight" => {
                unsupported.push(format!(
                    "({name}) unknown track bfd {tracked} option {w} - ignoring"
                ));
                continue;
            }
            [_] => {
                unsupported.push(format!(
                    "({name}) weight without value specified for track bfd {tracked} - ignoring"
                ));
                continue;
            }
            [_, value, rest @ ..] => {
                match value.parse::<i32>() {
                    Ok(v) if (-253..=253).contains(&v) => weight = v,
                    _ => unsupported.push(format!(
                        "({name}) weight for track bfd {tracked} must be in [-253..253] \
                         inclusive. Ignoring..."
                    )),
                }
                match rest.first().map(String::as_str) {
                    None => {}
                    Some("reverse") => reverse = true,
                    Some("noreverse") => reverse = false,
                    Some(other) => {
                        unsupported.push(format!(
                            "({name}) unknown track bfd {tracked} weight option {other} - ignoring"
                        ));
                        continue;
                    }
                }
            }
        }
        out.push(TrackerConfig {
            name: tracker_name(tracked),
            weight,
            reverse,
            // keepalived starts every tracked BFD as down (`bfd_up = false`) until its session
            // reports Up.
            initial: TrackerStatus::Down,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use halb_config::{load_str, LoadOptions};

    #[test]
    fn lines_as_keepalived_reads_them() {
        let text = "bfd_instance B1 {\n neighbor_ip 192.168.66.2\n weight 10 reverse\n}\n\
            bfd_instance B2 {\n neighbor_ip 192.168.66.3\n}\n\
            bfd_instance ONLY_CHECKER {\n neighbor_ip 192.168.66.4\n checker\n}\n\
            vrrp_instance VI {\n interface eth0\n virtual_router_id 1\n priority 100\n \
            virtual_ipaddress {\n 192.168.66.251\n }\n track_bfd {\n B1\n B2 weight -20\n \
            B2\n NOPE\n ONLY_CHECKER\n B1 weight\n }\n}\n";
        let opts = LoadOptions {
            config_id: "t".into(),
            interfaces: None,
            max_lines: 1000,
            script_search_path: None,
        };
        let loaded = load_str("t.conf", text, &opts);
        let mut unsupported = Vec::new();
        let t = trackers(
            &loaded.config.vrrp.instances[0],
            &loaded.config.bfd,
            &mut unsupported,
        );
        let got: Vec<(String, i32, bool)> = t
            .iter()
            .map(|t| (t.name.clone(), t.weight, t.reverse))
            .collect();
        assert_eq!(
            got,
            [("BFD B1".into(), 10, true), ("BFD B2".into(), -20, false)]
        );
        assert!(t.iter().all(|t| t.initial == TrackerStatus::Down));
        assert_eq!(
            unsupported,
            [
                "(VI) duplicate track_bfd B2 - ignoring",
                "(VI) track bfd NOPE not found, ignoring...",
                "(VI) track bfd ONLY_CHECKER not found, ignoring...",
                "(VI) duplicate track_bfd B1 - ignoring",
            ]
        );
    }
}
