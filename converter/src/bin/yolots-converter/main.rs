//! `yolots-converter`: the only yolots program that loads libtorch.
//!
//! `yolots convert ARGS` runs `yolots-converter convert ARGS` (same arguments, output and
//! exit status), and `yolots predict ARGS` runs `yolots-converter predict ARGS`; the service's workers run `yolots-converter run` once per conversion (the
//! request as JSON on stdin), and the service asks it `runtime` for the libtorch version
//! and the CUDA device count.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod convert;
mod predict;
mod runtime;

/// Converts YOLOv7 checkpoints with libtorch (what `yolots convert` runs).
#[derive(Debug, Parser)]
#[command(name = "yolots-converter", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Convert a checkpoint to TorchScript or ONNX and validate it.
    Convert(yolots_protocol::cli::ConvertArgs),
    /// Run a converted model (or a checkpoint) on images: annotated images and JSON.
    Predict(yolots_protocol::cli::PredictArgs),
    /// Print the loaded libtorch's version and the CUDA device count as JSON.
    Runtime,
    /// Convert as the conversion request (JSON) on stdin says, reporting as JSON lines on
    /// stdout (what the service's workers run).
    #[command(hide = true)]
    Run,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbosity = match &cli.command {
        Command::Convert(args) if args.quiet => "error",
        Command::Convert(args) if args.verbose == 1 => "debug",
        Command::Convert(args) if args.verbose > 1 => "trace",
        Command::Predict(args) if args.quiet => "error",
        Command::Predict(args) if args.verbose == 1 => "debug",
        Command::Predict(args) if args.verbose > 1 => "trace",
        // A line per image says what happened; logs are for warnings.
        Command::Predict(_) => "warn",
        _ => "info",
    };
    init_tracing(verbosity);
    let outcome = match cli.command {
        Command::Convert(args) => convert::run(&args),
        Command::Predict(args) => predict::run(&args),
        Command::Runtime => runtime::run(),
        Command::Run => convert::run_request_from_stdin(),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            // Said once, as the command's answer; not again as a log line.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, coloured only on a terminal; `RUST_LOG` picks the level (else
/// `default`), `YOLOTS_LOG_FORMAT=json` the format.
fn init_tracing(default: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if std::env::var("YOLOTS_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
