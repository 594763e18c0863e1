//! The command line's backstop for the checkpoint reader: `yolots inspect` and
//! `yolots convert` first read the checkpoint in the same bounded child as the service's
//! upload check (`yolots check-upload`, under its data-segment, CPU and wall-time limits,
//! set by the same `YOLOTS_UPLOAD_CHECK_MEMORY_MB` and `YOLOTS_UPLOAD_CHECK_TIMEOUT_SECS`).
//! A file the reader refuses, or one that would make a reader bug allocate without end,
//! ends there with its code (`check_resources_exceeded` for a bound), never taking the
//! machine; only a file that passed is read again in the process itself.

use std::path::Path;

use anyhow::Context;
use clap::Parser;
use yolots_protocol::ErrorCode;

use crate::upload_check::{CheckError, UploadCheckArgs, UploadChecker};

/// What the bounded read of a checkpoint said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// The reader described it within the bounds: read it here.
    Readable,
    /// The reader refused it, or it passed a bound: the code and the message to print.
    Refused { code: ErrorCode, message: String },
    /// The check could not tell (the file cannot be opened, the child did not start): the
    /// caller goes on and reports whatever its own read says.
    Unknown,
}

/// The upload check's bounds as the environment sets them (the flags are `serve`'s).
fn bounds() -> anyhow::Result<UploadCheckArgs> {
    #[derive(Parser)]
    struct FromEnv {
        #[command(flatten)]
        bounds: UploadCheckArgs,
    }
    let parsed = FromEnv::try_parse_from(["yolots"])
        .context("reading YOLOTS_UPLOAD_CHECK_MEMORY_MB and YOLOTS_UPLOAD_CHECK_TIMEOUT_SECS")?;
    Ok(parsed.bounds)
}

/// Reads the checkpoint at `file` in a `yolots check-upload` child under the upload
/// check's bounds.
pub fn check(file: &Path) -> anyhow::Result<Checked> {
    let exe = std::env::current_exe().context("locating the yolots binary")?;
    let checker = UploadChecker::new(exe, &bounds()?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(match runtime.block_on(checker.check(file)) {
        Ok(_) => Checked::Readable,
        Err(CheckError::Refused { code, message }) => Checked::Refused { code, message },
        Err(error @ (CheckError::OutOfMemory { .. } | CheckError::OutOfTime { .. })) => {
            Checked::Refused {
                code: ErrorCode::CheckResourcesExceeded,
                message: error.to_string(),
            }
        }
        Err(CheckError::Failed(message)) => {
            tracing::debug!(%message, "the bounded read could not tell; reading here");
            Checked::Unknown
        }
    })
}
