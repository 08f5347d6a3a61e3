//! The figures the pages draw (see [`chart`](crate::ui::chart)): a knowledge base's run history
//! and the admin page's sync activity over the last day.

use chrono::{DateTime, TimeDelta, Utc};
use kbsync_core::{SyncRun, SyncStatus};
use kbsync_store::RunActivity;

use super::when;
use crate::service::overview::{ACTIVITY_HOURS, SyncActivity};
use crate::ui::chart::{Bar, Figure, Mark, Panel, Table};

/// A unit to show lengths of time in, chosen for the longest one shown.
#[derive(Debug, Clone, Copy, PartialEq)]
struct TimeUnit {
    name: &'static str,
    seconds: f64,
}

impl TimeUnit {
    fn for_longest(longest: TimeDelta) -> Self {
        let secs = longest.num_seconds();
        if secs < 120 {
            TimeUnit {
                name: "seconds",
                seconds: 1.0,
            }
        } else if secs < 2 * 3600 {
            TimeUnit {
                name: "minutes",
                seconds: 60.0,
            }
        } else {
            TimeUnit {
                name: "hours",
                seconds: 3600.0,
            }
        }
    }

    fn value(self, d: TimeDelta) -> f64 {
        d.num_milliseconds().max(0) as f64 / 1000.0 / self.seconds
    }
}

/// A length of time to read: "850 ms", "12.4 s", "7 min 5 s", "2 h 10 min".
fn span(d: TimeDelta) -> String {
    let ms = d.num_milliseconds().max(0);
    let secs = ms / 1000;
    if ms < 1000 {
        format!("{ms} ms")
    } else if secs < 120 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if secs < 2 * 3600 {
        format!("{} min {} s", secs / 60, secs % 60)
    } else {
        format!("{} h {} min", secs / 3600, secs % 3600 / 60)
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// How a run's bar stands out: failed, ended with errors, or neither.
fn run_mark(status: SyncStatus) -> Mark {
    if status.is_failure() {
        Mark::Failed
    } else if status == SyncStatus::CompletedWithErrors {
        Mark::Partial
    } else {
        Mark::Plain
    }
}

/// A knowledge base's finished runs (given newest first, as the store lists them), oldest on the
/// left: the files each changed (brought in or removed) and how long it took. A run still going
/// is left out: the progress bar shows it.
pub fn run_history(runs: &[SyncRun]) -> Figure {
    let finished: Vec<(&SyncRun, DateTime<Utc>)> = runs
        .iter()
        .rev()
        .filter_map(|r| r.finished_at.map(|f| (r, f)))
        .collect();
    let took = |r: &SyncRun, f: DateTime<Utc>| (f - r.started_at).max(TimeDelta::zero());
    let unit = TimeUnit::for_longest(
        finished
            .iter()
            .map(|(r, f)| took(r, *f))
            .max()
            .unwrap_or_default(),
    );
    let mut files = Vec::with_capacity(finished.len());
    let mut durations = Vec::with_capacity(finished.len());
    let mut rows = Vec::with_capacity(finished.len());
    for (r, f) in &finished {
        let o = &r.outcome;
        let changed = o.processed + o.deleted;
        let duration = took(r, *f);
        let status = o.status.as_str().replace('_', " ");
        let label = r.started_at.format("%d %b %H:%M").to_string();
        let tip = format!(
            "{} · {} · {status} · {} ({} brought in, {} removed), {} · took {}",
            when(r.started_at),
            r.trigger.as_str(),
            plural(changed, "file changed", "files changed"),
            o.processed,
            o.deleted,
            plural(o.failed, "file failed", "files failed"),
            span(duration)
        );
        let mark = run_mark(o.status);
        files.push(Bar {
            label: label.clone(),
            value: changed as f64,
            tip: tip.clone(),
            mark,
        });
        durations.push(Bar {
            label,
            value: unit.value(duration),
            tip,
            mark,
        });
        rows.push(vec![
            when(r.started_at),
            r.trigger.as_str().to_owned(),
            status,
            changed.to_string(),
            o.failed.to_string(),
            span(duration),
        ]);
    }
    let n = finished.len() as u64;
    let failed = finished
        .iter()
        .filter(|(r, _)| r.outcome.status.is_failure())
        .count() as u64;
    let span_of_runs = match (finished.first(), finished.last()) {
        (Some((first, _)), Some((last, _))) if n > 1 => {
            format!("from {} to {}", when(first.started_at), when(last.started_at))
        }
        (Some((only, _)), _) => format!("on {}", when(only.started_at)),
        _ => String::new(),
    };
    let most_files = files.iter().map(|b| b.value as u64).max().unwrap_or(0);
    let longest = finished
        .iter()
        .map(|(r, f)| took(r, *f))
        .max()
        .unwrap_or_default();
    let failures = if failed == 0 {
        "none failed".to_owned()
    } else {
        format!("{} (marked with a cross)", plural(failed, "failed", "failed"))
    };
    Figure {
        id: "run-chart".into(),
        panels: vec![
            Panel {
                title: "Files changed per run".into(),
                unit: "files".into(),
                description: format!(
                    "{} {span_of_runs}, oldest on the left; at most {} in one run; {failures}.",
                    plural(n, "run", "runs"),
                    plural(most_files, "file changed", "files changed"),
                ),
                whole: true,
                bars: files,
            },
            Panel {
                title: "Duration per run".into(),
                unit: unit.name.into(),
                description: format!(
                    "How long each of the {} took, oldest on the left; the longest took {}.",
                    plural(n, "run", "runs"),
                    span(longest)
                ),
                whole: false,
                bars: durations,
            },
        ],
        table: Table {
            caption: "The runs in numbers".into(),
            headers: [
                "Started",
                "Trigger",
                "Status",
                "Files changed",
                "Failed files",
                "Duration",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        },
        empty: "No finished run yet.".into(),
    }
}

/// The sync activity of every knowledge base over the last day, hour by hour: files brought in
/// (hours with a failed run marked) and the longest queue lag, how late scheduled runs started
/// after they were due.
pub fn activity(a: &SyncActivity) -> Figure {
    let hour = TimeDelta::hours(1);
    let at = |i: i32| a.since + hour * i;
    let of_hour = |start: DateTime<Utc>| a.hours.iter().find(|h| h.period_start == start);
    let unit = TimeUnit::for_longest(a.hours.iter().map(|h| h.lag_max).max().unwrap_or_default());
    let mut files = Vec::new();
    let mut lags = Vec::new();
    for i in 0..ACTIVITY_HOURS {
        let start = at(i);
        let label = start.format("%H:%M").to_string();
        let range = format!(
            "{}–{} UTC",
            start.format("%d %b %H:%M"),
            (start + hour).format("%H:%M")
        );
        let (value, lag, mark, tip) = match of_hour(start) {
            None => (0.0, 0.0, Mark::Plain, format!("{range}: no run")),
            Some(h) => (
                h.processed as f64,
                unit.value(h.lag_max),
                activity_mark(h),
                format!("{range}: {}", hour_summary(h)),
            ),
        };
        files.push(Bar {
            label: label.clone(),
            value,
            tip: tip.clone(),
            mark,
        });
        lags.push(Bar {
            label,
            value: lag,
            tip,
            mark: Mark::Plain,
        });
    }
    let rows = a
        .hours
        .iter()
        .map(|h| {
            vec![
                format!(
                    "{}–{}",
                    h.period_start.format("%d %b %H:%M"),
                    (h.period_start + hour).format("%H:%M")
                ),
                h.runs.to_string(),
                h.failed_runs.to_string(),
                h.processed.to_string(),
                h.failed_files.to_string(),
                h.deleted.to_string(),
                h.lag_mean().map(span).unwrap_or_else(|| "–".into()),
                if h.lagged_runs > 0 {
                    span(h.lag_max)
                } else {
                    "–".into()
                },
            ]
        })
        .collect();
    let sum = |f: fn(&RunActivity) -> u64| a.hours.iter().map(f).sum::<u64>();
    let (runs, failed, processed) = (sum(|h| h.runs), sum(|h| h.failed_runs), sum(|h| h.processed));
    let longest = a.hours.iter().map(|h| h.lag_max).max().unwrap_or_default();
    let window = format!(
        "from {} to {}",
        when(a.since),
        when(a.since + hour * ACTIVITY_HOURS)
    );
    Figure {
        id: "activity-chart".into(),
        panels: if a.hours.is_empty() {
            Vec::new()
        } else {
            vec![
                Panel {
                    title: "Files brought in per hour, all knowledge bases".into(),
                    unit: "files".into(),
                    description: format!(
                        "{} {window} brought in {}; {}.",
                        plural(runs, "run", "runs"),
                        plural(processed, "file", "files"),
                        if failed == 0 {
                            "none failed".to_owned()
                        } else {
                            format!(
                                "{} failed (their hours are marked with a cross)",
                                plural(failed, "run", "runs")
                            )
                        }
                    ),
                    whole: true,
                    bars: files,
                },
                Panel {
                    title: "Queue lag per hour: the longest wait of a due run".into(),
                    unit: unit.name.into(),
                    description: format!(
                        "How late scheduled runs started after they were due, {window}; the longest wait was {}.",
                        span(longest)
                    ),
                    whole: false,
                    bars: lags,
                },
            ]
        },
        table: Table {
            caption: "The hours with runs, in numbers (UTC)".into(),
            headers: [
                "Hour (UTC)",
                "Runs",
                "Failed runs",
                "Files brought in",
                "Failed files",
                "Removed",
                "Mean lag",
                "Longest lag",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        },
        empty: format!("No sync run started in the last {ACTIVITY_HOURS} hours."),
    }
}

fn activity_mark(h: &RunActivity) -> Mark {
    if h.failed_runs > 0 {
        Mark::Failed
    } else if h.failed_files > 0 {
        Mark::Partial
    } else {
        Mark::Plain
    }
}

fn hour_summary(h: &RunActivity) -> String {
    let mut parts = vec![
        plural(h.runs, "run", "runs"),
        format!("{} brought in", plural(h.processed, "file", "files")),
    ];
    if h.failed_runs > 0 {
        parts.push(format!("{} failed", plural(h.failed_runs, "run", "runs")));
    }
    if h.failed_files > 0 {
        parts.push(plural(h.failed_files, "file failed", "files failed"));
    }
    if h.lagged_runs > 0 {
        parts.push(format!("longest queue lag {}", span(h.lag_max)));
    }
    parts.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbsync_core::{SyncRunOutcome, SyncTrigger};

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default()
    }

    fn run(started: i64, took: Option<i64>, status: SyncStatus, processed: u64) -> SyncRun {
        SyncRun {
            id: uuid::Uuid::new_v4(),
            kb_id: uuid::Uuid::nil(),
            trigger: SyncTrigger::Scheduled,
            started_at: t(started),
            finished_at: took.map(|s| t(started + s)),
            outcome: SyncRunOutcome {
                status,
                processed,
                failed: u64::from(status == SyncStatus::CompletedWithErrors),
                deleted: 1,
                skipped: 0,
                quarantined: 0,
                total_found: processed,
                failures: vec![],
                phases: None,
            },
        }
    }

    #[test]
    fn run_history_charts_finished_runs_oldest_first_with_failures_marked() {
        // Newest first, as the store lists them; the newest still runs.
        let runs = vec![
            run(300, None, SyncStatus::Syncing, 0),
            run(200, Some(90), SyncStatus::Failed, 0),
            run(100, Some(30), SyncStatus::CompletedWithErrors, 4),
            run(0, Some(60), SyncStatus::Completed, 9),
        ];
        let f = run_history(&runs);
        let files: Vec<(f64, Mark)> = f.panels[0].bars.iter().map(|b| (b.value, b.mark)).collect();
        assert_eq!(
            files,
            [(10.0, Mark::Plain), (5.0, Mark::Partial), (1.0, Mark::Failed)]
        );
        let seconds: Vec<f64> = f.panels[1].bars.iter().map(|b| b.value).collect();
        assert_eq!(seconds, [60.0, 30.0, 90.0]);
        assert_eq!(f.panels[1].unit, "seconds");
        assert_eq!(f.table.rows.len(), 3);
        assert_eq!(f.table.rows[2][2], "failed");
        assert!(
            f.panels[0].description.contains("3 runs from"),
            "{:?}",
            f.panels[0]
        );
        assert!(f.panels[0].description.contains("1 failed"), "{:?}", f.panels[0]);
        let html = f.to_html();
        assert!(html.contains("class=\"bar failed\""), "{html}");
    }

    #[test]
    fn run_history_of_no_finished_run_says_so() {
        let html = run_history(&[run(0, None, SyncStatus::Syncing, 0)]).to_html();
        assert_eq!(html, "<p class=\"empty\">No finished run yet.</p>");
    }

    #[test]
    fn durations_are_charted_in_a_unit_that_fits_the_longest() {
        let f = run_history(&[run(0, Some(3 * 3600), SyncStatus::Completed, 1)]);
        assert_eq!(f.panels[1].unit, "hours");
        assert_eq!(f.panels[1].bars[0].value, 3.0);
        let f = run_history(&[run(0, Some(600), SyncStatus::Completed, 1)]);
        assert_eq!(f.panels[1].unit, "minutes");
        assert_eq!(f.panels[1].bars[0].value, 10.0);
        assert_eq!(span(TimeDelta::milliseconds(850)), "850 ms");
        assert_eq!(span(TimeDelta::milliseconds(12_400)), "12.4 s");
        assert_eq!(span(TimeDelta::seconds(425)), "7 min 5 s");
        assert_eq!(span(TimeDelta::minutes(130)), "2 h 10 min");
    }

    #[test]
    fn activity_has_a_bar_for_every_hour_and_marks_hours_with_failed_runs() {
        let since = t(0);
        let hour = |i: i32, runs, failed_runs, processed, lag_secs| RunActivity {
            period_start: since + TimeDelta::hours(1) * i,
            runs,
            failed_runs,
            processed,
            failed_files: 0,
            deleted: 0,
            lagged_runs: runs,
            lag_total: TimeDelta::seconds(lag_secs * runs as i64),
            lag_max: TimeDelta::seconds(lag_secs),
        };
        let a = SyncActivity {
            since,
            hours: vec![hour(2, 3, 0, 40, 30), hour(23, 1, 1, 0, 300)],
        };
        let f = activity(&a);
        assert_eq!(f.panels.len(), 2);
        assert_eq!(f.panels[0].bars.len(), ACTIVITY_HOURS as usize);
        assert_eq!(f.panels[0].bars[2].value, 40.0);
        assert_eq!(f.panels[0].bars[23].mark, Mark::Failed);
        assert!(
            f.panels[0].bars[5].tip.ends_with(": no run"),
            "{:?}",
            f.panels[0].bars[5]
        );
        // Lags in minutes: the longest is five.
        assert_eq!(f.panels[1].unit, "minutes");
        assert_eq!(f.panels[1].bars[2].value, 0.5);
        assert_eq!(f.panels[1].bars[23].value, 5.0);
        // The table lists the hours that had runs.
        assert_eq!(f.table.rows.len(), 2);
        assert_eq!(f.table.rows[0][6], "30.0 s");
        assert!(
            f.panels[0].description.starts_with("4 runs from"),
            "{:?}",
            f.panels[0]
        );
    }

    #[test]
    fn a_day_without_runs_says_so() {
        let html = activity(&SyncActivity {
            since: t(0),
            hours: vec![],
        })
        .to_html();
        assert_eq!(
            html,
            "<p class=\"empty\">No sync run started in the last 24 hours.</p>"
        );
    }
}
