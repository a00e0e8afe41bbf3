//! Desired x actual -> Plan: a pure, ordered, explained list of changes. No I/O, no clock, no
//! randomness: the same inputs always give the same plan.
//!
//! # Pieces
//!
//! - [`effective`]: canonical effective configs ([`EffectiveContainer`], [`EffectiveImage`],
//!   [`EffectiveVolume`], [`EffectiveNetwork`]) and their normalisations; [`hash`]: the SHA-256
//!   config hash that decides "changed".
//! - [`desired`]: [`Desired`], built from the manifest files with their per-file status (the
//!   contract with the daemon about failed, missing and deleted files is documented there).
//! - [`actual`]: [`Actual`], the same shapes as recorded; [`store`] reads it from the SQLite store
//!   and defines the JSON forms of the store's opaque columns.
//! - [`diff`]: field-level reasons; [`planner`]: the decisions and the order; [`change`]: the
//!   typed [`Change`]s, [`Step`]s and the [`Plan`]; [`render`]: text and JSON output;
//!   [`depends`]: start conditions (`dependsOn`), which hold containers back.
//!
//! # Using it (the daemon's pass)
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use agent::plan::{self, Desired};
//! # let mut store = agent::store::Store::open_in_memory()?;
//! # let inputs = Vec::new();
//! let actual = plan::store::actual_from_store(&mut store)?;
//! let desired = Desired::build(inputs, &actual.resolutions());
//! let plan = plan::plan(&desired, &actual);
//! for step in &plan.steps {
//!     println!("{}", step.summary()); // then apply step.change, record the result
//! }
//! # Ok(()) }
//! ```
//!
//! # Images not fetched yet
//!
//! A container's hash covers its image digest, which is known only once the image was fetched.
//! Decision: the plan is made at once anyway. The fetch steps come first; a container change
//! that depends on an image not fetched yet carries `hash: None` and the reason `image K: digest
//! known after fetch`. When the daemon reaches it, it takes the digest the fetch recorded
//! ([`EffectiveContainer::with_digest`]) and records that config and hash; a pending recreate
//! whose new hash equals the running one is skipped. The next plan then has exact hashes and is
//! empty. (The property tests apply plans exactly this way.)
//!
//! # Rules
//!
//! Unchanged desired state gives an empty plan, and a plan applied once leaves nothing to do.
//! The order (images fetched before anything is stopped, volumes and networks before their
//! users, link and volumesFrom targets before their users, removals in reverse) and what is held
//! back are documented in [`planner`].

pub mod actual;
pub mod change;
pub mod depends;
pub mod desired;
pub mod diff;
pub mod effective;
pub mod hash;
pub mod planner;
pub mod render;
pub mod store;

pub use actual::{Actual, ActualContainer, ActualNetwork, ImageChange};
pub use change::{Change, Counts, Held, Plan, Step};
pub use desired::{
    Desired, DesiredContainer, Entry, FileInput, FileState, FileStatus, Origin, Resolutions,
    inputs_from_loaded,
};
pub use effective::{
    EffectiveContainer, EffectiveImage, EffectiveNetwork, EffectiveVolume, ImageSource,
};
pub use hash::ConfigHash;
pub use planner::plan;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;
