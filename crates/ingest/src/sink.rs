//! The bounded text buffer every extractor writes into, and the cooperative deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::ExtractError;

/// Lets a long extraction notice that its caller gave up: checked between pages, sheets, slides and
/// every few thousand appended pieces of text, so a timed-out extraction frees its thread soon after.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct Budget {
    deadline: Option<Instant>,
    timeout: Duration,
    cancelled: Arc<AtomicBool>,
}

impl Budget {
    #[expect(
        clippy::disallowed_methods,
        reason = "the extraction deadline is real time: it frees a busy thread"
    )]
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            deadline: Instant::now().checked_add(timeout),
            timeout,
            cancelled: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// True once the deadline passed or the caller cancelled.
    #[expect(
        clippy::disallowed_methods,
        reason = "the extraction deadline is real time: it frees a busy thread"
    )]
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// `Err(Timeout)` once [`Budget::is_cancelled`].
    pub fn check(&self) -> Result<(), ExtractError> {
        if self.is_cancelled() {
            Err(ExtractError::Timeout(self.timeout))
        } else {
            Ok(())
        }
    }
}

/// Accumulates extracted text up to `max` bytes; going over is `TooLarge`.
pub(crate) struct Sink<'b> {
    pub(crate) text: String,
    max: usize,
    budget: &'b Budget,
    pushes: u32,
}

impl<'b> Sink<'b> {
    pub(crate) fn new(max: usize, budget: &'b Budget) -> Self {
        Self {
            text: String::new(),
            max,
            budget,
            pushes: 0,
        }
    }

    pub(crate) fn budget(&self) -> &Budget {
        self.budget
    }

    pub(crate) fn push_str(&mut self, s: &str) -> Result<(), ExtractError> {
        if self.text.len().saturating_add(s.len()) > self.max {
            return Err(too_much_text(self.max));
        }
        self.text.push_str(s);
        self.tick()
    }

    pub(crate) fn push(&mut self, c: char) -> Result<(), ExtractError> {
        if self.text.len().saturating_add(c.len_utf8()) > self.max {
            return Err(too_much_text(self.max));
        }
        self.text.push(c);
        self.tick()
    }

    /// Pushes a separator unless the text is empty or already ends with whitespace.
    pub(crate) fn separate(&mut self, c: char) -> Result<(), ExtractError> {
        match self.text.chars().next_back() {
            None => Ok(()),
            Some(last) if last.is_whitespace() && !(c == '\n' && last != '\n') => Ok(()),
            Some(_) => self.push(c),
        }
    }

    /// Removes trailing spaces (not line breaks or tabs).
    pub(crate) fn trim_trailing_spaces(&mut self) {
        let keep = self.text.trim_end_matches(' ').len();
        self.text.truncate(keep);
    }

    fn tick(&mut self) -> Result<(), ExtractError> {
        self.pushes = self.pushes.wrapping_add(1);
        if self.pushes.is_multiple_of(4096) {
            self.budget.check()
        } else {
            Ok(())
        }
    }

    pub(crate) fn finish(self) -> String {
        self.text
    }
}

pub(crate) fn too_much_text(max: usize) -> ExtractError {
    ExtractError::TooLarge(format!(
        "the extracted text exceeds the limit of {}",
        human_bytes(max as u64)
    ))
}

pub(crate) fn human_bytes(n: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= MIB {
        format!("{:.1} MiB", n as f64 / MIB as f64)
    } else if n >= 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} bytes")
    }
}
