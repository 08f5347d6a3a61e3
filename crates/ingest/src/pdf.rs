//! PDF through pdf_oxide (pure Rust; the most robust engine on damaged files in our measurements).
//!
//! A page's text is taken from pdf_oxide's raw text spans (the strings its text operators show, with
//! their positions), in the order the page's content stream draws them, joined with line breaks
//! where the baseline moves and spaces where a gap separates two spans. pdf_oxide's own page text
//! (`extract_text`) reorders spans by geometry, aligns every glyph a second time and looks for
//! tables, which made it about 2.5× slower on real PDFs (below pdftotext's speed) for 0.16 % more
//! of pdftotext's words: see docs/benchmarks.md, section 8. Pages with rotated text keep `extract_text`, which reads them in
//! their rotated frame.

use pdf_oxide::PdfDocument;
use pdf_oxide::error::Error as PdfError;
use pdf_oxide::extractors::SpanMergingConfig;
use pdf_oxide::layout::TextSpan;
use pdf_oxide::object::Object;

use crate::sink::{Budget, Sink};
use crate::{ExtractError, IngestConfig};

/// Give up on a file whose pages keep failing, rather than walking a bogus page count of millions.
const MAX_CONSECUTIVE_PAGE_ERRORS: usize = 200;

/// A span whose baseline is more than this many font sizes above or below the previous one starts a
/// new line.
const NEW_LINE: f32 = 0.5;
/// … and more than this many starts a new paragraph (an empty line between them): ordinary line
/// spacing is 1.1–1.3 font sizes.
const NEW_PARAGRAPH: f32 = 1.8;
/// On the same line, a gap wider than this many font sizes separates two words; a span that starts
/// further than [`OVERLAP`] font sizes back, over the previous one, is a separate piece of text too.
const WORD_GAP: f32 = 0.1;
const OVERLAP: f32 = 0.5;

fn map_error(e: PdfError) -> ExtractError {
    match e {
        PdfError::EncryptedPdf => ExtractError::Encrypted,
        PdfError::InvalidHeader(_) => ExtractError::Corrupt("not a PDF file (no %PDF header)".into()),
        other => ExtractError::Corrupt(format!("the PDF could not be read: {other}")),
    }
}

/// pdf_oxide parses from memory: it takes the whole file, and keeps a second copy of it
/// (`source_bytes`, for editing), which text extraction never reads: it is freed at once, so that a
/// PDF costs its size once while its pages are read (twice only while it is opened).
pub(crate) fn pdf(bytes: Vec<u8>, cfg: &IngestConfig, budget: &Budget) -> Result<String, ExtractError> {
    let mut doc = PdfDocument::from_bytes(bytes).map_err(map_error)?;
    doc.source_bytes = Vec::new();
    if doc.is_encrypted() {
        // Many PDFs are "encrypted" with an empty user password (owner restrictions only): try it.
        match doc.authenticate(b"") {
            Ok(true) => {}
            Ok(false) | Err(_) => return Err(ExtractError::Encrypted),
        }
    }
    let pages = doc.page_count().map_err(map_error)?;
    let mut sink = Sink::new(cfg.max_text_bytes, budget);
    let mut failures = 0usize;
    let mut consecutive = 0usize;
    let mut last_error = None;
    for page in 0..pages {
        budget.check()?;
        match page_text(&doc, page) {
            Ok(text) => {
                consecutive = 0;
                if !text.trim().is_empty() {
                    if !sink.text.is_empty() {
                        sink.separate('\n')?;
                        sink.push('\n')?;
                    }
                    sink.push_str(text.trim_end())?;
                }
            }
            Err(PdfError::EncryptedPdf) => return Err(ExtractError::Encrypted),
            Err(e) => {
                failures += 1;
                consecutive += 1;
                last_error = Some(e);
                if consecutive >= MAX_CONSECUTIVE_PAGE_ERRORS {
                    break;
                }
            }
        }
    }
    let text = sink.finish();
    if text.trim().is_empty() {
        return match last_error {
            Some(e) if failures > 0 && failures >= pages.min(MAX_CONSECUTIVE_PAGE_ERRORS) => {
                Err(map_error(e))
            }
            _ => Err(ExtractError::NoText),
        };
    }
    Ok(text)
}

/// One page's text: its spans in drawing order, or pdf_oxide's page text when some of its text is
/// rotated (a landscape table on a portrait page, a vertical caption) or when it carries annotations
/// other than links (form fields, whose values pdf_oxide's page text includes, and notes).
fn page_text(doc: &PdfDocument, page: usize) -> Result<String, PdfError> {
    let spans = doc.extract_spans_with_config(page, SpanMergingConfig::default())?;
    if spans.iter().any(|s| s.rotation_degrees != 0.0) || has_annotations_beyond_links(doc, page) {
        return doc.extract_text(page);
    }
    Ok(join_spans(&spans))
}

fn has_annotations_beyond_links(doc: &PdfDocument, page: usize) -> bool {
    let Ok(page) = doc.get_page(page) else {
        return false;
    };
    let annotations = match page.as_dict().and_then(|d| d.get("Annots")) {
        Some(Object::Array(list)) => list.clone(),
        Some(Object::Reference(r)) => match doc.load_object(*r) {
            Ok(Object::Array(list)) => list,
            _ => return false,
        },
        _ => return false,
    };
    annotations.iter().any(|a| {
        let annotation = match a {
            Object::Reference(r) => doc.load_object(*r).ok(),
            other => Some(other.clone()),
        };
        let subtype = annotation
            .as_ref()
            .and_then(|o| o.as_dict())
            .and_then(|d| d.get("Subtype"))
            .and_then(|s| s.as_name());
        subtype != Some("Link")
    })
}

/// Joins spans in the order given: a line break where the baseline moves by more than
/// [`NEW_LINE`] font sizes (an empty line beyond [`NEW_PARAGRAPH`]), a space where a gap (or a step
/// back over the previous span) separates two spans on one line.
fn join_spans(spans: &[TextSpan]) -> String {
    let mut text = String::new();
    let mut prev: Option<&TextSpan> = None;
    for span in spans.iter().filter(|s| !s.text.is_empty()) {
        if let Some(p) = prev {
            let size = p.font_size.abs().max(1.0);
            let rise = (span.bbox.y - p.bbox.y).abs();
            if rise > NEW_PARAGRAPH * size {
                text.push_str("\n\n");
            } else if rise > NEW_LINE * size {
                text.push('\n');
            } else {
                let gap = span.bbox.x - (p.bbox.x + p.bbox.width);
                if (gap > WORD_GAP * size || gap < -OVERLAP * size)
                    && !text.ends_with(char::is_whitespace)
                    && !span.text.starts_with(char::is_whitespace)
                {
                    text.push(' ');
                }
            }
        }
        text.push_str(&span.text);
        prev = Some(span);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbsync_fixtures as fx;
    use std::time::Duration;

    fn extract(bytes: &[u8]) -> Result<String, ExtractError> {
        let cfg = IngestConfig::default();
        pdf(bytes.to_vec(), &cfg, &Budget::new(Duration::from_secs(60)))
    }

    /// The text pdf_oxide's own page text gave, joined as before.
    fn extract_text_of_every_page(bytes: &[u8]) -> String {
        let doc = PdfDocument::from_bytes(bytes.to_vec()).unwrap();
        let pages: Vec<String> = (0..doc.page_count().unwrap())
            .map(|p| doc.extract_text(p).unwrap())
            .filter(|t| !t.trim().is_empty())
            .map(|t| t.trim_end().to_string())
            .collect();
        pages.join("\n\n")
    }

    #[test]
    fn fixture_pdfs_give_the_same_text_as_pdf_oxides_page_text() {
        let corpus = fx::text_corpus(42, 20_000);
        let paragraphs: Vec<&str> = corpus.split("\n\n").collect();
        let umlauts = "Übergabe der Schlüssel, naïve café, 5 € — “quoted”";
        for (what, bytes) in [
            ("a paragraph per page", fx::pdf(&paragraphs)),
            ("one long text over many pages", fx::pdf(&[&corpus])),
            (
                "WinAnsi characters and line breaks",
                fx::pdf(&[umlauts, "two\nlines\n\nand a paragraph"]),
            ),
        ] {
            let ours = extract(&bytes).unwrap();
            assert_eq!(ours, extract_text_of_every_page(&bytes), "{what}");
            assert!(!ours.is_empty(), "{what}");
        }
    }

    #[test]
    fn spans_on_one_line_are_spaced_by_their_gaps_and_lines_by_their_baselines() {
        let span = |text: &str, x: f32, y: f32, width: f32| TextSpan {
            text: text.into(),
            bbox: pdf_oxide::geometry::Rect::new(x, y, width, 10.0),
            font_size: 10.0,
            ..Default::default()
        };
        let spans = [
            span("Hel", 0.0, 700.0, 15.0),
            span("lo", 15.0, 700.0, 10.0),
            span("world", 28.0, 700.0, 25.0),
            span("next", 0.0, 688.0, 20.0),
            span("line", 22.0, 688.2, 20.0),
            span("paragraph", 0.0, 664.0, 45.0),
            span("", 50.0, 664.0, 0.0),
            span("bold", 0.0, 652.0, 20.0),
            span("bold", 0.4, 652.0, 20.0),
        ];
        assert_eq!(
            join_spans(&spans),
            "Hello world\nnext line\n\nparagraph\nbold bold"
        );
    }
}
