//! Shared helpers for the end-to-end tests: locating the binary, temporary state directories.

pub mod graph;
pub mod network;
