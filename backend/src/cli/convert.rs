//! `yolots convert ARGS`: runs `yolots-converter convert ARGS` in place of this process
//! (same arguments, output, signals and exit status), so only conversions load libtorch.
//! Its options, `--help` included, are the converter's.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use anyhow::Context;
use clap::Args;

use crate::converter;

/// Arguments of `yolots convert`, passed on unread.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct ConvertArgs {
    /// The converter's arguments (`yolots convert --help` lists them).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<OsString>,
}

impl ConvertArgs {
    /// Whether `--check-config` was given among the passed-on arguments.
    pub fn check_config(&self) -> bool {
        self.args
            .iter()
            .take_while(|a| *a != "--")
            .any(|a| a == "--check-config")
    }
}

/// Replaces this process with the converter; returns only when that fails.
pub fn run(args: &ConvertArgs) -> anyhow::Result<ExitCode> {
    let path = converter::locate().context("locating the yolots binary")?;
    let error = Command::new(&path)
        // Usage lines then read `yolots convert ...`, as the user typed.
        .arg0("yolots")
        .arg("convert")
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
