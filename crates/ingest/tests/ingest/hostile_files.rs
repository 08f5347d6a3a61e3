//! Hostile files, generated here (no big fixtures): each must end with a bounded text or an
//! `ExtractError` naming the limit it hit, never hang, panic or exhaust memory. Complements
//! `broken_inputs` (zip bombs with honest sizes, nested XML/HTML, billion laughs in a .xml file).

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kbsync_ingest::{ExtractError, FileKind, IngestConfig, extract, extract_reader};

use super::broken_inputs::{CT, deflated_zeros, raw_zip, stored};

fn cfg() -> IngestConfig {
    IngestConfig::default()
}

fn assert_too_large(result: Result<String, ExtractError>, needle: &str, what: &str) {
    match result {
        Err(ExtractError::TooLarge(m)) => assert!(m.contains(needle), "{what}: {m:?} should name {needle:?}"),
        other => panic!("{what}: expected TooLarge({needle}), got {other:?}"),
    }
}

// ------------------------------------------------------------------ HTML

#[test]
fn html_nested_through_unmatched_end_tags_is_extracted_without_overflow() {
    // Every `<div>` is followed by an end tag that matches nothing open: a depth count that
    // decrements on any end tag sees depth 1, yet the parser builds a tree 100 000 levels deep.
    let depth = 100_000;
    let html = format!(
        "<html><body>{}deep text{}</body></html>",
        "<div></span>".repeat(depth),
        "</div>".repeat(depth)
    );
    let text = extract(FileKind::Html, html.as_bytes(), &cfg()).unwrap();
    assert!(text.contains("deep text"), "{:?}", &text[..text.len().min(200)]);
    assert!(text.len() < html.len());
}

#[test]
fn html_made_of_stray_end_tags_is_extracted() {
    let html = format!(
        "<p>before</p>{}<p>after</p>",
        "</div></p></td></table></html>".repeat(50_000)
    );
    let text = extract(FileKind::Html, html.as_bytes(), &cfg()).unwrap();
    assert!(
        text.contains("before") && text.contains("after"),
        "{:?}",
        &text[..text.len().min(200)]
    );
    assert!(text.len() < html.len());
}

#[test]
fn html_nested_100k_deep_with_unclosed_inline_tags_is_extracted() {
    let html = format!("<html><body>{}deep text</body></html>", "<b><i>".repeat(50_000));
    let text = extract(FileKind::Html, html.as_bytes(), &cfg()).unwrap();
    assert!(text.contains("deep text"));
}

#[test]
fn html_tricks_that_hide_nesting_from_a_tag_count_are_extracted() {
    // Each builds a tree thousands of levels deep that a naive open/close count sees as shallow:
    // `<div/>` is no self-closing tag in HTML, `</html>` closes nothing, and formatting elements
    // closed by their paragraph are opened again inside the next one.
    let cases = [
        (
            "slash-closed divs",
            format!("{}deep text", "<div/>".repeat(100_000)),
        ),
        (
            "end html between divs",
            format!(
                "{}deep text",
                format!("{}</html>", "<div>".repeat(400)).repeat(250)
            ),
        ),
        (
            "formatting reopened per paragraph",
            format!(
                "{}deep text",
                (0..20_000)
                    .map(|i| format!("<p><b id={i}>x</p>"))
                    .collect::<String>()
            ),
        ),
    ];
    for (what, html) in cases {
        let text = extract(FileKind::Html, html.as_bytes(), &cfg()).unwrap();
        assert!(text.contains("deep text"), "{what}");
        assert!(text.len() < html.len(), "{what}");
    }
}

// ------------------------------------------------------------------ XML

#[test]
fn xml_nested_100k_deep_in_a_pptx_slide_is_corrupt() {
    let depth = 100_000;
    let slide = format!("<p:sld>{}</p:sld>", "<a:p>".repeat(depth));
    let pptx = raw_zip(&[
        stored("[Content_Types].xml", CT),
        stored("ppt/slides/slide1.xml", &slide),
    ]);
    let err = extract(FileKind::Pptx, &pptx, &cfg()).unwrap_err();
    assert!(
        matches!(&err, ExtractError::Corrupt(m) if m.contains("nested too deeply")),
        "{err:?}"
    );
}

fn billion_laughs_dtd(root: &str) -> String {
    let mut dtd = format!("<?xml version=\"1.0\"?><!DOCTYPE {root} [<!ENTITY lol \"lol\">");
    for i in 1..10 {
        let prev = if i == 1 {
            "lol".to_string()
        } else {
            format!("lol{}", i - 1)
        };
        dtd.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">",
            format!("&{prev};").repeat(10)
        ));
    }
    dtd.push_str("]>");
    dtd
}

#[test]
fn billion_laughs_in_a_docx_part_is_not_expanded() {
    let doc = format!(
        r#"{}<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>start &lol9; end</w:t></w:r></w:p></w:body></w:document>"#,
        billion_laughs_dtd("w:document")
    );
    let docx = raw_zip(&[
        stored("[Content_Types].xml", CT),
        stored("word/document.xml", &doc),
    ]);
    let text = extract(FileKind::Docx, &docx, &cfg()).unwrap();
    assert!(text.len() < 100, "{text:?}");
    assert!(text.contains("start") && text.contains("end"), "{text:?}");
}

/// The parts of a workbook with one sheet, `xl/worksheets/sheet1.xml`, but the sheet itself.
fn workbook_parts() -> Vec<(&'static str, u16, u32, Vec<u8>, u32)> {
    let root_rels = r#"<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#;
    let workbook = r#"<?xml version="1.0"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>"#;
    let rels = r#"<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#;
    vec![
        stored("[Content_Types].xml", CT),
        stored("_rels/.rels", root_rels),
        stored("xl/workbook.xml", workbook),
        stored("xl/_rels/workbook.xml.rels", rels),
    ]
}

#[test]
fn billion_laughs_in_an_xlsx_shared_strings_part_is_not_expanded() {
    let sst = format!(
        r#"{}<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="1" uniqueCount="1"><si><t>start &lol9; end</t></si></sst>"#,
        billion_laughs_dtd("sst")
    );
    let sheet = r#"<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c></row></sheetData></worksheet>"#;
    let mut parts = workbook_parts();
    parts.extend([
        stored("xl/sharedStrings.xml", &sst),
        stored("xl/worksheets/sheet1.xml", sheet),
    ]);
    // calamine refuses the undeclared-to-it entity rather than expanding it: damaged, and says why.
    match extract(FileKind::Xlsx, &raw_zip(&parts), &cfg()) {
        Ok(text) => assert!(text.len() < 200 && text.contains("start"), "{text:?}"),
        Err(ExtractError::Corrupt(m)) => assert!(m.contains("entity"), "{m}"),
        Err(e) => panic!("{e:?}"),
    }
}

// ------------------------------------------------------------------ zip bombs

#[test]
fn zip_bomb_xlsx_and_pptx_with_lying_sizes_are_too_large() {
    // Each declares 1 000 bytes but inflates to 1 GiB: the bytes actually inflated are what count.
    let (data, crc) = deflated_zeros(1024);
    for (kind, part) in [
        (FileKind::Xlsx, "xl/worksheets/sheet1.xml"),
        (FileKind::Pptx, "ppt/slides/slide1.xml"),
        (FileKind::Docx, "word/document.xml"),
    ] {
        let mut entries = if kind == FileKind::Xlsx {
            workbook_parts()
        } else {
            vec![stored("[Content_Types].xml", CT)]
        };
        entries.push((part, 8, crc, data.clone(), 1000));
        let bytes = raw_zip(&entries);
        let result = extract(kind, &bytes, &cfg());
        assert!(
            matches!(&result, Err(ExtractError::TooLarge(m)) if m.contains("archive") || m.contains("zip bomb")),
            "{kind:?}: {result:?}"
        );
        let result = extract_reader(kind, io::Cursor::new(&bytes), &cfg());
        assert!(
            matches!(result, Err(ExtractError::TooLarge(_))),
            "{kind:?} from a reader: {result:?}"
        );
    }
}

#[test]
fn xlsx_with_lying_shared_strings_or_styles_is_too_large() {
    // calamine reads shared strings and styles before any sheet: bombs there count too.
    let (data, crc) = deflated_zeros(1024);
    let sheet = r#"<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>x</t></is></c></row></sheetData></worksheet>"#;
    for part in ["xl/sharedStrings.xml", "xl/styles.xml"] {
        let mut entries = workbook_parts();
        entries.push(stored("xl/worksheets/sheet1.xml", sheet));
        entries.push((part, 8, crc, data.clone(), 1000));
        let result = extract(FileKind::Xlsx, &raw_zip(&entries), &cfg());
        assert!(
            matches!(&result, Err(ExtractError::TooLarge(_))),
            "{part}: {result:?}"
        );
    }
}

#[test]
fn many_honest_parts_summing_over_the_cap_are_too_large() {
    // No single part is big; together they declare 20 × 16 MiB = 320 MiB > the 200 MiB cap.
    let (data, crc) = deflated_zeros(16);
    let names: Vec<String> = (1..=20).map(|i| format!("ppt/slides/slide{i}.xml")).collect();
    let mut entries = vec![stored("[Content_Types].xml", CT)];
    for n in &names {
        entries.push((n.as_str(), 8, crc, data.clone(), 16 << 20));
    }
    assert_too_large(
        extract(FileKind::Pptx, &raw_zip(&entries), &cfg()),
        "archive",
        "pptx",
    );
}

// ------------------------------------------------------------------ huge plain text

/// A short `prefix`, then bytes of `fill` (no line break anywhere) up to `len` in all, generated on
/// demand: nothing is held.
struct Generated {
    prefix: Vec<u8>,
    len: u64,
    pos: u64,
    fill: u8,
    read: Arc<AtomicU64>,
}

impl Generated {
    fn new(len: u64, fill: u8) -> (Self, Arc<AtomicU64>) {
        Self::after("", len, fill)
    }

    fn after(prefix: &str, len: u64, fill: u8) -> (Self, Arc<AtomicU64>) {
        let read = Arc::new(AtomicU64::new(0));
        (
            Self {
                prefix: prefix.as_bytes().to_vec(),
                len,
                pos: 0,
                fill,
                read: Arc::clone(&read),
            },
            read,
        )
    }
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = usize::try_from((self.len - self.pos.min(self.len)).min(buf.len() as u64)).unwrap();
        buf[..n].fill(self.fill);
        for (i, b) in buf[..n].iter_mut().enumerate() {
            match self.prefix.get(usize::try_from(self.pos).unwrap() + i) {
                Some(p) => *b = *p,
                None => break,
            }
        }
        self.pos += n as u64;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Seek for Generated {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.pos = match pos {
            SeekFrom::Start(p) => p,
            SeekFrom::End(d) => self.len.checked_add_signed(d).unwrap(),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d).unwrap(),
        };
        Ok(self.pos)
    }
}

#[test]
fn single_200_mb_line_of_text_is_too_large_without_being_read() {
    for kind in [FileKind::Txt, FileKind::Md, FileKind::Csv] {
        let (reader, read) = Generated::new(200_000_000, b'a');
        assert_too_large(
            extract_reader(kind, reader, &cfg()),
            "extracted text",
            "200 MB line",
        );
        assert!(
            read.load(Ordering::Relaxed) < 2 << 20,
            "{kind:?}: read {read:?} bytes"
        );
    }
}

#[test]
fn single_line_under_the_read_limit_stops_reading_at_the_text_cap() {
    // 50 MB is under 3 × the 20 MiB cap, so it is read; reading stops once the text passes the cap.
    let (reader, read) = Generated::new(50_000_000, b'x');
    assert_too_large(
        extract_reader(FileKind::Txt, reader, &cfg()),
        "20 MiB",
        "50 MB line",
    );
    let read = read.load(Ordering::Relaxed);
    assert!(read <= (20 << 20) + (2 << 20), "read {read} bytes past the cap");
}

#[test]
fn single_long_line_within_the_cap_is_extracted_and_chunked() {
    let len = 4_000_000u64;
    let (reader, _) = Generated::new(len, b'y');
    let text = extract_reader(FileKind::Txt, reader, &cfg()).unwrap();
    assert_eq!(text.len() as u64, len);
    let chunks = kbsync_ingest::chunk_with_offsets(&text, 1000, 100);
    assert!(chunks.len() >= 4000 && chunks.len() <= 5000, "{}", chunks.len());
    assert!(chunks.iter().all(|c| c.text.chars().count() <= 1000));
}

#[test]
fn invalid_utf8_in_streamed_text_and_csv_is_replaced_not_rejected() {
    // The first MiB is clean UTF-8 (so it is taken as UTF-8), then come bytes no UTF-8 allows.
    let mut bytes = "word ".repeat(220_000).into_bytes();
    bytes.extend([0xFF, 0xFE, 0xC3, 0x28, b',', 0x80, 0xED, 0xA0, 0x80, b'\n']);
    bytes.extend(b"tail,end\n");
    for kind in [FileKind::Txt, FileKind::Csv] {
        let text = extract_reader(kind, io::Cursor::new(&bytes), &cfg()).unwrap();
        assert!(
            text.contains('\u{FFFD}') && text.ends_with("tail,end\n"),
            "{kind:?}"
        );
        assert!(text.len() < bytes.len() * 3);
    }
    // Nothing but invalid bytes, read from a stream: still some text, never an error.
    let (reader, _) = Generated::new(3 << 20, 0xFF);
    let text = extract_reader(FileKind::Csv, reader, &cfg()).unwrap();
    assert!(!text.is_empty() && text.len() <= 3 * (3 << 20));
}

// ------------------------------------------------------------------ PDF

/// A PDF of `objects` (object `i + 1` is `objects[i]`) with a correct xref table; the catalog is 1.
fn pdf(objects: &[&str]) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for o in offsets {
        out.extend(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

fn content_stream(text: &str) -> String {
    let ops = format!("BT /F1 12 Tf 72 712 Td ({text}) Tj ET");
    format!("<< /Length {} >>\nstream\n{ops}\nendstream", ops.len())
}

const FONT: &str = "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>";
const PAGE: &str = "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>";

/// Ends with the page's text, or an error saying the PDF is damaged or has no text.
fn assert_pdf_ends_cleanly(bytes: &[u8], what: &str) {
    match extract(FileKind::Pdf, bytes, &cfg()) {
        Ok(text) => assert!(text.len() < 10_000, "{what}: {text:?}"),
        Err(ExtractError::Corrupt(m)) => assert!(m.contains("PDF"), "{what}: {m}"),
        Err(ExtractError::NoText) => {}
        Err(e) => panic!("{what}: {e:?}"),
    }
}

#[test]
fn hostile_pdf_generator_makes_a_readable_pdf() {
    let content = content_stream("hostile page text");
    let bytes = pdf(&[
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        PAGE,
        &content,
        FONT,
    ]);
    let text = extract(FileKind::Pdf, &bytes, &cfg()).unwrap();
    assert!(text.contains("hostile page text"), "{text:?}");
}

#[test]
fn pdf_page_tree_loops_end_cleanly() {
    let content = content_stream("hostile page text");
    let cases: [(&str, [&str; 5]); 4] = [
        (
            "pages node listing itself as a kid",
            [
                "<< /Type /Catalog /Pages 2 0 R >>",
                "<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>",
                PAGE,
                &content,
                FONT,
            ],
        ),
        (
            "two pages nodes listing each other",
            [
                "<< /Type /Catalog /Pages 2 0 R >>",
                "<< /Type /Pages /Kids [3 0 R] /Count 1000000 >>",
                "<< /Type /Pages /Parent 2 0 R /Kids [2 0 R] /Count 1000000 >>",
                &content,
                FONT,
            ],
        ),
        (
            "page whose parent is itself (inherited resources)",
            [
                "<< /Type /Catalog /Pages 2 0 R >>",
                "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                "<< /Type /Page /Parent 3 0 R /Contents 4 0 R >>",
                &content,
                FONT,
            ],
        ),
        (
            "pages root whose parent is the page",
            [
                "<< /Type /Catalog /Pages 2 0 R >>",
                "<< /Type /Pages /Parent 3 0 R /Kids [3 0 R] /Count 1 >>",
                "<< /Type /Page /Parent 2 0 R /Contents 4 0 R >>",
                &content,
                FONT,
            ],
        ),
    ];
    for (what, objects) in cases {
        assert_pdf_ends_cleanly(&pdf(&objects), what);
    }
}

#[test]
fn pdf_objects_referencing_themselves_end_cleanly() {
    let content = content_stream("hostile page text");
    let self_length = "<< /Length 6 0 R >>\nstream\nBT /F1 12 Tf 72 712 Td (x) Tj ET\nendstream";
    let cases: [(&str, Vec<&str>); 5] = [
        (
            "contents is a reference to itself",
            vec![
                "<< /Type /Catalog /Pages 2 0 R >>",
                "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                PAGE,
                "4 0 R",
                FONT,
            ],
        ),
        (
            "font dictionary referencing itself",
            vec![
                "<< /Type /Catalog /Pages 2 0 R >>",
                "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                PAGE,
                &content,
                "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding 5 0 R /FontDescriptor 5 0 R /ToUnicode 5 0 R >>",
            ],
        ),
        (
            "resources referencing themselves",
            vec![
                "<< /Type /Catalog /Pages 2 0 R >>",
                "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                "<< /Type /Page /Parent 2 0 R /Contents 4 0 R /Resources 5 0 R >>",
                &content,
                "<< /Font << /F1 5 0 R >> /XObject << /X1 5 0 R >> /Self 5 0 R >>",
            ],
        ),
        (
            "stream length that is a reference to itself",
            vec![
                "<< /Type /Catalog /Pages 2 0 R >>",
                "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                "<< /Type /Page /Parent 2 0 R /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
                self_length,
                FONT,
                "6 0 R",
            ],
        ),
        (
            "catalog pages entry pointing at the catalog",
            vec![
                "<< /Type /Catalog /Pages 1 0 R >>",
                "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                PAGE,
                &content,
                FONT,
            ],
        ),
    ];
    for (what, objects) in cases {
        assert_pdf_ends_cleanly(&pdf(&objects), what);
    }
}

#[test]
fn pdf_form_xobject_drawing_itself_ends_cleanly() {
    let form_ops = "/X1 Do BT /F1 12 Tf 72 712 Td (inside) Tj ET";
    let form = format!(
        "<< /Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << /XObject << /X1 6 0 R >> /Font << /F1 5 0 R >> >> /Length {} >>\nstream\n{form_ops}\nendstream",
        form_ops.len()
    );
    let ops = "/X1 Do";
    let content = format!("<< /Length {} >>\nstream\n{ops}\nendstream", ops.len());
    let bytes = pdf(&[
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> /XObject << /X1 6 0 R >> >> >>",
        &content,
        FONT,
        &form,
    ]);
    assert_pdf_ends_cleanly(&bytes, "form xobject drawing itself");
}

/// A PDF with a cross-reference stream whose object 7 (the page's contents) lives in the object
/// stream 6, declared with `objstm_dict` (plus `/Length`) around `objstm_data`.
fn pdf_with_object_stream(objstm_dict: &str, objstm_data: &str) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n".to_vec();
    let mut offsets = Vec::new();
    let objs = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 7 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_string(),
        content_stream("unused"),
        FONT.to_string(),
        format!("<< /Type /ObjStm {objstm_dict} /Length {} >>\nstream\n{objstm_data}\nendstream", objstm_data.len()),
    ];
    for (i, body) in objs.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref_offset = out.len();
    let mut entries = vec![0u8, 0, 0, 0, 0, 0xFF, 0xFF];
    for o in &offsets {
        entries.push(1);
        entries.extend((*o as u32).to_be_bytes());
        entries.extend([0, 0]);
    }
    entries.extend([2, 0, 0, 0, 6, 0, 0]); // object 7: index 0 of object stream 6
    entries.push(1);
    entries.extend((xref_offset as u32).to_be_bytes());
    entries.extend([0, 0]);
    out.extend(
        format!(
            "8 0 obj\n<< /Type /XRef /Size 9 /W [1 4 2] /Root 1 0 R /Length {} >>\nstream\n",
            entries.len()
        )
        .as_bytes(),
    );
    out.extend(&entries);
    out.extend(format!("\nendstream\nendobj\nstartxref\n{xref_offset}\n%%EOF\n").as_bytes());
    out
}

#[test]
fn pdf_object_stream_generator_makes_a_readable_pdf() {
    let ops = "<< /Length 40 >>";
    let data = format!("7 0 {ops}");
    // Object streams cannot hold streams; here object 7 is only a dictionary, so no text: the
    // point is that the file parses (the hostile variants below differ only in their header).
    let bytes = pdf_with_object_stream(&format!("/N 1 /First {}", "7 0 ".len()), &data);
    assert_pdf_ends_cleanly(&bytes, "valid object stream");
}

#[test]
fn pdf_with_huge_object_stream_declarations_ends_cleanly() {
    let data = "7 0 << /A 1 >>";
    for (what, dict) in [
        ("N of two billion", "/N 2000000000 /First 4".to_string()),
        ("N of u64 max", "/N 18446744073709551615 /First 4".to_string()),
        ("First far past the stream", "/N 1 /First 2000000000".to_string()),
        ("negative N", "/N -5 /First 4".to_string()),
        ("N and First huge", format!("/N {} /First {}", i64::MAX, i64::MAX)),
    ] {
        assert_pdf_ends_cleanly(&pdf_with_object_stream(&dict, data), what);
    }
}

#[test]
fn pdf_with_huge_declared_stream_length_ends_cleanly() {
    for length in ["2000000000", "9223372036854775807", "-1"] {
        let ops = "BT /F1 12 Tf 72 712 Td (x) Tj ET";
        let content = format!("<< /Length {length} >>\nstream\n{ops}\nendstream");
        let bytes = pdf(&[
            "<< /Type /Catalog /Pages 2 0 R >>",
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            PAGE,
            &content,
            FONT,
        ]);
        assert_pdf_ends_cleanly(&bytes, length);
    }
}

#[test]
fn pdf_with_a_huge_declared_page_count_ends_cleanly() {
    let content = content_stream("hostile page text");
    let bytes = pdf(&[
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 2000000000 >>",
        PAGE,
        &content,
        FONT,
    ]);
    assert_pdf_ends_cleanly(&bytes, "Count of two billion");
}

#[test]
fn pdf_with_a_flate_bomb_content_stream_ends_cleanly() {
    // 1 GiB of zeros in about 1 MiB: zlib header, the raw deflate, then the Adler-32 of the zeros.
    let (raw, _) = deflated_zeros(1024);
    let mut zlib = vec![0x78, 0xDA];
    zlib.extend(&raw);
    let b = ((1u64 << 30) % 65_521) as u32;
    zlib.extend(((b << 16) | 1).to_be_bytes());
    let mut bytes = pdf(&[
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        PAGE,
        &format!("<< /Filter /FlateDecode /Length {} >>\nstream\n", zlib.len()),
        FONT,
    ]);
    // Splice the binary stream data into object 4 (the xref offsets of objects 5+ move, which
    // a reader must survive anyway; objects 1-4 keep theirs).
    let marker = b"stream\n\nendobj";
    let at = bytes.windows(marker.len()).position(|w| w == marker).unwrap() + b"stream\n".len();
    let tail = bytes.split_off(at);
    bytes.extend(&zlib);
    bytes.extend(b"\nendstream");
    bytes.extend(&tail);
    assert!(bytes.len() < 2 << 20);
    assert_pdf_ends_cleanly(&bytes, "flate bomb");
}

// ------------------------------------------------------------------ JSON and XML as streams

#[test]
fn a_one_terabyte_json_string_is_too_large_after_reading_about_the_text_cap() {
    // Read whole, this file could not even be held; parsed as a stream, the string is refused
    // once it cannot fit in the text.
    let (reader, read) = Generated::after(r#"{"key": ""#, 1 << 40, b'j');
    assert_too_large(
        extract_reader(FileKind::Json, reader, &cfg()),
        "extracted text",
        "1 TB JSON",
    );
    let read = read.load(Ordering::Relaxed);
    assert!(read <= (20 << 20) + (2 << 20), "read {read} bytes");
}

#[test]
fn a_one_terabyte_xml_text_node_is_too_large_after_reading_about_the_text_cap() {
    let (reader, read) = Generated::after("<?xml version=\"1.0\"?><doc><p>", 1 << 40, b'x');
    assert_too_large(
        extract_reader(FileKind::Xml, reader, &cfg()),
        "extracted text",
        "1 TB XML",
    );
    let read = read.load(Ordering::Relaxed);
    assert!(read <= (20 << 20) + (2 << 20), "read {read} bytes");
}

#[test]
fn a_100_mb_json_file_of_numbers_is_parsed_as_a_stream_to_its_few_strings() {
    // 100 MB of numbers between two strings: the text is the two strings, whatever the size.
    let mut file = tempfile::tempfile().unwrap();
    {
        use std::io::Write;
        let mut w = io::BufWriter::new(&mut file);
        w.write_all(br#"{"first": "opening words", "numbers": ["#)
            .unwrap();
        let row = b"12345.678e-3, -0.5, 1000000, ";
        for _ in 0..(100_000_000 / row.len()) {
            w.write_all(row).unwrap();
        }
        w.write_all(br#"0], "last": "closing words"}"#).unwrap();
    }
    let text = extract_reader(FileKind::Json, &mut file, &cfg()).unwrap();
    assert_eq!(text, "first\nopening words\nnumbers\nlast\nclosing words\n");
}

#[test]
fn a_100_mb_xml_file_of_small_elements_is_parsed_as_a_stream() {
    let mut file = tempfile::tempfile().unwrap();
    let rows = 100_000_000 / 40;
    {
        use std::io::Write;
        let mut w = io::BufWriter::new(&mut file);
        w.write_all(b"<?xml version=\"1.0\"?><rows>").unwrap();
        for i in 0..rows {
            write!(w, "<r a=\"1\"><v>{:>20}</v></r>", i % 7).unwrap();
        }
        w.write_all(b"<end>final words</end></rows>").unwrap();
    }
    let mut cfg = cfg();
    cfg.max_text_bytes = 64 << 20;
    let text = extract_reader(FileKind::Xml, &mut file, &cfg).unwrap();
    assert!(
        text.ends_with("final words\n"),
        "{:?}",
        &text[text.len().saturating_sub(40)..]
    );
    assert_eq!(text.matches('6').count(), rows / 7);
}
