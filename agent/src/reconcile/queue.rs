//! The work queue: runs [`Work`]s on the blocking pool, at most one in flight per object, the
//! others at once (bounded by a number of workers), each after the works it waits for.
//!
//! controller-runtime's work queue is the model: a work on a busy object queues behind the one
//! in flight (a fair lock per object), a work on any other object starts at once, so a stop in
//! its grace period, a pull or an import delays nothing but its own object. The queue belongs to
//! the loop ([`super::engine`]): the loop submits works and learns of their end through a
//! channel of [`Done`] messages, which it hands back to [`Queue::finish`]; nothing here blocks
//! the loop.
//!
//! A work that waits for works of its batch is not applied when one of them failed (or was
//! itself skipped): it ends *skipped*, naming the first failure, so one cause gives one error
//! (a container's start after its create failed, or its create after its image's import
//! failed, would only fail again with a consequence of the first error).
//!
//! A panic while applying a work is that work's failure (the blocking pool catches it); the
//! agent lives on. After [`Queue::stop`], works that have not started are not started: they end
//! with a "shutting down" failure and their changes are planned again at the next start.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Mutex, Semaphore, mpsc, watch};

use super::apply::Applied;
use super::work::{Key, Work};

/// How a work is applied: the applier in the daemon, a fake in tests. Returns the line for the
/// report or the error.
pub type ApplyFn = Arc<dyn Fn(&Work) -> Result<Applied, String> + Send + Sync>;

/// A work that ended.
#[derive(Debug)]
pub struct Done {
    pub id: u64,
    pub key: Key,
    pub work: Work,
    /// `Err` holds the error; for a skipped work, `skipped: <change> failed: <its error>`.
    pub result: Result<Applied, String>,
    /// Not applied because a work it waited for failed: that first failure.
    pub skipped: Option<Failed>,
}

/// The first failure in a chain of works: the change (`import busybox`) and its error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub change: String,
    pub error: String,
    /// The object of the failed change (its backoff is the dependents' too).
    pub key: Key,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed: {}", self.change, self.error)
    }
}

/// How a work ended, for the works that wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Pending,
    Ok,
    /// Failed, or skipped because of this failure.
    Failed(Failed),
}

struct Slot {
    in_flight: usize,
    lock: Arc<Mutex<()>>,
}

/// The queue; owned by the loop.
pub struct Queue {
    apply: ApplyFn,
    workers: Arc<Semaphore>,
    slots: HashMap<Key, Slot>,
    done: mpsc::UnboundedSender<Done>,
    next_id: u64,
    stopping: Arc<AtomicBool>,
    stop_tx: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
}

/// The failure of a work that had not started when the agent began to shut down.
pub(super) const LEFT: &str = "shutting down: left for the next start";

/// The end of a submitted work, for works that wait for it.
#[derive(Clone)]
pub struct Finished(watch::Receiver<End>);

impl Finished {
    /// Its failure (or the failure it was skipped for), if any.
    async fn wait(mut self) -> Option<Failed> {
        // A dropped sender (the task ended without saying) counts as finished.
        match self
            .0
            .wait_for(|f| *f != End::Pending)
            .await
            .map(|e| e.clone())
        {
            Ok(End::Failed(f)) => Some(f),
            _ => None,
        }
    }
}

impl Queue {
    /// A queue running at most `workers` works at once; ends are sent to the returned receiver.
    pub fn new(apply: ApplyFn, workers: usize) -> (Queue, mpsc::UnboundedReceiver<Done>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = watch::channel(false);
        (
            Queue {
                apply,
                workers: Arc::new(Semaphore::new(workers.max(1))),
                slots: HashMap::new(),
                done: tx,
                next_id: 0,
                stopping: Arc::new(AtomicBool::new(false)),
                stop_tx,
                stop_rx,
            },
            rx,
        )
    }

    /// Whether object `key` has a work queued or running.
    pub fn busy(&self, key: &str) -> bool {
        self.slots.contains_key(key)
    }

    /// Works queued or running.
    pub fn in_flight(&self) -> usize {
        self.slots.values().map(|s| s.in_flight).sum()
    }

    /// Works queued or running on objects whose key `f` accepts.
    pub fn in_flight_where(&self, f: impl Fn(&str) -> bool) -> usize {
        self.slots
            .iter()
            .filter(|(k, _)| f(k))
            .map(|(_, s)| s.in_flight)
            .sum()
    }

    /// Submits works in order; `waits[i]` are the indices of earlier works of the same call that
    /// work `i` starts after (see [`super::work::order`]). Returns their ids, in order.
    pub fn submit(&mut self, works: Vec<Work>, waits: &[Vec<usize>]) -> Vec<u64> {
        let mut ends: Vec<Finished> = Vec::with_capacity(works.len());
        let mut ids = Vec::with_capacity(works.len());
        for (i, work) in works.into_iter().enumerate() {
            let after: Vec<Finished> = waits
                .get(i)
                .into_iter()
                .flatten()
                .filter_map(|&j| ends.get(j).cloned())
                .collect();
            let (id, end) = self.spawn(work, after);
            ends.push(end);
            ids.push(id);
        }
        ids
    }

    /// Submits one work that waits for nothing but its object.
    pub fn submit_one(&mut self, work: Work) -> u64 {
        self.spawn(work, Vec::new()).0
    }

    fn spawn(&mut self, work: Work, after: Vec<Finished>) -> (u64, Finished) {
        self.next_id += 1;
        let id = self.next_id;
        let key = work.key();
        let slot = self.slots.entry(key.clone()).or_insert_with(|| Slot {
            in_flight: 0,
            lock: Arc::new(Mutex::new(())),
        });
        slot.in_flight += 1;
        let lock = slot.lock.clone();
        let (end_tx, end_rx) = watch::channel(End::Pending);
        let apply = self.apply.clone();
        let workers = self.workers.clone();
        let done = self.done.clone();
        let stopping = self.stopping.clone();
        let mut stop_rx = self.stop_rx.clone();
        stop_rx.mark_unchanged();
        tokio::spawn(async move {
            // Its turn: the works it waits for have ended, its object is free, a worker too.
            // A shutdown ends the wait (a work not started is left for the next start).
            let turn = async move {
                let mut failed = None;
                for a in after {
                    let f = a.wait().await;
                    failed = failed.or(f);
                }
                if failed.is_some() {
                    return (None, None, failed);
                }
                let object = lock.lock_owned().await;
                let permit = workers.acquire_owned().await.ok();
                (Some(object), permit, None)
            };
            let mut skipped = None;
            let result = tokio::select! {
                biased;
                (_object, permit, failed) = turn => match (permit, failed) {
                    (_, Some(f)) => {
                        let text = format!("skipped: {f}");
                        skipped = Some(f);
                        Err(text)
                    }
                    (Some(_permit), None) if !stopping.load(Ordering::SeqCst) => {
                        let w = work.clone();
                        match tokio::task::spawn_blocking(move || apply(&w)).await {
                            Ok(r) => r,
                            Err(e) => Err(panic_message(e)),
                        }
                    }
                    _ => Err(LEFT.to_string()),
                },
                () = async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                } => Err(LEFT.to_string()),
            };
            let end = match (&result, &skipped) {
                (_, Some(f)) => End::Failed(f.clone()),
                (Ok(_), None) => End::Ok,
                (Err(e), None) => End::Failed(Failed {
                    change: format!("{} {}", work.step.change.action(), work.step.change.name()),
                    error: e.clone(),
                    key: key.clone(),
                }),
            };
            let _ = end_tx.send(end);
            let _ = done.send(Done {
                id,
                key,
                work,
                result,
                skipped,
            });
        });
        (id, Finished(end_rx))
    }

    /// Takes note that a work ended (the loop calls this for every [`Done`] it receives).
    pub fn finish(&mut self, done: &Done) {
        if let Some(slot) = self.slots.get_mut(&done.key) {
            slot.in_flight = slot.in_flight.saturating_sub(1);
            if slot.in_flight == 0 {
                self.slots.remove(&done.key);
            }
        }
    }

    /// No new work starts from now on; running works finish.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.stop_tx.send_replace(true);
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return format!("cancelled: {e}");
    }
    let payload = e.into_panic();
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    format!("internal error (panic) while applying it: {msg}; the agent goes on")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Mutex as StdMutex;
    use std::time::Duration;

    use super::*;
    use crate::reconcile::work::testkit::{start, stop};
    use crate::reconcile::work::{self, Relations};

    /// An applier that sleeps `ms` per work and logs (begin/end, summary).
    fn sleeper(ms: u64, log: Arc<StdMutex<Vec<(bool, String)>>>) -> ApplyFn {
        Arc::new(move |w: &Work| {
            log.lock().unwrap().push((true, w.step.summary()));
            if w.step.change.name() == "boom" {
                panic!("test panic");
            }
            std::thread::sleep(Duration::from_millis(ms));
            log.lock().unwrap().push((false, w.step.summary()));
            Ok(w.step.summary().into())
        })
    }

    async fn drain(q: &mut Queue, rx: &mut mpsc::UnboundedReceiver<Done>, n: usize) -> Vec<Done> {
        let mut out = Vec::new();
        while out.len() < n {
            let d = rx.recv().await.unwrap();
            q.finish(&d);
            out.push(d);
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn independent_works_run_in_parallel() {
        // Each work waits until all ten are running at once (or gives up after 20 s): only a
        // queue that runs them in parallel gets them all done.
        let gate = Arc::new((StdMutex::new(0usize), std::sync::Condvar::new()));
        let g = gate.clone();
        let apply: ApplyFn = Arc::new(move |w: &Work| {
            let (count, cv) = &*g;
            let mut n = count.lock().unwrap();
            *n += 1;
            cv.notify_all();
            let (n, timeout) = cv
                .wait_timeout_while(n, Duration::from_secs(20), |n| *n < 10)
                .unwrap();
            if timeout.timed_out() {
                return Err(format!("only {} of 10 ran at once", *n));
            }
            Ok(w.step.summary().into())
        });
        let (mut q, mut rx) = Queue::new(apply, 16);
        let works: Vec<Work> = (0..10).map(|i| stop(&format!("c{i}"))).collect();
        let waits = work::order(&works, &Relations::default());
        q.submit(works, &waits);
        assert_eq!(q.in_flight(), 10);
        let done = drain(&mut q, &mut rx, 10).await;
        assert!(done.iter().all(|d| d.result.is_ok()), "{done:?}");
        assert_eq!(q.in_flight(), 0);
        assert!(!q.busy("container/c0"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dependent_works_keep_their_order() {
        let log = Arc::new(StdMutex::new(Vec::new()));
        let (mut q, mut rx) = Queue::new(sleeper(50, log.clone()), 16);
        let mut r = Relations::default();
        r.add("container/web", "container/db".into());
        let works = vec![stop("web"), stop("db"), start("db"), start("web")];
        let waits = work::order(&works, &r);
        q.submit(works, &waits);
        drain(&mut q, &mut rx, 4).await;
        let log = log.lock().unwrap().clone();
        let pos =
            |begin: bool, s: &str| log.iter().position(|(b, x)| *b == begin && x == s).unwrap();
        assert!(pos(false, "stop web") < pos(true, "stop db"), "{log:?}");
        assert!(pos(false, "stop db") < pos(true, "start db"), "{log:?}");
        assert!(pos(false, "start db") < pos(true, "start web"), "{log:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_work_per_object_at_a_time_the_others_go_on() {
        let log = Arc::new(StdMutex::new(Vec::new()));
        let (mut q, mut rx) = Queue::new(sleeper(200, log.clone()), 16);
        q.submit_one(stop("a"));
        q.submit_one(start("a"));
        q.submit_one(stop("b"));
        assert!(q.busy("container/a"));
        drain(&mut q, &mut rx, 3).await;
        // b began before a's first work ended (it did not wait for a); a's works ran one after
        // the other, in order.
        let log = log.lock().unwrap().clone();
        let pos =
            |begin: bool, s: &str| log.iter().position(|(b, x)| *b == begin && x == s).unwrap();
        assert!(pos(true, "stop b") < pos(false, "stop a"), "{log:?}");
        assert!(pos(false, "stop a") < pos(true, "start a"), "{log:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_fails_its_work_only() {
        let log = Arc::new(StdMutex::new(Vec::new()));
        let (mut q, mut rx) = Queue::new(sleeper(10, log.clone()), 4);
        q.submit_one(start("boom"));
        q.submit_one(start("fine"));
        let done = drain(&mut q, &mut rx, 2).await;
        let boom = done.iter().find(|d| d.key == "container/boom").unwrap();
        assert!(
            boom.result.as_ref().unwrap_err().contains("test panic"),
            "{boom:?}"
        );
        let fine = done.iter().find(|d| d.key == "container/fine").unwrap();
        assert!(fine.result.is_ok());
        // The queue still works.
        q.submit_one(start("boom2"));
        assert!(drain(&mut q, &mut rx, 1).await[0].result.is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn works_after_a_failure_are_skipped_naming_it() {
        // bad's stop fails: its start and web's start (web links to bad) are skipped, naming
        // the stop; other's works run.
        let apply: ApplyFn = Arc::new(|w: &Work| {
            if w.step.change.name() == "bad" && w.step.change.action() == "stop" {
                return Err("port taken".into());
            }
            Ok(w.step.summary().into())
        });
        let (mut q, mut rx) = Queue::new(apply, 4);
        let mut r = Relations::default();
        r.add("container/web", "container/bad".into());
        let works = vec![stop("bad"), start("bad"), start("web"), start("other")];
        let waits = work::order(&works, &r);
        q.submit(works, &waits);
        let done = drain(&mut q, &mut rx, 4).await;
        let get = |k: &str, a: &str| {
            done.iter()
                .find(|d| d.key == k && d.work.step.change.action() == a)
                .unwrap()
        };
        let first = get("container/bad", "stop");
        assert_eq!(first.result.as_ref().unwrap_err(), "port taken");
        assert!(first.skipped.is_none());
        for (k, a) in [("container/bad", "start"), ("container/web", "start")] {
            let d = get(k, a);
            let f = d.skipped.as_ref().unwrap();
            assert_eq!(f.change, "stop bad");
            assert_eq!(f.error, "port taken");
            assert_eq!(
                d.result.as_ref().unwrap_err(),
                "skipped: stop bad failed: port taken"
            );
        }
        assert!(get("container/other", "start").result.is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn workers_bound_the_parallelism() {
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (r2, p2) = (running.clone(), peak.clone());
        let apply: ApplyFn = Arc::new(move |w: &Work| {
            let now = r2.fetch_add(1, Ordering::SeqCst) + 1;
            p2.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(30));
            r2.fetch_sub(1, Ordering::SeqCst);
            Ok(w.step.summary().into())
        });
        let (mut q, mut rx) = Queue::new(apply, 3);
        for i in 0..12 {
            q.submit_one(start(&format!("c{i}")));
        }
        drain(&mut q, &mut rx, 12).await;
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert!(peak.load(Ordering::SeqCst) >= 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stop_ends_works_waiting_for_others() {
        // b waits for a, which never ends (a pull from a registry that hangs): after stop, b
        // ends at once, as not started.
        let gate = Arc::new(AtomicBool::new(false));
        let g = gate.clone();
        let apply: ApplyFn = Arc::new(move |w: &Work| {
            if w.step.change.name() == "a" {
                while !g.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            Ok(w.step.summary().into())
        });
        let (mut q, mut rx) = Queue::new(apply, 4);
        q.submit(vec![start("a"), start("b")], &[vec![], vec![0]]);
        tokio::time::sleep(Duration::from_millis(50)).await;
        q.stop();
        let d = rx.recv().await.unwrap();
        q.finish(&d);
        assert_eq!(d.key, "container/b");
        assert!(d.result.unwrap_err().contains("shutting down"));
        gate.store(true, Ordering::SeqCst);
        let d = rx.recv().await.unwrap();
        assert!(d.result.is_ok(), "the running work ends normally");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn after_stop_nothing_new_starts() {
        let log = Arc::new(StdMutex::new(Vec::new()));
        let (mut q, mut rx) = Queue::new(sleeper(200, log.clone()), 1);
        q.submit_one(start("a"));
        q.submit_one(start("b"));
        tokio::time::sleep(Duration::from_millis(50)).await; // a runs, b waits for a worker
        q.stop();
        let done = drain(&mut q, &mut rx, 2).await;
        let a = done.iter().find(|d| d.key == "container/a").unwrap();
        let b = done.iter().find(|d| d.key == "container/b").unwrap();
        assert!(a.result.is_ok());
        assert!(b.result.as_ref().unwrap_err().contains("shutting down"));
    }
}
