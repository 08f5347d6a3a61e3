//! The emulator's own clock. Every expiry (access tokens, codes) is measured on it, so tests move time forward
//! with [`crate::Control::advance_clock`] instead of sleeping.

use chrono::{DateTime, Utc};

pub use emulator_kit::{EmulatorClock, wall_clock_whole_seconds};

/// RFC 3339 with milliseconds and `Z`, as Drive writes `modifiedTime` (`2024-01-01T00:00:00.000Z`).
pub(crate) fn google_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
