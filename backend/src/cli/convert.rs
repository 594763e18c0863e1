//! `yolots convert ARGS`: runs `yolots-converter convert ARGS` in place of this process
//! (same arguments, output, signals and exit status), so only conversions load libtorch.
//! Its options, `--help` included, are the converter's. The checkpoint is first read in
//! the upload check's bounded child ([`bounded_read`]): a file the reader refuses ends
//! here, as the converter would end it, and no reader bug can take the machine.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Args, Parser};

use yolots_protocol::cli::ProgressFormat;
use yolots_protocol::{ConverterLine, EXIT_REFUSED, ErrorCode};

use super::bounded_read::{self, Checked};
use crate::converter;

/// The converter's own command line, read here only to find the checkpoint.
#[derive(Debug, Parser)]
#[command(name = "yolots convert")]
struct ParsedArgs {
    #[command(flatten)]
    args: yolots_protocol::cli::ConvertArgs,
}

/// What the converter prints for a file its reader refuses: the reader's message on
/// stderr, or the error line with `--progress json`.
fn refused(args: &yolots_protocol::cli::ConvertArgs, code: ErrorCode, message: String) -> ExitCode {
    if args.progress == ProgressFormat::Json {
        let line = ConverterLine::Error {
            code,
            message,
            exit_code: EXIT_REFUSED,
            report: None,
        };
        if let Ok(text) = serde_json::to_string(&line) {
            println!("{text}");
        }
    } else {
        eprintln!("error: {message}");
    }
    ExitCode::from(EXIT_REFUSED)
}

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

/// Replaces this process with the converter; returns only when that fails, or when the
/// checkpoint is refused by its bounded first read (exit 2, printed as the converter
/// prints a refusal).
pub fn run(args: &ConvertArgs) -> anyhow::Result<ExitCode> {
    // Arguments clap refuses (or `--help`) go to the converter unread: it says why.
    let argv = std::iter::once(OsString::from("yolots convert")).chain(args.args.iter().cloned());
    if let Ok(parsed) = ParsedArgs::try_parse_from(argv)
        && let Checked::Refused { code, message } = bounded_read::check(&parsed.args.input)?
    {
        return Ok(refused(&parsed.args, code, message));
    }
    Err(converter::exec("convert", &args.args))
}
