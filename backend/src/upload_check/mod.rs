//! The upload check: a stored upload is read by the checkpoint reader in a child process
//! (`yolots check-upload`, the binary itself) under hard memory and time bounds, so a
//! hostile file that makes the reader allocate gigabytes or spin for minutes ends only
//! that child, never the server.
//!
//! - [`protocol`]: the one JSON line the child prints (the model's facts or the reader's
//!   refusal).
//! - [`sandbox`]: spawning the child with its limits, watching its time, reading its end.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::sync::Semaphore;

pub mod protocol;
pub mod sandbox;

pub use protocol::{CheckLine, ModelFacts};
use sandbox::{Bounds, Ended};

/// Bounds of the upload check (`yolots serve`).
#[derive(Debug, Clone, Args)]
pub struct UploadCheckArgs {
    /// Memory the process that reads an upload may hold, in MiB (its data segment:
    /// heap and anonymous mappings); a file that needs more is refused
    /// (`check_resources_exceeded`).
    #[arg(long, env = "YOLOTS_UPLOAD_CHECK_MEMORY_MB", default_value_t = 1024)]
    pub upload_check_memory_mb: u64,

    /// Seconds that process may run (wall time; CPU time is bounded too); a file that
    /// takes longer is refused (`check_resources_exceeded`).
    #[arg(long, env = "YOLOTS_UPLOAD_CHECK_TIMEOUT_SECS", default_value_t = 30.0)]
    pub upload_check_timeout_secs: f64,

    /// Upload checks run at once (more wait); 0: one per core.
    #[arg(long, env = "YOLOTS_UPLOAD_CHECK_CONCURRENCY", default_value_t = 0)]
    pub upload_check_concurrency: usize,
}

impl UploadCheckArgs {
    /// The memory bound in bytes (at least 16 MiB: below that nothing starts).
    pub fn memory_bytes(&self) -> u64 {
        self.upload_check_memory_mb.max(16).saturating_mul(1 << 20)
    }

    pub fn timeout(&self) -> Duration {
        let secs = self.upload_check_timeout_secs;
        Duration::from_secs_f64(if secs.is_finite() {
            secs.clamp(0.1, 86_400.0)
        } else {
            30.0
        })
    }

    pub fn concurrency(&self) -> usize {
        match self.upload_check_concurrency {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }

    /// One line for `--check-config`.
    pub fn summary(&self) -> String {
        format!(
            "upload check: at most {} MiB and {:.1} s per file, {} at once",
            self.memory_bytes() >> 20,
            self.timeout().as_secs_f64(),
            self.concurrency()
        )
    }
}

/// Why an upload was not described.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The reader refused the file.
    #[error("{code}: {message}")]
    Refused {
        code: yolots_protocol::ErrorCode,
        message: String,
    },
    /// Reading the file needed more memory than the bound.
    #[error("reading the checkpoint needed more than {mib} MiB of memory")]
    OutOfMemory { mib: u64 },
    /// Reading the file took longer than the bound.
    #[error("reading the checkpoint took longer than {secs:.1} s")]
    OutOfTime { secs: f64 },
    /// The check itself failed (could not start, could not read the file, crashed).
    #[error("the upload check failed: {0}")]
    Failed(String),
}

/// Runs upload checks, a bounded number at once.
#[derive(Debug, Clone)]
pub struct UploadChecker {
    exe: PathBuf,
    bounds: Bounds,
    slots: Arc<Semaphore>,
}

impl UploadChecker {
    /// Checks run `exe check-upload FILE` (`exe`: the `yolots` binary).
    pub fn new(exe: PathBuf, args: &UploadCheckArgs) -> Self {
        Self {
            exe,
            bounds: Bounds {
                memory_bytes: args.memory_bytes(),
                timeout: args.timeout(),
            },
            slots: Arc::new(Semaphore::new(args.concurrency().max(1))),
        }
    }

    /// Reads the checkpoint at `file` in a bounded child and returns its facts.
    pub async fn check(&self, file: &Path) -> Result<ModelFacts, CheckError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| CheckError::Failed("the upload checker is closed".into()))?;
        let ended = sandbox::run(&self.exe, file, self.bounds)
            .await
            .map_err(|e| CheckError::Failed(format!("starting {}: {e}", self.exe.display())))?;
        match ended {
            Ended::Line(CheckLine::Described(facts)) => Ok(facts),
            Ended::Line(CheckLine::Refused { code, message }) => {
                Err(CheckError::Refused { code, message })
            }
            Ended::Line(CheckLine::Failed { message }) => Err(CheckError::Failed(message)),
            Ended::OutOfMemory => Err(CheckError::OutOfMemory {
                mib: self.bounds.memory_bytes >> 20,
            }),
            Ended::OutOfTime => Err(CheckError::OutOfTime {
                secs: self.bounds.timeout.as_secs_f64(),
            }),
            Ended::Crashed { status, stderr } => {
                let last = stderr
                    .lines()
                    .rev()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .unwrap_or("no output")
                    .chars()
                    .take(500)
                    .collect::<String>();
                Err(CheckError::Failed(format!(
                    "the check process {status}: {last}"
                )))
            }
        }
    }
}
