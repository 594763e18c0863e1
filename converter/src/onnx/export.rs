//! The whole ONNX model: the input `images` (float32 `[batch, 3, height, width]`, every
//! size symbolic), a float16 cast for half artifacts, the network, the head's outputs,
//! and the metadata; written next to its path and renamed, like every artifact.

use std::fs;
use std::path::Path;

use yolots_onnx::proto::{DataType, ModelProto};
use yolots_onnx::{Dim, ModelInfo};

use super::emit::OnnxEmitter;
use super::nms::{self, DETECTION_COLUMNS, DETECTIONS, Thresholds};
use crate::error::{ConvertError, Result};
use crate::layers::head::DECODED;
use crate::metadata::{ArtifactMetadata, METADATA_FILE};
use crate::network::Network;
use crate::options::{Output, Precision};
use crate::validate::RowLayout;

/// Name of the graph input.
pub(crate) const IMAGES: &str = "images";

/// What the graph is asked to be.
pub(crate) struct OnnxSpec<'a> {
    pub head: Output,
    pub precision: Precision,
    pub thresholds: Thresholds,
    pub layout: RowLayout,
    pub metadata: &'a ArtifactMetadata,
}

fn named(n: &str) -> Dim {
    Dim::Named(n.to_owned())
}

/// The model of `net` (already fused and placed as the artifact wants).
pub(crate) fn model(net: &Network, spec: &OnnxSpec<'_>) -> Result<ModelProto> {
    let elem = match spec.precision {
        Precision::Fp32 => DataType::Float,
        Precision::Fp16 => DataType::Float16,
    };
    let mut e = OnnxEmitter::new("yolov7", elem);
    e.g.input(
        IMAGES,
        DataType::Float,
        &[
            named("batch"),
            Dim::Fixed(3),
            named("height"),
            named("width"),
        ],
    );
    let checked = size_guard(&mut e, spec.metadata.input.size_multiple);
    let x = match spec.precision {
        Precision::Fp32 => checked,
        Precision::Fp16 => e.cast(&checked, DataType::Float16),
    };
    let raw = net.onnx(&mut e, &x)?;
    let head = net.head()?;
    let no = head.no;
    match spec.head {
        Output::Raw => {
            for (i, r) in raw.iter().enumerate() {
                let dims = [
                    named("batch"),
                    Dim::Fixed(head.na),
                    named(&format!("ny{i}")),
                    named(&format!("nx{i}")),
                    Dim::Fixed(no),
                ];
                e.g.output_as(r, r, DataType::Float, &dims);
            }
        }
        Output::Decoded => {
            let d = head.onnx_decode(&mut e, &raw)?;
            let dims = [named("batch"), named("anchors"), Dim::Fixed(no)];
            e.g.output_as(&d, &d, DataType::Float, &dims);
        }
        Output::Detections => {
            let d = head.onnx_decode(&mut e, &raw)?;
            let det = nms::detections(&mut e, &d, IMAGES, spec.layout, spec.thresholds);
            let columns = (DETECTION_COLUMNS + 3 * spec.layout.nkpt) as i64;
            let dims = [named("detections"), Dim::Fixed(columns)];
            e.g.output_as(&det, &det, DataType::Float, &dims);
        }
    }
    let mut info = ModelInfo::new("yolots", env!("CARGO_PKG_VERSION"));
    info.doc_string = format!(
        "YOLOv7 ({} classes) converted by yolots from {}",
        spec.metadata.nc, spec.metadata.source_file
    );
    Ok(e.g.into_model(info, metadata_props(spec.metadata)?))
}

/// `images` reshaped to its own shape plus `[0, 0, H mod m, W mod m]`: the same tensor
/// when height and width are multiples of `m`; otherwise a Reshape that cannot succeed,
/// and the runtime's error quotes this node's name, which says what is wrong. (ONNX has
/// no assertion; without this, a bad size fails deep inside at a Concat.) The check sits
/// on the data path, so no optimiser can drop it as unused.
fn size_guard(e: &mut OnnxEmitter, multiple: i64) -> String {
    let shape = e.g.op("Shape", &[IMAGES], vec![]);
    let sizes = e.slice(&shape, 0, 2, Some(4));
    let m = e.g.ints(&[multiple]);
    let rest = e.g.op("Mod", &[&sizes, &m], vec![]);
    let zeros = e.g.ints(&[0, 0]);
    let offset = e.concat(&[&zeros, &rest], 0);
    let wanted = e.g.op("Add", &[&shape, &offset], vec![]);
    let name = format!(
        "yolots: image height and width must be multiples of {multiple} (the model's largest stride)"
    );
    e.g.op_named("Reshape", &name, &[IMAGES, &wanted], vec![])
}

/// The names of the outputs a head gives.
pub(crate) fn output_names(head: Output, levels: usize) -> Vec<String> {
    match head {
        Output::Raw => (0..levels).map(|i| format!("raw_{i}")).collect(),
        Output::Decoded => vec![DECODED.to_owned()],
        Output::Detections => vec![DETECTIONS.to_owned()],
    }
}

/// `metadata_props`: the whole `yolots.json` under its name, and its main facts as their
/// own keys for tools that list them (Netron, `onnx.load(...).metadata_props`).
fn metadata_props(m: &ArtifactMetadata) -> Result<Vec<(String, String)>> {
    let mut props = vec![
        (METADATA_FILE.to_owned(), json(m)?),
        ("task".to_owned(), m.task.to_string()),
        ("names".to_owned(), json(&m.names)?),
        ("nc".to_owned(), m.nc.to_string()),
        ("stride".to_owned(), json(&m.strides)?),
        ("anchors".to_owned(), json(&m.anchors)?),
        ("input".to_owned(), json(&m.input)?),
        ("head".to_owned(), m.head.to_string()),
        ("precision".to_owned(), m.precision.to_string()),
        ("conf_thres".to_owned(), m.conf_thres.to_string()),
        ("iou_thres".to_owned(), m.iou_thres.to_string()),
        ("max_det".to_owned(), m.max_det.to_string()),
        ("source_sha256".to_owned(), m.source_sha256.clone()),
        ("yolots_version".to_owned(), m.yolots_version.clone()),
    ];
    if let Some(k) = &m.kpt_shape {
        props.push(("kpt_shape".to_owned(), json(k)?));
    }
    Ok(props)
}

fn json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| ConvertError::Internal(format!("metadata: {e}")))
}

/// Writes the model next to `path` and renames it into place; its weights are encoded
/// one at a time, so the file's bytes are never all in memory beside the model.
pub(crate) fn save(model: ModelProto, path: &Path) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{file_name}.partial"));
    let start = std::time::Instant::now();
    let written = fs::File::create(&tmp).and_then(|file| {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        yolots_onnx::write(model, &mut out)?;
        std::io::Write::flush(&mut out)
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(ConvertError::io(&tmp, e));
    }
    tracing::debug!(
        ms = start.elapsed().as_secs_f64() * 1e3,
        "ONNX file written"
    );
    fs::rename(&tmp, path).map_err(|e| ConvertError::io(path, e))
}
