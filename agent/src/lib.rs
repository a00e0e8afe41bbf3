//! `agent` keeps a Linux host's containers equal to a directory of YAML manifests.
//!
//! Data flow (see `docs/design.md`): [`manifest`] loads and validates the desired state, [`store`]
//! remembers the actual state in SQLite, [`plan`] diffs the two into an ordered, explained list of
//! changes (a pure function), and [`reconcile`] applies it through the three drivers under
//! [`driver`]: graph (images, layers), exec (containers) and network (bridge, veth, firewall).

pub mod api;
pub mod cli;
pub mod convert;
pub mod daemon;
pub mod driver;
pub mod error;
pub mod manifest;
pub mod metrics;
pub mod plan;
pub mod reconcile;
pub mod store;

pub use error::{Error, Result};
