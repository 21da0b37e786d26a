//! Helpers shared by halb's integration tests.
#![allow(dead_code)]

pub mod lvs_lab;
pub mod vrrp_lab;
pub mod web;
