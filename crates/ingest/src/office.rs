//! Office Open XML: docx and pptx by hand (zip + quick-xml), xlsx through calamine's streaming cell reader.

use std::fmt::Write as _;
use std::io::{Read, Seek};

use calamine::{DataRef, Reader as _, Xlsx};
use zip::ZipArchive;
use zip::result::ZipError;

use crate::input::{read_error, read_full};
use crate::sink::{Budget, Sink, human_bytes};
use crate::xml::{XmlEvent, walk};
use crate::{ExtractError, IngestConfig};

/// OLE2 / Compound File Binary signature: legacy .doc/.xls/.ppt, and password-protected OOXML files.
const CFB_MAGIC: [u8; 8] = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

/// An encrypted Office file is a Compound File with an `EncryptedPackage` stream (names are UTF-16LE).
/// Reads only the first 8 bytes of anything else; a Compound File is scanned in pieces. Leaves the
/// position at 0.
fn check_container<R: Read + Seek>(input: &mut R, what: &str) -> Result<(), ExtractError> {
    let mut magic = [0u8; CFB_MAGIC.len()];
    let n = read_full(input, &mut magic)?;
    input.rewind().map_err(read_error)?;
    if n < magic.len() || magic != CFB_MAGIC {
        return Ok(());
    }
    let needle: Vec<u8> = "EncryptedPackage"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let mut window = vec![0u8; (64 << 10) + needle.len()];
    let mut kept = 0;
    let mut encrypted = false;
    loop {
        let n = read_full(input, &mut window[kept..])?;
        let filled = kept + n;
        if window[..filled]
            .windows(needle.len())
            .any(|w| w == needle.as_slice())
        {
            encrypted = true;
            break;
        }
        if n == 0 {
            break;
        }
        // Keep the tail, in case the name straddles two pieces.
        kept = filled.min(needle.len() - 1);
        window.copy_within(filled - kept..filled, 0);
    }
    input.rewind().map_err(read_error)?;
    if encrypted {
        Err(ExtractError::Encrypted)
    } else {
        Err(ExtractError::Unsupported(format!(
            "this is a legacy binary Office file (.doc/.xls/.ppt), not {what}; save it in the current format"
        )))
    }
}

fn zip_error(e: ZipError) -> ExtractError {
    match e {
        ZipError::Io(io) => io_error(&io),
        ZipError::UnsupportedArchive(msg) if msg.to_ascii_lowercase().contains("password") => {
            ExtractError::Encrypted
        }
        other => ExtractError::Corrupt(format!("the zip container is damaged: {other}")),
    }
}

fn io_error(e: &std::io::Error) -> ExtractError {
    let msg = e.to_string();
    if msg.contains("larger than its declared") {
        ExtractError::TooLarge("a part of the archive is larger than its declared size (zip bomb?)".into())
    } else {
        ExtractError::Corrupt(format!("the zip container is damaged: {msg}"))
    }
}

fn too_large_archive(limit: u64) -> ExtractError {
    ExtractError::TooLarge(format!(
        "the archive expands to more than the limit of {}",
        human_bytes(limit)
    ))
}

/// A zip package whose reads are capped: the central directory's declared total must fit the limit,
/// and the bytes actually inflated are counted too (a bomb can lie in its headers).
struct Package<R> {
    zip: ZipArchive<R>,
    limit: u64,
    remaining: u64,
}

impl<R: Read + Seek> Package<R> {
    fn open(input: R, limit: u64) -> Result<Self, ExtractError> {
        let zip = ZipArchive::new(input).map_err(|e| match e {
            ZipError::InvalidArchive(_) => {
                ExtractError::Corrupt("not a valid Office file (no zip container)".into())
            }
            other => zip_error(other),
        })?;
        match zip.decompressed_size() {
            Some(total) if total <= u128::from(limit) => {}
            Some(total) => {
                return Err(ExtractError::TooLarge(format!(
                    "the archive expands to {}, over the limit of {}",
                    human_bytes(u64::try_from(total).unwrap_or(u64::MAX)),
                    human_bytes(limit)
                )));
            }
            None => return Err(too_large_archive(limit)),
        }
        Ok(Self {
            zip,
            limit,
            remaining: limit,
        })
    }

    fn names(&self) -> Vec<String> {
        self.zip
            .file_names()
            .filter_map(Result::ok)
            .map(|n| n.into_owned())
            .collect()
    }

    /// Reads one part as text; `Ok(None)` if the part does not exist.
    fn read(&mut self, name: &str) -> Result<Option<String>, ExtractError> {
        let mut file = match self.zip.by_name(name) {
            Ok(f) => f,
            Err(ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(zip_error(e)),
        };
        if file.encrypted() {
            return Err(ExtractError::Encrypted);
        }
        let capacity = file.size().min(self.remaining).min(64 << 20);
        let mut buf = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
        let n = (&mut file)
            .take(self.remaining.saturating_add(1))
            .read_to_end(&mut buf)
            .map_err(|e| io_error(&e))?;
        if n as u64 > self.remaining {
            return Err(too_large_archive(self.limit));
        }
        self.remaining -= n as u64;
        Ok(Some(crate::text::decode(&buf).into_owned()))
    }

    /// The main part named by the package relationships (`_rels/.rels`), or `fallback`.
    fn main_part(&mut self, fallback: &str, budget: &Budget) -> Result<String, ExtractError> {
        let Some(rels) = self.read("_rels/.rels")? else {
            return Ok(fallback.to_string());
        };
        let mut found = None;
        let mut reader = quick_xml::reader::Reader::from_str(&rels);
        loop {
            budget.check()?;
            match reader.read_event() {
                Ok(quick_xml::events::Event::Empty(e) | quick_xml::events::Event::Start(e)) => {
                    let attr = |key: &str| {
                        e.attributes()
                            .filter_map(Result::ok)
                            .find(|a| a.key.local_name().as_ref() == key)
                            .map(|a| a.value.to_string())
                    };
                    if attr("Type").is_some_and(|t| t.ends_with("/officeDocument")) {
                        found = attr("Target");
                        break;
                    }
                }
                Ok(quick_xml::events::Event::Eof) | Err(_) => break,
                Ok(_) => {}
            }
        }
        Ok(found.map_or_else(|| fallback.to_string(), |t| t.trim_start_matches('/').to_string()))
    }
}

pub(crate) fn docx<R: Read + Seek>(
    mut input: R,
    cfg: &IngestConfig,
    budget: &Budget,
) -> Result<String, ExtractError> {
    check_container(&mut input, "a .docx file")?;
    let mut pkg = Package::open(input, cfg.max_decompressed_bytes)?;
    let main = pkg.main_part("word/document.xml", budget)?;
    let xml = pkg
        .read(&main)?
        .ok_or_else(|| ExtractError::Corrupt(format!("not a Word document: the package has no {main}")))?;
    let mut sink = Sink::new(cfg.max_text_bytes, budget);
    word_xml(&xml, &mut sink)?;
    // Footnotes and endnotes are part of the document's text too.
    for part in ["word/footnotes.xml", "word/endnotes.xml"] {
        if let Some(xml) = pkg.read(part)? {
            sink.separate('\n')?;
            word_xml(&xml, &mut sink)?;
        }
    }
    Ok(sink.finish())
}

/// WordprocessingML: text is in `w:t`; `w:p` ends a paragraph, `w:tab`/`w:br` are tab and line break;
/// table cells are separated by tabs and rows by line breaks. Property elements (`w:pPr`, `w:rPr`) hold
/// tab-stop definitions, not text, and are skipped.
fn word_xml(xml: &str, sink: &mut Sink<'_>) -> Result<(), ExtractError> {
    let budget = sink.budget().clone();
    let mut in_text = false;
    let mut in_props = 0usize;
    let mut cell_depth = 0usize;
    walk(xml, &budget, |ev| match ev {
        XmlEvent::Start("t") => {
            in_text = true;
            Ok(())
        }
        XmlEvent::End("t") => {
            in_text = false;
            Ok(())
        }
        XmlEvent::Text(t) if in_text => sink.push_str(t),
        XmlEvent::Start("pPr" | "rPr" | "sectPr" | "tblPr" | "trPr" | "tcPr") => {
            in_props += 1;
            Ok(())
        }
        XmlEvent::End("pPr" | "rPr" | "sectPr" | "tblPr" | "trPr" | "tcPr") => {
            in_props = in_props.saturating_sub(1);
            Ok(())
        }
        XmlEvent::Empty("tab") | XmlEvent::Start("tab") if in_props == 0 => sink.push('\t'),
        XmlEvent::Empty("br" | "cr") if in_props == 0 => sink.push('\n'),
        XmlEvent::Start("tc") => {
            cell_depth += 1;
            Ok(())
        }
        XmlEvent::End("tc") => {
            cell_depth = cell_depth.saturating_sub(1);
            sink.trim_trailing_spaces();
            sink.push('\t')
        }
        XmlEvent::End("tr") => sink.push('\n'),
        XmlEvent::End("p") => {
            if cell_depth > 0 {
                sink.separate(' ')
            } else {
                sink.push('\n')
            }
        }
        _ => Ok(()),
    })
}

pub(crate) fn pptx<R: Read + Seek>(
    mut input: R,
    cfg: &IngestConfig,
    budget: &Budget,
) -> Result<String, ExtractError> {
    check_container(&mut input, "a .pptx file")?;
    let mut pkg = Package::open(input, cfg.max_decompressed_bytes)?;
    let mut slides: Vec<(u32, String)> = pkg
        .names()
        .into_iter()
        .filter_map(|n| {
            let num = n
                .strip_prefix("ppt/slides/slide")?
                .strip_suffix(".xml")?
                .parse()
                .ok()?;
            Some((num, n))
        })
        .collect();
    if slides.is_empty() && pkg.read("ppt/presentation.xml")?.is_none() {
        return Err(ExtractError::Corrupt(
            "not a PowerPoint presentation: the package has no slides".into(),
        ));
    }
    slides.sort();
    let mut sink = Sink::new(cfg.max_text_bytes, budget);
    for (_, name) in slides {
        budget.check()?;
        let Some(xml) = pkg.read(&name)? else { continue };
        if !sink.text.is_empty() {
            sink.separate('\n')?;
            sink.push('\n')?;
        }
        let mut in_text = false;
        walk(&xml, budget, |ev| match ev {
            XmlEvent::Start("t") => {
                in_text = true;
                Ok(())
            }
            XmlEvent::End("t") => {
                in_text = false;
                Ok(())
            }
            XmlEvent::Text(t) if in_text => sink.push_str(t),
            XmlEvent::Empty("br") => sink.push('\n'),
            XmlEvent::End("p") => sink.separate('\n'),
            XmlEvent::End("tc") => sink.separate('\t'),
            _ => Ok(()),
        })?;
    }
    Ok(sink.finish())
}

/// Rows as tab-separated cells (gaps up to 16 empty cells keep their tabs), sheets separated by a blank
/// line and introduced by their name. Cells are streamed: calamine's dense `Range` would allocate
/// rows × columns cells, which a tiny hostile file can make enormous.
pub(crate) fn xlsx<R: Read + Seek>(
    mut input: R,
    cfg: &IngestConfig,
    budget: &Budget,
) -> Result<String, ExtractError> {
    check_container(&mut input, "an .xlsx file")?;
    // Validates the container and its declared size before calamine inflates anything.
    drop(Package::open(&mut input, cfg.max_decompressed_bytes)?);
    input.rewind().map_err(read_error)?;
    let mut wb: Xlsx<_> = Xlsx::new(input).map_err(xlsx_error)?;
    let mut sink = Sink::new(cfg.max_text_bytes, budget);
    let mut cell_text = String::new();
    for name in wb.sheet_names() {
        budget.check()?;
        let mut cells = wb.worksheet_cells_reader(&name).map_err(xlsx_error)?;
        let mut wrote_name = false;
        let mut pos: Option<(u32, u32)> = None;
        let mut count = 0u32;
        while let Some(cell) = cells.next_cell().map_err(xlsx_error)? {
            count = count.wrapping_add(1);
            if count.is_multiple_of(4096) {
                budget.check()?;
            }
            cell_text.clear();
            match cell.get_value() {
                DataRef::Empty => continue,
                DataRef::SharedString(s) => cell_text.push_str(s),
                DataRef::String(s) | DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => {
                    cell_text.push_str(s)
                }
                DataRef::Int(i) => {
                    let _ = write!(cell_text, "{i}");
                }
                DataRef::Float(f) => {
                    let _ = write!(cell_text, "{f}");
                }
                DataRef::Bool(b) => {
                    let _ = write!(cell_text, "{b}");
                }
                DataRef::DateTime(d) => {
                    let _ = write!(cell_text, "{d}");
                }
                DataRef::Error(e) => {
                    let _ = write!(cell_text, "{e}");
                }
            }
            let cell_text = cell_text.trim();
            if cell_text.is_empty() {
                continue;
            }
            if !wrote_name {
                if !sink.text.is_empty() {
                    sink.separate('\n')?;
                    sink.push('\n')?;
                }
                sink.push_str(&name)?;
                sink.push('\n')?;
                wrote_name = true;
            }
            let (row, col) = cell.get_position();
            match pos {
                Some((r, c)) if r == row => {
                    let gap = col.saturating_sub(c).clamp(1, 16);
                    for _ in 0..gap {
                        sink.push('\t')?;
                    }
                }
                Some(_) => sink.push('\n')?,
                None => {}
            }
            pos = Some((row, col));
            sink.push_str(cell_text)?;
        }
        if wrote_name {
            sink.push('\n')?;
        }
    }
    Ok(sink.finish())
}

fn xlsx_error(e: calamine::XlsxError) -> ExtractError {
    match e {
        calamine::XlsxError::Zip(z) => zip_error(z),
        calamine::XlsxError::Io(io) => io_error(&io),
        other => {
            let msg = other.to_string();
            if msg.contains("larger than its declared") {
                ExtractError::TooLarge(
                    "a part of the archive is larger than its declared size (zip bomb?)".into(),
                )
            } else if msg.to_ascii_lowercase().contains("password")
                || msg.to_ascii_lowercase().contains("encrypt")
            {
                ExtractError::Encrypted
            } else {
                ExtractError::Corrupt(format!("the spreadsheet could not be read: {msg}"))
            }
        }
    }
}
