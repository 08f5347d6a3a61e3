//! Entry points for fuzzing: the cargo-fuzz targets (`fuzz/`, nightly) and the bounded property
//! runs on stable (`tests/ingest/fuzz_properties.rs`) call these same functions, so CI exercises
//! exactly what the fuzzer runs. Not part of the crate's API.

use std::time::Duration;

use crate::{FileKind, IngestConfig, extract};

/// The limits the fuzzed extractions run under: the production defaults with a smaller text cap
/// (so that an input that grows without bound is seen) and a short timeout (so that a slow input
/// shows up as the fuzzer's timeout rather than as a hang).
pub fn config() -> IngestConfig {
    IngestConfig {
        max_concurrent: 1,
        per_file_timeout: Duration::from_secs(10),
        max_text_bytes: 1 << 20,
        ..IngestConfig::default()
    }
}

/// The kind a fuzz input's first byte selects (every kind is reachable).
pub fn kind_for(selector: u8) -> FileKind {
    FileKind::ALL[usize::from(selector) % FileKind::ALL.len()]
}

/// What one extraction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Text within the cap, of this many bytes.
    Text(usize),
    /// A refusal (`ExtractError`).
    Refused,
    /// Text longer than the cap: a bug.
    OverCap(usize),
}

/// Extracts `bytes` as `kind` under [`config`]. Panics only if an extractor panics.
pub fn extract_one(kind: FileKind, bytes: &[u8]) -> Outcome {
    let cfg = config();
    match extract(kind, bytes, &cfg) {
        Ok(text) if text.len() <= cfg.max_text_bytes => Outcome::Text(text.len()),
        Ok(text) => Outcome::OverCap(text.len()),
        Err(_) => Outcome::Refused,
    }
}

/// The `extract` fuzz target: the first byte picks the kind, the rest is the file.
pub fn extract_selected(data: &[u8]) -> Outcome {
    match data.split_first() {
        Some((selector, bytes)) => extract_one(kind_for(*selector), bytes),
        None => Outcome::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_selectable_and_an_empty_input_is_refused() {
        let kinds: std::collections::HashSet<_> = (0..=u8::MAX).map(kind_for).collect();
        assert_eq!(kinds.len(), FileKind::ALL.len());
        assert_eq!(extract_selected(&[]), Outcome::Refused);
        // Byte 4 selects plain text.
        assert_eq!(kind_for(4), FileKind::Txt);
        assert!(matches!(extract_selected(b"\x04hello"), Outcome::Text(n) if n >= 5));
    }
}
