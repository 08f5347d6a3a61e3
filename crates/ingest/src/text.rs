//! Plain-text formats: txt, md, csv (decoded as text), and a decoding reader that turns text of
//! any encoding into UTF-8 as it is read (for the JSON and XML parsers).

use std::borrow::Cow;
use std::io::{self, BufRead, Read};

use encoding_rs::{CoderResult, Decoder, Encoding, UTF_8};

use crate::ExtractError;
use crate::input::read_error;
use crate::sink::{Budget, too_much_text};

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

/// Text of unknown encoding read as UTF-8: the encoding is detected from the first [`SAMPLE`]
/// bytes (as [`decode`] does for a whole text) and the rest is decoded as it is read, a piece at a
/// time, so memory stays at a few pieces whatever the size of the input. Undecodable bytes become
/// U+FFFD; what it yields is always valid UTF-8.
pub(crate) struct Utf8Reader<R> {
    inner: R,
    decoder: Option<Decoder>,
    raw: Vec<u8>,
    raw_pos: usize,
    input_done: bool,
    out: Vec<u8>,
    out_pos: usize,
    done: bool,
}

impl<R: Read> Utf8Reader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            decoder: None,
            raw: Vec::new(),
            raw_pos: 0,
            input_done: false,
            out: Vec::new(),
            out_pos: 0,
            done: false,
        }
    }

    /// Reads more input when all of it has been decoded, and decodes the next piece.
    fn decode_more(&mut self) -> io::Result<()> {
        let decoder = match &mut self.decoder {
            Some(decoder) => decoder,
            None => {
                let mut head = Vec::new();
                (&mut self.inner).take(SAMPLE as u64 + 1).read_to_end(&mut head)?;
                let complete = head.len() <= SAMPLE;
                let (encoding, bom_len) = detect(&head, complete);
                self.raw = head;
                self.raw_pos = bom_len;
                self.input_done = complete;
                self.decoder.insert(encoding.new_decoder_without_bom_handling())
            }
        };
        if self.raw_pos == self.raw.len() && !self.input_done {
            self.raw.clear();
            self.raw.resize(CHUNK, 0);
            let n = crate::input::read_full(&mut self.inner, &mut self.raw)
                .map_err(|e| io::Error::other(e.to_string()))?;
            self.raw.truncate(n);
            self.raw_pos = 0;
            self.input_done = n == 0;
        }
        let src = &self.raw[self.raw_pos..];
        let src = &src[..src.len().min(CHUNK)];
        self.out.clear();
        self.out.resize(PIECE_CAPACITY, 0);
        let last = self.input_done && self.raw_pos + src.len() == self.raw.len();
        let (result, read, written, _) = decoder.decode_to_utf8(src, &mut self.out, last);
        self.raw_pos += read;
        self.out.truncate(written);
        self.out_pos = 0;
        if last && result == CoderResult::InputEmpty {
            self.done = true;
        }
        Ok(())
    }
}

impl<R: Read> BufRead for Utf8Reader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.out_pos == self.out.len() && !self.done {
            self.decode_more()?;
        }
        Ok(&self.out[self.out_pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.out_pos = (self.out_pos + amt).min(self.out.len());
    }
}

impl<R: Read> Read for Utf8Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}
