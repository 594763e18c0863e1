//! The YOLOv7 model description: every layer of `Model.model`, typed, with its
//! hyper-parameters and the tensors it owns.
//!
//! This is the contract between the reader (which builds it from the pickled modules) and
//! the converter (which rebuilds the network from it). Nothing here borrows the file: a
//! [`TensorRef`] names where the bytes are, and the archive hands them out on demand.

use serde::Serialize;
pub use yolots_protocol::Task;

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F16,
    BF16,
    F32,
    F64,
    U8,
    I8,
    I16,
    I32,
    I64,
    Bool,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::U8 | DType::I8 | DType::Bool => 1,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
        }
    }
}

/// A tensor found in the checkpoint: its metadata and where its storage lives.
///
/// `name` is the dotted path of the tensor in the source model (`model.0.conv.weight`),
/// which the converter reuses when it registers parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorRef {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Strides in elements, as PyTorch records them.
    pub stride: Vec<usize>,
    /// Offset of the first element in the storage, in elements.
    pub storage_offset: usize,
    /// Key of the storage in the archive (`data/<key>` in the zip format).
    pub storage_key: String,
}

impl TensorRef {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// `nn.Conv2d`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conv2d {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
    /// `[out_channels, in_channels / groups, kh, kw]`.
    pub weight: TensorRef,
    pub bias: Option<TensorRef>,
}

/// `nn.BatchNorm2d` in inference form (running statistics).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchNorm2d {
    pub num_features: usize,
    pub eps: f64,
    pub weight: TensorRef,
    pub bias: TensorRef,
    pub running_mean: TensorRef,
    pub running_var: TensorRef,
}

/// The activation a block applies after its convolution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Activation {
    Identity,
    Silu,
    Relu,
    LeakyRelu { negative_slope: f64 },
    Hardswish,
    Sigmoid,
    Tanh,
    Mish,
}

/// The YOLOv7 `Conv` block: convolution, optional BatchNorm, activation.
///
/// `bn` is `None` once the checkpoint was fused (`Conv.fuseforward`): the convolution then
/// carries the folded bias.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConvBlock {
    pub conv: Conv2d,
    pub bn: Option<BatchNorm2d>,
    pub act: Activation,
}

/// The two forms a `RepConv` can take.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "form", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)]
pub enum RepConvForm {
    /// Training form: a kxk conv+BN branch, a 1x1 conv+BN branch and, when the block
    /// keeps its shape (`c1 == c2`, stride 1), an identity BatchNorm branch; summed.
    Branches {
        dense: ConvBlock,
        one_by_one: ConvBlock,
        identity: Option<BatchNorm2d>,
    },
    /// Deploy form: one re-parameterised convolution with bias (`rbr_reparam`).
    Reparam { conv: Conv2d },
}

/// `RepConv`: the activation is applied to the sum of the branches (or the re-param conv).
/// In the `Branches` form the inner [`ConvBlock`]s carry `Activation::Identity`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepConv {
    pub in_channels: usize,
    pub out_channels: usize,
    pub act: Activation,
    pub form: RepConvForm,
}

/// `MP`, `SP` and plain `nn.MaxPool2d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MaxPool2d {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub ceil_mode: bool,
}

/// `SPPCSPC`: `cv7(cat(cv6(cv5(cat(x1, pools(x1)...))), cv2(x)))` with
/// `x1 = cv4(cv3(cv1(x)))`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SppCspc {
    pub cv1: ConvBlock,
    pub cv2: ConvBlock,
    pub cv3: ConvBlock,
    pub cv4: ConvBlock,
    pub cv5: ConvBlock,
    pub cv6: ConvBlock,
    pub cv7: ConvBlock,
    /// The pooling pyramid `m` (kernels 5, 9, 13 in the official configs).
    pub pools: Vec<MaxPool2d>,
}

/// `DownC`: `cat(cv2(cv1(x)), cv3(mp(x)))`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DownC {
    pub cv1: ConvBlock,
    pub cv2: ConvBlock,
    pub cv3: ConvBlock,
    pub pool: MaxPool2d,
}

/// `nn.Upsample` interpolation mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpsampleMode {
    Nearest,
    Bilinear,
}

/// Which detection head class the checkpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum HeadKind {
    Detect,
    IDetect,
    IAuxDetect,
    /// The pose head of the official `pose` branch: `IDetect`'s box outputs plus a
    /// keypoint branch per level.
    IKeypoint,
}

/// One level's keypoint branch of an `IKeypoint` head (`m_kpt.i`): the `DWConv`/`Conv`
/// chain of the depth-wise head (`dw_conv_kpt: True`), empty for the single-convolution
/// head, then the output 1x1 convolution with `3 * nkpt * na` channels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeypointBranch {
    pub blocks: Vec<ConvBlock>,
    pub out: Conv2d,
}

/// The keypoint part of an `IKeypoint` head.
///
/// Each level's output is `cat(detection convolution, keypoint branch)` along channels,
/// then viewed as `[B, na, nc + 5 + 3 * nkpt, ny, nx]`: the format the model was trained in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Keypoints {
    /// Keypoints per detection (17 for COCO persons).
    pub nkpt: usize,
    /// Whether the branches are the depth-wise chains (`dw_conv_kpt`).
    pub depthwise: bool,
    /// One branch per inference level.
    pub branches: Vec<KeypointBranch>,
}

/// `Detect`, `IDetect` or `IAuxDetect`.
///
/// Only the main levels (`m`) take part in inference; the auxiliary convolutions of
/// `IAuxDetect` (`m2`) are training-only and kept for parameter counts alone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectHead {
    pub kind: HeadKind,
    /// Number of classes.
    pub nc: usize,
    /// Anchors per level.
    pub na: usize,
    /// Number of inference levels (`nl`; for `IAuxDetect` the main levels only).
    pub nl: usize,
    /// Stride of each level in input pixels.
    pub strides: Vec<f64>,
    /// Anchor sizes in input pixels, `[nl][na] = (w, h)` (from the `anchor_grid` buffer).
    pub anchors_px: Vec<Vec<[f32; 2]>>,
    /// The `anchors` buffer (in grid units) and `anchor_grid` buffer (in pixels).
    pub anchors: TensorRef,
    pub anchor_grid: TensorRef,
    /// Output 1x1 convolutions, one per level (`m.i`), `no * na` channels each.
    pub convs: Vec<Conv2d>,
    /// `ImplicitA` per level (`ia.i.implicit`, shape `[1, c_in, 1, 1]`); empty for `Detect`
    /// and for heads already fused.
    pub implicit_a: Vec<TensorRef>,
    /// `ImplicitM` per level (`im.i.implicit`, shape `[1, no * na, 1, 1]`).
    pub implicit_m: Vec<TensorRef>,
    /// `IAuxDetect` training-only convolutions (`m2.i`).
    pub aux_convs: Vec<Conv2d>,
    /// The head's `forward` was replaced by `fuseforward` (implicit knowledge folded).
    pub fused: bool,
    /// `IKeypoint`'s keypoint branches (`None` for detection heads, and for an
    /// `IKeypoint` declared with no keypoints).
    pub keypoints: Option<Keypoints>,
}

impl DetectHead {
    /// Keypoints per detection (0 without keypoints).
    pub fn nkpt(&self) -> usize {
        self.keypoints.as_ref().map_or(0, |k| k.nkpt)
    }

    /// Values per anchor in the box part of each output: box, objectness, classes.
    pub fn no_det(&self) -> usize {
        self.nc.saturating_add(5)
    }

    /// Values per anchor in each output row: `nc + 5 + 3 * nkpt`.
    pub fn no(&self) -> usize {
        self.no_det()
            .saturating_add(self.nkpt().saturating_mul(yolots_protocol::KEYPOINT_VALUES))
    }

    /// `pose` when the head predicts keypoints, else `detect`.
    pub fn task(&self) -> Task {
        if self.nkpt() > 0 {
            Task::Pose
        } else {
            Task::Detect
        }
    }
}

/// What one entry of `Model.model` does.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
#[allow(clippy::large_enum_variant)]
pub enum LayerKind {
    Conv(ConvBlock),
    RepConv(RepConv),
    /// `MP`, `SP` or `nn.MaxPool2d`; `class` keeps which one for display.
    MaxPool {
        class: String,
        pool: MaxPool2d,
    },
    SppCspc(SppCspc),
    Concat {
        dim: i64,
    },
    Upsample {
        scale_factor: f64,
        mode: UpsampleMode,
    },
    ReOrg,
    DownC(DownC),
    /// `Shortcut`: the sum of its two inputs.
    Shortcut,
    Detect(DetectHead),
}

/// One layer of the network with its wiring.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Layer {
    /// Position in `Model.model` (`m.i`).
    pub index: usize,
    /// Inputs (`m.f`): `-1` is the previous layer, other negatives count back from this
    /// layer, non-negatives are absolute layer indices.
    pub from: Vec<i64>,
    /// The source class as the checkpoint names it (`models.common.Conv`, ...).
    pub class: String,
    pub kind: LayerKind,
    /// Channels this layer outputs (for the head: `no * na` per level).
    pub out_channels: usize,
    /// Parameters owned by this layer, as the source counts them.
    pub parameters: u64,
}

/// Which of the checkpoint's models was described.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelSource {
    Ema,
    Model,
}

impl ModelSource {
    /// The checkpoint key the model came from (`ema` or `model`), as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelSource::Ema => "ema",
            ModelSource::Model => "model",
        }
    }
}

/// A guess at the official configuration the model was trained from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    Yolov7Tiny,
    Yolov7,
    Yolov7x,
    Yolov7W6,
    Yolov7E6,
    Yolov7D6,
    Yolov7E6e,
    Yolov7W6Pose,
    Custom,
}

/// Everything the converter and the inspector need to know about a YOLOv7 checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelDescription {
    pub source: ModelSource,
    pub variant: Variant,
    pub names: Vec<String>,
    pub nc: usize,
    /// Strides of the inference levels, in pixels (8, 16, 32[, 64]).
    pub strides: Vec<f64>,
    pub layers: Vec<Layer>,
    /// Indices of layers whose output later layers read (`Model.save`).
    pub save: Vec<usize>,
    /// Input channels (3 for RGB).
    pub input_channels: usize,
    /// Training epoch stored beside the model (`-1` for stripped weights), when present.
    pub epoch: Option<i64>,
    /// Element type of the weights (`f16` for official checkpoints).
    pub weights_dtype: DType,
    /// Parameters of the model as the source counts them (training-only heads included).
    pub parameters: u64,
    /// Whether the checkpoint was already fused (no BatchNorm, re-param RepConv, fused head).
    pub fused: bool,
}

impl ModelDescription {
    /// The detection head (always the last layer of a described model).
    pub fn head(&self) -> Option<&DetectHead> {
        match self.layers.last().map(|l| &l.kind) {
            Some(LayerKind::Detect(head)) => Some(head),
            _ => None,
        }
    }

    /// What the model predicts: `pose` for a head with keypoints.
    pub fn task(&self) -> Task {
        self.head().map_or(Task::Detect, DetectHead::task)
    }

    /// Keypoints per detection (0 for detection models).
    pub fn nkpt(&self) -> usize {
        self.head().map_or(0, DetectHead::nkpt)
    }
}

impl Variant {
    /// The configuration name (`yolov7-tiny`, `yolov7`, ..., `custom`), as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Yolov7Tiny => "yolov7-tiny",
            Variant::Yolov7 => "yolov7",
            Variant::Yolov7x => "yolov7x",
            Variant::Yolov7W6 => "yolov7-w6",
            Variant::Yolov7E6 => "yolov7-e6",
            Variant::Yolov7D6 => "yolov7-d6",
            Variant::Yolov7E6e => "yolov7-e6e",
            Variant::Yolov7W6Pose => "yolov7-w6-pose",
            Variant::Custom => "custom",
        }
    }
}

impl HeadKind {
    /// The class name (`Detect`, `IDetect`, `IAuxDetect`).
    pub fn as_str(self) -> &'static str {
        match self {
            HeadKind::Detect => "Detect",
            HeadKind::IDetect => "IDetect",
            HeadKind::IAuxDetect => "IAuxDetect",
            HeadKind::IKeypoint => "IKeypoint",
        }
    }
}

impl Conv2d {
    fn tensors(&self) -> impl Iterator<Item = &TensorRef> {
        std::iter::once(&self.weight).chain(&self.bias)
    }
}

impl BatchNorm2d {
    fn tensors(&self) -> impl Iterator<Item = &TensorRef> {
        [
            &self.weight,
            &self.bias,
            &self.running_mean,
            &self.running_var,
        ]
        .into_iter()
    }
}

impl ConvBlock {
    /// The convolution's tensors, then the BatchNorm's.
    pub fn tensors(&self) -> Vec<&TensorRef> {
        self.conv
            .tensors()
            .chain(self.bn.iter().flat_map(BatchNorm2d::tensors))
            .collect()
    }
}

impl LayerKind {
    /// Every tensor the layer uses (for the head: anchors and training-only ones too).
    pub fn tensors(&self) -> Vec<&TensorRef> {
        match self {
            LayerKind::Conv(block) => block.tensors(),
            LayerKind::RepConv(rep) => match &rep.form {
                RepConvForm::Branches {
                    dense,
                    one_by_one,
                    identity,
                } => dense
                    .tensors()
                    .into_iter()
                    .chain(one_by_one.tensors())
                    .chain(identity.iter().flat_map(BatchNorm2d::tensors))
                    .collect(),
                RepConvForm::Reparam { conv } => conv.tensors().collect(),
            },
            LayerKind::SppCspc(s) => [&s.cv1, &s.cv2, &s.cv3, &s.cv4, &s.cv5, &s.cv6, &s.cv7]
                .into_iter()
                .flat_map(ConvBlock::tensors)
                .collect(),
            LayerKind::DownC(d) => [&d.cv1, &d.cv2, &d.cv3]
                .into_iter()
                .flat_map(ConvBlock::tensors)
                .collect(),
            LayerKind::Detect(head) => head
                .convs
                .iter()
                .chain(&head.aux_convs)
                .flat_map(Conv2d::tensors)
                .chain(&head.implicit_a)
                .chain(&head.implicit_m)
                .chain([&head.anchors, &head.anchor_grid])
                .chain(head.keypoints.iter().flat_map(|k| {
                    k.branches.iter().flat_map(|b| {
                        b.blocks
                            .iter()
                            .flat_map(ConvBlock::tensors)
                            .chain(b.out.tensors())
                    })
                }))
                .collect(),
            LayerKind::MaxPool { .. }
            | LayerKind::Concat { .. }
            | LayerKind::Upsample { .. }
            | LayerKind::ReOrg
            | LayerKind::Shortcut => Vec::new(),
        }
    }
}

impl ModelDescription {
    /// Every tensor the description refers to, layer by layer.
    pub fn tensors(&self) -> Vec<&TensorRef> {
        self.layers.iter().flat_map(|l| l.kind.tensors()).collect()
    }

    /// The width multiple relative to the guessed official configuration (`0.25` for a
    /// `yolov7.yaml` model trained with `width_multiple: 0.25`); `None` for `Custom`.
    pub fn width_multiple(&self) -> Option<f64> {
        crate::describe::variant::width_of(self)
    }
}
