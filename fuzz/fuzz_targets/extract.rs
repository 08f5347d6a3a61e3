//! Every extractor: the first byte picks the file kind (pdf, docx, xlsx, pptx, txt, md, html,
//! json, xml, csv), the rest is the file. Text or a refusal, within the text cap; never a panic.
#![no_main]

use kbsync_ingest::fuzzing::{Outcome, extract_selected};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let outcome = extract_selected(data);
    assert!(!matches!(outcome, Outcome::OverCap(_)), "{outcome:?}");
});
