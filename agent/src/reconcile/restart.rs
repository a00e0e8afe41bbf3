//! Restart policies and backoff: pure decisions, no clock, no I/O.
//!
//! Semantics follow Docker's restart manager (`restartmanager.ShouldRestart` and the daemon's
//! `restore`) exactly:
//!
//! | policy            | exited while the agent runs            | agent start / host reboot            |
//! |-------------------|----------------------------------------|--------------------------------------|
//! | `no`              | stays exited                           | stays exited                         |
//! | `always`          | restarted, any exit code               | restarted, even after `agent stop`   |
//! | `on-failure[:n]`  | restarted on a non-zero exit while     | as on the left (the retry count is   |
//! |                   | fewer than `n` retries were made       | kept across agent restarts)          |
//! | `unless-stopped`  | restarted, any exit code               | restarted unless stopped by          |
//! |                   |                                        | `agent stop`                         |
//!
//! "Stopped by `agent stop`" ([`ExitFacts::manually_stopped`]) always wins while the agent runs: a
//! container the user stopped is never restarted behind their back, whatever its policy. The only
//! way back is an agent restart (`always`), a changed manifest, or starting it explicitly.
//! `maxRetries: 0` (or none) means no limit, as in Docker. A container that was running when the
//! host went down has no exit code; Docker records 255 for it (non-zero), and so do we
//! ([`LOST_EXIT_CODE`]), so `on-failure` containers come back after a reboot too.
//!
//! An unhealthy container (health check failed `retries` times) is treated as a failure: with any
//! policy but `no` the agent stops it (exit code of the stop signal, non-zero) and the policy
//! decides as for any exit. With `no` it is left running and shown `unhealthy`, as Docker does.
//!
//! Backoff: the first automatic restart waits `start` (100 ms), each further one `factor` (2)
//! times longer, up to `cap`; a run of at least `reset_after` (10 s) resets the delay to `start`
//! (Docker resets after 10 s of execution, with a fixed 1 minute cap; both values are in the
//! config here). The delay is counted from the exit, so a crash-looping container costs one
//! process start per delay and never blocks the pass: the reconciler schedules a timer trigger
//! instead of sleeping.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::daemon::config::BackoffConfig;

/// Exit code recorded for a container whose process vanished while the agent was down without
/// an exit status (host reboot): Docker's 255.
pub const LOST_EXIT_CODE: i32 = 255;

/// A container's restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "policy", rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    No,
    Always,
    OnFailure {
        /// `None` or `Some(0)`: no limit.
        #[serde(rename = "maxRetries", default)]
        max_retries: Option<u32>,
    },
    UnlessStopped,
}

/// As Docker writes it: `no`, `always`, `on-failure`, `on-failure:5`, `unless-stopped`.
impl std::fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestartPolicy::No => f.write_str("no"),
            RestartPolicy::Always => f.write_str("always"),
            RestartPolicy::OnFailure {
                max_retries: Some(n),
            } if *n > 0 => write!(f, "on-failure:{n}"),
            RestartPolicy::OnFailure { .. } => f.write_str("on-failure"),
            RestartPolicy::UnlessStopped => f.write_str("unless-stopped"),
        }
    }
}

/// A delay in the one duration grammar ([`crate::manifest::units::Duration`]), to the
/// millisecond under a minute and to the second above: `0s`, `250ms`, `1.5s`, `2m30s`.
pub fn delay_text(d: std::time::Duration) -> String {
    let d = if d.as_secs() >= 60 {
        std::time::Duration::from_secs(d.as_secs())
    } else {
        std::time::Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    };
    crate::manifest::units::Duration(d).to_string()
}

/// When the decision is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occasion {
    /// The container exited (or was stopped as unhealthy) while the agent was running.
    Exited,
    /// The agent is starting (after an agent restart or a host reboot) and finds the container
    /// not running.
    AgentStart,
}

/// What is known about the container's last run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitFacts {
    /// Exit code; 128+n for a signal; [`LOST_EXIT_CODE`] when it vanished with the host.
    pub exit_code: i32,
    /// Stopped through `agent stop`, and not started again since.
    pub manually_stopped: bool,
    /// Automatic restarts made since the container was last created or started by hand.
    pub restart_count: u32,
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Restart it; the caller waits the backoff delay first.
    Restart,
    /// Leave it exited, for this reason (shown in `agent ps` and the event log).
    Stay(String),
}

impl RestartPolicy {
    /// Docker's decision for a container that is not running.
    pub fn decide(&self, occasion: Occasion, facts: ExitFacts) -> Decision {
        use RestartPolicy::*;
        match (self, occasion) {
            (No, _) => Decision::Stay("restart policy is no".into()),
            (_, Occasion::Exited) if facts.manually_stopped => {
                Decision::Stay("stopped with `agent stop`".into())
            }
            (Always, _) => Decision::Restart,
            (UnlessStopped, _) if facts.manually_stopped => {
                Decision::Stay("unless-stopped and stopped with `agent stop`".into())
            }
            (UnlessStopped, _) => Decision::Restart,
            (OnFailure { .. }, _) if facts.exit_code == 0 => {
                Decision::Stay("on-failure and it exited with code 0".into())
            }
            (OnFailure { max_retries }, _) => match max_retries {
                Some(max) if *max > 0 && facts.restart_count >= *max => Decision::Stay(format!(
                    "on-failure: gave up after {max} restart(s) (maxRetries {max})"
                )),
                _ => Decision::Restart,
            },
        }
    }

    /// Whether an unhealthy container is stopped so that its policy can restart it.
    pub fn restarts_unhealthy(&self) -> bool {
        !matches!(self, RestartPolicy::No)
    }
}

/// Per-container backoff state (kept in the store as the current delay in milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Backoff {
    /// The delay used for the previous restart; zero before the first.
    pub last_delay: Duration,
}

impl Backoff {
    /// The delay before the next restart, given how long the last run lasted; updates the state.
    pub fn next_delay(&mut self, config: &BackoffConfig, ran_for: Duration) -> Duration {
        let delay = if self.last_delay.is_zero() || ran_for >= config.reset_after {
            config.start
        } else {
            self.last_delay.mul_f64(config.factor).min(config.cap)
        };
        let delay = delay.min(config.cap);
        self.last_delay = delay;
        delay
    }

    /// Forgets the history (manifest changed, started by hand).
    pub fn reset(&mut self) {
        self.last_delay = Duration::ZERO;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn policies_and_delays_in_words() {
        use std::time::Duration;
        let p = |max| RestartPolicy::OnFailure { max_retries: max };
        assert_eq!(p(Some(5)).to_string(), "on-failure:5");
        assert_eq!(p(None).to_string(), "on-failure");
        assert_eq!(p(Some(0)).to_string(), "on-failure");
        assert_eq!(RestartPolicy::UnlessStopped.to_string(), "unless-stopped");
        assert_eq!(delay_text(Duration::ZERO), "0s");
        assert_eq!(delay_text(Duration::from_millis(250)), "250ms");
        assert_eq!(delay_text(Duration::from_millis(1500)), "1.5s");
        assert_eq!(delay_text(Duration::from_secs(2)), "2s");
        assert_eq!(delay_text(Duration::from_secs(150)), "2m30s");
        assert_eq!(delay_text(Duration::from_millis(150_999)), "2m30s");
        assert_eq!(delay_text(Duration::from_micros(1_500_999)), "1.5s");
    }

    use super::*;

    const NONZERO: i32 = 1;

    fn facts(exit_code: i32, manually_stopped: bool, restart_count: u32) -> ExitFacts {
        ExitFacts {
            exit_code,
            manually_stopped,
            restart_count,
        }
    }

    #[test]
    fn docker_table() {
        use Occasion::*;
        use RestartPolicy::*;
        let on_failure = OnFailure { max_retries: None };
        let on_failure3 = OnFailure {
            max_retries: Some(3),
        };
        let on_failure0 = OnFailure {
            max_retries: Some(0),
        };
        // (policy, occasion, exit code, manually stopped, restart count, restart?)
        let table: &[(RestartPolicy, Occasion, i32, bool, u32, bool)] = &[
            (No, Exited, 0, false, 0, false),
            (No, Exited, NONZERO, false, 0, false),
            (No, AgentStart, LOST_EXIT_CODE, false, 0, false),
            (Always, Exited, 0, false, 0, true),
            (Always, Exited, NONZERO, false, 99, true),
            (Always, Exited, 143, true, 0, false),
            (Always, AgentStart, 143, true, 0, true),
            (Always, AgentStart, 0, false, 0, true),
            (Always, AgentStart, LOST_EXIT_CODE, false, 0, true),
            (UnlessStopped, Exited, 0, false, 0, true),
            (UnlessStopped, Exited, NONZERO, false, 0, true),
            (UnlessStopped, Exited, 143, true, 0, false),
            (UnlessStopped, AgentStart, 143, true, 0, false),
            (UnlessStopped, AgentStart, LOST_EXIT_CODE, false, 0, true),
            (on_failure, Exited, 0, false, 0, false),
            (on_failure, Exited, NONZERO, false, 0, true),
            (on_failure, Exited, 137, false, 1000, true),
            (on_failure, Exited, NONZERO, true, 0, false),
            (on_failure, AgentStart, LOST_EXIT_CODE, false, 0, true),
            (on_failure, AgentStart, 0, false, 0, false),
            (on_failure0, Exited, NONZERO, false, 1000, true),
            (on_failure3, Exited, NONZERO, false, 0, true),
            (on_failure3, Exited, NONZERO, false, 2, true),
            (on_failure3, Exited, NONZERO, false, 3, false),
            (on_failure3, AgentStart, LOST_EXIT_CODE, false, 3, false),
            (on_failure3, AgentStart, LOST_EXIT_CODE, false, 2, true),
            (on_failure3, Exited, 0, false, 0, false),
        ];
        for &(policy, occasion, code, stopped, count, want) in table {
            let got = policy.decide(occasion, facts(code, stopped, count));
            assert_eq!(
                got == Decision::Restart,
                want,
                "{policy:?} {occasion:?} exit {code} stopped {stopped} count {count}: {got:?}"
            );
        }
    }

    #[test]
    fn stay_reasons_say_why() {
        let d = RestartPolicy::OnFailure {
            max_retries: Some(5),
        }
        .decide(Occasion::Exited, facts(1, false, 5));
        assert_eq!(
            d,
            Decision::Stay("on-failure: gave up after 5 restart(s) (maxRetries 5)".into())
        );
        let d = RestartPolicy::Always.decide(Occasion::Exited, facts(0, true, 0));
        assert_eq!(d, Decision::Stay("stopped with `agent stop`".into()));
    }

    #[test]
    fn unhealthy_restart_only_with_a_policy() {
        assert!(!RestartPolicy::No.restarts_unhealthy());
        assert!(RestartPolicy::Always.restarts_unhealthy());
        assert!(RestartPolicy::UnlessStopped.restarts_unhealthy());
        assert!(RestartPolicy::OnFailure { max_retries: None }.restarts_unhealthy());
    }

    #[test]
    fn backoff_grows_caps_and_resets() {
        let cfg = BackoffConfig {
            start: Duration::from_millis(100),
            factor: 2.0,
            cap: Duration::from_millis(1000),
            reset_after: Duration::from_secs(10),
        };
        let mut b = Backoff::default();
        let short = Duration::from_millis(5);
        let delays: Vec<u64> = (0..7)
            .map(|_| b.next_delay(&cfg, short).as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000, 1000]);
        // A stable run resets to the start.
        assert_eq!(b.next_delay(&cfg, Duration::from_secs(10)), cfg.start);
        assert_eq!(b.next_delay(&cfg, short), Duration::from_millis(200));
        b.reset();
        assert_eq!(b.next_delay(&cfg, short), cfg.start);
    }

    #[test]
    fn backoff_start_above_cap_is_capped() {
        let cfg = BackoffConfig {
            start: Duration::from_secs(2),
            factor: 1.0,
            cap: Duration::from_secs(1),
            reset_after: Duration::from_secs(10),
        };
        let mut b = Backoff::default();
        assert_eq!(b.next_delay(&cfg, Duration::ZERO), Duration::from_secs(1));
        assert_eq!(b.next_delay(&cfg, Duration::ZERO), Duration::from_secs(1));
    }

    #[test]
    fn policy_serde_matches_manifest_spelling() {
        let p: RestartPolicy =
            serde_json::from_str(r#"{"policy":"on-failure","maxRetries":5}"#).unwrap();
        assert_eq!(
            p,
            RestartPolicy::OnFailure {
                max_retries: Some(5)
            }
        );
        let p: RestartPolicy = serde_json::from_str(r#"{"policy":"unless-stopped"}"#).unwrap();
        assert_eq!(p, RestartPolicy::UnlessStopped);
    }
}
