//! The extraction worker: a separate process that runs the parsers, so that a parser stuck in a
//! loop, overflowing its stack, aborting or allocating without bound hurts only itself.
//!
//! The parent ([`crate::Extractor`] in process mode) starts workers (`kbsync extract-worker`) and
//! speaks to each over its stdin/stdout, one file at a time, many files per worker. Every message
//! is a frame: a little-endian `u32` length, then that many bytes.
//!
//! A request is `version (u8) | kind (u8) | per_file_timeout ms (u64) | max_text_bytes (u64) |
//! max_decompressed_bytes (u64) | chunk_size (u64) | chunk_overlap (u64) | source`, where the source
//! is `0 | path bytes` (a file on disk) or `1 | content bytes`, each running to the frame's end.
//!
//! A response is `0 | count (u32) | count × (start (u64) | end (u64) | len (u32) | text)` (the
//! chunks) or `1 | code (u8) | detail` (an [`ExtractError`]; the detail is a length-prefixed
//! string, a `u64` of milliseconds for a timeout, or nothing).
//!
//! Anything malformed is an error, never a panic: a request the worker cannot read gets an
//! [`ExtractError::Io`] answer (the frame boundaries still hold), a broken frame ends the worker,
//! and a response the parent cannot read stops the worker (see the pool).

use std::ffi::OsStr;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::Duration;

use crate::input::Input;
use crate::{Budget, ExtractError, FileKind, IngestConfig, READ_BUFFER, TextChunk, chunk_with_offsets};

const VERSION: u8 = 1;

/// What a worker reads: a file on disk (the usual case), or content the parent holds in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

/// One file to extract and chunk, with the limits to apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub kind: FileKind,
    /// The limits and chunking parameters (`max_concurrent` does not travel; it reads as 1).
    pub cfg: IngestConfig,
    pub source: Source,
}

/// A frame or message that does not follow the protocol.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("the stream ended in the middle of a frame")]
    Truncated,
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("the message is too large for one frame ({0} bytes)")]
    TooLarge(usize),
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

fn malformed(what: impl Into<String>) -> ProtocolError {
    ProtocolError::Malformed(what.into())
}

// ---- encoding ----

struct Writer(Vec<u8>);

impl Writer {
    fn new() -> Self {
        // Room for the frame length, filled in by `finish`.
        Self(vec![0; 4])
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn usize(&mut self, v: usize) {
        self.u64(u64::try_from(v).unwrap_or(u64::MAX));
    }
    fn string(&mut self, s: &str) -> Result<(), ProtocolError> {
        let len = u32::try_from(s.len()).map_err(|_| ProtocolError::TooLarge(s.len()))?;
        self.u32(len);
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
    /// The whole frame, length prefix included.
    fn finish(mut self) -> Result<Vec<u8>, ProtocolError> {
        let body = self.0.len() - 4;
        let len = u32::try_from(body).map_err(|_| ProtocolError::TooLarge(body))?;
        self.0[..4].copy_from_slice(&len.to_le_bytes());
        Ok(self.0)
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.0.len() < n {
            return Err(malformed("the message ends early"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, ProtocolError> {
        let mut b = [0; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, ProtocolError> {
        let mut b = [0; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    fn usize(&mut self) -> Result<usize, ProtocolError> {
        usize::try_from(self.u64()?).map_err(|_| malformed("a size does not fit this machine"))
    }
    fn string(&mut self) -> Result<String, ProtocolError> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| malformed("a string is not UTF-8"))
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
    fn end(&self) -> Result<(), ProtocolError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(malformed("trailing bytes after the message"))
        }
    }
}

fn kind_code(kind: FileKind) -> u8 {
    FileKind::ALL
        .iter()
        .position(|k| *k == kind)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(u8::MAX)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The frame (length prefix included) of a request.
pub fn encode_request(request: &Request) -> Result<Vec<u8>, ProtocolError> {
    let mut w = Writer::new();
    w.u8(VERSION);
    w.u8(kind_code(request.kind));
    w.u64(millis(request.cfg.per_file_timeout));
    w.usize(request.cfg.max_text_bytes);
    w.u64(request.cfg.max_decompressed_bytes);
    w.usize(request.cfg.chunk_size);
    w.usize(request.cfg.chunk_overlap);
    match &request.source {
        Source::Path(path) => {
            w.u8(0);
            w.0.extend_from_slice(path.as_os_str().as_bytes());
        }
        Source::Bytes(bytes) => {
            w.u8(1);
            w.0.extend_from_slice(bytes);
        }
    }
    w.finish()
}

/// A request from the body of its frame.
pub fn decode_request(body: &[u8]) -> Result<Request, ProtocolError> {
    let mut r = Reader(body);
    let version = r.u8()?;
    if version != VERSION {
        return Err(malformed(format!(
            "protocol version {version} (expected {VERSION})"
        )));
    }
    let kind = FileKind::ALL
        .get(r.u8()? as usize)
        .copied()
        .ok_or_else(|| malformed("unknown file kind"))?;
    let cfg = IngestConfig {
        max_concurrent: 1,
        per_file_timeout: Duration::from_millis(r.u64()?),
        max_text_bytes: r.usize()?,
        max_decompressed_bytes: r.u64()?,
        chunk_size: r.usize()?,
        chunk_overlap: r.usize()?,
    };
    if cfg.chunk_size == 0 {
        return Err(malformed("a chunk size of zero"));
    }
    let source = match r.u8()? {
        0 => Source::Path(PathBuf::from(OsStr::from_bytes(r.rest()))),
        1 => Source::Bytes(r.rest().to_vec()),
        other => return Err(malformed(format!("unknown source tag {other}"))),
    };
    Ok(Request { kind, cfg, source })
}

/// The frame (length prefix included) of a response.
pub fn encode_response(result: &Result<Vec<TextChunk>, ExtractError>) -> Result<Vec<u8>, ProtocolError> {
    let mut w = Writer::new();
    match result {
        Ok(chunks) => {
            w.u8(0);
            let count = u32::try_from(chunks.len()).map_err(|_| ProtocolError::TooLarge(chunks.len()))?;
            w.u32(count);
            for c in chunks {
                w.usize(c.start);
                w.usize(c.end);
                w.string(&c.text)?;
            }
        }
        Err(e) => {
            w.u8(1);
            match e {
                ExtractError::Unsupported(s) => {
                    w.u8(0);
                    w.string(s)?;
                }
                ExtractError::Corrupt(s) => {
                    w.u8(1);
                    w.string(s)?;
                }
                ExtractError::Encrypted => w.u8(2),
                ExtractError::NoText => w.u8(3),
                ExtractError::TooLarge(s) => {
                    w.u8(4);
                    w.string(s)?;
                }
                ExtractError::Timeout(d) => {
                    w.u8(5);
                    w.u64(millis(*d));
                }
                ExtractError::Panicked => w.u8(6),
                ExtractError::Io(s) => {
                    w.u8(7);
                    w.string(s)?;
                }
                ExtractError::WorkerDied(s) => {
                    w.u8(8);
                    w.string(s)?;
                }
            }
        }
    }
    w.finish()
}

/// A response from the body of its frame.
pub fn decode_response(body: &[u8]) -> Result<Result<Vec<TextChunk>, ExtractError>, ProtocolError> {
    let mut r = Reader(body);
    let result = match r.u8()? {
        0 => {
            let count = r.u32()? as usize;
            // Each chunk takes at least 20 bytes: a count beyond that is a lie, not a reason to allocate.
            if count > body.len() / 20 {
                return Err(malformed("more chunks than the message can hold"));
            }
            let mut chunks = Vec::with_capacity(count);
            for _ in 0..count {
                let start = r.usize()?;
                let end = r.usize()?;
                let text = r.string()?;
                chunks.push(TextChunk { text, start, end });
            }
            Ok(chunks)
        }
        1 => Err(match r.u8()? {
            0 => ExtractError::Unsupported(r.string()?),
            1 => ExtractError::Corrupt(r.string()?),
            2 => ExtractError::Encrypted,
            3 => ExtractError::NoText,
            4 => ExtractError::TooLarge(r.string()?),
            5 => ExtractError::Timeout(Duration::from_millis(r.u64()?)),
            6 => ExtractError::Panicked,
            7 => ExtractError::Io(r.string()?),
            8 => ExtractError::WorkerDied(r.string()?),
            other => return Err(malformed(format!("unknown error code {other}"))),
        }),
        other => return Err(malformed(format!("unknown response tag {other}"))),
    };
    r.end()?;
    Ok(result)
}

/// Reads one frame's body; `None` at a clean end of the stream (between frames). Memory grows with
/// the bytes that really arrive, so a bogus length costs nothing.
pub fn read_frame(input: &mut impl Read) -> Result<Option<Vec<u8>>, ProtocolError> {
    let mut len = [0u8; 4];
    let mut filled = 0;
    while filled < len.len() {
        match input.read(&mut len[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(ProtocolError::Truncated),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u64::from(u32::from_le_bytes(len));
    let mut body = Vec::new();
    input.take(len).read_to_end(&mut body)?;
    if (body.len() as u64) < len {
        return Err(ProtocolError::Truncated);
    }
    Ok(Some(body))
}

/// Extracts and chunks what a request names, on the calling thread, under `catch_unwind` and the
/// request's cooperative deadline: exactly what the in-process pool does on a blocking thread.
pub fn run_request(request: &Request) -> Result<Vec<TextChunk>, ExtractError> {
    let budget = Budget::new(request.cfg.per_file_timeout);
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        let text = match &request.source {
            Source::Path(path) => {
                let file = std::fs::File::open(path).map_err(|e| ExtractError::Io(e.to_string()))?;
                let mut reader = BufReader::with_capacity(READ_BUFFER, file);
                crate::extract_with_budget(request.kind, Input::Stream(&mut reader), &request.cfg, &budget)?
            }
            Source::Bytes(bytes) => {
                crate::extract_with_budget(request.kind, Input::memory(bytes), &request.cfg, &budget)?
            }
        };
        budget.check()?;
        Ok(chunk_with_offsets(
            &text,
            request.cfg.chunk_size,
            request.cfg.chunk_overlap,
        ))
    }))
    .unwrap_or(Err(ExtractError::Panicked))
}

/// The worker's loop: reads requests from `input` and answers each on `output` until the input
/// ends (`Ok`) or breaks (`Err`).
pub fn serve(input: impl Read, output: impl Write) -> Result<(), ProtocolError> {
    serve_with(input, output, run_request)
}

/// [`serve`] with another way to answer a request (test workers that misbehave on purpose wrap
/// [`run_request`]).
pub fn serve_with(
    mut input: impl Read,
    mut output: impl Write,
    mut answer: impl FnMut(&Request) -> Result<Vec<TextChunk>, ExtractError>,
) -> Result<(), ProtocolError> {
    while let Some(body) = read_frame(&mut input)? {
        let result = match decode_request(&body) {
            Ok(request) => answer(&request),
            Err(e) => Err(ExtractError::Io(format!(
                "the extractor received a malformed request: {e}"
            ))),
        };
        let frame = match encode_response(&result) {
            Ok(frame) => frame,
            Err(e) => encode_response(&Err(ExtractError::TooLarge(format!(
                "the extracted text does not fit in one answer: {e}"
            ))))?,
        };
        output.write_all(&frame)?;
        output.flush()?;
    }
    Ok(())
}

/// Caps this process's address space at `megabytes` MiB (`RLIMIT_AS`), so that an allocation
/// beyond it fails (and the worker aborts) instead of exhausting the machine's memory, and asks
/// the kernel to kill this process when its parent dies (Linux).
pub fn limit_process(megabytes: u64) -> io::Result<()> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let bytes = megabytes.saturating_mul(1024 * 1024);
    setrlimit(
        Resource::As,
        Rlimit {
            current: Some(bytes),
            maximum: Some(bytes),
        },
    )?;
    #[cfg(target_os = "linux")]
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    Ok(())
}

/// The whole worker process: [`limit_process`], then [`serve`] on stdin/stdout. A binary's
/// `extract-worker` subcommand calls this.
pub fn run_worker(memory_limit_mb: u64) -> Result<(), ProtocolError> {
    limit_process(memory_limit_mb)?;
    serve(io::stdin().lock(), io::stdout().lock())
}

/// The argument the pool passes a worker with its memory limit: `--memory-limit-mb <MiB>`.
pub const MEMORY_LIMIT_ARG: &str = "--memory-limit-mb";

/// The memory limit in a worker's arguments (`--memory-limit-mb N`), for binaries that do not parse
/// their command line with clap.
pub fn memory_limit_from_args(args: impl IntoIterator<Item = String>) -> Option<u64> {
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == MEMORY_LIMIT_ARG {
            return args.next().and_then(|v| v.parse().ok());
        }
        if let Some(v) = arg.strip_prefix("--memory-limit-mb=") {
            return v.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(source: Source) -> Request {
        Request {
            kind: FileKind::Json,
            cfg: IngestConfig {
                max_concurrent: 1,
                ..IngestConfig::default()
            },
            source,
        }
    }

    #[test]
    fn requests_and_responses_round_trip() {
        for source in [
            Source::Path("/tmp/a b/ü.pdf".into()),
            Source::Bytes(b"{\"a\":1}".to_vec()),
        ] {
            let req = request(source);
            let frame = encode_request(&req).unwrap();
            let body = read_frame(&mut &frame[..]).unwrap().unwrap();
            assert_eq!(decode_request(&body).unwrap(), req);
        }
        let results = [
            Ok(vec![TextChunk {
                text: "héllo".into(),
                start: 3,
                end: 8,
            }]),
            Ok(vec![]),
            Err(ExtractError::Corrupt("x".into())),
            Err(ExtractError::Timeout(Duration::from_millis(1500))),
            Err(ExtractError::WorkerDied("it crashed".into())),
            Err(ExtractError::NoText),
        ];
        for result in results {
            let frame = encode_response(&result).unwrap();
            let body = read_frame(&mut &frame[..]).unwrap().unwrap();
            assert_eq!(decode_response(&body).unwrap(), result);
        }
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        assert!(matches!(
            read_frame(&mut &[1u8, 0][..]),
            Err(ProtocolError::Truncated)
        ));
        assert!(matches!(
            read_frame(&mut &[255u8, 255, 255, 255, 1][..]),
            Err(ProtocolError::Truncated)
        ));
        assert!(read_frame(&mut &[][..]).unwrap().is_none());
        assert!(decode_request(&[]).is_err());
        assert!(decode_request(&[VERSION, 200]).is_err());
        assert!(decode_response(&[0, 255, 255, 255, 255]).is_err());
        assert!(decode_response(&[1, 99]).is_err());
        assert!(decode_response(&[0, 0, 0, 0, 0, 7]).is_err());
        for n in 0..64u8 {
            let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37).wrapping_add(n)).collect();
            let _ = decode_request(&junk);
            let _ = decode_response(&junk);
        }
    }

    #[test]
    fn serve_answers_each_request_and_a_malformed_one_with_an_error() {
        let mut input = encode_request(&request(Source::Bytes(b"{\"k\":\"value\"}".to_vec()))).unwrap();
        input.extend(Writer::new().finish().unwrap());
        let mut output = Vec::new();
        serve(&input[..], &mut output).unwrap();
        let mut out = &output[..];
        let first = decode_response(&read_frame(&mut out).unwrap().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(first[0].text, "k\nvalue");
        let second = decode_response(&read_frame(&mut out).unwrap().unwrap()).unwrap();
        assert!(matches!(second, Err(ExtractError::Io(m)) if m.contains("malformed")));
        assert!(read_frame(&mut out).unwrap().is_none());
    }
}
