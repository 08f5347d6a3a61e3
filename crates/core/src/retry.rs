//! Waiting and backing off, shared by the datasource clients: a [`Sleeper`] that tests replace,
//! exponential backoff with jitter, and a throttle [`Gate`] that a throttled answer closes for
//! every request that waits at it.
//!
//! Which requests share a gate is the client's business (Graph: one per tenant and application;
//! Google Drive: one per datasource instance); what a gate does is the same everywhere: a request
//! waits at its gate before each attempt, for as long as the latest closure says, plus a small
//! jitter so that the waiting requests do not all arrive in the same millisecond.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use crate::{Clock, Random};

/// The jitter on top of an explicit wait is below this share of the wait (1/20 = 5 %) …
const RETRY_AFTER_JITTER_DIVISOR: u32 = 20;
/// … and below this.
const MAX_RETRY_AFTER_JITTER: Duration = Duration::from_millis(250);

/// Waits. Production uses [`TokioSleeper`]; tests record the durations and return at once.
#[async_trait]
pub trait Sleeper: Send + Sync {
    async fn sleep(&self, duration: Duration);
}

/// Sleeps on the Tokio timer.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioSleeper;

#[async_trait]
impl Sleeper for TokioSleeper {
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// Exponential backoff with "equal jitter" for the `attempt`-th failure (1-based): the step is
/// `base × 2^(attempt-1)`, capped at `cap`; half of it for sure, half at random.
pub fn backoff(base: Duration, cap: Duration, attempt: u32, random: &dyn Random) -> Duration {
    let exp = attempt.saturating_sub(1).min(20);
    let step = base.saturating_mul(1u32 << exp).min(cap);
    step / 2 + jitter(random, step / 2)
}

/// The jitter on top of an explicit wait (a `Retry-After`): uniform in
/// `[0, min(wait / 20, 250 ms))`.
pub fn retry_after_jitter(random: &dyn Random, wait: Duration) -> Duration {
    jitter(
        random,
        (wait / RETRY_AFTER_JITTER_DIVISOR).min(MAX_RETRY_AFTER_JITTER),
    )
}

/// A uniformly random duration in `[0, max)`.
pub fn jitter(random: &dyn Random, max: Duration) -> Duration {
    let mut bytes = [0u8; 8];
    random.fill(&mut bytes);
    let fraction = (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64;
    max.mul_f64(fraction)
}

/// `now + wait`, or the end of time when that does not fit.
pub fn later(now: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(wait)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A throttle gate: closed until a time, shared by the requests that must pause together.
#[derive(Debug, Default)]
pub struct Gate {
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    /// When the gate reopens; `None` if it was never closed.
    until: Option<DateTime<Utc>>,
    /// How many times the reopening was set or moved later.
    closures: u64,
}

/// A closed gate, as one request saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closure {
    pub until: DateTime<Utc>,
    /// Which closure this is: a request that waited for it passes even if its clock says the gate
    /// is still closed (a sleeper that returned early), and waits again only for a later one.
    pub number: u64,
}

/// What one request has waited at its gate so far.
#[derive(Debug, Default)]
pub struct GateWaits {
    /// Time spent waiting at the gate, against the request's budget.
    pub total: Duration,
    /// The gate closure this request last waited out.
    pub last_closure: Option<u64>,
}

/// How long a request may wait at a gate.
#[derive(Debug, Clone, Copy)]
pub struct WaitLimits {
    /// The longest single wait; a closure longer than this is not waited for.
    pub max_wait: Duration,
    /// The total a request may wait at its gate.
    pub budget: Duration,
}

/// Why a request did not wait at its closed gate: it must report itself throttled, to come back
/// after `remaining`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The gate stays closed longer than [`WaitLimits::max_wait`].
    BeyondMaxWait { remaining: Duration },
    /// Waiting would exceed the request's [`WaitLimits::budget`].
    OutOfBudget { remaining: Duration },
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps the gate closed until at least `until`. Returns whether that moved its reopening.
    pub fn close_until(&self, until: DateTime<Utc>) -> bool {
        let mut s = self.lock();
        if s.until.is_some_and(|u| u >= until) {
            return false;
        }
        s.until = Some(until);
        s.closures += 1;
        true
    }

    /// The closure in force at `now`, if the gate is closed.
    pub fn closed_at(&self, now: DateTime<Utc>) -> Option<Closure> {
        let s = self.lock();
        s.until.filter(|u| *u > now).map(|until| Closure {
            until,
            number: s.closures,
        })
    }

    /// Waits while the gate is closed (looking first at `now`, then at the clock after each
    /// wait), each time the rest of the closure plus [`retry_after_jitter`]. Returns how many
    /// waits it did, or why it would not wait.
    pub async fn wait_open(
        &self,
        mut now: DateTime<Utc>,
        clock: &dyn Clock,
        sleeper: &dyn Sleeper,
        random: &dyn Random,
        limits: WaitLimits,
        waits: &mut GateWaits,
    ) -> Result<u32, Refusal> {
        let mut slept = 0;
        loop {
            let Some(closure) = self.closed_at(now) else {
                return Ok(slept);
            };
            if waits.last_closure == Some(closure.number) {
                // Already waited out (by a sleeper that returned early, or a lagging clock).
                return Ok(slept);
            }
            let remaining = (closure.until - now).to_std().unwrap_or_default();
            if remaining > limits.max_wait {
                return Err(Refusal::BeyondMaxWait { remaining });
            }
            let delay = remaining + retry_after_jitter(random, remaining);
            if waits.total + delay > limits.budget {
                return Err(Refusal::OutOfBudget { remaining });
            }
            waits.total += delay;
            waits.last_closure = Some(closure.number);
            slept += 1;
            sleeper.sleep(delay).await;
            now = clock.now();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Mutex;

    use super::*;
    use crate::{ManualClock, SeededRandom};

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    #[derive(Default)]
    struct Recording(Mutex<Vec<Duration>>);

    #[async_trait]
    impl Sleeper for Recording {
        async fn sleep(&self, d: Duration) {
            self.0.lock().unwrap().push(d);
        }
    }

    #[test]
    fn a_gate_stays_closed_until_the_latest_reopening_and_counts_only_moves() {
        let gate = Gate::default();
        assert_eq!(gate.closed_at(at(0)), None);
        assert!(gate.close_until(at(5)));
        assert_eq!(
            gate.closed_at(at(1)),
            Some(Closure {
                until: at(5),
                number: 1
            })
        );
        // An earlier reopening does not shorten the closure.
        assert!(!gate.close_until(at(3)));
        assert_eq!(
            gate.closed_at(at(4)).map(|c| (c.until, c.number)),
            Some((at(5), 1))
        );
        assert!(gate.close_until(at(8)));
        assert_eq!(
            gate.closed_at(at(6)).map(|c| (c.until, c.number)),
            Some((at(8), 2))
        );
        assert_eq!(gate.closed_at(at(8)), None);
    }

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap_with_half_of_each_step_certain() {
        let random = SeededRandom::new(1);
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(8);
        for (attempt, step) in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 8), (40, 8)] {
            let step = Duration::from_secs(step);
            let d = backoff(base, cap, attempt, &random);
            assert!(d >= step / 2 && d < step, "attempt {attempt}: {d:?}");
        }
    }

    #[tokio::test]
    async fn a_request_waits_out_a_closure_once_and_refuses_beyond_its_limits() {
        let clock = ManualClock::new(at(0));
        let random = SeededRandom::new(2);
        let sleeper = Recording::default();
        let gate = Gate::default();
        let limits = WaitLimits {
            max_wait: Duration::from_secs(30),
            budget: Duration::from_secs(50),
        };
        let mut waits = GateWaits::default();
        assert_eq!(
            gate.wait_open(at(0), &clock, &sleeper, &random, limits, &mut waits)
                .await,
            Ok(0)
        );
        gate.close_until(at(10));
        // The clock does not move (a sleeper that returns early): one wait per closure.
        assert_eq!(
            gate.wait_open(at(0), &clock, &sleeper, &random, limits, &mut waits)
                .await,
            Ok(1)
        );
        let slept = sleeper.0.lock().unwrap().clone();
        assert_eq!(slept.len(), 1);
        assert!(slept[0] >= Duration::from_secs(10) && slept[0] < Duration::from_millis(10_250));
        gate.close_until(at(100));
        assert_eq!(
            gate.wait_open(at(0), &clock, &sleeper, &random, limits, &mut waits)
                .await,
            Err(Refusal::BeyondMaxWait {
                remaining: Duration::from_secs(100)
            })
        );
        gate.close_until(at(200));
        assert_eq!(
            gate.wait_open(at(175), &clock, &sleeper, &random, limits, &mut waits)
                .await,
            Ok(1)
        );
        gate.close_until(at(230));
        assert!(matches!(
            gate.wait_open(at(200), &clock, &sleeper, &random, limits, &mut waits)
                .await,
            Err(Refusal::OutOfBudget { .. })
        ));
    }
}
