//! `yolots predict ARGS`: runs `yolots-converter predict ARGS` in place of this process
//! (same arguments, output, signals and exit status), so only the converter loads
//! libtorch and ONNX Runtime. Its options, `--help` included, are the converter's.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use anyhow::Context;
use clap::Args;

use crate::converter;

/// Arguments of `yolots predict`, passed on unread.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct PredictArgs {
    /// The converter's arguments (`yolots predict --help` lists them).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<OsString>,
}

/// Replaces this process with the converter; returns only when that fails.
pub fn run(args: &PredictArgs) -> anyhow::Result<ExitCode> {
    let path = converter::locate().context("locating the yolots binary")?;
    let error = Command::new(&path)
        // Usage lines then read `yolots predict ...`, as the user typed.
        .arg0("yolots")
        .arg("predict")
        .args(&args.args)
        .exec();
    Err(error).with_context(|| {
        format!(
            "running the converter {} (set {} to its path)",
            path.display(),
            converter::CONVERTER_ENV
        )
    })
}
