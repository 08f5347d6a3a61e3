//! A streaming XML walk shared by the XML, docx and pptx extractors.
//!
//! quick-xml never recurses, so depth costs no stack; we still refuse documents nested deeper than
//! [`MAX_DEPTH`] (no real document is, and it bounds what callers keep per level). Entity references are
//! resolved only for the five predefined entities and character references: entities declared in a DTD
//! are never expanded, so "billion laughs" documents cost nothing.

use std::io::{self, BufRead, Read};

use quick_xml::events::Event;
use quick_xml::reader::Reader;

use crate::ExtractError;
use crate::sink::{Budget, Sink, too_much_text};

pub(crate) const MAX_DEPTH: usize = 256;

pub(crate) enum XmlEvent<'a> {
    /// Opening tag (local name, without namespace prefix).
    Start(&'a str),
    /// Self-closing tag.
    Empty(&'a str),
    End(&'a str),
    /// Character data, CDATA or a resolved reference.
    Text(&'a str),
}

pub(crate) fn walk(
    xml: &str,
    budget: &Budget,
    on: impl FnMut(XmlEvent<'_>) -> Result<(), ExtractError>,
) -> Result<(), ExtractError> {
    // Already in memory: no event can be larger than the document.
    walk_reader(xml.as_bytes(), usize::MAX, budget, on)
}

/// [`walk`] over UTF-8 read as it goes: memory stays at the reader's buffer and the largest
/// single event, which may not exceed `max_event` bytes (a text node longer than the text cap
/// cannot be kept anyway); a longer one is `TooLarge` before it is read whole.
pub(crate) fn walk_reader(
    xml: impl BufRead,
    max_event: usize,
    budget: &Budget,
    mut on: impl FnMut(XmlEvent<'_>) -> Result<(), ExtractError>,
) -> Result<(), ExtractError> {
    let mut reader = Reader::from_reader(Bounded {
        inner: xml,
        consumed: 0,
        limit: 0,
        over: false,
    });
    let mut buf = Vec::new();
    let mut depth = 0usize;
    let mut events = 0u32;
    loop {
        events = events.wrapping_add(1);
        if events.is_multiple_of(8192) {
            budget.check()?;
        }
        buf.clear();
        reader.get_mut().allow(max_event);
        let ev = match reader.read_event_into(&mut buf) {
            Ok(ev) => ev,
            Err(_) if reader.get_ref().over => return Err(too_much_text(max_event)),
            Err(e) => {
                return Err(ExtractError::Corrupt(format!(
                    "invalid XML at byte {}: {e}",
                    reader.error_position()
                )));
            }
        };
        match ev {
            Event::Start(e) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ExtractError::Corrupt(format!(
                        "the XML is nested too deeply (more than {MAX_DEPTH} levels)"
                    )));
                }
                on(XmlEvent::Start(e.local_name().as_ref()))?;
            }
            Event::Empty(e) => on(XmlEvent::Empty(e.local_name().as_ref()))?,
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                on(XmlEvent::End(e.local_name().as_ref()))?;
            }
            Event::Text(t) => on(XmlEvent::Text(&t.xml10_content()))?,
            Event::CData(t) => on(XmlEvent::Text(&t.xml10_content()))?,
            Event::GeneralRef(r) => {
                let resolved: Option<char> = match r.resolve_char_ref() {
                    Ok(Some(c)) => Some(c),
                    Ok(None) => match r.as_ref() {
                        "lt" => Some('<'),
                        "gt" => Some('>'),
                        "amp" => Some('&'),
                        "apos" => Some('\''),
                        "quot" => Some('"'),
                        // Custom (DTD) entities are deliberately not expanded.
                        _ => None,
                    },
                    Err(_) => None,
                };
                if let Some(c) = resolved {
                    let mut buf = [0u8; 4];
                    on(XmlEvent::Text(c.encode_utf8(&mut buf)))?;
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    Ok(())
}

/// Generic XML, read as a stream of UTF-8: all text nodes; elements are separated by a space, and a
/// line break follows each end tag.
pub(crate) fn extract(xml: impl BufRead, max: usize, budget: &Budget) -> Result<String, ExtractError> {
    let mut sink = Sink::new(max, budget);
    walk_reader(xml, max, budget, |ev| match ev {
        XmlEvent::Text(t) => sink.push_str(t),
        XmlEvent::End(_) => sink.separate('\n'),
        XmlEvent::Start(_) | XmlEvent::Empty(_) => sink.separate(' '),
    })?;
    Ok(sink.finish())
}

/// A reader that yields at most `limit` bytes in all (raised before each event by [`Bounded::allow`]),
/// so that one event cannot make the parser buffer an unbounded amount; `over` tells the error
/// it then returns from one the input gave.
struct Bounded<R> {
    inner: R,
    consumed: u64,
    limit: u64,
    over: bool,
}

impl<R> Bounded<R> {
    /// The next event may take up to `bytes` more.
    fn allow(&mut self, bytes: usize) {
        self.limit = self
            .consumed
            .saturating_add(u64::try_from(bytes).unwrap_or(u64::MAX));
    }
}

impl<R: BufRead> BufRead for Bounded<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let room = self.limit.saturating_sub(self.consumed);
        let buf = self.inner.fill_buf()?;
        if room == 0 && !buf.is_empty() {
            self.over = true;
            return Err(io::Error::other("an XML event exceeds the text cap"));
        }
        let n = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        Ok(&buf[..n])
    }

    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt);
        self.consumed = self.consumed.saturating_add(amt as u64);
    }
}

impl<R: BufRead> Read for Bounded<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let buf = self.fill_buf()?;
        let n = buf.len().min(out.len());
        out[..n].copy_from_slice(&buf[..n]);
        self.consume(n);
        Ok(n)
    }
}
