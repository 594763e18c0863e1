//! The command line: `yolots serve`, `worker`, `token`, `migrate`, `convert`, `predict`,
//! `inspect`.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{DatabaseArgs, ServeArgs, StandaloneWorkerArgs};

mod bounded_read;
mod check;
mod check_upload;
mod convert;
mod inspect;
mod predict;
mod token;
mod worker;

/// YOLOv7 checkpoints to TorchScript and ONNX, without Python.
#[derive(Debug, Parser)]
#[command(
    name = "yolots",
    version,
    about,
    after_help = "Logging: RUST_LOG sets the filter (default: info); YOLOTS_LOG_FORMAT=json \
                  writes JSON lines.\nConversions run yolots-converter (the only program that \
                  loads libtorch), found beside yolots or at YOLOTS_CONVERTER."
)]
pub struct Cli {
    /// Check the command line and the environment (every flag and value, the database URL,
    /// the storage and its AWS_* settings), print a summary and exit without connecting to
    /// or starting anything.
    #[arg(long, global = true)]
    pub check_config: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the REST API, the web page and (by default) one worker.
    Serve(ServeArgs),
    /// Run conversions only, against the server's database and storage.
    Worker(StandaloneWorkerArgs),
    /// Manage API tokens.
    Token(token::TokenArgs),
    /// Apply the database migrations and exit.
    Migrate(DatabaseArgs),
    /// Convert a checkpoint to TorchScript or ONNX and validate it.
    Convert(convert::ConvertArgs),
    /// Run a converted model (or a checkpoint) on images: annotated images and JSON.
    Predict(predict::PredictArgs),
    /// Describe a checkpoint without converting it.
    Inspect(inspect::InspectArgs),
    /// Read a stored upload and print what the checkpoint reader says, as one JSON line
    /// (run by the server in a bounded child process).
    #[command(hide = true)]
    CheckUpload(check_upload::CheckUploadArgs),
}

/// Parses the command line, runs the subcommand and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // `yolots convert ... --check-config`: the flag sits among the converter's arguments.
    let convert_check = matches!(&cli.command, Command::Convert(args) if args.check_config());
    if cli.check_config || convert_check {
        return match check::run(&cli.command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::from(2)
            }
        };
    }
    init_tracing();
    let service = matches!(&cli.command, Command::Serve(_) | Command::Worker(_));
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            // A service's failure goes to its log (JSON lines there); a command's is said
            // once, as its answer.
            if service {
                tracing::error!("{error:#}");
            }
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            actix_web::rt::System::new().block_on(crate::server::serve(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker(args) => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(worker::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(args) => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(token::run(&args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Convert(args) => convert::run(&args),
        Command::Predict(args) => predict::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::CheckUpload(args) => check_upload::run(&args),
        Command::Migrate(args) => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(async {
                let pool = crate::db::pool(&args).context("invalid DATABASE_URL")?;
                crate::db::migrate(&pool)
                    .await
                    .context("applying migrations")?;
                println!("migrations applied");
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Logs go to stderr, coloured only on a terminal; `RUST_LOG` picks the level,
/// `YOLOTS_LOG_FORMAT=json` the format.
fn init_tracing() {
    use std::io::IsTerminal;
    // PostgreSQL's notices ("relation ... already exists, skipping" on every start's
    // migration check) are routine; sqlx logs them at info, so the default quiets them.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx::postgres::notice=warn"));
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
