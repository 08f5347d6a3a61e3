//! Extracting from a file (`Extractor::process_file`, `extract_reader`) gives what extracting from
//! the same bytes in memory gives, and reads plain text incrementally: a text over the cap fails
//! without the rest of the file being read.

use std::borrow::Cow;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use kbsync_fixtures as fx;
use kbsync_ingest::{ExtractError, Extractor, FileKind, IngestConfig, extract, extract_reader};

const MIB: usize = 1 << 20;

/// One small file of every supported type, plus inputs that fail.
fn fixtures() -> Vec<(&'static str, FileKind, Vec<u8>)> {
    let corpus = fx::text_corpus(31, 3000);
    let paras: Vec<&str> = corpus.split("\n\n").collect();
    let rows: Vec<Vec<String>> = paras
        .iter()
        .map(|p| vec![p.to_string(), fx::NON_ASCII_SAMPLE.to_string()])
        .collect();
    let latin1: Vec<u8> = format!("{corpus}\n{}", fx::NON_ASCII_SAMPLE)
        .chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect();
    vec![
        ("pdf", FileKind::Pdf, fx::pdf(&paras)),
        ("docx", FileKind::Docx, fx::docx(&paras)),
        ("xlsx", FileKind::Xlsx, fx::xlsx(&[("Sheet", rows)])),
        ("pptx", FileKind::Pptx, fx::pptx(&paras)),
        ("txt", FileKind::Txt, corpus.clone().into_bytes()),
        ("latin1.txt", FileKind::Txt, latin1),
        ("md", FileKind::Md, fx::markdown("Title", &paras).into_bytes()),
        (
            "csv",
            FileKind::Csv,
            fx::csv(&[vec!["a,b".into(), fx::NON_ASCII_SAMPLE.into()]]).into_bytes(),
        ),
        ("html", FileKind::Html, fx::html("Title", &paras).into_bytes()),
        (
            "json",
            FileKind::Json,
            fx::json_document("Title", &paras).into_bytes(),
        ),
        (
            "xml",
            FileKind::Xml,
            fx::xml_document("Title", &paras).into_bytes(),
        ),
        ("image-only.pdf", FileKind::Pdf, fx::pdf_image_only(2)),
        ("garbage.docx", FileKind::Docx, b"not a zip".to_vec()),
        ("empty.txt", FileKind::Txt, Vec::new()),
    ]
}

#[tokio::test]
async fn file_extraction_gives_the_same_chunks_as_bytes_for_every_type() {
    let dir = tempfile::tempdir().unwrap();
    let ex = Extractor::new(IngestConfig {
        chunk_size: 300,
        chunk_overlap: 30,
        ..IngestConfig::default()
    });
    let mut kinds = std::collections::HashSet::new();
    for (name, kind, bytes) in fixtures() {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let from_bytes = ex.process(kind, Bytes::from(bytes)).await;
        let from_file = ex.process_file(kind, &path).await;
        assert_eq!(from_file, from_bytes, "{name}");
        if from_bytes.as_ref().is_ok_and(|chunks| !chunks.is_empty()) {
            kinds.insert(kind);
        }
    }
    assert_eq!(kinds.len(), FileKind::ALL.len(), "every type extracted");
}

/// The text extraction as it was when the whole file was decoded at once: the reference the
/// incremental decoder must match. `Err(())` is "the text exceeds the cap".
fn whole_buffer_plain_text(bytes: &[u8], max: usize) -> Result<String, ()> {
    fn decode(bytes: &[u8]) -> Cow<'_, str> {
        if let Some((enc, bom_len)) = encoding_rs::Encoding::for_bom(bytes) {
            return enc.decode_without_bom_handling(&bytes[bom_len..]).0;
        }
        if let Ok(s) = std::str::from_utf8(bytes) {
            return Cow::Borrowed(s);
        }
        let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
        let sample = &bytes[..bytes.len().min(1 << 20)];
        detector.feed(sample, sample.len() == bytes.len());
        let enc = detector.guess(None, chardetng::Utf8Detection::Allow);
        enc.decode(bytes).0
    }
    if bytes.len() > max.saturating_mul(3) {
        return Err(());
    }
    let text = decode(bytes);
    if text.len() > max {
        return Err(());
    }
    Ok(text
        .chars()
        .map(|c| {
            if c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\u{c}') {
                ' '
            } else {
                c
            }
        })
        .collect())
}

fn repeat_to(unit: &[u8], len: usize) -> Vec<u8> {
    unit.iter().copied().cycle().take(len).collect()
}

/// Texts around the 1 MiB the encoding is detected from, in every way the decision can go.
fn tricky_texts() -> Vec<(&'static str, Vec<u8>)> {
    let words = fx::text_corpus(32, 400_000).into_bytes();
    let utf8_unit = "Übergabe naïve café 日本語 — ".as_bytes();
    let mut cases = Vec::new();
    // UTF-8 with a three-byte character straddling the end of the sample.
    let mut straddle = repeat_to(b"a", MIB - 1);
    straddle.extend("日本語".as_bytes());
    straddle.extend(&words[..200_000]);
    cases.push(("utf-8 character across the sample's end", straddle));
    cases.push(("long multi-byte utf-8", repeat_to(utf8_unit, 3 * MIB + 7)));
    // Valid UTF-8 in the sample, invalid bytes far after it.
    let mut late = words[..2 * MIB].to_vec();
    late.extend([0xFF, 0xC3, b'x', 0x80]);
    late.extend(&words[..1000]);
    cases.push(("ascii sample, invalid bytes after it", late));
    let mut late_utf8 = repeat_to(utf8_unit, 2 * MIB);
    late_utf8.extend([0xE6, 0x97, b'!', 0xFE]);
    late_utf8.extend(repeat_to(utf8_unit, 5000));
    cases.push(("utf-8 sample, invalid bytes after it", late_utf8));
    // Truncated at the very end inside a character.
    let mut truncated = repeat_to(utf8_unit, 2 * MIB);
    truncated.extend([0xE6, 0x97]);
    cases.push(("utf-8 cut inside the last character", truncated));
    // Legacy encodings, detected from the sample.
    let latin: Vec<u8> = String::from_utf8_lossy(&repeat_to(utf8_unit, 3 * MIB / 2))
        .chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect();
    cases.push(("windows-1252", latin));
    let japanese = "これは日本語の文章です。検索できるように分割します。".repeat(40_000);
    let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode(&japanese);
    cases.push(("shift_jis", sjis.into_owned()));
    // BOMs.
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(
        "Zeile mit Ümlauten\u{1}\n"
            .repeat(80_000)
            .encode_utf16()
            .flat_map(u16::to_le_bytes),
    );
    utf16.push(b'x'); // an odd byte at the end
    cases.push(("utf-16le with bom", utf16));
    let mut utf16be = vec![0xFE, 0xFF];
    utf16be.extend("short".encode_utf16().flat_map(u16::to_be_bytes));
    cases.push(("short utf-16be with bom", utf16be));
    let mut bom8 = vec![0xEF, 0xBB, 0xBF];
    bom8.extend(&words[..MIB + 10]);
    cases.push(("utf-8 with bom", bom8));
    // Control characters (C0 and C1) are blanked.
    let controls = repeat_to("a\u{0}b\u{85}c\u{7}\t\u{c}\r\n".as_bytes(), MIB + 100);
    cases.push(("control characters", controls));
    cases.push(("small invalid", vec![0xC3, 0x28, b',', b'x']));
    cases.push(("empty", Vec::new()));
    cases
}

#[test]
fn incremental_text_decoding_matches_decoding_the_whole_buffer() {
    for max in [20 * MIB, 2 * MIB] {
        let cfg = IngestConfig {
            max_text_bytes: max,
            ..IngestConfig::default()
        };
        for (name, bytes) in tricky_texts() {
            let expected = whole_buffer_plain_text(&bytes, max);
            for (how, got) in [
                ("bytes", extract(FileKind::Txt, &bytes, &cfg)),
                ("reader", extract_reader(FileKind::Txt, Cursor::new(&bytes), &cfg)),
            ] {
                match (&expected, got) {
                    (Ok(want), Ok(text)) => {
                        assert!(text == *want, "{name} ({how}, cap {max}): the texts differ")
                    }
                    (Err(()), Err(ExtractError::TooLarge(m))) => {
                        assert!(m.contains("extracted text"), "{name}: {m}")
                    }
                    (want, got) => panic!(
                        "{name} ({how}, cap {max}): expected {}, got {got:?}",
                        if want.is_ok() { "text" } else { "the cap error" }
                    ),
                }
            }
        }
    }
}

/// A `Read + Seek` over memory that counts the bytes it hands out.
struct CountingReader {
    inner: Cursor<Vec<u8>>,
    read: Arc<AtomicU64>,
}

impl CountingReader {
    fn new(bytes: Vec<u8>) -> (Self, Arc<AtomicU64>) {
        let read = Arc::new(AtomicU64::new(0));
        let reader = Self {
            inner: Cursor::new(bytes),
            read: Arc::clone(&read),
        };
        (reader, read)
    }
}

impl Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }
}

impl Seek for CountingReader {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

#[test]
fn counting_reader_counts_every_byte_read() {
    let (mut reader, read) = CountingReader::new(vec![7; 100]);
    let mut all = Vec::new();
    reader.read_to_end(&mut all).unwrap();
    reader.rewind().unwrap();
    reader.read_exact(&mut [0; 10]).unwrap();
    assert_eq!(read.load(Ordering::SeqCst), 110);
}

#[test]
fn text_over_the_cap_fails_without_reading_the_rest_of_the_file() {
    let cfg = IngestConfig {
        max_text_bytes: 2 * MIB,
        ..IngestConfig::default()
    };
    // Just under three times the cap: not refused from its size alone, so it must be read.
    let len = 6 * MIB - 1;
    for kind in [FileKind::Txt, FileKind::Md, FileKind::Csv] {
        let (reader, read) = CountingReader::new(repeat_to(b"some words, ", len));
        let err = extract_reader(kind, reader, &cfg).unwrap_err();
        assert!(
            matches!(&err, ExtractError::TooLarge(m) if m.contains("extracted text exceeds the limit of 2 MiB")),
            "{err:?}"
        );
        let read = read.load(Ordering::SeqCst);
        // The 1 MiB sample, then pieces of 64 KiB until the text passes the cap.
        assert!(read > 2 * MIB as u64, "{read}");
        assert!(read <= (2 * MIB + 1 + (64 << 10)) as u64, "read {read} of {len}");
    }
}

#[test]
fn text_over_three_times_the_cap_is_refused_before_reading() {
    let cfg = IngestConfig {
        max_text_bytes: MIB,
        ..IngestConfig::default()
    };
    let (reader, read) = CountingReader::new(vec![b'a'; 3 * MIB + 1]);
    let err = extract_reader(FileKind::Txt, reader, &cfg).unwrap_err();
    assert!(
        matches!(&err, ExtractError::TooLarge(m) if m.contains("extracted text")),
        "{err:?}"
    );
    assert_eq!(read.load(Ordering::SeqCst), 0);
}

#[test]
fn html_over_its_size_bound_is_refused_before_reading() {
    let cfg = IngestConfig {
        max_text_bytes: MIB,
        ..IngestConfig::default()
    };
    let (reader, read) = CountingReader::new(vec![b'a'; 4 * MIB + 1]);
    let err = extract_reader(FileKind::Html, reader, &cfg).unwrap_err();
    assert!(matches!(&err, ExtractError::TooLarge(_)), "{err:?}");
    assert_eq!(read.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn text_file_over_the_cap_fails_with_the_cap_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.txt");
    std::fs::write(&path, repeat_to(b"lorem ipsum ", 3 * MIB - 1)).unwrap();
    let ex = Extractor::new(IngestConfig {
        max_text_bytes: MIB,
        ..IngestConfig::default()
    });
    let err = ex.process_file(FileKind::Txt, &path).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the file is too large to index: the extracted text exceeds the limit of 1 MiB"
    );
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test]
async fn a_corrupt_zip_on_disk_fails_that_file_only() {
    let dir = tempfile::tempdir().unwrap();
    let good = fx::docx(&["first paragraph", "second paragraph"]);
    let truncated = write(dir.path(), "cut.docx", &good[..good.len() / 2]);
    let garbage = write(
        dir.path(),
        "garbage.xlsx",
        b"PK\x03\x04 and then nothing of a zip",
    );
    let good = write(dir.path(), "good.docx", &good);
    let ex = Extractor::new(IngestConfig {
        max_concurrent: 2,
        ..IngestConfig::default()
    });
    let (cut, junk, fine) = tokio::join!(
        ex.process_file(FileKind::Docx, &truncated),
        ex.process_file(FileKind::Xlsx, &garbage),
        ex.process_file(FileKind::Docx, &good),
    );
    assert!(matches!(cut, Err(ExtractError::Corrupt(_))), "{cut:?}");
    assert!(matches!(junk, Err(ExtractError::Corrupt(_))), "{junk:?}");
    assert!(fine.unwrap().iter().any(|c| c.text.contains("second paragraph")));
}

#[tokio::test]
async fn a_missing_file_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let ex = Extractor::new(IngestConfig::default());
    let err = ex
        .process_file(FileKind::Pdf, dir.path().join("gone.pdf"))
        .await
        .unwrap_err();
    assert!(matches!(err, ExtractError::Io(_)), "{err:?}");
}

#[test]
fn encrypted_office_stream_is_found_across_read_pieces() {
    // The stream name may straddle two of the pieces a compound file is scanned in.
    let needle: Vec<u8> = "EncryptedPackage"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    for at in [512, (64 << 10) - 5, (64 << 10) + 20, 300_000] {
        let mut cfb = vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
        cfb.resize(at, 0);
        cfb.extend(&needle);
        cfb.resize(at + 100_000, 0);
        let cfg = IngestConfig::default();
        assert_eq!(
            extract_reader(FileKind::Docx, Cursor::new(&cfb), &cfg),
            Err(ExtractError::Encrypted),
            "name at {at}"
        );
        assert_eq!(extract(FileKind::Docx, &cfb, &cfg), Err(ExtractError::Encrypted));
    }
}
