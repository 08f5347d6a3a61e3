//! Plain-text formats: txt, md, csv (decoded as text) and JSON.

use std::borrow::Cow;
use std::io::Read;

use encoding_rs::{CoderResult, Decoder, Encoding, UTF_8};

use crate::ExtractError;
use crate::input::read_error;
use crate::sink::{Budget, Sink, too_much_text};

/// How much of a text chardetng looks at: plenty to guess from, and cheap on big files.
const SAMPLE: usize = 1 << 20;
/// Plain text is read and decoded in pieces of this size.
const CHUNK: usize = 64 << 10;
/// Room for one decoded piece: no encoding more than triples a piece (plus a few bytes held over
/// from the previous one).
const PIECE_CAPACITY: usize = CHUNK * 3 + 16;

/// The encoding of a text and the length of its BOM. `head` is the start of the text and
/// `complete` says whether it is all of it. A BOM wins, then UTF-8 when the first [`SAMPLE`]
/// bytes are UTF-8, then chardetng's guess from those bytes.
///
/// A longer text whose sample is UTF-8 (perhaps cut inside a character) is taken as UTF-8
/// without reading on: should invalid bytes come later, chardetng would guess UTF-8 from that
/// sample anyway, so the text decodes exactly as if all of it had been checked first.
fn detect(head: &[u8], complete: bool) -> (&'static Encoding, usize) {
    if let Some((encoding, bom_len)) = Encoding::for_bom(head) {
        return (encoding, bom_len);
    }
    let sample = &head[..head.len().min(SAMPLE)];
    let whole = complete && sample.len() == head.len();
    match std::str::from_utf8(sample) {
        Ok(_) => return (UTF_8, 0),
        Err(e) if e.error_len().is_none() && !whole => return (UTF_8, 0),
        Err(_) => {}
    }
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    detector.feed(sample, whole);
    (detector.guess(None, chardetng::Utf8Detection::Allow), 0)
}

/// Decodes bytes of unknown encoding (see [`detect`]). Never fails; undecodable bytes become
/// U+FFFD.
pub(crate) fn decode(bytes: &[u8]) -> Cow<'_, str> {
    let (encoding, bom_len) = detect(bytes, true);
    encoding.decode_without_bom_handling(&bytes[bom_len..]).0
}

/// Plain text (txt, md, csv) of `len` bytes, decoded as it is read: memory stays at about the
/// text cap whatever the size of the file, and reading stops as soon as the text exceeds `max`
/// bytes (a file over three times the cap is refused before reading: no encoding expands more).
pub(crate) fn plain(
    input: &mut impl Read,
    len: u64,
    max: usize,
    budget: &Budget,
) -> Result<String, ExtractError> {
    if len > u64::try_from(max).unwrap_or(u64::MAX).saturating_mul(3) {
        return Err(too_much_text(max));
    }
    let mut head = Vec::with_capacity(usize::try_from(len).unwrap_or(usize::MAX).min(SAMPLE + 1));
    (&mut *input)
        .take(SAMPLE as u64 + 1)
        .read_to_end(&mut head)
        .map_err(read_error)?;
    let complete = head.len() <= SAMPLE;
    let (encoding, bom_len) = detect(&head, complete);
    let mut out = PlainText {
        decoder: encoding.new_decoder_without_bom_handling(),
        text: String::with_capacity(usize::try_from(len).unwrap_or(usize::MAX).min(max)),
        decoded: 0,
        max,
        piece: String::with_capacity(PIECE_CAPACITY),
    };
    out.feed(&head[bom_len..], complete)?;
    if !complete {
        drop(head);
        let mut buf = vec![0u8; CHUNK];
        loop {
            budget.check()?;
            let n = crate::input::read_full(input, &mut buf)?;
            out.feed(&buf[..n], n == 0)?;
            if n == 0 {
                break;
            }
        }
    }
    Ok(out.text)
}

/// The text decoded so far. The cap applies to the decoded text, before control characters are
/// blanked (as when the whole file was decoded at once).
struct PlainText {
    decoder: Decoder,
    text: String,
    decoded: usize,
    max: usize,
    piece: String,
}

impl PlainText {
    fn feed(&mut self, mut src: &[u8], last: bool) -> Result<(), ExtractError> {
        loop {
            self.piece.clear();
            self.piece.reserve(PIECE_CAPACITY);
            let (result, read, _) = self.decoder.decode_to_string(src, &mut self.piece, last);
            src = &src[read..];
            self.decoded = self.decoded.saturating_add(self.piece.len());
            if self.decoded > self.max {
                return Err(too_much_text(self.max));
            }
            // NUL and other C0 controls (but tabs, newlines and form feeds) carry no text.
            self.text.extend(self.piece.chars().map(|c| {
                if c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\u{c}') {
                    ' '
                } else {
                    c
                }
            }));
            match result {
                CoderResult::InputEmpty => return Ok(()),
                // Cannot happen with a piece this large; never loop without progress.
                CoderResult::OutputFull if read == 0 && self.piece.is_empty() => {
                    return Err(ExtractError::Corrupt("the text could not be decoded".into()));
                }
                CoderResult::OutputFull => {}
            }
        }
    }
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
