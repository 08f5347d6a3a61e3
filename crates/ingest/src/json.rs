//! JSON as a stream: every object key and string value, in document order, one per line; numbers,
//! booleans and null are left out (they are rarely what people search for and would drown the
//! text). The whole grammar (RFC 8259) is checked, so invalid JSON is `Corrupt`, but nothing is
//! kept but the open containers and the string being read: memory stays at the text cap whatever
//! the size of the file. Nesting deeper than [`MAX_DEPTH`] is refused.

use std::io::BufRead;

use crate::ExtractError;
use crate::input::read_error;
use crate::sink::{Budget, Sink, too_much_text};

/// No real document nests deeper; the limit bounds the container stack.
pub(crate) const MAX_DEPTH: usize = 512;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Container {
    Object,
    Array,
}

/// What may come next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A value: the document's, an array element, or an object member's after its colon.
    Value,
    /// After `[`: a value or `]`.
    ValueOrEnd,
    /// After `{`: a key or `}`.
    KeyOrEnd,
    /// After `,` in an object.
    Key,
    /// After a key.
    Colon,
    /// After a value inside a container: `,` or the container's end.
    CommaOrEnd,
    /// After the document's value: only whitespace.
    Nothing,
}

pub(crate) fn extract(input: impl BufRead, max: usize, budget: &Budget) -> Result<String, ExtractError> {
    let mut bytes = Bytes { input, offset: 0 };
    let mut sink = Sink::new(max, budget);
    let mut stack: Vec<Container> = Vec::new();
    let mut expect = Expect::Value;
    let mut string = Vec::new();
    let mut tokens = 0u32;
    loop {
        tokens = tokens.wrapping_add(1);
        if tokens.is_multiple_of(8192) {
            budget.check()?;
        }
        let Some(b) = bytes.next_non_space()? else {
            return match expect {
                Expect::Nothing => Ok(sink.finish()),
                _ => Err(bytes.corrupt("the document ends inside a value")),
            };
        };
        match (expect, b) {
            (Expect::Nothing, _) => return Err(bytes.corrupt("characters after the document's value")),
            (Expect::KeyOrEnd | Expect::Key, b'"') => {
                bytes.string(&mut string, max.saturating_sub(sink.text.len()), max)?;
                push_line(&mut sink, &string)?;
                expect = Expect::Colon;
            }
            (Expect::Colon, b':') => expect = Expect::Value,
            (Expect::KeyOrEnd, b'}') | (Expect::ValueOrEnd, b']') => {
                stack.pop();
                expect = after_value(&stack);
            }
            (Expect::CommaOrEnd, b',') => {
                expect = match stack.last() {
                    Some(Container::Object) => Expect::Key,
                    _ => Expect::Value,
                }
            }
            (Expect::CommaOrEnd, b'}') if stack.last() == Some(&Container::Object) => {
                stack.pop();
                expect = after_value(&stack);
            }
            (Expect::CommaOrEnd, b']') if stack.last() == Some(&Container::Array) => {
                stack.pop();
                expect = after_value(&stack);
            }
            (Expect::Value | Expect::ValueOrEnd, _) => match b {
                b'{' | b'[' => {
                    if stack.len() >= MAX_DEPTH {
                        return Err(ExtractError::Corrupt(format!(
                            "the JSON is nested too deeply (more than {MAX_DEPTH} levels)"
                        )));
                    }
                    let (container, next) = if b == b'{' {
                        (Container::Object, Expect::KeyOrEnd)
                    } else {
                        (Container::Array, Expect::ValueOrEnd)
                    };
                    stack.push(container);
                    expect = next;
                }
                b'"' => {
                    bytes.string(&mut string, max.saturating_sub(sink.text.len()), max)?;
                    push_line(&mut sink, &string)?;
                    expect = after_value(&stack);
                }
                b't' => {
                    bytes.literal(b"rue")?;
                    expect = after_value(&stack);
                }
                b'f' => {
                    bytes.literal(b"alse")?;
                    expect = after_value(&stack);
                }
                b'n' => {
                    bytes.literal(b"ull")?;
                    expect = after_value(&stack);
                }
                b'-' | b'0'..=b'9' => {
                    bytes.number(b)?;
                    expect = after_value(&stack);
                }
                _ => return Err(bytes.corrupt("expected a value")),
            },
            _ => return Err(bytes.corrupt("unexpected character")),
        }
    }
}

fn after_value(stack: &[Container]) -> Expect {
    if stack.is_empty() {
        Expect::Nothing
    } else {
        Expect::CommaOrEnd
    }
}

fn push_line(sink: &mut Sink<'_>, string: &[u8]) -> Result<(), ExtractError> {
    // The input is UTF-8 (see `Utf8Reader`) and escapes are decoded to UTF-8, so this never fails.
    let text = std::str::from_utf8(string)
        .map_err(|_| ExtractError::Corrupt("a JSON string is not valid UTF-8".into()))?;
    sink.push_str(text)?;
    sink.push('\n')
}

/// The input a byte at a time, through its buffer, counting the offset for error messages.
struct Bytes<R> {
    input: R,
    offset: u64,
}

impl<R: BufRead> Bytes<R> {
    fn next(&mut self) -> Result<Option<u8>, ExtractError> {
        let buf = self.input.fill_buf().map_err(read_error)?;
        let Some(&b) = buf.first() else {
            return Ok(None);
        };
        self.input.consume(1);
        self.offset += 1;
        Ok(Some(b))
    }

    fn peek(&mut self) -> Result<Option<u8>, ExtractError> {
        Ok(self.input.fill_buf().map_err(read_error)?.first().copied())
    }

    fn next_non_space(&mut self) -> Result<Option<u8>, ExtractError> {
        loop {
            let buf = self.input.fill_buf().map_err(read_error)?;
            if buf.is_empty() {
                return Ok(None);
            }
            let spaces = buf
                .iter()
                .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
                .count();
            let found = buf.get(spaces).copied();
            let used = spaces + usize::from(found.is_some());
            self.input.consume(used);
            self.offset += used as u64;
            if found.is_some() {
                return Ok(found);
            }
        }
    }

    fn corrupt(&self, what: &str) -> ExtractError {
        ExtractError::Corrupt(format!("invalid JSON at byte {}: {what}", self.offset))
    }

    fn literal(&mut self, rest: &[u8]) -> Result<(), ExtractError> {
        for &want in rest {
            if self.next()? != Some(want) {
                return Err(self.corrupt("expected true, false or null"));
            }
        }
        Ok(())
    }

    /// A number whose first byte was `first`: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self, first: u8) -> Result<(), ExtractError> {
        let lead = if first == b'-' {
            self.next()?
                .ok_or_else(|| self.corrupt("a number ends after its sign"))?
        } else {
            first
        };
        match lead {
            b'0' => {}
            b'1'..=b'9' => self.digits()?,
            _ => return Err(self.corrupt("expected a digit")),
        }
        if self.peek()? == Some(b'.') {
            self.next()?;
            self.one_or_more_digits()?;
        }
        if matches!(self.peek()?, Some(b'e' | b'E')) {
            self.next()?;
            if matches!(self.peek()?, Some(b'+' | b'-')) {
                self.next()?;
            }
            self.one_or_more_digits()?;
        }
        Ok(())
    }

    fn digits(&mut self) -> Result<(), ExtractError> {
        while matches!(self.peek()?, Some(b'0'..=b'9')) {
            self.next()?;
        }
        Ok(())
    }

    fn one_or_more_digits(&mut self) -> Result<(), ExtractError> {
        if !matches!(self.peek()?, Some(b'0'..=b'9')) {
            return Err(self.corrupt("expected a digit"));
        }
        self.digits()
    }

    /// A string after its opening quote, unescaped into `out`. A string longer than `room` bytes
    /// cannot fit in the text (whose cap is `max`): it is refused before it is read whole.
    fn string(&mut self, out: &mut Vec<u8>, room: usize, max: usize) -> Result<(), ExtractError> {
        out.clear();
        loop {
            let buf = self.input.fill_buf().map_err(read_error)?;
            if buf.is_empty() {
                return Err(self.corrupt("the document ends inside a string"));
            }
            // Plain bytes up to the next quote, backslash or control character, at once.
            let plain = buf
                .iter()
                .take_while(|&&b| b != b'"' && b != b'\\' && b >= 0x20)
                .count();
            if out.len().saturating_add(plain) > room {
                return Err(too_much_text(max));
            }
            let more = plain == buf.len();
            out.extend_from_slice(&buf[..plain]);
            self.input.consume(plain);
            self.offset += plain as u64;
            if more {
                // The buffer ended inside the string: read on.
                continue;
            }
            match self.next()? {
                None => return Err(self.corrupt("the document ends inside a string")),
                Some(b'"') => return Ok(()),
                Some(b'\\') => {
                    let c = self.escape()?;
                    let mut utf8 = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                }
                Some(_) => return Err(self.corrupt("a control character inside a string")),
            }
        }
    }

    /// The character an escape after its backslash stands for. A lone surrogate becomes U+FFFD.
    fn escape(&mut self) -> Result<char, ExtractError> {
        let c = match self.next()? {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let unit = self.hex4()?;
                if (0xD800..0xDC00).contains(&unit) && self.peek()? == Some(b'\\') {
                    self.next()?;
                    if self.next()? != Some(b'u') {
                        return Err(self.corrupt("expected \\u after a high surrogate"));
                    }
                    let low = self.hex4()?;
                    if (0xDC00..0xE000).contains(&low) {
                        let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                        return Ok(char::from_u32(code).unwrap_or('\u{fffd}'));
                    }
                    // Two escapes, the first a lone surrogate: keep what the second says.
                    return Ok(char::from_u32(low).unwrap_or('\u{fffd}'));
                }
                char::from_u32(unit).unwrap_or('\u{fffd}')
            }
            _ => return Err(self.corrupt("an invalid escape")),
        };
        Ok(c)
    }

    fn hex4(&mut self) -> Result<u32, ExtractError> {
        let mut value = 0u32;
        for _ in 0..4 {
            let digit = self
                .next()?
                .and_then(|b| char::from(b).to_digit(16))
                .ok_or_else(|| self.corrupt("expected four hex digits after \\u"))?;
            value = value * 16 + digit;
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;
    use crate::text::Utf8Reader;

    fn text(json: &[u8]) -> Result<String, ExtractError> {
        extract(
            Utf8Reader::new(json),
            1 << 20,
            &Budget::new(Duration::from_secs(10)),
        )
    }

    #[test]
    fn keys_and_strings_come_out_in_document_order_without_numbers_or_literals() {
        let doc = br#"{"z": "last key first", "a": [1, -2.5e+3, true, false, null, "x"], "m": {"k": ""}}"#;
        assert_eq!(text(doc).unwrap(), "z\nlast key first\na\nx\nm\nk\n\n");
    }

    #[test]
    fn escapes_and_surrogate_pairs_are_decoded_and_lone_surrogates_replaced() {
        let doc =
            br#"["tab\there", "quote \" slash \/ back \\", "\u00e9t\u00E9", "\ud83d\ude00", "\ud800 lone"]"#;
        assert_eq!(
            text(doc).unwrap(),
            "tab\there\nquote \" slash / back \\\n\u{e9}t\u{e9}\n\u{1f600}\n\u{fffd} lone\n"
        );
    }

    #[test]
    fn every_break_of_the_grammar_is_corrupt() {
        for bad in [
            &b""[..],
            b"   ",
            b"01",
            b"1.",
            b"-",
            b"1e",
            b"1e+",
            b"[1,]",
            b"[1 2]",
            b"{\"a\" 1}",
            b"{\"a\":}",
            b"{1: 2}",
            b"{\"a\": 1]",
            b"[1}",
            b"\"unterminated",
            b"\"bad \\x escape\"",
            b"\"\\u12g4\"",
            b"\"raw\ttab\"",
            b"tru",
            b"nul",
            b"{} {}",
            b"[] x",
        ] {
            assert!(
                matches!(text(bad), Err(ExtractError::Corrupt(_))),
                "{:?} should be corrupt: {:?}",
                String::from_utf8_lossy(bad),
                text(bad)
            );
        }
    }

    #[test]
    fn scalars_alone_are_documents_and_a_bom_is_skipped() {
        assert_eq!(text(b"\"just a string\"").unwrap(), "just a string\n");
        assert_eq!(text(b" 42 ").unwrap(), "");
        assert_eq!(
            text(b"\xef\xbb\xbf{\"bom\": \"skipped\"}").unwrap(),
            "bom\nskipped\n"
        );
    }

    #[test]
    fn utf16_with_a_bom_is_decoded_before_parsing() {
        let doc: Vec<u8> = "\u{feff}{\"s\u{e9}\": \"\u{1f600}\"}"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert_eq!(text(&doc).unwrap(), "s\u{e9}\n\u{1f600}\n");
    }

    #[test]
    fn nesting_is_refused_past_the_limit_and_accepted_up_to_it() {
        let at_limit = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(text(at_limit.as_bytes()).unwrap(), "");
        let over = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(
            matches!(text(over.as_bytes()), Err(ExtractError::Corrupt(m)) if m.contains("nested too deeply"))
        );
    }

    #[test]
    fn a_string_longer_than_the_room_left_is_too_large() {
        let doc = format!("[\"{}\"]", "a".repeat(2000));
        let result = extract(
            Utf8Reader::new(doc.as_bytes()),
            1000,
            &Budget::new(Duration::from_secs(10)),
        );
        assert!(matches!(result, Err(ExtractError::TooLarge(_))), "{result:?}");
    }
}
