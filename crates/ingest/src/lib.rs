//! Text extraction and chunking.
//!
//! [`extract`] turns the bytes of a supported file into plain text, synchronously; [`chunk`] splits text
//! into overlapping chunks; [`Extractor`] runs both on a bounded pool of blocking threads, contained:
//! a panic, a timeout or an oversized file becomes an [`ExtractError`] whose `Display` is a reason a
//! user can read.
//!
//! | kind | engine |
//! |---|---|
//! | PDF | pdf_oxide; empty text is [`ExtractError::NoText`] (scanned pages) |
//! | docx, pptx | zip + quick-xml by hand (`w:t`/`w:p`/`w:tab`/tables; slides in numeric order, `a:t`/`a:p`) |
//! | xlsx | calamine's streaming cell reader; rows as tab-separated cells, one block per sheet |
//! | HTML | html2text (script/style dropped); a linear tag stripper for absurdly nested markup |
//! | txt, md, csv | text, decoded from UTF-8/UTF-16 (BOM) or whatever chardetng detects; never fails |
//! | JSON | keys and string values in document order, parsed as a stream; invalid JSON or deeper than 512 levels is `Corrupt` |
//! | XML | text nodes (quick-xml, as a stream); deeper than 256 levels is `Corrupt`; DTD entities are never expanded |
//!
//! Limits ([`IngestConfig`]): extracted text is capped at `max_text_bytes`, zip-based formats at
//! `max_decompressed_bytes` (the central directory's declared total and the bytes actually inflated are
//! both checked), and every extraction at `per_file_timeout`.
//!
//! Isolation ([`Isolation`]): by default parsers run on the blocking threads of this process, under
//! `catch_unwind` and a cooperative deadline; in process mode they run in worker processes
//! ([`worker`]: `kbsync extract-worker`), which the parent kills at the per-file limit and which
//! die alone when a parser aborts, overflows its stack or exceeds the worker's memory limit
//! ([`ExtractError::WorkerDied`]); the pool starts fresh workers as needed.
//!
//! Memory: [`Extractor::process_file`] (and [`extract_reader`]) read a file without loading it
//! whole where the format allows. Plain text, JSON and XML are decoded and parsed as they are read,
//! so they cost about `max_text_bytes` whatever the file's size (and reading stops once the text
//! exceeds the cap); zip containers are read through `Seek`, one part at a time. PDF and HTML are
//! parsed from memory, so the file is read whole: HTML over `max(4 × max_text_bytes, 1 MiB)` is
//! refused before reading, PDF is bounded only by the caller's cap on file size, and pdf_oxide
//! copies the file while it opens it (the copy is freed at once), so a PDF costs twice its size
//! for a moment and its size while its pages are read. The worst case is thus about
//! `max_concurrent` × twice the largest PDF the caller accepts.

mod chunk;
#[doc(hidden)]
pub mod fuzzing;
mod html;
mod input;
mod json;
mod office;
mod pdf;
mod pool;
mod sink;
mod text;
pub mod worker;
mod xml;

use std::io::{BufReader, Read, Seek};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::input::Input;

#[doc(hidden)]
pub use chunk::chunk_spans;
pub use chunk::{TextChunk, chunk, chunk_with_offsets, normalized_text};
pub use pool::{Isolation, WorkerCommand};
#[doc(hidden)]
pub use sink::Budget;

/// Limits and chunking parameters of the ingestion pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestConfig {
    /// Extractions running at once (default: the number of cores).
    pub max_concurrent: usize,
    /// Wall-clock limit for extracting and chunking one file (default 60 s).
    pub per_file_timeout: Duration,
    /// Cap on the extracted text of one file, in bytes of UTF-8 (default 20 MiB).
    pub max_text_bytes: usize,
    /// Cap on the total inflated size of a zip-based file (docx, xlsx, pptx; default 200 MiB).
    pub max_decompressed_bytes: u64,
    /// Maximum chunk length in characters (default 1000).
    pub chunk_size: usize,
    /// Approximate overlap of consecutive chunks in characters (default 100).
    pub chunk_overlap: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_concurrent: std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            per_file_timeout: Duration::from_secs(60),
            max_text_bytes: 20 * 1024 * 1024,
            max_decompressed_bytes: 200 * 1024 * 1024,
            chunk_size: 1000,
            chunk_overlap: 100,
        }
    }
}

/// The file types kbsync extracts text from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    Pdf,
    Docx,
    Xlsx,
    Pptx,
    Txt,
    Md,
    Html,
    Json,
    Xml,
    Csv,
}

const EXTENSIONS: &[&str] = &[
    "pdf", "docx", "xlsx", "pptx", "txt", "text", "log", "md", "markdown", "html", "htm", "json", "xml",
    "csv", "tsv",
];

/// Lower-case file extensions (without the dot) that [`FileKind::detect`] recognises.
pub fn supported_extensions() -> &'static [&'static str] {
    EXTENSIONS
}

impl FileKind {
    pub const ALL: [FileKind; 10] = [
        FileKind::Pdf,
        FileKind::Docx,
        FileKind::Xlsx,
        FileKind::Pptx,
        FileKind::Txt,
        FileKind::Md,
        FileKind::Html,
        FileKind::Json,
        FileKind::Xml,
        FileKind::Csv,
    ];

    /// The kind of a file from its name's extension (case-insensitive) or, when the extension says
    /// nothing, from its MIME type (parameters such as `; charset=` are ignored). `None`: unsupported.
    pub fn detect(name: &str, mime: Option<&str>) -> Option<FileKind> {
        let ext = name.rsplit_once('.').map(|(_, e)| e.trim().to_ascii_lowercase());
        if let Some(kind) = ext.as_deref().and_then(Self::from_extension) {
            return Some(kind);
        }
        let mime = mime?.split(';').next()?.trim().to_ascii_lowercase();
        Self::from_mime(&mime)
    }

    fn from_extension(ext: &str) -> Option<FileKind> {
        Some(match ext {
            "pdf" => FileKind::Pdf,
            "docx" => FileKind::Docx,
            "xlsx" => FileKind::Xlsx,
            "pptx" => FileKind::Pptx,
            "txt" | "text" | "log" => FileKind::Txt,
            "md" | "markdown" => FileKind::Md,
            "html" | "htm" => FileKind::Html,
            "json" => FileKind::Json,
            "xml" => FileKind::Xml,
            "csv" | "tsv" => FileKind::Csv,
            _ => return None,
        })
    }

    fn from_mime(mime: &str) -> Option<FileKind> {
        if let Some(kind) = Self::ALL.into_iter().find(|k| k.mime() == mime) {
            return Some(kind);
        }
        Some(match mime {
            "application/x-pdf" => FileKind::Pdf,
            "text/x-markdown" => FileKind::Md,
            "application/xhtml+xml" => FileKind::Html,
            "text/xml" => FileKind::Xml,
            "text/tab-separated-values" => FileKind::Csv,
            m if m.ends_with("+json") => FileKind::Json,
            m if m.ends_with("+xml") => FileKind::Xml,
            _ => return None,
        })
    }

    /// The canonical MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            FileKind::Pdf => "application/pdf",
            FileKind::Docx => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            FileKind::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            FileKind::Pptx => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            FileKind::Txt => "text/plain",
            FileKind::Md => "text/markdown",
            FileKind::Html => "text/html",
            FileKind::Json => "application/json",
            FileKind::Xml => "application/xml",
            FileKind::Csv => "text/csv",
        }
    }

    /// A short lower-case name (`"pdf"`, `"docx"`, …), also the usual extension.
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Pdf => "pdf",
            FileKind::Docx => "docx",
            FileKind::Xlsx => "xlsx",
            FileKind::Pptx => "pptx",
            FileKind::Txt => "txt",
            FileKind::Md => "md",
            FileKind::Html => "html",
            FileKind::Json => "json",
            FileKind::Xml => "xml",
            FileKind::Csv => "csv",
        }
    }
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a file yielded no text. `Display` is meant for users ("the file is encrypted …").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    /// Not a format we read (e.g. a legacy .doc): convert the file.
    #[error("unsupported file: {0}")]
    Unsupported(String),
    /// The file is damaged or not what its name says.
    #[error("the file is damaged or not in the expected format: {0}")]
    Corrupt(String),
    /// Password-protected: the user must remove the protection.
    #[error("the file is encrypted (password-protected), so its text cannot be read")]
    Encrypted,
    /// Readable, but has no text layer (e.g. a scanned, image-only PDF).
    #[error("the file contains no extractable text (it may be a scanned image)")]
    NoText,
    /// Over a configured limit; the message says which.
    #[error("the file is too large to index: {0}")]
    TooLarge(String),
    /// Extraction took longer than the per-file limit.
    #[error("text extraction took longer than the limit of {}", fmt_duration(*.0))]
    Timeout(Duration),
    /// The extractor panicked (a bug in a parser, contained).
    #[error("the text extractor crashed on this file")]
    Panicked,
    /// The worker process extracting the file was stopped (process isolation): it crashed, ran out
    /// of its memory limit, overflowed its stack, was killed, or answered nonsense. The text says
    /// which; the pool starts a fresh worker for the next file.
    #[error("the text extractor was stopped: {0}")]
    WorkerDied(String),
    #[error("I/O error: {0}")]
    Io(String),
}

impl ExtractError {
    /// Whether the failure counts against the file as a strike towards its quarantine: the
    /// extractor itself timed out or crashed on it (docs/reliability.md, "Quarantine"). What the
    /// file plainly is (encrypted, damaged, too large, unsupported, without text) and our own I/O
    /// do not count.
    pub fn counts_as_strike(&self) -> bool {
        match self {
            ExtractError::Timeout(_) | ExtractError::Panicked | ExtractError::WorkerDied(_) => true,
            ExtractError::Unsupported(_)
            | ExtractError::Corrupt(_)
            | ExtractError::Encrypted
            | ExtractError::NoText
            | ExtractError::TooLarge(_)
            | ExtractError::Io(_) => false,
        }
    }
}

fn fmt_duration(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{} ms", d.as_millis())
    } else {
        format!("{} s", d.as_secs_f64())
    }
}

/// Extracts the plain text of a file, synchronously, within the limits of `cfg` (the per-file timeout is
/// enforced cooperatively: checked between pages, parts and every few thousand pieces of text).
/// Runs on the calling thread; prefer [`Extractor::process`] from async code.
pub fn extract(kind: FileKind, bytes: &[u8], cfg: &IngestConfig) -> Result<String, ExtractError> {
    extract_with_budget(
        kind,
        Input::memory(bytes),
        cfg,
        &Budget::new(cfg.per_file_timeout),
    )
}

/// [`extract`] from a stream (a file, say) rather than a buffer, with the same result for the same
/// content (from offset 0 to the end), in bounded memory where the format allows (see the crate
/// documentation). Runs on the calling thread; prefer [`Extractor::process_file`] from async code.
pub fn extract_reader<R: Read + Seek>(
    kind: FileKind,
    mut reader: R,
    cfg: &IngestConfig,
) -> Result<String, ExtractError> {
    extract_with_budget(
        kind,
        Input::Stream(&mut reader),
        cfg,
        &Budget::new(cfg.per_file_timeout),
    )
}

fn extract_with_budget(
    kind: FileKind,
    mut input: Input<'_>,
    cfg: &IngestConfig,
    budget: &Budget,
) -> Result<String, ExtractError> {
    let max = cfg.max_text_bytes;
    let text = match kind {
        FileKind::Pdf => pdf::pdf(input.into_bytes()?.into_owned(), cfg, budget)?,
        FileKind::Docx => office::docx(&mut input, cfg, budget)?,
        FileKind::Xlsx => office::xlsx(&mut input, cfg, budget)?,
        FileKind::Pptx => office::pptx(&mut input, cfg, budget)?,
        FileKind::Txt | FileKind::Md | FileKind::Csv => {
            let len = input.len()?;
            text::plain(&mut input, len, max, budget)?
        }
        FileKind::Html => html::html(input, max, budget)?,
        FileKind::Json => {
            input.rewind().map_err(input::read_error)?;
            json::extract(text::Utf8Reader::new(input), max, budget)?
        }
        FileKind::Xml => {
            input.rewind().map_err(input::read_error)?;
            xml::extract(text::Utf8Reader::new(input), max, budget)?
        }
    };
    budget.check()?;
    Ok(text)
}

/// Buffer of a file being extracted (zip parsing does many small reads and seeks).
const READ_BUFFER: usize = 64 << 10;

struct Inner {
    cfg: IngestConfig,
    permits: Arc<Semaphore>,
    /// `Some` in process mode.
    workers: Option<pool::WorkerPool>,
}

/// A bounded pool for extraction + chunking. Cheap to clone; clones share the pool.
///
/// In [`Isolation::Thread`] mode parsers run on blocking threads of this process; in
/// [`Isolation::Process`] mode they run in worker processes (see [`worker`]) that the parent kills
/// at the per-file time limit, and that die alone when they crash or exceed their memory limit.
#[derive(Clone)]
pub struct Extractor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Extractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extractor")
            .field("cfg", &self.inner.cfg)
            .field("process_isolation", &self.inner.workers.is_some())
            .finish_non_exhaustive()
    }
}

impl Extractor {
    /// An extractor running parsers on this process's blocking threads ([`Isolation::Thread`]).
    pub fn new(cfg: IngestConfig) -> Self {
        Self::with_isolation(cfg, Isolation::Thread)
    }

    /// An extractor running parsers where `isolation` says. Worker processes are started lazily.
    pub fn with_isolation(cfg: IngestConfig, isolation: Isolation) -> Self {
        let permits = Arc::new(Semaphore::new(cfg.max_concurrent.max(1)));
        let workers = match isolation {
            Isolation::Thread => None,
            Isolation::Process(command) => Some(pool::WorkerPool::new(command)),
        };
        Self {
            inner: Arc::new(Inner {
                cfg,
                permits,
                workers,
            }),
        }
    }

    pub fn config(&self) -> &IngestConfig {
        &self.inner.cfg
    }

    /// Whether parsers run in worker processes.
    pub fn is_process_isolated(&self) -> bool {
        self.inner.workers.is_some()
    }

    /// Kills and reaps the idle worker processes (process mode; a no-op otherwise). Dropping the
    /// last clone kills them too, without waiting for them.
    pub async fn shutdown(&self) {
        if let Some(workers) = &self.inner.workers {
            workers.shutdown().await;
        }
    }

    /// The process ids of the idle workers (process mode), for tests and diagnostics.
    #[doc(hidden)]
    pub fn idle_worker_pids(&self) -> Vec<u32> {
        self.inner
            .workers
            .as_ref()
            .map(pool::WorkerPool::idle_pids)
            .unwrap_or_default()
    }

    /// Waits for a permit, extracts (in a worker process, or on a blocking thread under
    /// `catch_unwind`) with the per-file timeout, then chunks. Never panics and never blocks the
    /// async runtime.
    ///
    /// The permit is held until the blocking work has really ended, so at most `max_concurrent`
    /// extractions ever run at once; after a timeout the caller gets `Timeout` at once while the
    /// extraction notices its cancelled budget at its next check and stops (in process mode the
    /// worker is killed).
    pub async fn process(&self, kind: FileKind, bytes: bytes::Bytes) -> Result<Vec<TextChunk>, ExtractError> {
        if let Some(workers) = &self.inner.workers {
            let request = worker::Request {
                kind,
                cfg: self.inner.cfg.clone(),
                source: worker::Source::Bytes(bytes.to_vec()),
            };
            return workers.extract(&self.inner.permits, request).await;
        }
        self.extract_and_chunk(move |cfg, budget| {
            extract_with_budget(kind, Input::memory(&bytes), cfg, budget)
        })
        .await
    }

    /// [`Extractor::process`] for a file on disk, which is opened by the extraction (on the
    /// blocking thread, or in the worker) and read in bounded memory where the format allows (see
    /// the crate documentation). A file that cannot be opened or read is an [`ExtractError::Io`].
    pub async fn process_file(
        &self,
        kind: FileKind,
        path: impl Into<PathBuf>,
    ) -> Result<Vec<TextChunk>, ExtractError> {
        let path = path.into();
        if let Some(workers) = &self.inner.workers {
            let request = worker::Request {
                kind,
                cfg: self.inner.cfg.clone(),
                source: worker::Source::Path(path),
            };
            return workers.extract(&self.inner.permits, request).await;
        }
        self.extract_and_chunk(move |cfg, budget| {
            let file = std::fs::File::open(&path).map_err(|e| ExtractError::Io(e.to_string()))?;
            let mut reader = BufReader::with_capacity(READ_BUFFER, file);
            extract_with_budget(kind, Input::Stream(&mut reader), cfg, budget)
        })
        .await
    }

    async fn extract_and_chunk<F>(&self, extract: F) -> Result<Vec<TextChunk>, ExtractError>
    where
        F: FnOnce(&IngestConfig, &Budget) -> Result<String, ExtractError> + Send + 'static,
    {
        let cfg = self.inner.cfg.clone();
        self.run(move |budget| {
            let text = extract(&cfg, budget)?;
            budget.check()?;
            Ok(chunk_with_offsets(&text, cfg.chunk_size, cfg.chunk_overlap))
        })
        .await
    }

    /// Test hook: runs `work` exactly as [`Extractor::process`] runs an extraction in thread mode
    /// (pool permit, blocking thread, `catch_unwind`, timeout), whatever this extractor's mode. `work` should return once `budget.is_cancelled()`.
    #[doc(hidden)]
    pub async fn run<T, F>(&self, work: F) -> Result<T, ExtractError>
    where
        T: Send + 'static,
        F: FnOnce(&Budget) -> Result<T, ExtractError> + Send + 'static,
    {
        let timeout = self.inner.cfg.per_file_timeout;
        let permit = Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .map_err(|_| ExtractError::Io("the extraction pool is closed".into()))?;
        // The deadline starts once a permit is held: waiting in the queue does not count.
        let budget = Budget::new(timeout);
        let worker_budget = budget.clone();
        let handle = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            std::panic::catch_unwind(AssertUnwindSafe(|| work(&worker_budget)))
                .unwrap_or(Err(ExtractError::Panicked))
        });
        match tokio::time::timeout(timeout, handle).await {
            Ok(Ok(result)) => result,
            Ok(Err(join_error)) => {
                tracing::error!(error = %join_error, "extraction task failed");
                Err(ExtractError::Panicked)
            }
            Err(_) => {
                budget.cancel();
                Err(ExtractError::Timeout(timeout))
            }
        }
    }
}
