//! Desired x actual -> Plan: a pure, ordered, explained list of changes. No I/O, no clock.

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {}
