//! The reconcile loop and nothing else: what decides changes, the one applier that makes them,
//! and the work queue between the two. The daemon's composition root, configuration file,
//! logging and systemd protocol are [`crate::daemon`]; the manifest intake is
//! [`crate::manifest::source`]; the API reads [`report`] and knows the loop, not the reverse.
//!
//! - [`engine`]: the loop: triggers, passes, container checks; [`timers`]: its one timer.
//! - [`work`]: a change with its cause, keyed by object; the order between works (pure).
//! - [`queue`]: runs works in parallel, one per object, in their order; panics fail one work.
//! - [`apply`]: the applier, the only caller of the drivers' mutating operations; intents
//!   before, records after.
//! - [`translate`]: effective configs to driver requests.
//! - [`pass`]: file bookkeeping of a full pass (status per file, last good version).
//! - [`supervise`], [`restart`]: exits and Docker's restart policies with backoff (decisions;
//!   the restart itself is a work).
//! - [`health`], [`prober`]: the health-check state machine and the probes on a deadline queue.
//! - [`exits`]: container exits as inotify events on the monitors' state files.
//! - [`failing`]: per-object backoff of failed changes; [`precheck`]: what a replacement of a
//!   running container needs, checked before it is stopped.
//! - [`trigger`]: triggers coalesced into batches.
//! - [`recover`]: finishing or undoing half-applied changes (intents), orphans at start-up.
//! - [`request`]: `agent stop` / `agent start` (stopped-by-user, as Docker's restart policies
//!   define "stopped").
//! - [`report`]: what the loop reports to the API.

pub mod apply;
pub mod engine;
pub mod exits;
pub mod failing;
pub mod health;
pub mod pass;
pub mod precheck;
pub mod prober;
pub mod queue;
pub mod recover;
pub mod report;
pub mod request;
pub mod restart;
pub mod supervise;
pub mod timers;
pub mod translate;
pub mod trigger;
pub mod work;
