//! The health checkers of a `real_server`: the keywords they share and the dispatch from a
//! checker keyword to its family (`common`), one reader and writer per family, and their
//! types ([`model`]).

pub mod model;

pub(crate) mod common;
mod http;
mod misc;
mod mysql;
mod net;
mod track;
