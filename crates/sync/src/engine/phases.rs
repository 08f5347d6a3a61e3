//! Where a run's time goes: a meter the run and its files in flight add their phase times to, in
//! real elapsed time (what a slow run is explained by, so not the injected clock, which tests
//! stand still). The steps of a run follow one another and are timed as a whole; the files of the
//! work list overlap, so each adds its own time in download, extract and index (see
//! [`SyncPhaseTimes`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kbsync_core::{SyncPhase, SyncPhaseTimes};

/// The histogram of phase times, one observation per phase per finished run.
const PHASE_METRIC: &str = "kbsync_sync_phase_seconds";

/// A run's phase times as they accumulate; shared by the files in flight.
#[derive(Debug)]
pub(super) struct PhaseMeter {
    started: Instant,
    /// Nanoseconds per phase, in [`SyncPhase::ALL`]'s order.
    nanos: [AtomicU64; SyncPhase::ALL.len()],
}

impl PhaseMeter {
    /// A meter whose wall time starts now.
    #[expect(clippy::disallowed_methods, reason = "measures the run's real elapsed time")]
    pub(super) fn start() -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            nanos: Default::default(),
        })
    }

    /// Times `phase` until the returned span is dropped, so that work cut short (a timeout, a
    /// cancelled file, an early return) still counts the time it took.
    #[expect(clippy::disallowed_methods, reason = "measures a phase's real elapsed time")]
    pub(super) fn time(self: &Arc<Self>, phase: SyncPhase) -> PhaseSpan {
        PhaseSpan {
            meter: self.clone(),
            phase,
            started: Instant::now(),
        }
    }

    fn add(&self, phase: SyncPhase, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.nanos[index(phase)].fetch_add(nanos, Ordering::Relaxed);
    }

    /// The times so far, with the wall time from the meter's start to now.
    pub(super) fn times(&self) -> SyncPhaseTimes {
        let mut times = SyncPhaseTimes {
            wall: self.started.elapsed(),
            ..SyncPhaseTimes::default()
        };
        for phase in SyncPhase::ALL {
            *times.get_mut(phase) = Duration::from_nanos(self.nanos[index(phase)].load(Ordering::Relaxed));
        }
        times
    }
}

fn index(phase: SyncPhase) -> usize {
    SyncPhase::ALL
        .iter()
        .position(|p| *p == phase)
        .unwrap_or_default()
}

/// One stretch of a phase; adds its time to the meter when dropped.
pub(super) struct PhaseSpan {
    meter: Arc<PhaseMeter>,
    phase: SyncPhase,
    started: Instant,
}

impl Drop for PhaseSpan {
    fn drop(&mut self) {
        self.meter.add(self.phase, self.started.elapsed());
    }
}

/// Records a finished run's phase times in `kbsync_sync_phase_seconds{phase}` (the run's wall time
/// is `kbsync_sync_run_duration_seconds`).
pub(super) fn record_metrics(times: &SyncPhaseTimes) {
    for phase in SyncPhase::ALL {
        metrics::histogram!(PHASE_METRIC, "phase" => phase.as_str()).record(times.get(phase).as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_add_up_per_phase_and_overlapping_spans_each_count() {
        let meter = PhaseMeter::start();
        meter.add(SyncPhase::Download, Duration::from_millis(30));
        meter.add(SyncPhase::Download, Duration::from_millis(20));
        meter.add(SyncPhase::Index, Duration::from_micros(7));
        {
            // Two files in the same phase at once: both spans count.
            let _a = meter.time(SyncPhase::Extract);
            let _b = meter.time(SyncPhase::Extract);
        }
        let times = meter.times();
        assert_eq!(times.download, Duration::from_millis(50));
        assert_eq!(times.index, Duration::from_micros(7));
        assert_eq!(times.enumerate, Duration::ZERO);
        assert_eq!(times.plan, Duration::ZERO);
        assert_eq!(times.permissions, Duration::ZERO);
        assert!(times.wall >= times.extract / 2, "{times:?}");
        for phase in SyncPhase::ALL {
            assert_eq!(SyncPhase::ALL[index(phase)], phase);
        }
    }
}
