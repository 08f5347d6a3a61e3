//! The emulator's own clock. Every expiry (access tokens, codes) is measured on it, so tests move time forward
//! with [`crate::Control::advance_clock`] instead of sleeping.

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use std::time::Instant;

/// Wall-clock-like time that tests can advance.
#[derive(Debug)]
pub(crate) struct EmulatorClock {
    start: DateTime<Utc>,
    started_at: Instant,
    frozen: bool,
    offset: Mutex<chrono::Duration>,
}

impl EmulatorClock {
    /// A clock starting at `start`; unless `frozen`, it also follows real elapsed time.
    #[expect(
        clippy::disallowed_methods,
        reason = "the emulator clock follows real time unless frozen"
    )]
    pub fn new(start: DateTime<Utc>, frozen: bool) -> Self {
        Self {
            start,
            started_at: Instant::now(),
            frozen,
            offset: Mutex::new(chrono::Duration::zero()),
        }
    }

    /// The emulator's current time.
    pub fn now(&self) -> DateTime<Utc> {
        let offset = *self.offset.lock();
        let real = if self.frozen {
            chrono::Duration::zero()
        } else {
            chrono::Duration::from_std(self.started_at.elapsed()).unwrap_or_else(|_| chrono::Duration::zero())
        };
        self.start + real + offset
    }

    /// Moves the clock forward (or backward for a negative duration).
    pub fn advance(&self, by: chrono::Duration) {
        *self.offset.lock() += by;
    }
}

/// The real current time, whole seconds: where the emulator clock starts unless told otherwise.
#[expect(
    clippy::disallowed_methods,
    reason = "the emulator's default start is the real time"
)]
pub(crate) fn wall_clock_whole_seconds() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now)
}

/// RFC 3339 with milliseconds and `Z`, as Drive writes `modifiedTime` (`2024-01-01T00:00:00.000Z`).
pub(crate) fn google_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
