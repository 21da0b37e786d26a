//! Helpers shared by halb's integration tests.
#![allow(dead_code)]

pub mod netns;
pub mod vrrp_lab;
