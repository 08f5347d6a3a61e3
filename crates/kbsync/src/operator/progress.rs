//! How `kbsync sync` shows a run as it goes: a progress bar on a terminal (files done of total,
//! MB, the current file, ETA), one plain line per event otherwise (for logs and scripts).

use std::io::Write;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Files of a run done so far, as a progress event tells them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub current: u64,
    pub total: u64,
    pub bytes: u64,
    pub total_bytes: u64,
    pub file: Option<String>,
}

/// Where a run's progress goes.
pub enum Display {
    Bar(ProgressBar),
    Lines(Lines),
}

/// Plain lines on stdout; the ETA is measured here.
pub struct Lines {
    started: Option<Instant>,
}

impl Display {
    /// A bar when stdout is a terminal, plain lines otherwise.
    pub fn for_stdout() -> Self {
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
            bar.set_style(spinner_style());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar.set_message("gathering changes…");
            Display::Bar(bar)
        } else {
            Display::Lines(Lines { started: None })
        }
    }

    /// The run started: the ETA counts from now.
    pub fn run_started(&mut self) {
        #[expect(
            clippy::disallowed_methods,
            reason = "the ETA shown to a person is measured in real time"
        )]
        let now = Instant::now();
        match self {
            Display::Bar(bar) => bar.reset(),
            Display::Lines(lines) => lines.started = Some(now),
        }
    }

    /// A line above the bar, or a plain line.
    pub fn say(&self, line: &str) {
        match self {
            Display::Bar(bar) => bar.println(line),
            Display::Lines(_) => print_line(line),
        }
    }

    /// The number of files to bring in is known (before the first is done).
    pub fn total_known(&mut self, total: u64) {
        if let Display::Bar(bar) = self
            && bar.length().is_none()
            && total > 0
        {
            bar.set_style(bar_style());
            bar.set_length(total);
            bar.set_message("");
            bar.reset_eta();
        }
    }

    /// One more file done.
    pub fn progress(&mut self, done: &Done) {
        let file = done.file.as_deref().unwrap_or_default();
        match self {
            Display::Bar(bar) => {
                bar.set_message(format!("{}  {file}", amount(done.bytes, done.total_bytes)));
                let first = bar.length().is_none();
                bar.set_length(done.total);
                bar.set_position(done.current);
                if first {
                    bar.set_style(bar_style());
                }
            }
            Display::Lines(lines) => {
                #[expect(
                    clippy::disallowed_methods,
                    reason = "the ETA shown to a person is measured in real time"
                )]
                let now = Instant::now();
                let started = *lines.started.get_or_insert(now);
                let eta = eta(now - started, done)
                    .map(|d| format!(", ETA {}", indicatif::HumanDuration(d)))
                    .unwrap_or_default();
                print_line(&format!(
                    "[{}/{}] {}{eta}  {file}",
                    done.current,
                    done.total,
                    amount(done.bytes, done.total_bytes)
                ));
            }
        }
    }

    /// The run ended: the bar goes away, the summary follows as lines.
    pub fn finish(&self) {
        if let Display::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (say, `| head`) must not stop the run.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("[{bar:30}] {pos}/{len} files  {msg:.dim}  ETA {eta}  {elapsed}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// "1.2/3.4 MB"; "0.5/12.0 kB" while the whole is under a megabyte.
fn amount(bytes: u64, total: u64) -> String {
    let (unit, name) = if total < 1_000_000 {
        (1_000.0, "kB")
    } else {
        (1_000_000.0, "MB")
    };
    format!("{:.1}/{:.1} {name}", bytes as f64 / unit, total as f64 / unit)
}

/// The time left, if the share done so far goes on at the same pace: by bytes when the source
/// announced sizes, else by files.
fn eta(elapsed: Duration, done: &Done) -> Option<Duration> {
    let (part, whole) = if done.total_bytes > 0 && done.bytes > 0 {
        (done.bytes, done.total_bytes)
    } else {
        (done.current, done.total)
    };
    if part == 0 || whole <= part {
        return None;
    }
    Some(elapsed.mul_f64((whole - part) as f64 / part as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(current: u64, total: u64, bytes: u64, total_bytes: u64) -> Done {
        Done {
            current,
            total,
            bytes,
            total_bytes,
            file: None,
        }
    }

    #[test]
    fn the_eta_follows_the_bytes_when_sizes_are_known_else_the_files() {
        let ten = Duration::from_secs(10);
        assert_eq!(eta(ten, &done(1, 4, 500, 1000)), Some(ten));
        assert_eq!(eta(ten, &done(1, 4, 0, 0)), Some(Duration::from_secs(30)));
        assert_eq!(eta(ten, &done(4, 4, 1000, 1000)), None);
        assert_eq!(eta(ten, &done(0, 4, 0, 0)), None);
    }

    #[test]
    fn amounts_are_megabytes_with_one_decimal_or_kilobytes_under_a_megabyte() {
        assert_eq!(amount(1_240_000, 10_000_000), "1.2/10.0 MB");
        assert_eq!(amount(61_000, 130_000), "61.0/130.0 kB");
        assert_eq!(amount(0, 0), "0.0/0.0 kB");
    }
}
