//! PDF through pdf_oxide (pure Rust; the most robust engine on damaged files in our measurements).

use pdf_oxide::PdfDocument;
use pdf_oxide::error::Error as PdfError;

use crate::sink::{Budget, Sink};
use crate::{ExtractError, IngestConfig};

/// Give up on a file whose pages keep failing, rather than walking a bogus page count of millions.
const MAX_CONSECUTIVE_PAGE_ERRORS: usize = 200;

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
        match doc.extract_text(page) {
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
