//! `yolots-converter convert IN.pt` (what `yolots convert IN.pt` runs): the whole
//! pipeline without the service.
//!
//! Progress goes to stderr, one line per stage (`--progress json` prints JSON lines on
//! stdout instead, which is how the service's workers follow a conversion child).
//! Exit status: 0 on success, 2 when the input is not a supported model (or an option does
//! not fit it, such as a size that is not a multiple of its stride), 3 when the artifact
//! fails validation (the report says which output diverged), 1 otherwise.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use yolots_converter::{
    ConversionReport, ConvertError, ConvertRequest, ConverterLine, EXIT_DIVERGED, EXIT_REFUSED,
    ProgressEvent, TestFault,
};
use yolots_protocol::cli::{ConvertArgs, ProgressFormat};
use yolots_protocol::words::{count, small_number};
/// Acts out a deliberate failure of the service's fault tests.
fn act(fault: TestFault) {
    match fault {
        TestFault::Abort => std::process::abort(),
        TestFault::Hang => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
        TestFault::Slow => std::thread::sleep(std::time::Duration::from_secs(4)),
    }
}

pub fn run(args: &ConvertArgs) -> anyhow::Result<ExitCode> {
    let request = args.request();
    let reporting = match (args.progress, args.quiet) {
        (ProgressFormat::Json, _) => Reporting::Json,
        (ProgressFormat::Text, false) => Reporting::Text,
        (ProgressFormat::Text, true) => Reporting::Quiet,
    };
    Ok(execute(&request, reporting))
}

/// How a conversion reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reporting {
    /// JSON lines on stdout (the service's workers, `--progress json`).
    Json,
    /// A line per stage and a summary on stderr.
    Text,
    /// Errors only (`--quiet`).
    Quiet,
}

/// `yolots-converter run`: one request as JSON on stdin (what a worker sends), progress
/// and the outcome as JSON lines on stdout.
pub fn run_request_from_stdin() -> anyhow::Result<ExitCode> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading the request from stdin")?;
    let request: ConvertRequest =
        serde_json::from_str(&text).context("the request on stdin is not a conversion request")?;
    Ok(execute(&request, Reporting::Json))
}

/// Converts as `request` says, reporting as `reporting` says.
fn execute(request: &ConvertRequest, reporting: Reporting) -> ExitCode {
    let fault = request.test_fault();
    let json = reporting == Reporting::Json;
    let mut on_progress = |event: &ProgressEvent| {
        match reporting {
            Reporting::Json => emit(&ConverterLine::Progress(event.clone())),
            // The message names the step ("reading best.pt", "building 78 layers").
            Reporting::Text => eprintln!("[{:>3.0}%] {}", event.fraction * 100.0, event.message),
            Reporting::Quiet => {}
        }
        // After the stage is reported, so a watcher sees where the fault strikes.
        if let Some(fault) = fault
            && event.stage == yolots_converter::Stage::Building
        {
            act(fault);
        }
    };
    let outcome = yolots_converter::convert(request, &mut on_progress);
    let code = match &outcome {
        Ok(_) => 0,
        Err(ConvertError::Input(_) | ConvertError::Unsupported(_) | ConvertError::Options(_)) => {
            EXIT_REFUSED
        }
        Err(ConvertError::ValidationFailed { .. }) => EXIT_DIVERGED,
        Err(_) => 1,
    };
    match &outcome {
        Ok(report) if json => emit(&ConverterLine::Result {
            report: Box::new(report.clone()),
        }),
        Ok(report) if reporting == Reporting::Text => print_summary(report, request),
        Ok(_) => {}
        Err(error) => {
            let report = match error {
                ConvertError::ValidationFailed { report, .. } => Some(report.as_ref()),
                _ => None,
            };
            if json {
                emit(&ConverterLine::Error {
                    code: error.code(),
                    message: error.to_string(),
                    exit_code: code,
                    report: report.map(|r| Box::new(r.clone())),
                });
            } else {
                if let Some(report) = report
                    && reporting == Reporting::Text
                {
                    print_summary(report, request);
                }
                eprintln!("error: {error}");
            }
        }
    }
    ExitCode::from(code)
}

fn emit(line: &ConverterLine) {
    let mut stdout = std::io::stdout().lock();
    if let Ok(text) = serde_json::to_string(line) {
        // A closed pipe means the parent is gone; nothing useful is left to do with output.
        let _ = writeln!(stdout, "{text}");
        let _ = stdout.flush();
    }
}

fn print_summary(report: &ConversionReport, request: &ConvertRequest) {
    let line = |label: &str, text: String| eprintln!("{label:<10} {text}");
    eprintln!();
    line(
        "source",
        format!(
            "{} ({}, {}, {})",
            report.source.file_name,
            report.source.variant,
            count(report.source.classes as u64, "class", "classes"),
            count(report.source.parameters, "parameter", "parameters")
        ),
    );
    line(
        "artifact",
        format!(
            "{} ({:.1} MB, sha256 {})",
            request.output.display(),
            report.artifact.size_bytes as f64 / 1e6,
            report.artifact.sha256
        ),
    );
    line(
        "validation",
        format!(
            "{} on {}",
            format!("{:?}", report.validation.status).to_lowercase(),
            report.validation.device
        ),
    );
    // Names such as `decoded.keypoints.conf@2x128x192` set the column's width.
    let width = report
        .validation
        .checks
        .iter()
        .map(|check| check.name.len())
        .max()
        .unwrap_or(0);
    for check in &report.validation.checks {
        let tolerance = match check.max_abs_error {
            Some(_) if check.tolerance.abs == 0.0 => "exact".to_owned(),
            Some(_) => format!("tolerance {:e}", check.tolerance.abs),
            // A smoke check: the method runs and returns the right shape.
            None => "runs, right shape".to_owned(),
        };
        eprintln!(
            "  {:<4} {:<width$}  max |err| {:>9}  mean |err| {:>9}  ({tolerance})",
            if check.passed { "ok" } else { "FAIL" },
            check.name,
            fmt_error(check.max_abs_error),
            fmt_error(check.mean_abs_error),
        );
    }
    if let Some(latency) = &report.latency {
        let spread = if latency.runs > 1 {
            format!("p50 {:.1} ms, p90 {:.1} ms", latency.p50_ms, latency.p90_ms)
        } else {
            format!("{:.1} ms", latency.p50_ms)
        };
        line(
            "latency",
            format!(
                "{spread} on {} ({:?}, {})",
                latency.device,
                latency.input_shape,
                count(latency.runs as u64, "run", "runs")
            ),
        );
    }
    let total: f64 = report.stages.iter().map(|s| s.seconds).sum();
    let stages: Vec<String> = report
        .stages
        .iter()
        .map(|s| format!("{} {:.2} s", s.stage, s.seconds))
        .collect();
    line(
        "stages",
        format!("{} (total {total:.2} s)", stages.join(", ")),
    );
    if let Some(path) = &request.report {
        line("report", path.display().to_string());
    }
}

fn fmt_error(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), small_number)
}
