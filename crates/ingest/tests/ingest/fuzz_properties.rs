//! Bounded fuzzing on stable: every extractor gets arbitrary bytes and damaged copies of a valid
//! document of its type (truncated, bytes overwritten, bytes inserted). Whatever comes in, the
//! extractor returns text or an `ExtractError` — it never panics — and the text stays under the
//! cap. The cases are few enough for CI; raise `with_cases` for a longer search.
//!
//! Every extraction goes through `kbsync_ingest::fuzzing`, the entry points the cargo-fuzz target
//! `extract` (`fuzz/`, nightly) calls: what CI runs is what the fuzzer runs.

use std::sync::OnceLock;

use kbsync_ingest::FileKind;
use kbsync_ingest::fuzzing::{Outcome, extract_one, extract_selected};
use proptest::prelude::*;

/// One small valid document of every type, with its kind.
fn documents() -> &'static [(FileKind, Vec<u8>)] {
    static DOCS: OnceLock<Vec<(FileKind, Vec<u8>)>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let corpus = kbsync_fixtures::text_corpus(11, 400);
        kbsync_fixtures::corpus::every_type(&corpus)
            .into_iter()
            .map(|(name, bytes)| (FileKind::detect(name, None).unwrap(), bytes))
            .collect()
    })
}

/// How a valid document is damaged.
#[derive(Debug, Clone)]
enum Damage {
    /// Cut at this fraction of its length.
    Truncate(f64),
    /// Overwrite bytes at these fractions of its length.
    Overwrite(Vec<(f64, u8)>),
    /// Insert bytes at this fraction.
    Insert(f64, Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (0.0..1.0f64).prop_map(Damage::Truncate),
        proptest::collection::vec((0.0..1.0f64, any::<u8>()), 1..16).prop_map(Damage::Overwrite),
        (0.0..1.0f64, proptest::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(at, b)| Damage::Insert(at, b)),
    ]
}

fn apply(doc: &[u8], damage: &Damage) -> Vec<u8> {
    let at = |f: f64| ((doc.len() as f64 * f) as usize).min(doc.len());
    let mut out = doc.to_vec();
    match damage {
        Damage::Truncate(f) => out.truncate(at(*f)),
        Damage::Overwrite(edits) => {
            for (f, b) in edits {
                if let Some(slot) = out.get_mut(at(*f)) {
                    *slot = *b;
                }
            }
        }
        Damage::Insert(f, bytes) => {
            let i = at(*f);
            out.splice(i..i, bytes.iter().copied());
        }
    }
    out
}

fn assert_bounded(kind: FileKind, input: &[u8]) {
    let outcome = extract_one(kind, input);
    assert!(!matches!(outcome, Outcome::OverCap(_)), "{kind:?}: {outcome:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn arbitrary_bytes_give_text_or_an_error_for_every_kind(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        which in 0..10usize,
    ) {
        let (kind, _) = &documents()[which % documents().len()];
        assert_bounded(*kind, &bytes);
    }

    /// Exactly the `extract` fuzz target: the first byte picks the kind.
    #[test]
    fn fuzz_target_inputs_give_text_or_an_error(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let outcome = extract_selected(&data);
        prop_assert!(!matches!(outcome, Outcome::OverCap(_)), "{:?}", outcome);
    }

    #[test]
    fn damaged_documents_give_text_or_an_error_for_every_kind(
        which in 0..10usize,
        damage in damage(),
    ) {
        let (kind, doc) = &documents()[which % documents().len()];
        assert_bounded(*kind, &apply(doc, &damage));
    }

    #[test]
    fn json_and_xml_shaped_noise_gives_text_or_an_error(
        tokens in proptest::collection::vec(
            prop_oneof![
                Just("{"), Just("}"), Just("["), Just("]"), Just(","), Just(":"), Just("\""),
                Just("\\u"), Just("\\ud83d"), Just("12"), Just("-0.5e+3"), Just("true"), Just("null"),
                Just("<a>"), Just("</a>"), Just("<b/>"), Just("<![CDATA[x]]>"), Just("&amp;"), Just("&#x1F600;"),
                Just("<!DOCTYPE d [<!ENTITY e \"ee\">]>"), Just("&e;"), Just(" "), Just("word"),
            ],
            0..200,
        ),
    ) {
        let doc = tokens.concat();
        assert_bounded(FileKind::Json, doc.as_bytes());
        assert_bounded(FileKind::Xml, doc.as_bytes());
        assert_bounded(FileKind::Html, doc.as_bytes());
    }
}
