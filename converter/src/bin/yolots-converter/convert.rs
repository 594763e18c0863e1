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
    let request = ConvertRequest {
        test_fault: args.test_fault,
        ..args.request()
    };
    Ok(execute(&request, args.progress == ProgressFormat::Json))
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
    Ok(execute(&request, true))
}

/// Converts as `request` says; progress as text on stderr or as JSON lines on stdout.
fn execute(request: &ConvertRequest, json: bool) -> ExitCode {
    let fault = request.test_fault;
    let mut on_progress = |event: &ProgressEvent| {
        if json {
            emit(&ConverterLine::Progress(event.clone()));
        } else {
            eprintln!(
                "[{:>3.0}%] {:<10} {}",
                event.fraction * 100.0,
                event.stage,
                event.message
            );
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
        Ok(report) => print_summary(report, request),
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
                if let Some(report) = report {
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
    eprintln!();
    eprintln!(
        "source    {} ({}, {} classes, {} parameters)",
        report.source.file_name,
        report.source.variant,
        report.source.classes,
        report.source.parameters
    );
    eprintln!(
        "artifact  {} ({:.1} MB, sha256 {})",
        request.output.display(),
        report.artifact.size_bytes as f64 / 1e6,
        report.artifact.sha256
    );
    eprintln!(
        "validation {:?}: {}",
        report.validation.status, report.validation.device
    );
    for check in &report.validation.checks {
        eprintln!(
            "  {:<4} {:<28} max |err| {:>10}  mean |err| {:>10}  (tolerance {:e})",
            if check.passed { "ok" } else { "FAIL" },
            check.name,
            fmt_error(check.max_abs_error),
            fmt_error(check.mean_abs_error),
            check.tolerance.abs
        );
    }
    if let Some(latency) = &report.latency {
        eprintln!(
            "latency   p50 {:.2} ms, p90 {:.2} ms on {} ({:?}, {} runs)",
            latency.p50_ms, latency.p90_ms, latency.device, latency.input_shape, latency.runs
        );
    }
    let total: f64 = report.stages.iter().map(|s| s.seconds).sum();
    let stages: Vec<String> = report
        .stages
        .iter()
        .map(|s| format!("{} {:.2}s", s.stage, s.seconds))
        .collect();
    eprintln!("stages    {} (total {total:.2}s)", stages.join(", "));
    if let Some(path) = &request.report {
        eprintln!("report    {}", path.display());
    }
}

fn fmt_error(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.3e}"))
}
