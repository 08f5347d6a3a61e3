//! The emulator's own clock. Every expiry (access tokens, codes, refresh tokens, download URLs, delta tokens) is
//! measured on it, so tests move time forward with [`EmulatorClock::advance`] instead of sleeping.

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use std::time::Instant;

/// Wall-clock-like time that tests can advance.
#[derive(Debug)]
pub struct EmulatorClock {
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
        let mut offset = self.offset.lock();
        *offset += by;
    }

    /// Puts the clock back to its start offset (used by reset).
    pub fn reset(&self) {
        *self.offset.lock() = chrono::Duration::zero();
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

/// Starts measuring real elapsed time (how long a receiver takes to answer, the gaps between delivery
/// attempts); never a source of "now".
#[expect(
    clippy::disallowed_methods,
    reason = "measures real elapsed time of outgoing deliveries"
)]
pub(crate) fn stopwatch() -> Instant {
    Instant::now()
}

/// Formats an instant as an HTTP date (IMF-fixdate).
pub fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Formats an instant the way Graph does (`2024-01-01T00:00:00Z`, or with fractional seconds when present).
pub fn graph_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}
