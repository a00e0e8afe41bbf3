//! The loop's one timer: a deadline per thing it waits for (a restart delay, the end of a failed
//! object's backoff, the retry of a pass that failed outside any change, the periodic resync),
//! each at most once. The loop sleeps until the earliest.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

/// What the timer wakes the loop for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Due {
    /// The restart delay of this container is over.
    Restart(String),
    /// The backoff of this object's failed change is over (see [`super::failing`]).
    Backoff(String),
    /// Retry a pass that failed outside any change (reading the store, recording file status).
    Retry,
    /// The periodic resync.
    Resync,
}

/// The loop's one timer: deadlines, each at most once.
#[derive(Debug, Default)]
pub struct Timers {
    set: BTreeSet<(Instant, Due)>,
    at: HashMap<Due, Instant>,
}

impl Timers {
    /// Sets the deadline of `due` (replacing an earlier one).
    pub fn set(&mut self, due: Due, at: Instant) {
        self.cancel(&due);
        self.set.insert((at, due.clone()));
        self.at.insert(due, at);
    }

    /// Removes the deadline of `due`.
    pub fn cancel(&mut self, due: &Due) {
        if let Some(at) = self.at.remove(due) {
            self.set.remove(&(at, due.clone()));
        }
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.set.first().map(|(at, _)| *at)
    }

    /// Takes every deadline that is due at `now`.
    pub fn take_due(&mut self, now: Instant) -> Vec<Due> {
        let mut out = Vec::new();
        while let Some((at, _)) = self.set.first() {
            if *at > now {
                break;
            }
            if let Some((_, due)) = self.set.pop_first() {
                self.at.remove(&due);
                out.push(due);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timers_keep_one_deadline_per_due_and_pop_in_order() {
        let mut t = Timers::default();
        let now = Instant::now();
        t.set(Due::Retry, now + Duration::from_secs(5));
        t.set(Due::Restart("a".into()), now + Duration::from_secs(2));
        t.set(Due::Restart("b".into()), now + Duration::from_secs(1));
        // Re-setting replaces.
        t.set(Due::Retry, now + Duration::from_secs(3));
        assert_eq!(t.next(), Some(now + Duration::from_secs(1)));
        assert_eq!(
            t.take_due(now + Duration::from_secs(2)),
            vec![Due::Restart("b".into()), Due::Restart("a".into())]
        );
        t.cancel(&Due::Retry);
        assert_eq!(t.next(), None);
        assert!(t.take_due(now + Duration::from_secs(10)).is_empty());
    }
}
