//! `misbehaving-extract-worker`: the extraction worker of kbsync (the same protocol loop,
//! [`kbsync_ingest::worker::serve_with`], and the same memory limit), except that a plain-text
//! file sent as bytes whose content starts with a magic word misbehaves on purpose:
//!
//! | content | behaviour |
//! |---|---|
//! | `HANG` | sleeps forever, never checking its time budget |
//! | `ABORT` | aborts the process |
//! | `ALLOCATE` | allocates 8 GiB (over any sensible memory limit) |
//! | `RECURSE` | recurses until the stack overflows |
//! | `EXIT` | exits with status 3 |
//! | `GARBAGE` | answers with a frame that is not a response |
//!
//! Anything else is extracted normally. It lives in a test crate so that no such hook is ever in
//! the kbsync binary.

use std::io::Write;
use std::process::ExitCode;

use kbsync_ingest::worker::{self, Request, Source};
use kbsync_ingest::{FileKind, WorkerCommand};

fn magic(request: &Request) -> Option<&[u8]> {
    match (&request.source, request.kind) {
        (Source::Bytes(bytes), FileKind::Txt) => Some(bytes.as_slice()),
        _ => None,
    }
}

fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    let frame = [depth; 64];
    let below = recurse(std::hint::black_box(depth + 1));
    std::hint::black_box(frame)[0] + below
}

#[expect(
    clippy::disallowed_methods,
    reason = "a worker stuck for good, as a parser in an endless loop would be"
)]
fn hang() -> ! {
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

fn main() -> ExitCode {
    let memory =
        worker::memory_limit_from_args(std::env::args()).unwrap_or(WorkerCommand::DEFAULT_MEMORY_LIMIT_MB);
    if let Err(e) = worker::limit_process(memory) {
        eprintln!("misbehaving-extract-worker: {e}");
        return ExitCode::FAILURE;
    }
    let result = worker::serve_with(
        std::io::stdin().lock(),
        std::io::stdout().lock(),
        |request| match magic(request) {
            Some(b) if b.starts_with(b"HANG") => hang(),
            Some(b) if b.starts_with(b"ABORT") => std::process::abort(),
            Some(b) if b.starts_with(b"ALLOCATE") => {
                let huge: Vec<u8> = vec![1; 8 << 30];
                Ok(vec![kbsync_ingest::TextChunk {
                    text: format!("{}", huge.iter().map(|&b| u64::from(b)).sum::<u64>()),
                    start: 0,
                    end: 1,
                }])
            }
            Some(b) if b.starts_with(b"RECURSE") => {
                let depth = recurse(0);
                Err(kbsync_ingest::ExtractError::Corrupt(depth.to_string()))
            }
            Some(b) if b.starts_with(b"EXIT") => std::process::exit(3),
            Some(b) if b.starts_with(b"GARBAGE") => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&[3, 0, 0, 0, 9, 9, 9]);
                let _ = out.flush();
                worker::run_request(request)
            }
            _ => worker::run_request(request),
        },
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("misbehaving-extract-worker: {e}");
            ExitCode::FAILURE
        }
    }
}
