//! The options every command that reads a configuration takes, as keepalived spells them.

use clap::Args as ClapArgs;
use halb_config::LoadOptions;
use std::path::PathBuf;

#[derive(ClapArgs)]
pub struct ConfigArgs {
    /// The configuration file.
    #[arg(
        short = 'f',
        long = "use-file",
        default_value = "/etc/keepalived/keepalived.conf"
    )]
    pub file: PathBuf,
    /// Keep `@ID` lines for this id and drop `@^ID` ones (default: the host name).
    #[arg(short = 'i', long)]
    pub config_id: Option<String>,
}

impl ConfigArgs {
    /// How to read the file on this host: its config id, and (when `check_host` is set) its
    /// interfaces and the scripts that exist, for keepalived's checks that depend on them.
    pub fn load_options(&self, check_host: bool) -> LoadOptions {
        let mut opts = LoadOptions::default();
        if let Some(id) = &self.config_id {
            opts.config_id = id.clone();
        }
        if check_host {
            opts.interfaces = halb_config::host_interfaces();
        }
        opts.script_search_path = Some(halb_config::script_search_path());
        opts
    }
}
