//! The conversion pipeline: read, describe, build, fuse, script (or trace), optimise,
//! save, then the proof (`proof.rs`: validation and timing) and the report (`report.rs`);
//! stage timing lives in `clock.rs`, the request's checks in `options.rs`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tch::{Device, Kind, Tensor};
use yolots_checkpoint::model::ModelDescription;

use crate::checkpoint_api::Checkpoint;
use crate::clock::Clock;
use crate::error::{ConvertError, Result};
use crate::jit::{CompilationUnit, ScriptModule};
use crate::layers::{Emitter, Placement, WeightSource};
use crate::metadata::{ArtifactMetadata, InputSpec, METADATA_FILE, METADATA_FORMAT};
use crate::network::Network;
use crate::onnx;
use crate::options::check_request;
use crate::options::{
    ConvertRequest, Format, Mode, Optimize, Precision, PrecisionKind, ResolveDevice,
};
use crate::progress::{ProgressEvent, Stage};
use crate::proof;
use crate::report::{
    ConversionReport, REPORT_SCHEMA, ReportStatus, SourceFacts, ValidationStatus, artifact_facts,
    environment, now_rfc3339, report_options, source_facts, write_report,
};
use crate::script::{self, RootSpec};
use crate::source::{CheckpointWeights, InputFile};
use crate::validate;

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
    // ONNX Runtime is loaded before any work when the proof will need it: a missing
    // library is reported at once, not after an artifact that cannot be validated is
    // written.
    if onnx::proof::needs_runtime(request) {
        onnx::runtime::loaded_version()?;
    }
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
    let file_name = request.source_name.as_deref().unwrap_or(&input.file_name);
    let source = source_facts(&desc, file_name, input.size, sha256);
    let weights = CheckpointWeights {
        checkpoint: &checkpoint,
        file: &input,
    };
    convert_model(&desc, &weights, source, request, &mut clock)
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
    let strides = check_request(desc, request, device)?;
    output_dir(&request.output)?;
    let max_stride = strides.iter().copied().max().unwrap_or(32);
    let kind = request.precision.kind();
    let fused = request.fuse || desc.fused;

    clock.begin(
        Stage::Building,
        format!("building {} layers", desc.layers.len()),
    );
    let mut net = Network::build(desc, weights, false, Placement::CPU_F32)?;
    weights.release_cached();
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
    let metadata = metadata(desc, &source, &strides, max_stride, fused, request);
    match request.format {
        Format::Torchscript => write_torchscript(net, desc, &strides, request, &metadata, clock)?,
        Format::Onnx => write_onnx(net, desc, request, &metadata, clock)?,
    }
    crate::memory::release_freed();

    // Hashing the artifact (a read of the whole file) overlaps the start of the proof,
    // whose reference build runs on one core.
    let (artifact, proof) = std::thread::scope(|scope| {
        let hashing = scope.spawn(|| {
            let (format, methods) = artifact_kind(request, desc.strides.len());
            artifact_facts(&request.output, format, methods, fused, tensor_elements)
        });
        let proof = match request.format {
            Format::Torchscript => proof::prove(desc, weights, request, device, max_stride, clock),
            Format::Onnx => onnx::proof::prove(desc, weights, request, max_stride, clock),
        };
        let artifact = hashing
            .join()
            .map_err(|_| ConvertError::Internal("hashing the artifact panicked".into()))?;
        Ok::<_, ConvertError>((artifact?, proof?))
    })
    .inspect_err(|_| {
        // The proof could not run: no file is left that looks converted but was never
        // checked. (A proof that ran and found a divergence keeps it, with its report.)
        if let Err(error) = fs::remove_file(&request.output) {
            tracing::warn!(%error, file = %request.output.display(), "removing the unproven artifact");
        }
    })?;
    let proof::Proof {
        validation,
        latency,
    } = proof;

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

/// Emits the TorchScript module (scripted or traced), optimises and saves it.
fn write_torchscript(
    net: Network,
    desc: &ModelDescription,
    strides: &[i64],
    request: &ConvertRequest,
    metadata: &ArtifactMetadata,
    clock: &mut Clock<'_>,
) -> Result<()> {
    let mut module = match request.mode {
        Mode::Script => {
            clock.begin(Stage::Scripting, "generating TorchScript".into());
            emit(&net, desc, strides, request, None)?
        }
        Mode::Trace => {
            clock.begin(
                Stage::Tracing,
                format!(
                    "tracing at {}x{}",
                    request.img_size.height, request.img_size.width
                ),
            );
            let kind = request.precision.kind();
            let example = validate::test_input(1, request.img_size.hw())?.f_to_kind(kind)?;
            emit(&net, desc, strides, request, Some(&example))?
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
    let json = serde_json::to_vec_pretty(metadata)
        .map_err(|e| ConvertError::Internal(format!("metadata: {e}")))?;
    save_atomically(
        &module,
        &request.output,
        request.optimize == Optimize::Mobile,
        &json,
    )
}

/// Writes the ONNX graph of the network and saves it.
fn write_onnx(
    net: Network,
    desc: &ModelDescription,
    request: &ConvertRequest,
    metadata: &ArtifactMetadata,
    clock: &mut Clock<'_>,
) -> Result<()> {
    clock.begin(Stage::Exporting, "writing the ONNX graph".into());
    let spec = onnx::export::OnnxSpec {
        head: request.head,
        precision: request.precision,
        thresholds: onnx::nms_thresholds(request),
        layout: validate::RowLayout {
            nc: desc.nc,
            nkpt: desc.nkpt(),
        },
        metadata,
    };
    let model = onnx::export::model(&net, &spec)?;
    drop(net);
    clock.begin(
        Stage::Saving,
        format!("writing {}", request.output.display()),
    );
    onnx::export::save(model, &request.output)
}

/// The artifact's format name and what it offers (methods, or ONNX outputs).
fn artifact_kind(request: &ConvertRequest, levels: usize) -> (&'static str, Vec<String>) {
    match request.format {
        Format::Onnx => ("onnx", onnx::export::output_names(request.head, levels)),
        Format::Torchscript => {
            let mut methods = vec!["forward".to_owned()];
            methods.extend(script::METHODS.iter().map(|m| (*m).to_owned()));
            let format = if request.optimize == Optimize::Mobile {
                "lite"
            } else {
                "torchscript"
            };
            (format, methods)
        }
    }
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
            clock.begin(Stage::Optimizing, "freezing, inference passes".into());
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
    let channels_last = script::channels_last(request.mode, request.optimize);
    script::define_input(&mut root, net, strides.iter().copied().max().unwrap_or(32))?;
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
    let nkpt = desc.nkpt();
    let layout = yolots_protocol::keypoint_layout(nkpt);
    ArtifactMetadata {
        format: METADATA_FORMAT.to_owned(),
        task: desc.task(),
        names: desc.names.clone(),
        nc: desc.nc,
        kpt_shape: (nkpt > 0).then_some([nkpt, yolots_protocol::KEYPOINT_VALUES]),
        keypoint_names: layout.as_ref().map(|(names, _)| names.clone()),
        skeleton: layout.map(|(_, skeleton)| skeleton),
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
            // ONNX files take float32 whatever their precision (they cast inside).
            dtype: match (request.format, request.precision) {
                (Format::Onnx, _) | (_, Precision::Fp32) => "float32",
                (Format::Torchscript, Precision::Fp16) => "float16",
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
        libtorch_version: match request.format {
            Format::Torchscript => crate::runtime::libtorch_version(),
            Format::Onnx => None,
        },
        artifact_format: request.format,
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
    let start = Instant::now();
    let saved = if mobile {
        module.save_for_mobile(&tmp, &files)
    } else {
        module.save(&tmp, &files)
    };
    if let Err(e) = saved {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    tracing::debug!(ms = start.elapsed().as_secs_f64() * 1e3, "artifact written");
    fs::rename(&tmp, path).map_err(|e| ConvertError::io(path, e))
}
