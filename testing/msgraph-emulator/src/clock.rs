//! The emulator's own clock. Every expiry (access tokens, codes, refresh tokens, download URLs, delta tokens) is
//! measured on it, so tests move time forward with [`EmulatorClock::advance`] instead of sleeping.

use chrono::{DateTime, Utc};
use std::time::Instant;

pub use emulator_kit::{EmulatorClock, wall_clock_whole_seconds};

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
