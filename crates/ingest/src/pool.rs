//! Process isolation: a pool of long-lived extraction workers (see [`crate::worker`]).
//!
//! Workers are started lazily, at most `max_concurrent` of them, and reused file after file. The
//! parent enforces the per-file limit on the wall clock: a worker that has not answered in time is
//! killed and reaped, and the next file gets a fresh one. A worker that dies (end of its output,
//! an exit, a signal) or answers nonsense is reaped too, and the file fails with
//! [`ExtractError::WorkerDied`] saying why. Every worker is killed when the pool is dropped or shut
//! down, and asks the kernel to kill it should the parent die first.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::worker::{self, MEMORY_LIMIT_ARG, Request};
use crate::{ExtractError, TextChunk};

/// Counter of worker restarts, labelled by `reason` (`timeout`, `memory`, `stack`, `crash`,
/// `killed`, `exit`, `protocol`).
pub const WORKER_RESTARTS_METRIC: &str = "kbsync_extract_worker_restarts_total";

/// Where parsers run.
#[derive(Clone, Debug, Default)]
pub enum Isolation {
    /// On the server's own blocking threads under `catch_unwind` and a cooperative deadline.
    #[default]
    Thread,
    /// In worker processes started with this command.
    Process(WorkerCommand),
}

/// How to start a worker: a program and the arguments that make it serve the worker protocol on
/// its stdin/stdout (for kbsync: its own executable and `extract-worker`). The pool adds
/// `--memory-limit-mb <MiB>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// The worker's address-space limit in MiB (`RLIMIT_AS`).
    pub memory_limit_mb: u64,
}

impl WorkerCommand {
    /// The default memory limit of a worker, in MiB.
    pub const DEFAULT_MEMORY_LIMIT_MB: u64 = 1024;

    pub fn new(program: impl Into<PathBuf>, args: impl IntoIterator<Item = impl Into<OsString>>) -> Self {
        Self {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            memory_limit_mb: Self::DEFAULT_MEMORY_LIMIT_MB,
        }
    }

    #[must_use]
    pub fn memory_limit_mb(mut self, megabytes: u64) -> Self {
        self.memory_limit_mb = megabytes;
        self
    }
}

/// The last lines a worker wrote to stderr (its panic or abort message), kept to tell why it died.
type StderrTail = Arc<Mutex<VecDeque<String>>>;

const STDERR_LINES: usize = 8;

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr_tail: StderrTail,
    stderr_task: Option<JoinHandle<()>>,
}

impl Worker {
    fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether the worker is still running (one that died while idle is not handed a file).
    fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    async fn exchange(&mut self, frame: &[u8]) -> Result<Vec<u8>, worker::ProtocolError> {
        self.stdin.write_all(frame).await?;
        self.stdin.flush().await?;
        let mut len = [0u8; 4];
        match self.stdout.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(worker::ProtocolError::Truncated);
            }
            Err(e) => return Err(e.into()),
        }
        let len = u64::from(u32::from_le_bytes(len));
        let mut body = Vec::new();
        (&mut self.stdout).take(len).read_to_end(&mut body).await?;
        if (body.len() as u64) < len {
            return Err(worker::ProtocolError::Truncated);
        }
        Ok(body)
    }

    /// Kills the worker (if it still runs) and reaps it; returns how it ended.
    async fn stop(&mut self) -> Option<ExitStatus> {
        let _ = self.child.start_kill();
        self.reap().await
    }

    /// Waits for a worker that is ending anyway (its output closed), killing it if it lingers.
    async fn reap(&mut self) -> Option<ExitStatus> {
        let status = match tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                let _ = self.child.start_kill();
                self.child.wait().await.ok()
            }
        };
        // Its stderr closes with it: let the reader take the last lines.
        if let Some(task) = self.stderr_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
        status
    }

    fn stderr_text(&self) -> String {
        self.stderr_tail
            .lock()
            .map(|lines| lines.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }
}

/// Why a worker ended, for the user (the text) and the restart counter (the label).
fn death_reason(status: Option<ExitStatus>, stderr: &str, memory_limit_mb: u64) -> (&'static str, String) {
    if stderr.contains("memory allocation of") || stderr.contains("capacity overflow") {
        return (
            "memory",
            format!("it exceeded its memory limit of {memory_limit_mb} MiB"),
        );
    }
    if stderr.contains("has overflowed its stack") {
        return (
            "stack",
            "it overflowed its stack (too deeply nested content)".into(),
        );
    }
    match status {
        Some(s) if s.signal() == Some(9) => ("killed", "it was killed (SIGKILL)".into()),
        Some(s) if s.signal() == Some(6) => ("crash", "it crashed (aborted)".into()),
        Some(s) if s.signal() == Some(11) => ("crash", "it crashed (segmentation fault)".into()),
        Some(s) if s.signal().is_some() => (
            "crash",
            format!("it crashed (signal {})", s.signal().unwrap_or_default()),
        ),
        Some(s) => (
            "exit",
            format!(
                "it exited unexpectedly (status {})",
                s.code().map_or_else(|| "unknown".to_owned(), |c| c.to_string())
            ),
        ),
        None => ("exit", "it ended unexpectedly".into()),
    }
}

fn count_restart(reason: &'static str) {
    metrics::counter!(WORKER_RESTARTS_METRIC, "reason" => reason).increment(1);
}

/// The workers of one [`crate::Extractor`] in process mode.
pub(crate) struct WorkerPool {
    command: WorkerCommand,
    idle: Mutex<Vec<Worker>>,
}

impl WorkerPool {
    pub(crate) fn new(command: WorkerCommand) -> Self {
        Self {
            command,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn spawn(&self) -> std::io::Result<Worker> {
        let mut child = Command::new(&self.command.program)
            .args(&self.command.args)
            .arg(MEMORY_LIMIT_ARG)
            .arg(self.command.memory_limit_mb.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(std::io::Error::other("the worker's pipes are missing"));
        };
        let pid = child.id();
        tracing::debug!(worker.pid = pid, "extraction worker started");
        let stderr_tail: StderrTail = Arc::default();
        let tail = Arc::clone(&stderr_tail);
        let stderr_task = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::warn!(worker.pid = pid, line = %line, "extraction worker stderr");
                if let Ok(mut tail) = tail.lock() {
                    if tail.len() == STDERR_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            }
        });
        Ok(Worker {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            stderr_tail,
            stderr_task: Some(stderr_task),
        })
    }

    /// An idle worker that still runs, or a new one.
    fn checkout(&self) -> Result<Worker, ExtractError> {
        loop {
            let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            match idle {
                Some(mut w) => {
                    if w.is_alive() {
                        return Ok(w);
                    }
                    tracing::warn!(
                        worker.pid = w.pid(),
                        "an idle extraction worker had ended; starting another"
                    );
                    // Dropping it reaps it (kill_on_drop; the runtime reaps orphans).
                    drop(w);
                }
                None => {
                    return self.spawn().map_err(|e| {
                        tracing::error!(error = %e, program = %self.command.program.display(), "cannot start an extraction worker");
                        ExtractError::Io(format!("the text extractor could not be started: {e}"))
                    });
                }
            }
        }
    }

    fn checkin(&self, worker: Worker) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(worker);
        }
    }

    /// Extracts one file in a worker, holding a permit of `permits` meanwhile.
    pub(crate) async fn extract(
        &self,
        permits: &Semaphore,
        request: Request,
    ) -> Result<Vec<TextChunk>, ExtractError> {
        let frame = worker::encode_request(&request).map_err(|e| {
            ExtractError::TooLarge(format!("the file cannot be sent to the text extractor: {e}"))
        })?;
        let _permit = permits
            .acquire()
            .await
            .map_err(|_| ExtractError::Io("the extraction pool is closed".into()))?;
        let timeout = request.cfg.per_file_timeout;
        let mut worker = self.checkout()?;
        // If this future is dropped mid-exchange the worker goes with it (killed on drop), so a
        // half-answered worker is never reused.
        let answer = tokio::time::timeout(timeout, worker.exchange(&frame)).await;
        match answer {
            Ok(Ok(body)) => match worker::decode_response(&body) {
                Ok(result) => {
                    self.checkin(worker);
                    result
                }
                Err(e) => {
                    let pid = worker.pid();
                    worker.stop().await;
                    count_restart("protocol");
                    tracing::error!(worker.pid = pid, error = %e, "extraction worker answered nonsense; stopped it");
                    Err(ExtractError::WorkerDied(
                        "it sent an answer that could not be read".into(),
                    ))
                }
            },
            Ok(Err(e)) => {
                let pid = worker.pid();
                let status = worker.reap().await;
                let (label, reason) =
                    death_reason(status, &worker.stderr_text(), self.command.memory_limit_mb);
                count_restart(label);
                tracing::warn!(worker.pid = pid, error = %e, reason = %reason, "extraction worker died");
                Err(ExtractError::WorkerDied(reason))
            }
            Err(_) => {
                let pid = worker.pid();
                worker.stop().await;
                count_restart("timeout");
                tracing::warn!(
                    worker.pid = pid,
                    timeout_ms = timeout.as_millis() as u64,
                    "extraction worker over the time limit; killed it"
                );
                Err(ExtractError::Timeout(timeout))
            }
        }
    }

    /// Kills and reaps every idle worker (busy ones are killed when their extraction ends or is
    /// dropped).
    pub(crate) async fn shutdown(&self) {
        let workers = self
            .idle
            .lock()
            .map(|mut idle| std::mem::take(&mut *idle))
            .unwrap_or_default();
        for mut w in workers {
            w.stop().await;
        }
    }

    /// The process ids of the idle workers.
    pub(crate) fn idle_pids(&self) -> Vec<u32> {
        self.idle
            .lock()
            .map(|idle| idle.iter().filter_map(Worker::pid).collect())
            .unwrap_or_default()
    }
}
