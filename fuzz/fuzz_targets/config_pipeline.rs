//! The whole configuration pipeline on arbitrary bytes: preprocess, tree, sections, model,
//! summary, and the written-back configuration read again. Nothing may panic, and a model
//! read from a configuration halb wrote must be the model it was written from.
#![no_main]

use halb_config::{load_str, LoadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let opts = LoadOptions {
        config_id: "fuzz".into(),
        interfaces: Some(vec!["lo".into(), "eth0".into()]),
        max_lines: 20_000,
        script_search_path: None,
    };
    let loaded = load_str("/fuzz/keepalived.conf", &text, &opts);
    let _ = loaded.config.summary();
    let _ = loaded
        .diagnostics
        .render(&loaded.sources, halb_config::diagnostic::Format::Human, false);
    let written = loaded.config.to_keepalived_conf();
    let again = load_str("/fuzz/written.conf", &written, &opts);
    assert_eq!(
        loaded.config, again.config,
        "round trip changed the model; written:\n{written}"
    );
});
