use crate::common::{enc, reason, start};
use gdrive_emulator::DocBody;

const DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
const PPTX: &str = "application/vnd.openxmlformats-officedocument.presentationml.presentation";

#[tokio::test]
async fn docs_sheets_and_slides_export_to_office_files_and_text() {
    let env = start().await;
    let root = env.root();
    let doc = env
        .ctl
        .create_google(
            &root,
            "Plan",
            DocBody::Document {
                paragraphs: vec!["First line".into(), "Second".into()],
            },
        )
        .unwrap();
    let sheet = env
        .ctl
        .create_google(
            &root,
            "Numbers",
            DocBody::Spreadsheet {
                rows: vec![vec!["a".into(), "b".into()], vec!["1".into(), "2".into()]],
            },
        )
        .unwrap();
    let slides = env
        .ctl
        .create_google(
            &root,
            "Deck",
            DocBody::Presentation {
                slides: vec!["Hello slide".into()],
            },
        )
        .unwrap();
    for (id, mime) in [(&doc, DOCX), (&sheet, XLSX), (&slides, PPTX)] {
        let r = env
            .get(&format!("files/{id}/export?mimeType={}", enc(mime)))
            .await;
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.headers()["content-type"], mime);
        let bytes = r.bytes().await.unwrap();
        assert_eq!(&bytes[..2], b"PK", "an Office Open XML package is a zip");
    }
    let text = env
        .get(&format!("files/{doc}/export?mimeType=text/plain"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        text.as_ref(),
        "\u{feff}First line\r\nSecond".as_bytes(),
        "a byte-order mark, CRLF lines"
    );
    let csv = env
        .get(&format!("files/{sheet}/export?mimeType=text/csv"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(csv, "a,b\r\n1,2\r\n");
    let plain = env
        .get(&format!("files/{slides}/export?mimeType=text/plain"))
        .await
        .text()
        .await
        .unwrap();
    assert!(plain.contains("Hello slide"));
    let (_, meta) = env
        .json(&format!("files/{doc}?fields=exportLinks,md5Checksum,size"))
        .await;
    assert!(meta["exportLinks"][DOCX].is_string());
    assert!(
        meta.get("md5Checksum").is_none(),
        "Docs Editors files have no md5"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn unsupported_targets_non_docs_and_oversized_exports_are_refused_like_google() {
    let env = start().await;
    let root = env.root();
    let doc = env
        .ctl
        .create_google(
            &root,
            "Plan",
            DocBody::Document {
                paragraphs: vec!["x".repeat(5000)],
            },
        )
        .unwrap();
    let (s, body) = env.json(&format!("files/{doc}/export?mimeType=text/csv")).await;
    assert_eq!(s, 400);
    assert_eq!(
        body["error"]["message"],
        "The requested conversion is not supported."
    );
    let (s, body) = env.json(&format!("files/{doc}/export")).await;
    assert_eq!((s, reason(&body)), (400, "required"));
    let blob = env.ctl.create_file(&root, "a.pdf", "%PDF").unwrap();
    let (s, body) = env
        .json(&format!("files/{blob}/export?mimeType=text/plain"))
        .await;
    assert_eq!((s, reason(&body)), (403, "fileNotExportable"));
    env.ctl.set_export_limit(1000);
    let (s, body) = env.json(&format!("files/{doc}/export?mimeType=text/plain")).await;
    assert_eq!((s, reason(&body)), (403, "exportSizeLimitExceeded"));
    assert_eq!(body["error"]["message"], "This file is too large to be exported.");
    env.shutdown().await;
}
