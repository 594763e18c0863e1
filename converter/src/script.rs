//! The artifact's root module: the `model` container, the attributes of the contract,
//! and its methods: `raw`, `decoded`, `forward` (per head), `detect` and `detect_image`,
//! with class-aware NMS and the letterbox written in TorchScript.
//!
//! NMS follows the official `non_max_suppression` (single best class per box): keep
//! boxes with objectness > conf, score = objectness * class probability (objectness alone
//! when nc == 1 for detection models; pose models always multiply, as the pose code's
//! `kpt_label=True` path does), keep score > conf, boxes to corners, offset each box by
//! `class * 4096` so classes never suppress each other, sort by score descending and
//! stably (ties keep index order, as torchvision's kernel does), greedily drop boxes
//! with IoU > iou_thres against a kept one, stop at max_det. Pose rows keep their
//! keypoints after the class column: `[K, 6 + 3 * nkpt]`.
//!
//! The letterbox follows the official `letterbox(auto=False)`: scale by
//! `min(H / h, W / w)`, resize bilinearly to the rounded size, pad centred with gray 114;
//! boxes and keypoints map back as `scale_coords` does and are clipped to the image.

use tch::Tensor;

use crate::error::Result;
use crate::jit::ScriptModule;
use crate::layers::Emitter;
use crate::network::{CHANNELS_LAST_INPUT, Network};
use crate::options::{ImageSize, Mode, Optimize, Output};

/// Methods every artifact has besides `forward` (kept through freeze and mobile export).
pub(crate) const METHODS: &[&str] = &["raw", "decoded", "detect", "detect_image"];

/// Attributes of the contract (kept through freeze).
pub(crate) const ATTRIBUTES: &[&str] = &[
    "names",
    "stride",
    "img_size",
    "conf_thres",
    "iou_thres",
    "max_det",
];

/// What the root module records besides the network.
#[derive(Debug, Clone)]
pub(crate) struct RootSpec<'a> {
    pub names: &'a [String],
    pub strides: Vec<i64>,
    pub img_size: ImageSize,
    pub conf: f64,
    pub iou: f64,
    pub max_det: i64,
}

/// The root `Model` module with its network and attributes, without methods yet.
pub(crate) fn root(em: &mut Emitter, net: &Network, spec: &RootSpec<'_>) -> Result<ScriptModule> {
    let model = net.script(em)?;
    let mut root = em.module("Model")?;
    root.submodule("model", &model)?;
    root.set_strings("names", spec.names)?;
    root.set_ints("stride", &spec.strides)?;
    root.set_ints(
        "img_size",
        &[
            i64::from(spec.img_size.height),
            i64::from(spec.img_size.width),
        ],
    )?;
    root.set_float("conf_thres", spec.conf)?;
    root.set_float("iou_thres", spec.iou)?;
    root.set_int("max_det", spec.max_det)?;
    Ok(root)
}

/// Whether the artifact stores its convolution weights channels-last and lays the input
/// out that way in `raw` (the outputs keep their contiguous layout either way).
///
/// On the CPU, oneDNN runs a convolution on contiguous (NCHW) tensors by reordering input
/// and output to its own layout on every call; on channels-last tensors it runs in place.
/// The layout is a property of the parameters, not of a device: it survives `m.to("cuda")`
/// (cuDNN also prefers it, for float16 in particular) and any batch or size. Script
/// artifacts use it; a trace without `--optimize inference` stays the official export, and
/// the mobile optimiser packs weights for XNNPACK itself.
pub(crate) fn channels_last(mode: Mode, optimize: Optimize) -> bool {
    match optimize {
        Optimize::Inference => true,
        Optimize::Mobile => false,
        Optimize::None | Optimize::Freeze => mode == Mode::Script,
    }
}

/// `_input(images)`, which every entry calls first: a tensor that is not `[B, 3, H, W]`, or
/// whose size is not a multiple of the largest stride, is refused with a message that says
/// so (instead of a shape error deep inside), and the images are cast to the weights'
/// precision (float32 images into a float16 artifact just work).
pub(crate) fn define_input(root: &mut ScriptModule, net: &Network, max_stride: i64) -> Result<()> {
    let dtype = format!("getattr({}.m, \"0\").weight.dtype", net.head_path());
    root.define(
        "Model",
        &format!(
            "def _input(self, images: Tensor) -> Tensor:\n    \
             assert images.dim() == 4 and images.size(1) == 3, \
             \"yolots: images must be a [B, 3, H, W] tensor, got \" + str(images.size())\n    \
             assert images.size(2) % {max_stride} == 0 and images.size(3) % {max_stride} == 0, \
             \"yolots: image height and width must be multiples of {max_stride} (the model's \
             largest stride), got \" + str(images.size(2)) + \"x\" + str(images.size(3))\n    \
             return images.to({dtype})\n"
        ),
    )
}

/// Script mode: `raw` as the straight-line call of every layer.
pub(crate) fn define_raw(
    root: &mut ScriptModule,
    net: &Network,
    channels_last: bool,
) -> Result<()> {
    if channels_last {
        net.lay_out_channels_last()?;
    }
    root.define("Model", &net.raw_source(channels_last))
}

/// Trace mode: `_raw_traced` traced from the eager network on `example` (whose tensors
/// are the ones registered on `root`, so they stay parameters), and `raw` calling it.
pub(crate) fn trace_raw(
    root: &mut ScriptModule,
    net: &Network,
    example: &Tensor,
    channels_last: bool,
) -> Result<()> {
    let _guard = tch::no_grad_guard();
    if channels_last {
        // In place: the traced network still reads the tensors registered on `root`.
        net.lay_out_channels_last()?;
    }
    root.trace(
        "_raw_traced",
        &[example.shallow_clone()],
        |inputs| match inputs {
            [image] => net.forward_raw(image),
            _ => Err(crate::error::ConvertError::Internal("trace input".into())),
        },
    )?;
    let layout = if channels_last {
        CHANNELS_LAST_INPUT
    } else {
        ""
    };
    root.define(
        "Model",
        &format!(
            "def raw(self, images: Tensor) -> List[Tensor]:\n    \
             images = self._input(images)\n{layout}    \
             return self._raw_traced(images)\n"
        ),
    )
}

/// Everything but `raw`: decoding, `forward` for the chosen head, NMS and letterbox.
pub(crate) fn define_contract(root: &mut ScriptModule, net: &Network, head: Output) -> Result<()> {
    let h = net.head()?;
    let rows = Rows {
        nc: h.nc,
        nkpt: h.nkpt,
    };
    root.define("Model", &contract_source(&net.head_path(), head, rows))
}

/// The layout of the decoded rows, which the generated NMS and letterbox are written for.
#[derive(Debug, Clone, Copy)]
struct Rows {
    nc: i64,
    nkpt: i64,
}

fn contract_source(head_path: &str, head: Output, rows: Rows) -> String {
    let forward = match head {
        Output::Decoded => {
            "def forward(self, images: Tensor) -> Tensor:\n    return self.decoded(images)\n"
        }
        Output::Raw => {
            "def forward(self, images: Tensor) -> List[Tensor]:\n    return self.raw(images)\n"
        }
        Output::Detections => {
            "def forward(self, images: Tensor) -> List[Tensor]:\n    \
             return self.detect(images, self.conf_thres, self.iou_thres, self.max_det)\n"
        }
    };
    let dtype = format!("getattr({head_path}.m, \"0\").weight.dtype");
    format!(
        "def decoded(self, images: Tensor) -> Tensor:\n    \
         return {head_path}.decode(self.raw(images))\n\n\
         {forward}\n\
         {}\n\
         {POSTPROCESS}\n\
         {}\n\
         def detect_image(self, image: Tensor, conf_thres: float, iou_thres: float, \
         max_det: int) -> Tensor:\n    \
         x, gain, pad_x, pad_y = self._letterbox(image)\n    \
         det = self.detect(x.to({dtype}), conf_thres, iou_thres, max_det)[0]\n    \
         return self._unletterbox(det, image.size(0), image.size(1), gain, pad_x, pad_y)\n",
        nms_source(rows),
        unletterbox_source(rows),
    )
}

/// `_nms` for the model's rows: how a box is scored and what a kept row carries.
fn nms_source(rows: Rows) -> String {
    let no_det = rows.nc + 5;
    let pose = rows.nkpt > 0;
    let score = if pose {
        // The pose code multiplies objectness into the class probability also for one class.
        format!(
            "    conf, cls = torch.max(x[:, 5:{no_det}] * x[:, 4:5], 1, keepdim=True)\n    \
             j = cls.float()\n"
        )
    } else {
        // The detection code scores rows with one class by objectness alone; the rows' width
        // decides, so `_nms` also serves one-class rows of another model.
        "    if x.size(1) == 6:\n        \
         conf = x[:, 4:5]\n        \
         j = torch.zeros_like(conf)\n    \
         else:\n        \
         conf, cls = torch.max(x[:, 5:] * x[:, 4:5], 1, keepdim=True)\n        \
         j = cls.float()\n"
            .to_string()
    };
    let keypoints = if pose {
        format!(", x[:, {no_det}:]")
    } else {
        String::new()
    };
    format!(
        "def _nms(self, x: Tensor, conf_thres: float, iou_thres: float, max_det: int) -> Tensor:\n    \
         x = x[x[:, 4] > conf_thres]\n\
         {score}    \
         cx = x[:, 0]\n    \
         cy = x[:, 1]\n    \
         w = x[:, 2]\n    \
         h = x[:, 3]\n    \
         box = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)\n    \
         det = torch.cat([box, conf, j{keypoints}], 1)[conf.view(-1) > conf_thres]\n    \
         if det.size(0) > 30000:\n        \
         det = det[torch.sort(det[:, 4], stable=True, dim=0, descending=True)[1][:30000]]\n    \
         keep = self._greedy(det[:, :4] + det[:, 5:6] * 4096.0, det[:, 4], iou_thres, max_det)\n    \
         return det[keep]\n"
    )
}

/// `_unletterbox`: boxes (and keypoints) from the letterboxed input back to the original
/// image's pixels, clipped to it; scores, classes and keypoint confidences unchanged.
fn unletterbox_source(rows: Rows) -> String {
    let keypoints = if rows.nkpt > 0 {
        // The width is spelt out: a view of no rows cannot infer it.
        format!(
            "    kx = ((det[:, 6::3] - pad_x) / gain).clamp(0.0, float(w0))\n    \
             ky = ((det[:, 7::3] - pad_y) / gain).clamp(0.0, float(h0))\n    \
             kpt = torch.stack([kx, ky, det[:, 8::3]], 2).view(det.size(0), {})\n    \
             return torch.cat([box, det[:, 4:6], kpt], 1)\n",
            3 * rows.nkpt
        )
    } else {
        "    return torch.cat([box, det[:, 4:6]], 1)\n".to_string()
    };
    format!(
        "def _unletterbox(self, det: Tensor, h0: int, w0: int, gain: float, pad_x: float, \
         pad_y: float) -> Tensor:\n    \
         x1 = ((det[:, 0] - pad_x) / gain).clamp(0.0, float(w0))\n    \
         y1 = ((det[:, 1] - pad_y) / gain).clamp(0.0, float(h0))\n    \
         x2 = ((det[:, 2] - pad_x) / gain).clamp(0.0, float(w0))\n    \
         y2 = ((det[:, 3] - pad_y) / gain).clamp(0.0, float(h0))\n    \
         box = torch.stack([x1, y1, x2, y2], 1)\n\
         {keypoints}"
    )
}

/// `detect`, the greedy NMS and the letterbox, shared by every artifact (`_nms` and
/// `_unletterbox`, which depend on the rows' layout, are generated beside them).
const POSTPROCESS: &str = r#"
def detect(self, images: Tensor, conf_thres: float, iou_thres: float, max_det: int) -> List[Tensor]:
    pred = self.decoded(images).float()
    out: List[Tensor] = []
    for i in range(pred.size(0)):
        out.append(self._nms(pred[i], conf_thres, iou_thres, max_det))
    return out

def _greedy(self, boxes: Tensor, scores: Tensor, iou_thres: float, max_det: int) -> Tensor:
    order = torch.sort(scores, stable=True, dim=0, descending=True)[1]
    b = boxes[order]
    x1 = b[:, 0]
    y1 = b[:, 1]
    x2 = b[:, 2]
    y2 = b[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    remaining = torch.arange(b.size(0), device=b.device)
    keep: List[Tensor] = []
    while remaining.numel() > 0 and len(keep) < max_det:
        i = remaining[0]
        keep.append(i)
        rest = remaining[1:]
        iw = (torch.minimum(x2[rest], x2[i]) - torch.maximum(x1[rest], x1[i])).clamp(min=0.0)
        ih = (torch.minimum(y2[rest], y2[i]) - torch.maximum(y1[rest], y1[i])).clamp(min=0.0)
        inter = iw * ih
        iou = inter / (areas[i] + areas[rest] - inter)
        remaining = rest[torch.logical_not(iou > iou_thres)]
    if len(keep) == 0:
        return order[:0]
    return order[torch.stack(keep)]

def _letterbox(self, image: Tensor) -> Tuple[Tensor, float, float, float]:
    h0 = image.size(0)
    w0 = image.size(1)
    th = self.img_size[0]
    tw = self.img_size[1]
    r = min(th / h0, tw / w0)
    nh = int(round(h0 * r))
    nw = int(round(w0 * r))
    top = int(round((th - nh) / 2 - 0.1))
    left = int(round((tw - nw) / 2 - 0.1))
    x = image.permute(2, 0, 1).unsqueeze(0).float()
    if nh != h0 or nw != w0:
        x = torch.upsample_bilinear2d(x, [nh, nw], False).round().clamp(0.0, 255.0)
    x = torch.constant_pad_nd(x, [left, tw - nw - left, top, th - nh - top], 114.0)
    gain = min(th / h0, tw / w0)
    return x / 255.0, gain, (tw - w0 * gain) / 2, (th - h0 * gain) / 2

"#;
