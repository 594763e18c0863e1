//! `yolots inspect FILE [--json]`: what a checkpoint holds, read safely.
//!
//! Exit status: 0 for a supported model, 2 when the file is not one (with the reason),
//! 1 on an internal failure (for example the file cannot be opened).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use yolots_checkpoint::Checkpoint;
use yolots_checkpoint::inspect::Summary;

/// Arguments of `yolots inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The checkpoint (`.pt`) to read.
    pub file: PathBuf,
    /// Print the documented JSON summary instead of the readable one.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    if let Err(error) = std::fs::metadata(&args.file) {
        anyhow::bail!("cannot open {}: {error}", args.file.display());
    }
    let described = Checkpoint::open(&args.file).and_then(|checkpoint| checkpoint.describe());
    match described {
        Ok(description) => {
            let summary = Summary::from(&description);
            if args.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{summary}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            if args.json {
                let problem = serde_json::json!({
                    "supported": false,
                    "code": error.code(),
                    "message": error.to_string(),
                });
                println!("{}", serde_json::to_string_pretty(&problem)?);
            }
            eprintln!(
                "{}: not a supported YOLOv7 checkpoint: {error}",
                args.file.display()
            );
            Ok(ExitCode::from(2))
        }
    }
}
