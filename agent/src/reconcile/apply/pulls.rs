//! The registry pulls running, each with the flag that stops it: the loop
//! cancels a pull that its latest plan no longer makes (the image left every manifest, or its
//! manifest names another reference now), so that an unwanted download neither goes on using a
//! metered link for up to `registries.pull_timeout` nor holds up the pull that replaces it.
//! What a cancelled pull downloaded stays in the graph; a later pull resumes it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Pulls by image key (one work per object runs at a time, so one pull per key).
#[derive(Default)]
pub struct Pulls(Mutex<HashMap<String, Arc<AtomicBool>>>);

impl Pulls {
    /// The flag of the pull of `image` that starts now; [`Pulls::end`] forgets it.
    pub fn start(&self, image: &str) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        self.map().insert(image.to_string(), flag.clone());
        flag
    }

    pub fn end(&self, image: &str) {
        self.map().remove(image);
    }

    /// Stops the pull of `image` if one is running (downloading, or waiting for another pull's
    /// lock); a pull still queued behind the loop's worker limit is not. Whether one was.
    pub fn cancel(&self, image: &str) -> bool {
        self.map()
            .get(image)
            .inspect(|f| f.store(true, Ordering::SeqCst))
            .is_some()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<AtomicBool>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_running_pull_is_cancelled_and_the_next_one_starts_afresh() {
        let p = Pulls::default();
        assert!(!p.cancel("img"), "nothing runs");
        let flag = p.start("img");
        assert!(!flag.load(Ordering::SeqCst));
        assert!(p.cancel("img"));
        assert!(
            flag.load(Ordering::SeqCst),
            "the running pull sees the cancel"
        );
        p.end("img");
        assert!(!p.cancel("img"), "ended");
        assert!(!p.start("img").load(Ordering::SeqCst));
        p.end("img");
        assert!(p.map().is_empty());
    }
}
