//! The command lines of a conversion (`yolots convert` and `yolots-converter convert`) and
//! of a prediction (`yolots predict`), one definition for both programs: `yolots` reads
//! them to find the checkpoint it checks under hard bounds before it hands the arguments
//! on, the converter to do the work.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use crate::{
    ConvertRequest, DeviceChoice, Format, ImageSize, Mode, Optimize, Output, Precision, TestFault,
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
    /// Where to write `report.json` (default: beside the artifact and named after it,
    /// `NAME.torchscript.report.json`, `NAME.torchscript.lite.report.json` or
    /// `NAME.onnx.report.json`).
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
    /// No progress lines and no summary: only errors (the report is still written).
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More log lines on stderr: `-v` each step's details, `-vv` everything (`RUST_LOG`,
    /// when set, wins).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// A deliberate failure for the service's fault tests (`abort`, `hang`, `slow`), acted
    /// on once the `building` stage is reported. Workers pass it only when allowed.
    #[cfg(feature = "test-hooks")]
    #[arg(long, hide = true)]
    pub test_fault: Option<TestFault>,
}

/// Arguments of `yolots predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// The model: an artifact yolots wrote (`.torchscript.pt`, `.ptl`, `.onnx`) or a YOLOv7
    /// checkpoint (converted first, nothing written).
    pub model: PathBuf,
    /// Images (JPEG, PNG, WebP or BMP, recognised by content) or folders of them.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Write each image with its detections drawn into this folder (created if missing),
    /// under the input's file name.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Print one JSON document per image on stdout (a line each).
    #[arg(long)]
    pub json: bool,
    /// Confidence threshold.
    #[arg(long, default_value_t = limits::DEFAULT_CONF)]
    pub conf: f64,
    /// IoU threshold of the NMS.
    #[arg(long, default_value_t = limits::DEFAULT_IOU)]
    pub iou: f64,
    /// Most detections per image.
    #[arg(long, default_value_t = limits::DEFAULT_MAX_DET)]
    pub max_det: i64,
    /// `auto`, `cpu` or `cuda:N` (ONNX and lite models run on the CPU).
    #[arg(long, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// No line per image: only errors.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More log lines on stderr (`-v`, `-vv`).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
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
        .with_test_fault(self.test_fault())
    }

    /// `--test-fault`, in a build with test hooks.
    fn test_fault(&self) -> Option<TestFault> {
        #[cfg(feature = "test-hooks")]
        return self.test_fault;
        #[cfg(not(feature = "test-hooks"))]
        None
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

/// The report beside the artifact, named after it, so that artifacts of one checkpoint
/// (TorchScript, lite, ONNX) each keep their own: `best.torchscript.pt` gives
/// `best.torchscript.report.json`, `best.torchscript.ptl` `best.torchscript.lite.report.json`,
/// `best.onnx` `best.onnx.report.json`.
pub fn default_report(output: &Path) -> PathBuf {
    let name = output
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = if let Some(stem) = name.strip_suffix(".ptl") {
        format!("{stem}.lite")
    } else if let Some(stem) = name.strip_suffix(".pt") {
        stem.to_owned()
    } else {
        name
    };
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
        let budget = crate::limits::DEFAULT_LATENCY_BUDGET_S;
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
    fn quiet_and_verbose_are_flags() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: ConvertArgs,
        }
        let parse = |extra: &[&str]| {
            let argv = ["yolots-converter", "best.pt"].iter().chain(extra);
            <Cli as clap::Parser>::try_parse_from(argv).map(|c| (c.args.quiet, c.args.verbose))
        };
        assert_eq!(parse(&[]).unwrap(), (false, 0));
        assert_eq!(parse(&["-q"]).unwrap(), (true, 0));
        assert_eq!(parse(&["-vv"]).unwrap(), (false, 2));
        assert!(parse(&["-q", "-v"]).is_err());
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
        assert_eq!(
            default_report(&out),
            Path::new("runs/best.torchscript.report.json")
        );
        assert_eq!(
            default_report(Path::new("best.torchscript.ptl")),
            Path::new("best.torchscript.lite.report.json")
        );
        let onnx = default_output(Path::new("runs/best.pt"), Format::Onnx, Optimize::None);
        assert_eq!(onnx, Path::new("runs/best.onnx"));
        assert_eq!(
            default_report(&onnx),
            Path::new("runs/best.onnx.report.json")
        );
    }
}
