//! Health check state machine: pure, the clock is passed in.
//!
//! Docker's rules (`daemon/health.go`, `handleProbeResult`):
//! - A container with a health check starts `starting`. The first probe runs one `interval`
//!   after the container started, then every `interval` after the previous probe ended.
//! - A probe passes when the command exits 0 within `timeout`; anything else (non-zero, timed out,
//!   could not run) is a failure.
//! - A pass sets `healthy` and clears the failing streak.
//! - A failure that *started* within `start_period` of the container's start, while the container
//!   was never healthy, is not counted. Any other failure increments the streak, and `retries`
//!   consecutive counted failures make the container `unhealthy`.
//!
//! What the agent does with `unhealthy` is the restart policy's business
//! ([`super::restart::RestartPolicy::restarts_unhealthy`]).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Health check timing, from the manifest (defaults as Docker's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthTiming {
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

impl Default for HealthTiming {
    fn default() -> Self {
        HealthTiming {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            retries: 3,
            start_period: Duration::ZERO,
        }
    }
}

/// Shown in `agent ps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Starting,
    Healthy,
    Unhealthy,
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        })
    }
}

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    Passed,
    /// Exit code and the tail of its output.
    Failed {
        exit_code: i32,
        output: String,
    },
    TimedOut,
    /// The command could not be run (container gone, exec failed).
    Error(String),
}

/// One container's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    timing: HealthTiming,
    started_at: Instant,
    status: HealthStatus,
    failing_streak: u32,
    next_probe: Instant,
    last: Option<ProbeResult>,
}

impl Health {
    /// A container that started at `started_at`.
    pub fn new(timing: HealthTiming, started_at: Instant) -> Health {
        Health {
            timing,
            started_at,
            status: HealthStatus::Starting,
            failing_streak: 0,
            next_probe: started_at + timing.interval,
            last: None,
        }
    }

    pub fn status(&self) -> HealthStatus {
        self.status
    }

    pub fn failing_streak(&self) -> u32 {
        self.failing_streak
    }

    pub fn last_result(&self) -> Option<&ProbeResult> {
        self.last.as_ref()
    }

    /// When the next probe is due.
    pub fn next_probe_at(&self) -> Instant {
        self.next_probe
    }

    /// How long the probe may run.
    pub fn timeout(&self) -> Duration {
        self.timing.timeout
    }

    /// Timing changed in place (manifest update): keep the status, reschedule.
    pub fn set_timing(&mut self, timing: HealthTiming, now: Instant) {
        self.timing = timing;
        self.next_probe = self.next_probe.min(now + timing.interval);
    }

    /// Records a probe that started at `probe_start` and ended at `now`. Returns the new status
    /// when it changed.
    pub fn record(
        &mut self,
        result: ProbeResult,
        probe_start: Instant,
        now: Instant,
    ) -> Option<HealthStatus> {
        let before = self.status;
        if result == ProbeResult::Passed {
            self.failing_streak = 0;
            self.status = HealthStatus::Healthy;
        } else {
            let in_start_period = self.status == HealthStatus::Starting
                && probe_start.saturating_duration_since(self.started_at)
                    < self.timing.start_period;
            if !in_start_period {
                self.failing_streak = self.failing_streak.saturating_add(1);
                if self.failing_streak >= self.timing.retries.max(1) {
                    self.status = HealthStatus::Unhealthy;
                }
            }
        }
        self.last = Some(result);
        self.next_probe = now + self.timing.interval;
        (self.status != before).then_some(self.status)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn timing(retries: u32, start_period: u64) -> HealthTiming {
        HealthTiming {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            retries,
            start_period: Duration::from_secs(start_period),
        }
    }

    fn fail() -> ProbeResult {
        ProbeResult::Failed {
            exit_code: 1,
            output: "nope".into(),
        }
    }

    /// Runs probes back to back: each starts when due and takes 1 s.
    fn probe(h: &mut Health, r: ProbeResult) -> Option<HealthStatus> {
        let start = h.next_probe_at();
        h.record(r, start, start + Duration::from_secs(1))
    }

    #[test]
    fn first_probe_after_one_interval() {
        let t0 = Instant::now();
        let h = Health::new(timing(3, 0), t0);
        assert_eq!(h.status(), HealthStatus::Starting);
        assert_eq!(h.next_probe_at(), t0 + Duration::from_secs(10));
    }

    #[test]
    fn retries_consecutive_failures_make_unhealthy() {
        let mut h = Health::new(timing(3, 0), Instant::now());
        assert_eq!(probe(&mut h, fail()), None);
        assert_eq!(probe(&mut h, ProbeResult::TimedOut), None);
        assert_eq!(h.failing_streak(), 2);
        assert_eq!(
            probe(&mut h, ProbeResult::Error("gone".into())),
            Some(HealthStatus::Unhealthy)
        );
        assert_eq!(probe(&mut h, fail()), None);
        assert_eq!(h.status(), HealthStatus::Unhealthy);
        assert_eq!(
            probe(&mut h, ProbeResult::Passed),
            Some(HealthStatus::Healthy)
        );
        assert_eq!(h.failing_streak(), 0);
    }

    #[test]
    fn a_pass_resets_the_streak() {
        let mut h = Health::new(timing(2, 0), Instant::now());
        assert_eq!(
            probe(&mut h, ProbeResult::Passed),
            Some(HealthStatus::Healthy)
        );
        assert_eq!(probe(&mut h, fail()), None);
        assert_eq!(probe(&mut h, ProbeResult::Passed), None);
        assert_eq!(probe(&mut h, fail()), None);
        assert_eq!(h.status(), HealthStatus::Healthy);
        assert_eq!(probe(&mut h, fail()), Some(HealthStatus::Unhealthy));
    }

    #[test]
    fn failures_in_start_period_do_not_count() {
        let t0 = Instant::now();
        // Start period 25 s: probes at 10 s and 21 s are inside, 32 s is outside.
        let mut h = Health::new(timing(1, 25), t0);
        assert_eq!(probe(&mut h, fail()), None);
        assert_eq!(probe(&mut h, fail()), None);
        assert_eq!(h.failing_streak(), 0);
        assert_eq!(h.status(), HealthStatus::Starting);
        assert_eq!(probe(&mut h, fail()), Some(HealthStatus::Unhealthy));
    }

    #[test]
    fn a_pass_in_start_period_ends_it() {
        let t0 = Instant::now();
        let mut h = Health::new(timing(1, 100), t0);
        assert_eq!(
            probe(&mut h, ProbeResult::Passed),
            Some(HealthStatus::Healthy)
        );
        // Now failures count even though we are still inside the start period.
        assert_eq!(probe(&mut h, fail()), Some(HealthStatus::Unhealthy));
    }

    #[test]
    fn next_probe_is_interval_after_the_end() {
        let t0 = Instant::now();
        let mut h = Health::new(timing(3, 0), t0);
        let start = t0 + Duration::from_secs(10);
        h.record(ProbeResult::Passed, start, start + Duration::from_secs(2));
        assert_eq!(h.next_probe_at(), t0 + Duration::from_secs(22));
    }

    #[test]
    fn timing_update_reschedules_sooner_only() {
        let t0 = Instant::now();
        let mut h = Health::new(timing(3, 0), t0);
        let mut t = timing(3, 0);
        t.interval = Duration::from_secs(1);
        h.set_timing(t, t0);
        assert_eq!(h.next_probe_at(), t0 + Duration::from_secs(1));
        t.interval = Duration::from_secs(100);
        h.set_timing(t, t0);
        assert_eq!(h.next_probe_at(), t0 + Duration::from_secs(1));
    }
}
