//! Damaged, hostile and oversized inputs fail cleanly with the right error (and never panic or hang).

use std::time::{Duration, Instant};

use flate2::{Compress, Compression, Crc, FlushCompress};
use kbsync_fixtures as fx;
use kbsync_ingest::{ExtractError, FileKind, IngestConfig, extract, extract_reader};

fn cfg() -> IngestConfig {
    IngestConfig::default()
}

// ------------------------------------------------------------------ PDF

#[test]
fn truncated_pdf_gives_partial_text_or_corrupt_without_panic() {
    let corpus = fx::text_corpus(11, 6000);
    let bytes = fx::pdf(&corpus.split("\n\n").collect::<Vec<_>>());
    let cut = &bytes[..bytes.len() * 6 / 10];
    match extract(FileKind::Pdf, cut, &cfg()) {
        Ok(text) => {
            // the pages that are present come out
            let first_word = corpus.split_whitespace().next().unwrap();
            assert!(text.contains(first_word), "{text}");
            assert!(text.len() < corpus.len());
        }
        Err(e) => assert!(
            matches!(e, ExtractError::Corrupt(_) | ExtractError::NoText),
            "{e:?}"
        ),
    }
}

#[test]
fn garbage_bytes_named_pdf_are_corrupt() {
    let garbage: Vec<u8> = (0..50_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let err = extract(FileKind::Pdf, &garbage, &cfg()).unwrap_err();
    assert!(matches!(err, ExtractError::Corrupt(_)), "{err:?}");
    let err = extract(FileKind::Pdf, b"", &cfg()).unwrap_err();
    assert!(matches!(err, ExtractError::Corrupt(_)), "{err:?}");
}

#[test]
fn encrypted_pdf_is_reported_as_encrypted() {
    let bytes = fx::pdf_encrypted_stub(&["secret words here"]);
    let err = extract(FileKind::Pdf, &bytes, &cfg()).unwrap_err();
    assert_eq!(err, ExtractError::Encrypted);
    assert!(err.to_string().contains("encrypted"));
}

#[test]
fn image_only_pdf_has_no_text() {
    let err = extract(FileKind::Pdf, &fx::pdf_image_only(3), &cfg()).unwrap_err();
    assert_eq!(err, ExtractError::NoText);
}

// ------------------------------------------------------------------ zip bombs

/// A hand-written zip (so that declared sizes can lie). `(name, method, crc, data, declared_size)`.
pub(super) fn raw_zip(entries: &[(&str, u16, u32, Vec<u8>, u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, method, crc, data, size) in entries {
        let offset = out.len() as u32;
        let header = |sig: u32, central: bool| {
            let mut h = Vec::new();
            h.extend(sig.to_le_bytes());
            if central {
                h.extend(20u16.to_le_bytes()); // version made by
            }
            h.extend(20u16.to_le_bytes()); // version needed
            h.extend(0u16.to_le_bytes()); // flags
            h.extend(method.to_le_bytes());
            h.extend(0u16.to_le_bytes()); // time
            h.extend(0x21u16.to_le_bytes()); // date 1980-01-01
            h.extend(crc.to_le_bytes());
            h.extend((data.len() as u32).to_le_bytes());
            h.extend(size.to_le_bytes());
            h.extend((name.len() as u16).to_le_bytes());
            h.extend(0u16.to_le_bytes()); // extra
            if central {
                h.extend(0u16.to_le_bytes()); // comment
                h.extend(0u16.to_le_bytes()); // disk
                h.extend(0u16.to_le_bytes()); // internal attrs
                h.extend(0u32.to_le_bytes()); // external attrs
                h.extend(offset.to_le_bytes());
            }
            h.extend(name.as_bytes());
            h
        };
        out.extend(header(0x0403_4b50, false));
        out.extend(data);
        central.extend(header(0x0201_4b50, true));
    }
    let cd_offset = out.len() as u32;
    out.extend(&central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

pub(super) fn stored(name: &'static str, text: &str) -> (&'static str, u16, u32, Vec<u8>, u32) {
    let mut crc = Crc::new();
    crc.update(text.as_bytes());
    (name, 0, crc.sum(), text.as_bytes().to_vec(), text.len() as u32)
}

/// Raw deflate of `mib` MiB of zeros, built by repeating one fully-flushed 1 MiB block (a full flush
/// makes blocks independent), so building a 1 GiB bomb takes milliseconds. Returns (data, crc).
pub(super) fn deflated_zeros(mib: usize) -> (Vec<u8>, u32) {
    let zeros = vec![0u8; 1 << 20];
    let mut c = Compress::new(Compression::best(), false);
    let mut block = Vec::with_capacity(1 << 16);
    c.compress_vec(&zeros, &mut block, FlushCompress::Full).unwrap();
    assert_eq!(c.total_in(), 1 << 20);
    let mut data = Vec::with_capacity(block.len() * mib + 2);
    let mut one = Crc::new();
    one.update(&zeros);
    let mut crc = Crc::new();
    for _ in 0..mib {
        data.extend_from_slice(&block);
        crc.combine(&one);
    }
    data.extend([0x03, 0x00]); // final, empty fixed-Huffman block
    (data, crc.sum())
}

pub(super) const CT: &str = r#"<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/></Types>"#;

fn bomb_docx(declared: Option<u32>) -> Vec<u8> {
    let (data, crc) = deflated_zeros(1024);
    let size = declared.unwrap_or(1 << 30);
    raw_zip(&[
        stored("[Content_Types].xml", CT),
        ("word/document.xml", 8, crc, data, size),
    ])
}

#[test]
#[expect(
    clippy::disallowed_methods,
    reason = "bounds the extraction's real running time"
)]
fn zip_bomb_docx_is_too_large() {
    let started = Instant::now();
    let bytes = bomb_docx(None);
    assert!(
        bytes.len() < 2 << 20,
        "the bomb itself stays small: {}",
        bytes.len()
    );
    let err = extract(FileKind::Docx, &bytes, &cfg()).unwrap_err();
    assert!(
        matches!(&err, ExtractError::TooLarge(m) if m.contains("archive")),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn zip_bomb_with_lying_sizes_is_too_large() {
    // Declares 1 000 bytes but inflates to 1 GiB: the bytes actually read are what count.
    let bytes = bomb_docx(Some(1000));
    let err = extract(FileKind::Docx, &bytes, &cfg()).unwrap_err();
    assert!(matches!(err, ExtractError::TooLarge(_)), "{err:?}");
}

#[test]
fn zip_bombs_read_from_a_file_are_too_large() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("bomb.docx", bomb_docx(None)),
        ("liar.docx", bomb_docx(Some(1000))),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let err = extract_reader(FileKind::Docx, file, &cfg()).unwrap_err();
        assert!(matches!(err, ExtractError::TooLarge(_)), "{name}: {err:?}");
    }
}

#[test]
fn zip_bomb_xlsx_and_pptx_are_too_large() {
    let (data, crc) = deflated_zeros(300);
    let xlsx = raw_zip(&[
        stored("[Content_Types].xml", CT),
        ("xl/worksheets/sheet1.xml", 8, crc, data.clone(), 300 << 20),
    ]);
    assert!(matches!(
        extract(FileKind::Xlsx, &xlsx, &cfg()),
        Err(ExtractError::TooLarge(_))
    ));
    let pptx = raw_zip(&[
        stored("[Content_Types].xml", CT),
        ("ppt/slides/slide1.xml", 8, crc, data, 300 << 20),
    ]);
    assert!(matches!(
        extract(FileKind::Pptx, &pptx, &cfg()),
        Err(ExtractError::TooLarge(_))
    ));
}

#[test]
fn decompressed_cap_is_configurable() {
    let corpus = fx::text_corpus(5, 20_000);
    let bytes = fx::docx(&corpus.split("\n\n").collect::<Vec<_>>());
    let small = IngestConfig {
        max_decompressed_bytes: 10_000,
        ..cfg()
    };
    assert!(matches!(
        extract(FileKind::Docx, &bytes, &small),
        Err(ExtractError::TooLarge(_))
    ));
    assert!(extract(FileKind::Docx, &bytes, &cfg()).is_ok());
}

#[test]
fn garbage_office_files_are_corrupt() {
    for kind in [FileKind::Docx, FileKind::Xlsx, FileKind::Pptx] {
        let err = extract(kind, b"this is not a zip file at all", &cfg()).unwrap_err();
        assert!(matches!(err, ExtractError::Corrupt(_)), "{kind:?}: {err:?}");
    }
    // A zip that is not a Word document
    let zip = raw_zip(&[stored("hello.txt", "hello")]);
    assert!(matches!(
        extract(FileKind::Docx, &zip, &cfg()),
        Err(ExtractError::Corrupt(_))
    ));
    // A docx cut in half
    let docx = fx::docx(&["some text"; 50]);
    assert!(matches!(
        extract(FileKind::Docx, &docx[..docx.len() / 2], &cfg()),
        Err(ExtractError::Corrupt(_))
    ));
}

#[test]
fn password_protected_office_file_is_encrypted() {
    // Encrypted OOXML is an OLE compound file holding an "EncryptedPackage" stream.
    let mut cfb = vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
    cfb.extend([0u8; 504]);
    cfb.extend("EncryptedPackage".encode_utf16().flat_map(u16::to_le_bytes));
    cfb.extend([0u8; 512]);
    for kind in [FileKind::Docx, FileKind::Xlsx, FileKind::Pptx] {
        assert_eq!(
            extract(kind, &cfb, &cfg()),
            Err(ExtractError::Encrypted),
            "{kind:?}"
        );
    }
    // A legacy .doc (compound file without encryption) is unsupported, with a hint.
    let legacy = [&cfb[..512], &[0u8; 1024][..]].concat();
    assert!(matches!(
        extract(FileKind::Docx, &legacy, &cfg()),
        Err(ExtractError::Unsupported(_))
    ));
}

#[test]
#[expect(
    clippy::disallowed_methods,
    reason = "bounds the extraction's real running time"
)]
fn xlsx_with_huge_sparse_dimensions_streams_cells() {
    // A1 and XFD1048576: a dense range would be 17 billion cells.
    let mut rows = vec![vec!["first".to_string()]];
    rows.resize(3, Vec::new());
    let mut bytes = fx::xlsx(&[("S", rows)]);
    // Patch the sheet through a rebuilt zip: simplest is to write the sheet XML by hand.
    let sheet = r#"<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>first</t></is></c></row><row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>last</t></is></c></row></sheetData></worksheet>"#;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.clone())).unwrap();
    let mut entries = Vec::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        let mut body = String::new();
        std::io::Read::read_to_string(&mut f, &mut body).unwrap();
        if name == "xl/worksheets/sheet1.xml" {
            body = sheet.to_string();
        }
        entries.push((name, body));
    }
    let owned: Vec<(&str, u16, u32, Vec<u8>, u32)> = entries
        .iter()
        .map(|(n, b)| {
            let mut crc = Crc::new();
            crc.update(b.as_bytes());
            (n.as_str(), 0u16, crc.sum(), b.as_bytes().to_vec(), b.len() as u32)
        })
        .collect();
    bytes = raw_zip(&owned);
    let started = Instant::now();
    let text = extract(FileKind::Xlsx, &bytes, &cfg()).unwrap();
    assert!(text.contains("first") && text.contains("last"), "{text:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

// ------------------------------------------------------------------ text formats

#[test]
fn invalid_utf8_text_is_decoded_not_rejected() {
    // "Übergabe naïve café" in windows-1252
    let latin1: Vec<u8> = fx::NON_ASCII_SAMPLE.chars().map(|c| c as u32 as u8).collect();
    let mut bytes = b"Plain words and then ".to_vec();
    bytes.extend(&latin1);
    let text = extract(FileKind::Txt, &bytes, &cfg()).unwrap();
    assert!(text.contains(fx::NON_ASCII_SAMPLE), "{text:?}");
    // Bytes that are no text in any encoding still give something, never an error.
    let junk = [0xFFu8, 0xFE, 0xFD, b'a', 0x80, 0x81, b'b', 0xC3];
    let text = extract(FileKind::Txt, &junk[2..], &cfg()).unwrap();
    assert!(text.contains('a') && text.contains('b'));
    assert!(extract(FileKind::Csv, &[0xC3, 0x28, b',', b'x'], &cfg()).is_ok());
}

#[test]
fn deeply_nested_xml_is_corrupt_without_stack_overflow() {
    let depth = 100_000;
    let xml = format!("{}text{}", "<a>".repeat(depth), "</a>".repeat(depth));
    let err = extract(FileKind::Xml, xml.as_bytes(), &cfg()).unwrap_err();
    assert!(
        matches!(&err, ExtractError::Corrupt(m) if m.contains("nested too deeply")),
        "{err:?}"
    );
    // The same inside a docx
    let doc = format!(
        r#"<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">{}</w:document>"#,
        "<w:p>".repeat(depth)
    );
    let docx = raw_zip(&[
        stored("[Content_Types].xml", CT),
        stored("word/document.xml", &doc),
    ]);
    let err = extract(FileKind::Docx, &docx, &cfg()).unwrap_err();
    assert!(
        matches!(&err, ExtractError::Corrupt(m) if m.contains("nested too deeply")),
        "{err:?}"
    );
}

#[test]
#[expect(
    clippy::disallowed_methods,
    reason = "bounds the extraction's real running time"
)]
fn xml_entity_expansion_does_not_blow_up() {
    let mut dtd = String::from("<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">");
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
    dtd.push_str("]><lolz>start &lol9; end</lolz>");
    let started = Instant::now();
    let text = extract(FileKind::Xml, dtd.as_bytes(), &cfg()).unwrap();
    assert!(text.len() < 100, "{text:?}");
    assert!(text.contains("start") && text.contains("end"));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn malformed_xml_is_corrupt() {
    let err = extract(FileKind::Xml, b"<a><b>text</a>", &cfg()).unwrap_err();
    assert!(matches!(err, ExtractError::Corrupt(_)), "{err:?}");
}

#[test]
fn invalid_json_is_corrupt() {
    for bad in [&b"{\"a\": "[..], b"not json", b"{\"a\": 1,}", b"\xff\xfe{"] {
        let err = extract(FileKind::Json, bad, &cfg()).unwrap_err();
        assert!(matches!(err, ExtractError::Corrupt(_)), "{err:?}");
    }
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(
        extract(FileKind::Json, deep.as_bytes(), &cfg()),
        Err(ExtractError::Corrupt(_))
    ));
}

#[test]
fn deeply_nested_html_does_not_overflow_the_stack() {
    let depth = 100_000;
    let html = format!(
        "<html><body>{}deep text{}</body></html>",
        "<div>".repeat(depth),
        "</div>".repeat(depth)
    );
    let text = extract(FileKind::Html, html.as_bytes(), &cfg()).unwrap();
    assert!(text.contains("deep text"));
}

#[test]
fn text_over_the_cap_is_too_large() {
    let small = IngestConfig {
        max_text_bytes: 10_000,
        ..cfg()
    };
    let big = fx::text_corpus(9, 5_000);
    for kind in [FileKind::Txt, FileKind::Md, FileKind::Csv] {
        let err = extract(kind, big.as_bytes(), &small).unwrap_err();
        assert!(
            matches!(&err, ExtractError::TooLarge(m) if m.contains("extracted text")),
            "{err:?}"
        );
    }
    let paras: Vec<&str> = big.split("\n\n").collect();
    let cases = [
        (FileKind::Docx, fx::docx(&paras)),
        (FileKind::Pptx, fx::pptx(&paras)),
        (FileKind::Pdf, fx::pdf(&paras)),
        (FileKind::Html, fx::html("t", &paras).into_bytes()),
        (FileKind::Json, fx::json_document("t", &paras).into_bytes()),
        (FileKind::Xml, fx::xml_document("t", &paras).into_bytes()),
        (
            FileKind::Xlsx,
            fx::xlsx(&[("s", paras.iter().map(|p| vec![p.to_string()]).collect())]),
        ),
    ];
    for (kind, bytes) in cases {
        let err = extract(kind, &bytes, &small).unwrap_err();
        assert!(matches!(err, ExtractError::TooLarge(_)), "{kind:?}: {err:?}");
        assert!(
            extract(kind, &bytes, &cfg()).is_ok(),
            "{kind:?} within the default cap"
        );
    }
}
