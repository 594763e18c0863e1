//! The model `predict` runs, loaded once for every image: a TorchScript artifact (its own
//! `detect_image`), a lite-interpreter `.ptl` (the same method), an ONNX artifact (ONNX
//! Runtime, with the letterbox and NMS of `detect_image` done beside it, see
//! [`super::onnx`]), or a checkpoint converted first into a temporary folder that is
//! removed once the artifact is loaded.

use std::io::Read;
use std::path::{Path, PathBuf};

use image::RgbImage;
use tch::{Device, IValue, Kind, Tensor};

use crate::error::{ConvertError, Result};
use crate::jit::{MobileArg, MobileModule};
use crate::metadata::{ArtifactMetadata, METADATA_FILE};
use crate::onnx::runtime::OnnxSession;
use crate::options::{ConvertRequest, DeviceChoice, Optimize, ResolveDevice};

/// What the NMS keeps, as `detect_image` takes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Boxes scoring at or below this are dropped.
    pub conf: f64,
    /// A box overlapping a better one of its class by more than this is dropped.
    pub iou: f64,
    /// Most boxes kept per image.
    pub max_det: i64,
}

/// What the model file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// A TorchScript artifact written by yolots.
    Torchscript,
    /// A lite-interpreter artifact (`--optimize mobile`).
    Lite,
    /// An ONNX artifact written by yolots.
    Onnx,
    /// A YOLOv7 checkpoint, converted before it runs.
    Checkpoint,
}

enum Engine {
    Torchscript(tch::CModule),
    Lite(MobileModule),
    Onnx(Box<OnnxSession>),
}

/// A loaded model and what its metadata says about it.
pub struct Predictor {
    engine: Engine,
    kind: ModelKind,
    metadata: ArtifactMetadata,
    device: Device,
}

impl Predictor {
    /// Loads the model at `path` (recognised by its content) to run on `device`.
    pub fn load(path: &Path, device: DeviceChoice) -> Result<Self> {
        let device = device.resolve();
        let start = std::time::Instant::now();
        let bytes = std::fs::read(path).map_err(|e| ConvertError::io(path, e))?;
        let predictor = if yolots_onnx::read::looks_like_onnx(&bytes) {
            let metadata = onnx_metadata(&bytes, path)?;
            drop(bytes);
            if device != Device::Cpu {
                tracing::warn!("ONNX artifacts run on the CPU (ONNX Runtime's CPU provider)");
            }
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let session = OnnxSession::from_file(path, threads)?;
            Predictor {
                engine: Engine::Onnx(Box::new(session)),
                kind: ModelKind::Onnx,
                metadata,
                device: Device::Cpu,
            }
        } else if let Some(metadata) = archive_metadata(&bytes, path)? {
            drop(bytes);
            if metadata.optimize == Optimize::Mobile {
                if device != Device::Cpu {
                    tracing::warn!("lite-interpreter artifacts run on the CPU");
                }
                Predictor {
                    engine: Engine::Lite(MobileModule::load(path)?),
                    kind: ModelKind::Lite,
                    metadata,
                    device: Device::Cpu,
                }
            } else {
                Predictor {
                    engine: Engine::Torchscript(tch::CModule::load_on_device(path, device)?),
                    kind: ModelKind::Torchscript,
                    metadata,
                    device,
                }
            }
        } else {
            drop(bytes);
            Self::from_checkpoint(path, device)?
        };
        tracing::debug!(
            ms = start.elapsed().as_secs_f64() * 1e3,
            kind = ?predictor.kind,
            "model loaded"
        );
        Ok(predictor)
    }

    /// Converts the checkpoint at `path` (script mode, the default options, no
    /// validation) into a temporary folder, loads the artifact and removes the folder.
    fn from_checkpoint(path: &Path, device: Device) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("yolots-predict-")
            .tempdir()
            .map_err(|e| ConvertError::io(std::env::temp_dir(), e))?;
        let artifact = dir.path().join("model.torchscript.pt");
        let mut request = ConvertRequest::new(path.to_path_buf(), artifact.clone());
        request.device = match device {
            Device::Cuda(n) => DeviceChoice::Cuda(n),
            _ => DeviceChoice::Cpu,
        };
        request.validate = false;
        request.latency_runs = 0;
        request.report = None;
        crate::convert(&request, &mut |event| {
            tracing::debug!(stage = %event.stage, "{}", event.message);
        })?;
        let bytes = std::fs::read(&artifact).map_err(|e| ConvertError::io(&artifact, e))?;
        let metadata = archive_metadata(&bytes, &artifact)?.ok_or_else(|| {
            ConvertError::Internal("the converted artifact has no yolots.json".into())
        })?;
        let module = tch::CModule::load_data_on_device(&mut std::io::Cursor::new(bytes), device)?;
        Ok(Predictor {
            engine: Engine::Torchscript(module),
            kind: ModelKind::Checkpoint,
            metadata,
            device,
        })
    }

    /// What the model file was.
    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    /// The artifact's `yolots.json` (for a checkpoint, the converted artifact's).
    pub fn metadata(&self) -> &ArtifactMetadata {
        &self.metadata
    }

    /// The device the model runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Runs the model on one RGB image: `[K, 6 + 3 nkpt]` float32 rows on the CPU
    /// (`x1, y1, x2, y2, score, class`, then `x, y, conf` per keypoint) in the image's
    /// own pixels, best first, exactly what the artifact's `detect_image` returns.
    pub fn detect(&mut self, image: &RgbImage, t: Thresholds) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let (w, h) = image.dimensions();
        let pixels =
            Tensor::f_from_data_size(image.as_raw(), &[h as i64, w as i64, 3], Kind::Uint8)?;
        let rows = match &mut self.engine {
            Engine::Torchscript(module) => {
                let pixels = pixels.f_to_device(self.device)?;
                let args = [
                    IValue::Tensor(pixels),
                    IValue::Double(t.conf),
                    IValue::Double(t.iou),
                    IValue::Int(t.max_det),
                ];
                match module.method_is("detect_image", &args)? {
                    IValue::Tensor(rows) => rows,
                    other => {
                        return Err(ConvertError::Torch(format!(
                            "detect_image returned {other:?}, not a tensor"
                        )));
                    }
                }
            }
            Engine::Lite(module) => {
                let args = [
                    MobileArg::Tensor(&pixels),
                    MobileArg::Float(t.conf),
                    MobileArg::Float(t.iou),
                    MobileArg::Int(t.max_det),
                ];
                module
                    .run("detect_image", &args)?
                    .into_iter()
                    .next()
                    .ok_or_else(|| ConvertError::Torch("detect_image returned nothing".into()))?
            }
            Engine::Onnx(session) => {
                super::onnx::detect_image(session, &self.metadata, &pixels, t)?
            }
        };
        Ok(rows
            .f_to_device(Device::Cpu)?
            .f_to_kind(Kind::Float)?
            .f_contiguous()?)
    }
}

/// `extra/yolots.json` of a TorchScript (or lite) archive; `None` for a file that is not
/// a zip archive with that entry (a checkpoint).
fn archive_metadata(bytes: &[u8], path: &Path) -> Result<Option<ArtifactMetadata>> {
    let Ok(mut zip) = zip::ZipArchive::new(std::io::Cursor::new(bytes)) else {
        return Ok(None);
    };
    let suffix = format!("extra/{METADATA_FILE}");
    let Some(name) = zip
        .file_names()
        .filter_map(|n| n.ok())
        .find(|n| n.ends_with(&suffix))
        .map(|n| n.into_owned())
    else {
        return Ok(None);
    };
    let mut text = String::new();
    zip.by_name(&name)
        .map_err(|e| bad_metadata(path, &e.to_string()))?
        // A metadata file is a few KB; a larger one is not ours.
        .take(1 << 20)
        .read_to_string(&mut text)
        .map_err(|e| bad_metadata(path, &e.to_string()))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| bad_metadata(path, &e.to_string()))
}

/// The `yolots.json` metadata property of an ONNX artifact.
fn onnx_metadata(bytes: &[u8], path: &Path) -> Result<ArtifactMetadata> {
    let summary =
        yolots_onnx::read::summary(bytes).map_err(|e| bad_metadata(path, &e.to_string()))?;
    let text = summary.metadata(METADATA_FILE).ok_or_else(|| {
        ConvertError::Unsupported(format!(
            "{}: an ONNX file without yolots.json metadata (predict runs the ONNX files yolots writes)",
            path.display()
        ))
    })?;
    serde_json::from_str(text).map_err(|e| bad_metadata(path, &e.to_string()))
}

fn bad_metadata(path: &Path, message: &str) -> ConvertError {
    ConvertError::Unsupported(format!(
        "{}: unreadable yolots.json metadata: {message}",
        PathBuf::from(path).display()
    ))
}
