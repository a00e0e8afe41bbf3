//! Per-object backoff of failed changes (pure; the loop owns the clock and the timer).
//!
//! A change that fails puts its object (`container/web`, `image/...`, see [`super::work::key`])
//! on a backoff: the passes that run before its delay is over (a file edit elsewhere, a resync,
//! another object's retry) do not try that object's changes again, they report them as held;
//! the loop's timer ([`super::timers::Due::Backoff`]) runs a pass when the delay is over. Each
//! failure of the object lengthens its delay (the `[restart]` backoff of the config: first
//! delay, factor, cap); other objects are never delayed by it. The backoff of an object ends
//! when one of its changes succeeds or when what the manifests ask of it changes (its
//! fingerprint, [`fingerprints`]); `agent apply` makes every held change due at once (an
//! operator who fixed the cause outside the manifests retries now) without forgetting the
//! history, so a still-failing change goes on at the longer delay.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use super::restart::Backoff;
use super::work::{Key, key};
use crate::daemon::config::BackoffConfig;
use crate::manifest::Kind;

/// What the manifests ask of an object, reduced to a number: a change of it ends the object's
/// backoff. `None`: the object is not desired (it is being removed).
pub type Fingerprint = Option<u64>;

#[derive(Debug, Clone)]
struct Entry {
    backoff: Backoff,
    until: Instant,
    fingerprint: Fingerprint,
    failures: u32,
    error: String,
}

/// Why a change is held, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub left: Duration,
    pub failures: u32,
    pub error: String,
}

/// The objects whose last change failed, with their backoff.
#[derive(Debug, Default)]
pub struct Failing {
    entries: HashMap<Key, Entry>,
}

impl Failing {
    /// A change of `key` failed at `now`: its next try is after the returned instant.
    pub fn failed(
        &mut self,
        key: &str,
        fingerprint: Fingerprint,
        error: &str,
        config: &BackoffConfig,
        now: Instant,
    ) -> Instant {
        let e = self
            .entries
            .entry(key.to_string())
            .or_insert_with(|| Entry {
                backoff: Backoff::default(),
                until: now,
                fingerprint,
                failures: 0,
                error: String::new(),
            });
        if e.fingerprint != fingerprint {
            e.backoff.reset();
            e.failures = 0;
            e.fingerprint = fingerprint;
        }
        e.failures = e.failures.saturating_add(1);
        e.error = error.to_string();
        e.until = now + e.backoff.next_delay(config, Duration::ZERO);
        e.until
    }

    /// A change of `key` succeeded: its backoff ends.
    pub fn succeeded(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Ends the backoff of every object whose fingerprint is no longer the one it failed with.
    pub fn forget_changed(&mut self, now: &HashMap<Key, u64>) {
        self.entries
            .retain(|k, e| e.fingerprint == now.get(k).copied());
    }

    /// Makes every held change due at `now` (`agent apply`); the delays keep growing.
    pub fn release_all(&mut self, now: Instant) {
        for e in self.entries.values_mut() {
            e.until = e.until.min(now);
        }
    }

    /// When the backoff of `key` ends, if it is on one.
    pub fn until(&self, key: &str) -> Option<Instant> {
        self.entries.get(key).map(|e| e.until)
    }

    /// Whether the changes of `key` wait at `now`, and why.
    pub fn held(&self, key: &str, now: Instant) -> Option<Held> {
        let e = self.entries.get(key)?;
        (e.until > now).then(|| Held {
            left: e.until - now,
            failures: e.failures,
            error: e.error.clone(),
        })
    }
}

fn digest(v: &impl std::fmt::Debug) -> u64 {
    let mut h = DefaultHasher::new();
    format!("{v:?}").hash(&mut h);
    h.finish()
}

/// The fingerprint of every desired object, by key (stable within one agent process).
pub fn fingerprints(desired: &crate::plan::Desired) -> HashMap<Key, u64> {
    let mut out = HashMap::new();
    for (name, e) in &desired.containers {
        out.insert(key(Kind::Container, name), digest(&e.value.config));
    }
    for (name, e) in &desired.images {
        out.insert(key(Kind::Image, name), digest(&e.value));
    }
    for (name, e) in &desired.volumes {
        out.insert(key(Kind::Volume, name), digest(&e.value));
    }
    for (name, e) in &desired.networks {
        out.insert(key(Kind::Network, name), digest(&e.value));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config() -> BackoffConfig {
        BackoffConfig {
            start: Duration::from_secs(1),
            factor: 2.0,
            cap: Duration::from_secs(5),
            reset_after: Duration::from_secs(10),
        }
    }

    #[test]
    fn each_failure_doubles_the_objects_delay_up_to_the_cap() {
        let mut f = Failing::default();
        let t0 = Instant::now();
        let mut delays = Vec::new();
        for _ in 0..5 {
            delays.push(f.failed("container/a", Some(1), "boom", &config(), t0) - t0);
        }
        let s = Duration::from_secs;
        assert_eq!(delays, vec![s(1), s(2), s(4), s(5), s(5)]);
        let h = f.held("container/a", t0).unwrap();
        assert_eq!((h.left, h.failures, h.error.as_str()), (s(5), 5, "boom"));
        assert_eq!(f.held("container/a", t0 + s(5)), None, "due");
        assert_eq!(f.held("container/b", t0), None, "other objects never wait");
    }

    #[test]
    fn success_or_a_new_desired_config_ends_the_backoff() {
        let mut f = Failing::default();
        let t0 = Instant::now();
        f.failed("container/a", Some(1), "x", &config(), t0);
        f.failed("container/b", Some(2), "x", &config(), t0);
        f.failed("container/c", None, "x", &config(), t0);
        f.succeeded("container/a");
        assert!(f.held("container/a", t0).is_none());
        let now: HashMap<Key, u64> = [("container/b".to_string(), 3)].into();
        f.forget_changed(&now);
        assert!(f.held("container/b", t0).is_none(), "b's config changed");
        assert!(
            f.held("container/c", t0).is_some(),
            "c is still not desired"
        );
        // Failing again with another fingerprint starts from the first delay.
        f.failed("container/c", Some(9), "x", &config(), t0);
        f.failed("container/c", Some(8), "x", &config(), t0);
        assert_eq!(
            f.held("container/c", t0).unwrap().left,
            Duration::from_secs(1)
        );
    }

    #[test]
    fn apply_releases_everything_but_keeps_the_history() {
        let mut f = Failing::default();
        let t0 = Instant::now();
        f.failed("container/a", Some(1), "x", &config(), t0);
        f.failed("container/a", Some(1), "x", &config(), t0);
        f.release_all(t0);
        assert!(f.held("container/a", t0).is_none());
        let next = f.failed("container/a", Some(1), "x", &config(), t0);
        assert_eq!(next - t0, Duration::from_secs(4));
    }
}
