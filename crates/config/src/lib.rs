//! keepalived.conf, read exactly as keepalived 2.2 reads it.
//!
//! The pipeline is [`preprocess`] (files → logical lines) → [`tree`] (lines → keyword nodes
//! with blocks) → [`sections`] (nodes → typed [`model::Config`], with diagnostics). No sockets,
//! no globals: the caller says which files can be read and which interfaces exist.

pub mod diagnostic;
pub mod model;
pub mod names;
pub mod preprocess;
pub mod read;
pub mod sections;
pub mod setting;
pub mod source;
pub mod summary;
pub mod tree;
pub mod write;

use diagnostic::Diagnostics;
use model::Config;
use source::SourceMap;
use std::path::{Path, PathBuf};

/// What a load depends on besides the file.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Compared with `@ID` lines; keepalived's default is the host name.
    pub config_id: String,
    /// The host's network interfaces, for keepalived's "interface doesn't exist" checks;
    /// `None` skips them.
    pub interfaces: Option<Vec<String>>,
    /// Upper bound on preprocessed lines (guards against runaway `~SEQ` expansions).
    pub max_lines: usize,
    /// Directories to search for scripts named without a path, for keepalived's script
    /// security check (which needs to know which scripts exist); `None` skips the check.
    pub script_search_path: Option<Vec<PathBuf>>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            config_id: host_name(),
            interfaces: None,
            max_lines: 5_000_000,
            script_search_path: None,
        }
    }
}

/// The result of reading a configuration: always a model (with keepalived's defaults where
/// values were bad), the diagnostics, and the sources they point into.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub diagnostics: Diagnostics,
    pub sources: SourceMap,
}

/// Reads a configuration file and what it includes from the filesystem.
pub fn load(path: &Path, opts: &LoadOptions) -> Loaded {
    load_with(path, opts, &preprocess::read_fs, &preprocess::glob_fs)
}

/// Reads a configuration through the given file reader and glob expander.
pub fn load_with(
    path: &Path,
    opts: &LoadOptions,
    read_file: &dyn Fn(&Path) -> std::io::Result<String>,
    glob: &dyn Fn(&str) -> Vec<PathBuf>,
) -> Loaded {
    let mut sources = SourceMap::new();
    let mut diagnostics = Diagnostics::new();
    let pp = preprocess::Options {
        config_id: opts.config_id.clone(),
        read_file,
        glob,
        max_lines: opts.max_lines,
    };
    // Lines flow through the tree builder into the reader as they are made: only the model and
    // the top-level section being read are ever held, not the whole file's lines and tree.
    let interfaces = opts.interfaces.as_deref();
    let mut builder = tree::Builder::new();
    let mut reader = sections::ConfigReader::default();
    let mut read_nodes = |nodes: Vec<tree::Node>, diags: &mut Diagnostics| {
        let mut ctx = read::Ctx::new(diags);
        ctx.interfaces = interfaces;
        for node in nodes {
            reader.read(&node, &mut ctx);
        }
    };
    preprocess::preprocess_each(
        path,
        &pp,
        &mut sources,
        &mut diagnostics,
        &mut |line, diags| read_nodes(builder.push(line, diags), diags),
    );
    let rest = builder.finish(&mut diagnostics);
    read_nodes(rest, &mut diagnostics);
    let mut ctx = read::Ctx::new(&mut diagnostics);
    ctx.interfaces = interfaces;
    let config = reader.finish(&mut ctx);
    if let Some(search_path) = &opts.script_search_path {
        sections::script_security::check(&config, search_path, &mut ctx);
    }
    Loaded {
        config,
        diagnostics,
        sources,
    }
}

/// Reads a configuration held in memory; `include` reads nothing.
pub fn load_str(name: &str, text: &str, opts: &LoadOptions) -> Loaded {
    let owned = text.to_string();
    let main = PathBuf::from(name);
    let read = move |p: &Path| {
        if p == main {
            Ok(owned.clone())
        } else {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        }
    };
    load_with(Path::new(name), opts, &read, &|_| Vec::new())
}

impl Config {
    /// The key values, for comparison with keepalived's own reading.
    pub fn summary(&self) -> summary::Summary {
        summary::Summary {
            vrrp_instances: sections::vrrp::summarize(&self.vrrp, &self.global),
            virtual_servers: sections::lvs::summarize(&self.lvs),
        }
    }

    /// The configuration written back out as keepalived.conf.
    pub fn to_keepalived_conf(&self) -> String {
        sections::write_config(self)
    }
}

/// The host name, as keepalived's default config id (`uname -n`).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The directories keepalived searches for scripts named without a path (`PATH`, or its
/// default), for [`LoadOptions::script_search_path`].
pub fn script_search_path() -> Vec<PathBuf> {
    sections::script_security::default_search_path()
}

/// The names of this host's network interfaces (in the current network namespace).
pub fn host_interfaces() -> Option<Vec<String>> {
    let dir = std::fs::read_dir("/sys/class/net").ok()?;
    Some(
        dir.filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
    )
}
