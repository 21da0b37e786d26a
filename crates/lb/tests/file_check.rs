//! FILE_CHECK in the virtual servers: what a tracked file's status does to a real server
//! (track_file.c `process_update_checker_track_file_status()`): weights added to the configured
//! one, FAULT taking the server out, and the start in the state the file gives.

use halb_config::model::LvsConfig;
use halb_config::{load_str, LoadOptions};
use halb_lb::table::{ProtocolKey, ServiceKey, Table};
use halb_lb::virtual_server::{CheckerId, FileStatus, Output, VirtualServers};

fn config(text: &str) -> LvsConfig {
    let loaded = load_str("keepalived.conf", text, &LoadOptions::default());
    assert!(
        !loaded.diagnostics.has_errors(),
        "{:#?}",
        loaded.diagnostics
    );
    loaded.config.lvs
}

const TEXT: &str = r#"
track_file flag {
    file /run/flag
}
virtual_server 10.0.0.1 80 {
    lb_kind DR
    protocol TCP
    real_server 10.0.1.1 80 {
        weight 10
        FILE_CHECK {
            track_file flag
        }
    }
    real_server 10.0.1.2 80 {
        weight 3
        inhibit_on_failure
        FILE_CHECK {
            track_file flag
            weight 0
        }
    }
}
"#;

fn weights(table: &Table) -> Vec<(String, u32)> {
    let key = ServiceKey::Addr {
        protocol: ProtocolKey::Tcp,
        addr: "10.0.0.1:80".parse().expect("address"),
    };
    table
        .services
        .get(&key)
        .map(|s| {
            s.destinations
                .values()
                .map(|d| (d.addr.to_string(), d.weight))
                .collect()
        })
        .unwrap_or_default()
}

fn logs(out: &[Output]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.to_string()),
            _ => None,
        })
        .collect()
}

const RS1: CheckerId = CheckerId {
    vs: 0,
    rs: 0,
    checker: 0,
};
const RS2: CheckerId = CheckerId {
    vs: 0,
    rs: 1,
    checker: 0,
};

#[test]
fn weights_add_to_the_configured_one_and_fault_takes_the_server_out() {
    let mut vss = VirtualServers::new(&config(TEXT));
    let _ = vss.start();
    let both = |a, b| {
        vec![
            ("10.0.1.1:80".to_string(), a),
            ("10.0.1.2:80".to_string(), b),
        ]
    };
    assert_eq!(weights(&vss.table()), both(10, 3));

    // The file says 5: 10 + 5.
    let out = vss.set_file_status(RS1, FileStatus::Weight(5));
    assert_eq!(
        logs(&out),
        vec!["Changing weight from 10 to 15 for active service [10.0.1.1]:tcp:80 of VS [10.0.0.1]:tcp:80"]
    );
    // Below zero the server stays in the pool at weight 0.
    let _ = vss.set_file_status(RS1, FileStatus::Weight(-20));
    assert_eq!(weights(&vss.table()), both(0, 3));
    // FAULT: out; the unweighted checker of the inhibit_on_failure server keeps it at 0.
    let out = vss.set_file_status(RS1, FileStatus::Fault);
    assert_eq!(
        logs(&out),
        vec!["Removing service [10.0.1.1]:tcp:80 from VS [10.0.0.1]:tcp:80"]
    );
    let _ = vss.set_file_status(RS2, FileStatus::Fault);
    assert_eq!(weights(&vss.table()), vec![("10.0.1.2:80".to_string(), 0)]);
    // Leaving FAULT, the new share is there as the server comes back, with no weight line.
    let out = vss.set_file_status(RS1, FileStatus::Weight(2));
    assert_eq!(
        logs(&out),
        vec![
            "Adding service [10.0.1.1]:tcp:80 to VS [10.0.0.1]:tcp:80",
            // The alive weight had fallen to 0, below the default quorum of 1.
            "Gained quorum 1+0=1 <= 12 for VS [10.0.0.1]:tcp:80"
        ]
    );
    let _ = vss.set_file_status(RS2, FileStatus::Weight(0));
    assert_eq!(weights(&vss.table()), both(12, 3));
    // A status that changes nothing says nothing.
    assert!(vss.set_file_status(RS1, FileStatus::Weight(2)).is_empty());
}

#[test]
fn the_start_is_in_the_state_the_file_gives() {
    let vss = VirtualServers::with_files(
        &config(TEXT),
        &[(RS1, FileStatus::Fault), (RS2, FileStatus::Weight(0))],
    );
    assert_eq!(weights(&vss.table()), vec![("10.0.1.2:80".to_string(), 3)]);
    let vss = VirtualServers::with_files(&config(TEXT), &[(RS1, FileStatus::Weight(7))]);
    assert_eq!(
        weights(&vss.table()),
        vec![
            ("10.0.1.1:80".to_string(), 17),
            ("10.0.1.2:80".to_string(), 3)
        ]
    );
}
