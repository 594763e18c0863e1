//! ONNX artifacts: the same network written as an ONNX graph (opset 17) instead of
//! TorchScript, and its proof run by ONNX Runtime.
//!
//! - [`emit`]: the graph under construction and the node forms several layers share;
//!   each layer kind writes its own nodes (`onnx` beside `forward` and `script` in its
//!   layer file).
//! - [`export`]: the whole model: input, optional float16 casts, network, head outputs
//!   (`decoded`, `raw_*`, or `detections` with NMS inside), metadata, and the file.
//! - [`runtime`]: ONNX Runtime, loaded from its shared library at run time.
//! - [`proof`]: validation against the eager reference and timing, as for TorchScript.

pub(crate) mod emit;
pub(crate) mod export;
mod nms;
pub(crate) mod proof;
pub(crate) mod runtime;

use crate::options::ConvertRequest;

/// The request's NMS thresholds.
pub(crate) fn nms_thresholds(r: &ConvertRequest) -> nms::Thresholds {
    nms::Thresholds {
        conf: r.conf,
        iou: r.iou,
        max_det: r.max_det,
    }
}
