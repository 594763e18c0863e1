//! `yolots-converter convert IN.pt` (what `yolots convert IN.pt` runs): the whole
//! pipeline without the service.
//!
//! Progress goes to stderr, one line per stage (`--progress json` prints JSON lines on
//! stdout instead, which is how the service's workers follow a conversion child).
//! Exit status: 0 on success, 2 when the input is not a supported model (or an option does
//! not fit it, such as a size that is not a multiple of its stride), 3 when the artifact
//! fails validation (the report says which output diverged), 1 otherwise.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use yolots_converter::{
    ConversionReport, ConvertError, ConvertRequest, ConverterLine, DeviceChoice, EXIT_DIVERGED,
    EXIT_REFUSED, Format, ImageSize, Mode, Optimize, Output, Precision, ProgressEvent, TestFault,
    limits,
};

/// Arguments of `yolots convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The checkpoint written by YOLOv7's training code.
    pub input: PathBuf,
    /// The artifact to write (default: beside the input, `NAME.torchscript.pt`,
    /// `NAME.torchscript.ptl` with `--optimize mobile`, `NAME.onnx` with `--format onnx`).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// `torchscript` (a TorchScript module for LibTorch and PyTorch) or `onnx` (an opset 17
    /// graph for ONNX Runtime, TensorRT, OpenVINO and OpenCV).
    #[arg(long, default_value_t = Format::Torchscript)]
    pub format: Format,
    /// `script` (dynamic batch, size and device) or `trace` (fixed size).
    #[arg(long, default_value_t = Mode::Script)]
    pub mode: Mode,
    /// What `forward` returns: `decoded`, `raw` or `detections`.
    #[arg(long, default_value_t = Output::Decoded)]
    pub head: Output,
    /// `fp32` or `fp16`.
    #[arg(long, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// Keep the source structure (no BatchNorm / RepConv / implicit folding).
    #[arg(long)]
    pub no_fuse: bool,
    /// `none`, `freeze`, `inference` or `mobile` (a lite-interpreter `.ptl`).
    #[arg(long, default_value_t = Optimize::None)]
    pub optimize: Optimize,
    /// Conversion size `H` or `H,W`: trace size, validation size, letterbox size.
    #[arg(long, default_value_t = ImageSize::default())]
    pub img_size: ImageSize,
    /// `auto`, `cpu` or `cuda:N`.
    #[arg(long, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Confidence threshold of the `detections` head.
    #[arg(long, default_value_t = limits::DEFAULT_CONF)]
    pub conf: f64,
    /// IoU threshold of the `detections` head.
    #[arg(long, default_value_t = limits::DEFAULT_IOU)]
    pub iou: f64,
    /// Most detections per image of the `detections` head.
    #[arg(long, default_value_t = limits::DEFAULT_MAX_DET)]
    pub max_det: i64,
    /// Where to write `report.json` (default: beside the artifact, `NAME.report.json`).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Skip loading the artifact back and comparing it with the reference.
    #[arg(long)]
    pub no_validate: bool,
    /// Timed runs of `forward` after warm-up: exactly N (0 skips timing). Without it,
    /// runs are timed until about `--latency-budget` seconds are spent: at least one, at
    /// most 10.
    #[arg(long)]
    pub latency_runs: Option<usize>,
    /// Seconds the timed runs may take (default 1; at least one run is made). With
    /// `--latency-runs N`, at most N runs within it.
    #[arg(long)]
    pub latency_budget: Option<f64>,
    /// How progress is reported.
    #[arg(long, value_enum, default_value_t = ProgressFormat::Text)]
    pub progress: ProgressFormat,
    /// A deliberate failure for the service's fault tests (`abort`, `hang`, `slow`), acted
    /// on once the `building` stage is reported. Workers pass it only when allowed.
    #[arg(long, hide = true)]
    pub test_fault: Option<TestFault>,
}

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

/// How `yolots convert` reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressFormat {
    /// A line per stage on stderr and a summary at the end.
    Text,
    /// JSON lines on stdout (`{"event":"progress",...}`, then `result` or `error`).
    Json,
}

impl ConvertArgs {
    /// The converter's request for these arguments.
    pub fn request(&self) -> ConvertRequest {
        let output = self
            .output
            .clone()
            .unwrap_or_else(|| default_output(&self.input, self.format, self.optimize));
        let report = self
            .report
            .clone()
            .unwrap_or_else(|| default_report(&output));
        ConvertRequest {
            format: self.format,
            mode: self.mode,
            head: self.head,
            precision: self.precision,
            fuse: !self.no_fuse,
            optimize: self.optimize,
            img_size: self.img_size,
            device: self.device,
            conf: self.conf,
            iou: self.iou,
            max_det: self.max_det,
            validate: !self.no_validate,
            report: Some(report),
            ..self.latency(ConvertRequest::new(&self.input, output))
        }
    }
}

impl ConvertArgs {
    /// `request` with the timing asked for: an explicit `--latency-runs N` alone means
    /// exactly N runs; otherwise the budget (given or default) bounds them.
    fn latency(&self, request: ConvertRequest) -> ConvertRequest {
        let (latency_runs, latency_budget_s) = match (self.latency_runs, self.latency_budget) {
            (Some(runs), None) => (runs, None),
            (runs, budget) => (
                runs.unwrap_or(request.latency_runs),
                budget.or(request.latency_budget_s),
            ),
        };
        ConvertRequest {
            latency_runs,
            latency_budget_s,
            ..request
        }
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

/// `dir/NAME.torchscript.pt` (or `.ptl`, or `NAME.onnx`) beside the input.
fn default_output(input: &Path, format: Format, optimize: Optimize) -> PathBuf {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    if format == Format::Onnx {
        return input.with_file_name(format!("{stem}.onnx"));
    }
    let extension = if optimize == Optimize::Mobile {
        "ptl"
    } else {
        "pt"
    };
    input.with_file_name(format!("{stem}.torchscript.{extension}"))
}

/// `dir/NAME.report.json` beside the artifact.
fn default_report(output: &Path) -> PathBuf {
    let name = output
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name
        .strip_suffix(".pt")
        .or_else(|| name.strip_suffix(".ptl"))
        .or_else(|| name.strip_suffix(".onnx"))
        .unwrap_or(&name);
    let stem = stem.strip_suffix(".torchscript").unwrap_or(stem);
    output.with_file_name(format!("{stem}.report.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_runs_alone_are_exact_else_the_budget_bounds_them() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: ConvertArgs,
        }
        let timing = |extra: &[&str]| {
            let argv = ["yolots-converter", "best.pt"].iter().chain(extra);
            let r = <Cli as clap::Parser>::parse_from(argv).args.request();
            (r.latency_runs, r.latency_budget_s)
        };
        let budget = yolots_converter::DEFAULT_LATENCY_BUDGET_S;
        assert_eq!(timing(&[]), (10, Some(budget)));
        assert_eq!(timing(&["--latency-runs", "3"]), (3, None));
        assert_eq!(timing(&["--latency-runs", "0"]), (0, None));
        assert_eq!(timing(&["--latency-budget", "5"]), (10, Some(5.0)));
        assert_eq!(
            timing(&["--latency-runs", "3", "--latency-budget", "5"]),
            (3, Some(5.0))
        );
    }

    #[test]
    fn default_paths_sit_beside_the_input() {
        let ts = Format::Torchscript;
        let out = default_output(Path::new("runs/best.pt"), ts, Optimize::None);
        assert_eq!(out, Path::new("runs/best.torchscript.pt"));
        assert_eq!(
            default_output(Path::new("best.pt"), ts, Optimize::Mobile),
            Path::new("best.torchscript.ptl")
        );
        assert_eq!(default_report(&out), Path::new("runs/best.report.json"));
        let onnx = default_output(Path::new("runs/best.pt"), Format::Onnx, Optimize::None);
        assert_eq!(onnx, Path::new("runs/best.onnx"));
        assert_eq!(default_report(&onnx), Path::new("runs/best.report.json"));
    }
}
