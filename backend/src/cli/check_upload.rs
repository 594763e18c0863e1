//! `yolots check-upload FILE` (hidden): what the server runs, in a child process under
//! memory and time bounds, to read a stored upload. Prints one JSON line on stdout (see
//! [`crate::upload_check::protocol`]); exit status 0 whenever that line is printed.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::upload_check::CheckLine;

/// Arguments of `yolots check-upload`.
#[derive(Debug, Args)]
pub struct CheckUploadArgs {
    /// The stored upload to read.
    pub file: PathBuf,
}

pub fn run(args: &CheckUploadArgs) -> anyhow::Result<ExitCode> {
    let line = serde_json::to_string(&CheckLine::of_file(&args.file))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .context("writing the check's line")?;
    Ok(ExitCode::SUCCESS)
}
