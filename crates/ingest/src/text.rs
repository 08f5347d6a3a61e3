//! Plain-text formats: txt, md, csv (decoded as text) and JSON.

use std::borrow::Cow;

use encoding_rs::Encoding;

use crate::ExtractError;
use crate::sink::{Budget, Sink, too_much_text};

/// Decodes bytes of unknown encoding: a BOM wins, then UTF-8, then chardetng's guess (which always
/// gives some single-byte or multi-byte encoding). Never fails; undecodable bytes become U+FFFD.
pub(crate) fn decode(bytes: &[u8]) -> Cow<'_, str> {
    if let Some((enc, bom_len)) = Encoding::for_bom(bytes) {
        let (text, _) = enc.decode_without_bom_handling(&bytes[bom_len..]);
        return text;
    }
    if let Ok(s) = std::str::from_utf8(bytes) {
        return Cow::Borrowed(s);
    }
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    // The first 1 MiB is plenty to guess from and keeps detection cheap on big files.
    let sample = &bytes[..bytes.len().min(1 << 20)];
    detector.feed(sample, sample.len() == bytes.len());
    let enc = detector.guess(None, chardetng::Utf8Detection::Allow);
    let (text, _, _) = enc.decode(bytes);
    text
}

pub(crate) fn plain(bytes: &[u8], max: usize) -> Result<String, ExtractError> {
    // Decoding can grow the text (e.g. Latin-1 → UTF-8) but never more than 3×; check before and after.
    if bytes.len() > max.saturating_mul(3) {
        return Err(too_much_text(max));
    }
    let text = decode(bytes);
    if text.len() > max {
        return Err(too_much_text(max));
    }
    // NUL and other C0 controls (but tabs, newlines and form feeds) carry no text.
    Ok(text
        .chars()
        .map(|c| {
            if c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\u{c}') {
                ' '
            } else {
                c
            }
        })
        .collect())
}

/// JSON: every object key and string value (keys in serde_json's sorted map order), one per line; numbers and booleans are
/// left out (they are rarely what people search for and would drown the text). Invalid JSON is `Corrupt`;
/// nesting deeper than serde_json's limit of 128 is rejected by the parser itself.
pub(crate) fn json(bytes: &[u8], max: usize, budget: &Budget) -> Result<String, ExtractError> {
    enum Item<'a> {
        Value(&'a serde_json::Value),
        Key(&'a str),
    }
    let text = decode(bytes);
    let value: serde_json::Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .map_err(|e| ExtractError::Corrupt(format!("invalid JSON: {e}")))?;
    let mut sink = Sink::new(max, budget);
    // An explicit stack: no recursion, whatever the input.
    let mut stack = vec![Item::Value(&value)];
    while let Some(item) = stack.pop() {
        match item {
            Item::Key(k) => {
                sink.push_str(k)?;
                sink.push('\n')?;
            }
            Item::Value(serde_json::Value::String(s)) => {
                sink.push_str(s)?;
                sink.push('\n')?;
            }
            Item::Value(serde_json::Value::Array(items)) => stack.extend(items.iter().rev().map(Item::Value)),
            Item::Value(serde_json::Value::Object(map)) => {
                // Reversed, so that keys come out in document order, each before its value.
                for (k, v) in map.iter().rev() {
                    stack.push(Item::Value(v));
                    stack.push(Item::Key(k));
                }
            }
            Item::Value(_) => {}
        }
    }
    Ok(sink.finish())
}
