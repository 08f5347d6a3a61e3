//! Property tests of the chunker: bounded, non-empty, covering, overlapping, deterministic.

use kbsync_ingest::{chunk, chunk_spans};
use proptest::prelude::*;

/// Text with words, punctuation, multi-byte letters, and all kinds of whitespace runs.
fn text_strategy() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-zA-Z]{1,12}",
        2 => "[äöüßéçñ€漢字😀]{1,4}",
        1 => "[a-z]{20,60}",
        2 => Just(" ".to_string()),
        1 => Just(". ".to_string()),
        1 => Just("! ".to_string()),
        1 => Just("\n".to_string()),
        1 => Just("\n\n".to_string()),
        1 => Just(" \t \r\n  \n ".to_string()),
        1 => Just("\u{c}".to_string()),
    ];
    proptest::collection::vec(piece, 0..400).prop_map(|v| v.concat())
}

fn non_ws(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn chunks_are_bounded_nonempty_and_deterministic(text in text_strategy(), size in 1usize..300, overlap in 0usize..400) {
        let chunks = chunk(&text, size, overlap);
        for c in &chunks {
            prop_assert!(!c.is_empty());
            prop_assert!(c.chars().count() <= size, "{} > {}", c.chars().count(), size);
            prop_assert_eq!(c.trim(), c.as_str());
            prop_assert!(!c.contains("  ") && !c.contains('\t') && !c.contains("\n\n\n") && !c.contains('\r'));
        }
        prop_assert_eq!(&chunks, &chunk(&text, size, overlap));
        if non_ws(&text).is_empty() {
            prop_assert!(chunks.is_empty());
        }
    }

    #[test]
    fn every_character_lands_in_some_chunk(text in text_strategy(), size in 1usize..300, overlap in 0usize..400) {
        // Through the public API: the input's non-whitespace characters, in order, are a subsequence of
        // the concatenated chunks (overlaps only repeat characters).
        let chunks = chunk(&text, size, overlap);
        let all: Vec<char> = non_ws(&chunks.concat()).chars().collect();
        let mut pos = 0;
        for ch in non_ws(&text).chars() {
            match all[pos..].iter().position(|&a| a == ch) {
                Some(p) => pos += p + 1,
                None => prop_assert!(false, "character {:?} is in no chunk", ch),
            }
        }
        // With the spans: they cover the normalised text without gaps, in order.
        let (chars, spans) = chunk_spans(&text, size, overlap);
        let mut covered = 0;
        for s in &spans {
            prop_assert!(s.start <= covered || chars[covered..s.start].iter().all(|c| c.is_whitespace()));
            prop_assert!(s.end > s.start && s.end - s.start <= size);
            covered = covered.max(s.end);
        }
        prop_assert!(chars[covered.min(chars.len())..].iter().all(|c| c.is_whitespace()));
    }

    #[test]
    fn consecutive_chunks_overlap_by_about_the_overlap(text in text_strategy(), size in 20usize..300, overlap in 1usize..100) {
        let (_, spans) = chunk_spans(&text, size, overlap);
        for w in spans.windows(2) {
            let shared = w[0].end.saturating_sub(w[1].start);
            prop_assert!(shared <= overlap, "shared {} > overlap {}", shared, overlap);
            prop_assert!(w[1].start > w[0].start);
        }
    }
}

#[test]
fn overlap_is_close_to_the_request_on_prose() {
    let text = kbsync_fixtures::text_corpus(5, 20_000);
    let (_, spans) = chunk_spans(&text, 1000, 100);
    let shared: Vec<usize> = spans.windows(2).map(|w| w[0].end - w[1].start).collect();
    let mean = shared.iter().sum::<usize>() as f64 / shared.len() as f64;
    assert!((70.0..=100.0).contains(&mean), "mean overlap {mean}");
    // chunks use most of the window
    let mean_len = spans.iter().map(|s| s.len()).sum::<usize>() as f64 / spans.len() as f64;
    assert!(mean_len > 750.0, "mean chunk length {mean_len}");
}

#[test]
fn empty_and_whitespace_only_text_have_no_chunks() {
    assert!(chunk("", 100, 10).is_empty());
    assert!(chunk(" \n\t\r\n \u{c} ", 100, 10).is_empty());
    assert_eq!(chunk("one", 0, 0), vec!["o", "n", "e"]);
}
