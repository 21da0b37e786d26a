//! keepalived.conf, read exactly as keepalived 2.2 reads it.

pub mod summary;
