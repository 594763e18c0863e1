//! The conversion pipeline: read, describe, build, fuse, script (or trace), optimise,
//! save, validate, time, report.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};
use yolots_checkpoint::model::{DType, HeadKind, ModelDescription, ModelSource, Variant};

use crate::checkpoint_api::Checkpoint;
use crate::error::{ConvertError, Result};
use crate::jit::{CompilationUnit, ScriptModule};
use crate::layers::{Emitter, Placement, WeightSource};
use crate::metadata::{ArtifactMetadata, InputSpec, METADATA_FILE, METADATA_FORMAT};
use crate::network::Network;
use crate::options::{
    ConvertRequest, Head, Mode, Optimize, Precision, PrecisionKind, ResolveDevice,
};
use crate::progress::{ProgressEvent, Stage};
use crate::report::{
    ArtifactFacts, ConversionReport, Environment, Latency, OutputCheck, OutputKind, REPORT_SCHEMA,
    ReportOptions, ReportStatus, SourceFacts, StageTime, Validation, ValidationStatus,
};
use crate::script::{self, RootSpec};
use crate::source::{CheckpointWeights, InputFile};
use crate::validate::{self, Arg, Loaded, Reference};

/// Converts the checkpoint `request.input` into a TorchScript artifact at
/// `request.output`, reporting progress as it goes.
///
/// On success the report says whether the artifact was validated. When validation finds
/// a divergence the artifact and the report are still written, and the error carries
/// the report ([`ConvertError::ValidationFailed`]).
pub fn convert(
    request: &ConvertRequest,
    progress: &mut dyn FnMut(&ProgressEvent),
) -> Result<ConversionReport> {
    let mut clock = Clock::new(progress);
    clock.begin(
        Stage::Reading,
        format!("reading {}", request.input.display()),
    );
    let input = InputFile::open(&request.input)?;
    let sha256 = input.sha256();
    let checkpoint = Checkpoint::from_bytes(input.bytes()).map_err(ConvertError::Input)?;
    clock.begin(Stage::Describing, "describing the model".into());
    let desc = checkpoint.describe().map_err(ConvertError::Input)?;
    let source = source_facts(&desc, &input.file_name, input.size, sha256);
    let weights = CheckpointWeights {
        checkpoint: &checkpoint,
    };
    convert_model(&desc, &weights, source, request, &mut clock)
}

/// Times stages and reports them.
pub(crate) struct Clock<'p> {
    progress: &'p mut dyn FnMut(&ProgressEvent),
    current: Option<(Stage, Instant)>,
    pub(crate) stages: Vec<StageTime>,
}

impl<'p> Clock<'p> {
    pub(crate) fn new(progress: &'p mut dyn FnMut(&ProgressEvent)) -> Self {
        Clock {
            progress,
            current: None,
            stages: Vec::new(),
        }
    }

    fn fraction(stage: Stage) -> f64 {
        match stage {
            Stage::Reading => 0.0,
            Stage::Describing => 0.05,
            Stage::Building => 0.1,
            Stage::Fusing => 0.25,
            Stage::Scripting => 0.3,
            Stage::Tracing => 0.35,
            Stage::Optimizing => 0.4,
            Stage::Saving => 0.45,
            Stage::Validating => 0.55,
            Stage::Timing => 0.85,
            Stage::Done => 1.0,
        }
    }

    fn end(&mut self) {
        if let Some((stage, start)) = self.current.take() {
            self.stages.push(StageTime {
                stage,
                seconds: start.elapsed().as_secs_f64(),
            });
        }
    }

    pub(crate) fn begin(&mut self, stage: Stage, message: String) {
        self.end();
        tracing::info!(stage = %stage, "{message}");
        (self.progress)(&ProgressEvent::new(stage, Self::fraction(stage), message));
        self.current = Some((stage, Instant::now()));
    }

    pub(crate) fn done(&mut self, message: String) {
        self.end();
        (self.progress)(&ProgressEvent::new(Stage::Done, 1.0, message));
    }
}

pub(crate) fn source_facts(
    desc: &ModelDescription,
    file_name: &str,
    size: u64,
    sha256: String,
) -> SourceFacts {
    let head = desc.head();
    SourceFacts {
        file_name: file_name.to_owned(),
        size_bytes: size,
        sha256,
        variant: variant_name(desc.variant).to_owned(),
        model: match desc.source {
            ModelSource::Ema => "ema",
            ModelSource::Model => "model",
        }
        .to_owned(),
        classes: desc.nc,
        names: desc.names.clone(),
        parameters: desc.parameters,
        layers: desc.layers.len(),
        head: match head.map(|h| h.kind) {
            Some(HeadKind::Detect) => "Detect",
            Some(HeadKind::IDetect) => "IDetect",
            Some(HeadKind::IAuxDetect) => "IAuxDetect",
            None => "none",
        }
        .to_owned(),
        strides: desc.strides.clone(),
        weights_dtype: dtype_name(desc.weights_dtype).to_owned(),
        epoch: desc.epoch,
        already_fused: desc.fused,
    }
}

fn variant_name(v: Variant) -> &'static str {
    match v {
        Variant::Yolov7Tiny => "yolov7-tiny",
        Variant::Yolov7 => "yolov7",
        Variant::Yolov7x => "yolov7x",
        Variant::Yolov7W6 => "yolov7-w6",
        Variant::Yolov7E6 => "yolov7-e6",
        Variant::Yolov7D6 => "yolov7-d6",
        Variant::Yolov7E6e => "yolov7-e6e",
        Variant::Custom => "custom",
    }
}

fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        DType::F32 => "float32",
        DType::F64 => "float64",
        DType::U8 => "uint8",
        DType::I8 => "int8",
        DType::I16 => "int16",
        DType::I32 => "int32",
        DType::I64 => "int64",
        DType::Bool => "bool",
    }
}

/// Checks the options against the model; returns the strides as integers.
fn check_options(
    desc: &ModelDescription,
    request: &ConvertRequest,
    device: Device,
) -> Result<Vec<i64>> {
    let bad = |m: String| Err(ConvertError::Options(m));
    let strides: Vec<i64> = desc.strides.iter().map(|s| s.round() as i64).collect();
    let Some(&max_stride) = strides.iter().max() else {
        return bad("the model has no output levels".into());
    };
    if max_stride <= 0
        || strides
            .iter()
            .zip(&desc.strides)
            .any(|(i, f)| (*i as f64 - f).abs() > 1e-6)
    {
        return Err(ConvertError::Unsupported(format!(
            "strides {:?}",
            desc.strides
        )));
    }
    let [h, w] = request.img_size.hw();
    if h % max_stride != 0 || w % max_stride != 0 {
        return bad(format!(
            "image size {h}x{w} is not a multiple of the largest stride {max_stride}"
        ));
    }
    if h > 8192 || w > 8192 {
        return bad(format!("image size {h}x{w} is larger than 8192"));
    }
    if !(0.0..=1.0).contains(&request.conf) {
        return bad(format!("conf {} is outside [0, 1]", request.conf));
    }
    if !(0.0..=1.0).contains(&request.iou) {
        return bad(format!("iou {} is outside [0, 1]", request.iou));
    }
    if request.max_det < 1 {
        return bad(format!("max_det {} is less than 1", request.max_det));
    }
    if let Device::Cuda(n) = device {
        let count = crate::runtime::cuda_device_count();
        if n >= count {
            return bad(format!(
                "cuda:{n} requested, libtorch sees {count} CUDA device(s)"
            ));
        }
    }
    if request.optimize == Optimize::Mobile && request.precision == Precision::Fp16 {
        return bad(
            "the mobile optimizer rewrites convolutions for float32 only; \
                    use --precision fp32 with --optimize mobile"
                .into(),
        );
    }
    Ok(strides)
}

fn device_name(d: Device) -> String {
    match d {
        Device::Cuda(n) => format!("cuda:{n}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
        _ => "cpu".into(),
    }
}

/// The pipeline after the checkpoint is described; `weights` may be any source.
pub(crate) fn convert_model(
    desc: &ModelDescription,
    weights: &dyn WeightSource,
    source: SourceFacts,
    request: &ConvertRequest,
    clock: &mut Clock<'_>,
) -> Result<ConversionReport> {
    let device = request.device.resolve();
    let strides = check_options(desc, request, device)?;
    output_dir(&request.output)?;
    let max_stride = strides.iter().copied().max().unwrap_or(32);
    let kind = request.precision.kind();
    let fused = request.fuse || desc.fused;

    clock.begin(
        Stage::Building,
        format!("building {} layers", desc.layers.len()),
    );
    let mut net = Network::build(desc, weights, false, Placement::CPU_F32)?;
    if request.fuse && !desc.fused {
        clock.begin(
            Stage::Fusing,
            "folding BatchNorm, RepConv and implicit layers".into(),
        );
        net = net.fused()?;
    }
    if kind != Kind::Float {
        net = net.placed(Placement {
            kind,
            device: Device::Cpu,
        })?;
    }
    if let Some(p) = &request.perturb {
        net.perturb(&p.parameter, p.delta)?;
    }
    let tensor_elements = net.numel();

    let mut module = match request.mode {
        Mode::Script => {
            clock.begin(Stage::Scripting, "generating TorchScript".into());
            emit(&net, desc, &strides, request, None)?
        }
        Mode::Trace => {
            clock.begin(
                Stage::Tracing,
                format!(
                    "tracing at {}x{}",
                    request.img_size.height, request.img_size.width
                ),
            );
            let example = validate::test_input(1, request.img_size.hw())?.f_to_kind(kind)?;
            emit(&net, desc, &strides, request, Some(&example))?
        }
    };
    drop(net);

    module = optimize(module, request.optimize, clock)?;

    if tracing::enabled!(tracing::Level::TRACE) {
        tracing::trace!(graphs = %module.graphs()?, "TorchScript graphs");
    }
    clock.begin(
        Stage::Saving,
        format!("writing {}", request.output.display()),
    );
    let metadata = metadata(desc, &source, &strides, max_stride, fused, request);
    let json = serde_json::to_vec_pretty(&metadata)
        .map_err(|e| ConvertError::Internal(format!("metadata: {e}")))?;
    save_atomically(
        &module,
        &request.output,
        request.optimize == Optimize::Mobile,
        &json,
    )?;
    drop(module);
    let artifact = artifact_facts(&request.output, request.optimize, fused, tensor_elements)?;

    let validation = if request.validate {
        clock.begin(
            Stage::Validating,
            format!("validating on {}", device_name(device)),
        );
        validate_artifact(desc, weights, request, device, max_stride)?
    } else {
        Validation::skipped(device_name(device), "validation disabled")
    };

    let latency = if request.latency_runs > 0 {
        clock.begin(
            Stage::Timing,
            format!("{} timed runs", request.latency_runs),
        );
        time_artifact(request, device)?
    } else {
        None
    };

    let status = match validation.status {
        ValidationStatus::Passed => ReportStatus::Passed,
        ValidationStatus::Failed => ReportStatus::Failed,
        ValidationStatus::Skipped | ValidationStatus::NotValidated => ReportStatus::NotValidated,
    };
    let summary = match status {
        ReportStatus::Passed => "validated".to_owned(),
        ReportStatus::Failed => format!("diverged: {}", validation.failed_outputs.join(", ")),
        ReportStatus::NotValidated => "not validated".to_owned(),
    };
    clock.done(format!("wrote {} ({summary})", request.output.display()));
    let report = ConversionReport {
        schema: REPORT_SCHEMA.to_owned(),
        status,
        created: now_rfc3339(),
        source,
        options: report_options(request),
        environment: environment(device),
        artifact,
        stages: clock.stages.clone(),
        validation,
        latency,
    };
    if let Some(path) = &request.report {
        write_report(&report, path)?;
    }
    if status == ReportStatus::Failed {
        let failed_outputs = report.validation.failed_outputs.clone();
        return Err(ConvertError::ValidationFailed {
            report: Box::new(report),
            failed_outputs,
        });
    }
    Ok(report)
}

/// Applies the requested graph optimisation.
fn optimize(
    module: ScriptModule,
    optimize: Optimize,
    clock: &mut Clock<'_>,
) -> Result<ScriptModule> {
    // Freezing keeps `forward` only unless told otherwise: keep the whole contract.
    let preserved: Vec<&str> = script::METHODS
        .iter()
        .chain(script::ATTRIBUTES)
        .copied()
        .collect();
    Ok(match optimize {
        Optimize::None => module,
        Optimize::Freeze => {
            clock.begin(Stage::Optimizing, "freezing".into());
            module.freeze(&preserved)?
        }
        Optimize::Inference => {
            clock.begin(
                Stage::Optimizing,
                "channels-last weights, freezing, inference passes".into(),
            );
            let mut module = module;
            module.channels_last()?;
            let mut frozen = module.freeze(&preserved)?;
            frozen.optimize_frozen(script::METHODS)?;
            frozen
        }
        Optimize::Mobile => {
            clock.begin(Stage::Optimizing, "optimize_for_mobile".into());
            module.optimize_for_mobile(script::METHODS)?
        }
    })
}

/// Builds the root module: network, attributes, `raw` (scripted or traced on
/// `trace_example`), and the contract's methods.
fn emit(
    net: &Network,
    desc: &ModelDescription,
    strides: &[i64],
    request: &ConvertRequest,
    trace_example: Option<&Tensor>,
) -> Result<ScriptModule> {
    let cu = CompilationUnit::new()?;
    let mut em = Emitter::new(&cu);
    let spec = RootSpec {
        names: &desc.names,
        strides: strides.to_vec(),
        img_size: request.img_size,
        conf: request.conf,
        iou: request.iou,
        max_det: request.max_det,
    };
    let mut root = script::root(&mut em, net, &spec)?;
    let channels_last = request.optimize == Optimize::Inference;
    match trace_example {
        None => script::define_raw(&mut root, net, channels_last)?,
        Some(example) => script::trace_raw(&mut root, net, example, channels_last)?,
    }
    script::define_contract(&mut root, net, request.head)?;
    Ok(root)
}

fn metadata(
    desc: &ModelDescription,
    source: &SourceFacts,
    strides: &[i64],
    max_stride: i64,
    fused: bool,
    request: &ConvertRequest,
) -> ArtifactMetadata {
    let dynamic = request.mode == Mode::Script;
    let [h, w] = request.img_size.hw();
    ArtifactMetadata {
        format: METADATA_FORMAT.to_owned(),
        names: desc.names.clone(),
        nc: desc.nc,
        strides: strides.to_vec(),
        anchors: desc
            .head()
            .map(|h| h.anchors_px.clone())
            .unwrap_or_default(),
        input: InputSpec {
            shape: if dynamic {
                vec![-1, 3, -1, -1]
            } else {
                vec![1, 3, h, w]
            },
            dtype: match request.precision {
                Precision::Fp32 => "float32",
                Precision::Fp16 => "float16",
            }
            .to_owned(),
            color: "RGB".to_owned(),
            range: [0.0, 1.0],
            img_size: request.img_size,
            size_multiple: max_stride,
            dynamic,
        },
        head: request.head,
        precision: request.precision,
        mode: request.mode,
        optimize: request.optimize,
        fused,
        conf_thres: request.conf,
        iou_thres: request.iou,
        max_det: request.max_det,
        source_sha256: source.sha256.clone(),
        source_file: source.file_name.clone(),
        yolots_version: env!("CARGO_PKG_VERSION").to_owned(),
        libtorch_version: crate::runtime::libtorch_version(),
        created: now_rfc3339(),
    }
}

/// The folder the artifact goes to, which must exist.
fn output_dir(path: &Path) -> Result<PathBuf> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    if path.file_name().is_none() {
        let message = format!("output {} has no file name", path.display());
        return Err(ConvertError::Options(message));
    }
    if !dir.is_dir() {
        let missing = std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory");
        return Err(ConvertError::io(dir, missing));
    }
    Ok(dir)
}

/// Writes next to `path` and renames, so a reader never sees a half-written artifact.
fn save_atomically(module: &ScriptModule, path: &Path, mobile: bool, json: &[u8]) -> Result<()> {
    let dir = output_dir(path)?;
    let file_name = path.file_name().unwrap_or_default();
    let tmp = dir.join(format!(".{}.partial", file_name.to_string_lossy()));
    let files = [(METADATA_FILE, json)];
    let saved = if mobile {
        module.save_for_mobile(&tmp, &files)
    } else {
        module.save(&tmp, &files)
    };
    if let Err(e) = saved {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path).map_err(|e| ConvertError::io(path, e))
}

fn artifact_facts(
    path: &Path,
    optimize: Optimize,
    fused: bool,
    tensor_elements: i64,
) -> Result<ArtifactFacts> {
    // Streamed: the artifact can be hundreds of MB.
    let mut file = fs::File::open(path).map_err(|e| ConvertError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| ConvertError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    let mut methods = vec!["forward".to_owned()];
    methods.extend(script::METHODS.iter().map(|m| (*m).to_owned()));
    Ok(ArtifactFacts {
        file_name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        size_bytes: size,
        sha256: hex::encode(hasher.finalize()),
        format: if optimize == Optimize::Mobile {
            "lite"
        } else {
            "torchscript"
        }
        .to_owned(),
        fused,
        tensor_elements,
        methods,
    })
}

/// Loads the artifact back and compares it with the unfused float32 eager network.
fn validate_artifact(
    desc: &ModelDescription,
    weights: &dyn WeightSource,
    request: &ConvertRequest,
    device: Device,
    max_stride: i64,
) -> Result<Validation> {
    let start = Instant::now();
    let mobile = request.optimize == Optimize::Mobile;
    // The lite interpreter runs where the file was saved (CPU).
    let run_device = if mobile { Device::Cpu } else { device };
    let reference_net = Network::build(
        desc,
        weights,
        false,
        Placement {
            kind: Kind::Float,
            device: run_device,
        },
    )?;
    let mut loaded = Loaded::load(&request.output, mobile, run_device)?;
    let kind = request.precision.kind();
    let mut sizes = vec![(1, request.img_size.hw())];
    if request.mode == Mode::Script {
        sizes.push((2, validate::second_size(request.img_size, max_stride)));
    }
    let mut checks: Vec<OutputCheck> = Vec::new();
    let mut note = None;
    for (batch, hw) in sizes {
        let input = validate::test_input(batch, hw)?.f_to_device(run_device)?;
        let reference = Reference::compute(&reference_net, &input)?;
        let artifact_input = input.f_to_kind(kind)?;
        let shape = artifact_input.size();
        let tag = format!("{batch}x{}x{}", hw[0], hw[1]);
        match run_checks(
            &mut loaded,
            request,
            &artifact_input,
            &reference,
            &shape,
            &tag,
            &mut checks,
        ) {
            Ok(()) => {}
            Err(ConvertError::Torch(message))
                if request.precision == Precision::Fp16 && message.contains("Half") =>
            {
                note = Some(format!(
                    "float16 not validated on {}: libtorch has no float16 kernel for an \
                     operation here ({message})",
                    device_name(run_device)
                ));
                checks.clear();
                break;
            }
            Err(e) => return Err(e),
        }
    }
    if note.is_none() {
        checks.push(smoke_detect_image(&mut loaded, request, run_device)?);
    }
    let failed_outputs: Vec<String> = checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name.clone())
        .collect();
    let status = if note.is_some() {
        ValidationStatus::NotValidated
    } else if failed_outputs.is_empty() {
        ValidationStatus::Passed
    } else {
        ValidationStatus::Failed
    };
    Ok(Validation {
        status,
        device: device_name(run_device),
        reference: "eager network built unfused in float32 from the same checkpoint".into(),
        loaded_with: loaded.loaded_with().into(),
        note,
        checks,
        failed_outputs,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn run_checks(
    loaded: &mut Loaded,
    request: &ConvertRequest,
    input: &Tensor,
    reference: &Reference,
    shape: &[i64],
    tag: &str,
    checks: &mut Vec<OutputCheck>,
) -> Result<()> {
    let precision = request.precision;
    let (raw_method, decoded_method) = validate::methods_for(request.head);
    let raw = loaded.call(raw_method, &[Arg::Tensor(input)])?;
    validate::check_raw(
        checks,
        raw_method,
        tag,
        shape,
        &raw,
        &reference.raw,
        precision,
    )?;
    drop(raw);
    let decoded = loaded.call(decoded_method, &[Arg::Tensor(input)])?;
    let decoded = match decoded.as_slice() {
        [d] => d,
        _ => {
            return Err(ConvertError::Internal(format!(
                "{decoded_method} returned {} tensors",
                decoded.len()
            )));
        }
    };
    validate::check_decoded(
        checks,
        decoded_method,
        tag,
        shape,
        decoded,
        &reference.decoded,
        precision,
    )?;
    if request.head == Head::Detections {
        // The artifact's NMS must keep exactly what a plain NMS keeps on the same decoded
        // output (whose parity with the reference is checked above). Comparing with NMS
        // over the reference's output instead would fail on near-ties: candidates whose
        // scores differ in the last float digits may rank either way.
        let got = loaded.call("forward", &[Arg::Tensor(input)])?;
        let want = validate::nms_per_image(decoded, request.conf, request.iou, request.max_det)?;
        for (i, w) in want.iter().enumerate() {
            let g = match got.get(i) {
                Some(t) => validate::dets_of(t)?,
                None => Vec::new(),
            };
            checks.push(validate::compare_detections(
                format!("detections.{i}@{tag}"),
                shape,
                &g,
                w,
                request.conf,
                precision,
            ));
        }
    }
    Ok(())
}

/// `detect_image` must take an odd-sized uint8 image and return `[K, 6]`.
fn smoke_detect_image(
    loaded: &mut Loaded,
    request: &ConvertRequest,
    device: Device,
) -> Result<OutputCheck> {
    let [h, w] = request.img_size.hw();
    let (ih, iw) = (h * 3 / 4 + 1, w / 2 + 3);
    let image = validate::test_input(1, [ih, iw])?
        .f_mul_scalar(255.0)?
        .f_to_kind(Kind::Uint8)?
        .f_get(0)?
        .f_permute([1, 2, 0])?
        .f_contiguous()?
        .f_to_device(device)?;
    let result = loaded.call(
        "detect_image",
        &[
            Arg::Tensor(&image),
            Arg::Float(request.conf),
            Arg::Float(request.iou),
            Arg::Int(request.max_det),
        ],
    );
    let (shape, passed, detail) = match &result {
        Ok(ts) => match ts.as_slice() {
            [t] if t.dim() == 2 && t.size()[1] == 6 => (t.size(), true, None),
            _ => (
                Vec::new(),
                false,
                Some(format!("returned {} tensors", ts.len())),
            ),
        },
        Err(e) => (Vec::new(), false, Some(e.to_string())),
    };
    Ok(OutputCheck {
        name: format!("detect_image@{ih}x{iw}x3"),
        method: "detect_image".into(),
        kind: OutputKind::Smoke,
        input_shape: vec![ih, iw, 3],
        shape,
        max_abs_error: None,
        mean_abs_error: None,
        tolerance: validate::tolerance(OutputKind::Smoke, request.precision),
        passed,
        detail,
    })
}

/// Latency of `forward` at the conversion size, batch 1.
fn time_artifact(request: &ConvertRequest, device: Device) -> Result<Option<Latency>> {
    const WARMUP: usize = 3;
    let mobile = request.optimize == Optimize::Mobile;
    let run_device = if mobile { Device::Cpu } else { device };
    let mut loaded = Loaded::load(&request.output, mobile, run_device)?;
    let input = validate::test_input(1, request.img_size.hw())?
        .f_to_kind(request.precision.kind())?
        .f_to_device(run_device)?;
    let sync = || {
        if let Device::Cuda(n) = run_device {
            tch::Cuda::synchronize(n as i64);
        }
    };
    let mut ms = Vec::with_capacity(request.latency_runs);
    for i in 0..WARMUP + request.latency_runs {
        let start = Instant::now();
        let out = loaded.call("forward", &[Arg::Tensor(&input)])?;
        sync();
        drop(out);
        if i >= WARMUP {
            ms.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(Latency::from_runs(
        device_name(run_device),
        "forward",
        input.size(),
        WARMUP,
        ms,
    ))
}

fn report_options(r: &ConvertRequest) -> ReportOptions {
    ReportOptions {
        mode: r.mode,
        head: r.head,
        precision: r.precision,
        fuse: r.fuse,
        optimize: r.optimize,
        img_size: r.img_size,
        device: r.device,
        conf: r.conf,
        iou: r.iou,
        max_det: r.max_det,
        validate: r.validate,
        latency_runs: r.latency_runs,
    }
}

fn environment(device: Device) -> Environment {
    Environment {
        yolots_version: env!("CARGO_PKG_VERSION").to_owned(),
        libtorch_version: crate::runtime::libtorch_version(),
        device: device_name(device),
        cuda_devices: crate::runtime::cuda_device_count(),
        cpu_threads: i64::from(tch::get_num_threads()),
    }
}

/// Writes `report` as pretty JSON.
pub fn write_report(report: &ConversionReport, path: &Path) -> Result<()> {
    let json = serde_json::to_vec_pretty(report)
        .map_err(|e| ConvertError::Internal(format!("report: {e}")))?;
    fs::write(path, json).map_err(|e| ConvertError::io(path, e))
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
