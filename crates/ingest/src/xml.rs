//! A streaming XML walk shared by the XML, docx and pptx extractors.
//!
//! quick-xml never recurses, so depth costs no stack; we still refuse documents nested deeper than
//! [`MAX_DEPTH`] (no real document is, and it bounds what callers keep per level). Entity references are
//! resolved only for the five predefined entities and character references: entities declared in a DTD
//! are never expanded, so "billion laughs" documents cost nothing.

use quick_xml::events::Event;
use quick_xml::reader::Reader;

use crate::ExtractError;
use crate::sink::{Budget, Sink};

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
    mut on: impl FnMut(XmlEvent<'_>) -> Result<(), ExtractError>,
) -> Result<(), ExtractError> {
    let mut reader = Reader::from_str(xml);
    let mut depth = 0usize;
    let mut events = 0u32;
    loop {
        events = events.wrapping_add(1);
        if events.is_multiple_of(8192) {
            budget.check()?;
        }
        let ev = reader.read_event().map_err(|e| {
            ExtractError::Corrupt(format!("invalid XML at byte {}: {e}", reader.error_position()))
        })?;
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

/// Generic XML: all text nodes; elements are separated by a space, and a line break follows each end tag.
pub(crate) fn extract(xml: &str, max: usize, budget: &Budget) -> Result<String, ExtractError> {
    let mut sink = Sink::new(max, budget);
    walk(xml, budget, |ev| match ev {
        XmlEvent::Text(t) => sink.push_str(t),
        XmlEvent::End(_) => sink.separate('\n'),
        XmlEvent::Start(_) | XmlEvent::Empty(_) => sink.separate(' '),
    })?;
    Ok(sink.finish())
}
