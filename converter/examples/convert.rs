//! Converts one checkpoint with default options and prints the report as JSON.
//!
//! `cargo run -p yolots-converter --example convert -- IN.pt OUT.torchscript [KEY=VALUE...]`
//! where keys are `mode`, `head`, `precision`, `fuse`, `optimize`, `img-size`, `device`,
//! `validate`, `runs`.

use std::process::ExitCode;

use yolots_converter::{ConvertError, ConvertRequest, convert};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, options @ ..] = args.as_slice() else {
        eprintln!("usage: convert IN.pt OUT [key=value...]");
        return ExitCode::from(64);
    };
    let mut request = ConvertRequest::new(input, output);
    for option in options {
        let Some((key, value)) = option.split_once('=') else {
            eprintln!("bad option {option}");
            return ExitCode::from(64);
        };
        let parsed = match key {
            "mode" => value
                .parse()
                .map(|v| request.mode = v)
                .map_err(|e| e.to_string()),
            "head" => value
                .parse()
                .map(|v| request.head = v)
                .map_err(|e| e.to_string()),
            "precision" => value
                .parse()
                .map(|v| request.precision = v)
                .map_err(|e| e.to_string()),
            "optimize" => value
                .parse()
                .map(|v| request.optimize = v)
                .map_err(|e| e.to_string()),
            "img-size" => value
                .parse()
                .map(|v| request.img_size = v)
                .map_err(|e| e.to_string()),
            "device" => value
                .parse()
                .map(|v| request.device = v)
                .map_err(|e| e.to_string()),
            "fuse" => value
                .parse()
                .map(|v| request.fuse = v)
                .map_err(|e| e.to_string()),
            "validate" => value
                .parse()
                .map(|v| request.validate = v)
                .map_err(|e| e.to_string()),
            "runs" => value
                .parse()
                .map(|v| request.latency_runs = v)
                .map_err(|e| e.to_string()),
            _ => Err(format!("unknown option {key}")),
        };
        if let Err(e) = parsed {
            eprintln!("{e}");
            return ExitCode::from(64);
        }
    }
    let mut progress = |e: &yolots_converter::ProgressEvent| {
        eprintln!(
            "[{:>3.0}%] {:<10} {}",
            e.fraction * 100.0,
            e.stage,
            e.message
        );
    };
    match convert(&request, &mut progress) {
        Ok(report) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(ConvertError::ValidationFailed { report, .. }) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            eprintln!("validation failed");
            ExitCode::from(3)
        }
        Err(e @ (ConvertError::Input(_) | ConvertError::Unsupported(_))) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
