//! What `yolots inspect` prints: a [`Summary`] of a [`ModelDescription`], as readable text
//! (`Display`) or as stable JSON (`serde::Serialize`; schema in the crate's README).

use std::fmt;

use serde::Serialize;
use yolots_protocol::words::thousands;

use crate::model::{
    Activation, ConvBlock, DType, HeadKind, Layer, LayerKind, ModelDescription, ModelSource,
    RepConvForm, Task, UpsampleMode, Variant,
};

/// Version of the JSON layout; bumped only on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// The inspection summary of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub schema_version: u32,
    /// Always `"YOLOv7"`: the only family this crate describes.
    pub model: &'static str,
    pub variant: Variant,
    /// Width multiple relative to the official configuration of `variant` (`null` for custom).
    pub width_multiple: Option<f64>,
    /// Which entry of the checkpoint was described (`"ema"` or `"model"`).
    pub source: ModelSource,
    /// The head class: `"Detect"`, `"IDetect"`, `"IAuxDetect"` or `"IKeypoint"`.
    pub head: HeadKind,
    /// `"detect"`, or `"pose"` for a head with keypoints.
    pub task: Task,
    pub nc: usize,
    /// Keypoints per detection (0 for detection models).
    pub nkpt: usize,
    /// Names of the keypoints when the layout is known (COCO's 17), else empty.
    pub keypoint_names: Vec<String>,
    pub names: Vec<String>,
    /// Stride of each inference level, in pixels.
    pub strides: Vec<f64>,
    /// Anchors per level, `[w, h]` in pixels.
    pub anchors: Vec<Vec<[f32; 2]>>,
    pub input_channels: usize,
    /// Parameters of the whole model, training-only heads included.
    pub parameters: u64,
    pub weights_dtype: DType,
    pub fused: bool,
    /// Training epoch (`-1` for stripped weights); `null` when not recorded.
    pub epoch: Option<i64>,
    pub layers: Vec<LayerRow>,
}

/// One row of the layer table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerRow {
    pub index: usize,
    /// Input layers as the checkpoint records them (`-1` = previous layer).
    pub from: Vec<i64>,
    /// Short type name (`Conv`, `RepConv`, `MP`, `SP`, `MaxPool2d`, `SPPCSPC`, `Concat`,
    /// `Upsample`, `ReOrg`, `DownC`, `Shortcut`, `Detect`, `IDetect`, `IAuxDetect`,
    /// `IKeypoint`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Full class path (`models.common.Conv`).
    pub class: String,
    pub out_channels: usize,
    pub parameters: u64,
    /// Hyper-parameters in a few words (`3x3/2 SiLU`).
    pub details: String,
}

impl From<&ModelDescription> for Summary {
    fn from(d: &ModelDescription) -> Self {
        let head = d.head();
        Summary {
            schema_version: SCHEMA_VERSION,
            model: "YOLOv7",
            variant: d.variant,
            width_multiple: d.width_multiple(),
            source: d.source,
            head: head.map_or(HeadKind::Detect, |h| h.kind),
            task: d.task(),
            nc: d.nc,
            nkpt: d.nkpt(),
            keypoint_names: yolots_protocol::keypoint_layout(d.nkpt())
                .map(|(names, _)| names)
                .unwrap_or_default(),
            names: d.names.clone(),
            strides: d.strides.clone(),
            anchors: head.map(|h| h.anchors_px.clone()).unwrap_or_default(),
            input_channels: d.input_channels,
            parameters: d.parameters,
            weights_dtype: d.weights_dtype,
            fused: d.fused,
            epoch: d.epoch,
            layers: d.layers.iter().map(LayerRow::from).collect(),
        }
    }
}

impl From<&Layer> for LayerRow {
    fn from(layer: &Layer) -> Self {
        LayerRow {
            index: layer.index,
            from: layer.from.clone(),
            kind: type_name(&layer.kind).to_string(),
            class: layer.class.clone(),
            out_channels: layer.out_channels,
            parameters: layer.parameters,
            details: details(&layer.kind),
        }
    }
}

fn type_name(kind: &LayerKind) -> &str {
    match kind {
        LayerKind::Conv(_) => "Conv",
        LayerKind::RepConv(_) => "RepConv",
        LayerKind::MaxPool { class, .. } => class,
        LayerKind::SppCspc(_) => "SPPCSPC",
        LayerKind::Concat { .. } => "Concat",
        LayerKind::Upsample { .. } => "Upsample",
        LayerKind::ReOrg => "ReOrg",
        LayerKind::DownC(_) => "DownC",
        LayerKind::Shortcut => "Shortcut",
        LayerKind::Detect(head) => head.kind.as_str(),
    }
}

fn activation(act: &Activation) -> String {
    match act {
        Activation::Identity => "Identity".into(),
        Activation::Silu => "SiLU".into(),
        Activation::Relu => "ReLU".into(),
        Activation::LeakyRelu { negative_slope } => format!("LeakyReLU({negative_slope})"),
        Activation::Hardswish => "Hardswish".into(),
        Activation::Sigmoid => "Sigmoid".into(),
        Activation::Tanh => "Tanh".into(),
        Activation::Mish => "Mish".into(),
    }
}

fn kernel(k: [usize; 2], s: [usize; 2], groups: usize) -> String {
    let mut out = format!("{}x{}", k[0], k[1]);
    if s != [1, 1] {
        if s[0] == s[1] {
            out.push_str(&format!("/{}", s[0]));
        } else {
            out.push_str(&format!("/{}x{}", s[0], s[1]));
        }
    }
    if groups > 1 {
        out.push_str(&format!(" g{groups}"));
    }
    out
}

fn block(b: &ConvBlock) -> String {
    let c = &b.conv;
    let mut out = format!(
        "{} {}",
        kernel(c.kernel, c.stride, c.groups),
        activation(&b.act)
    );
    if b.bn.is_none() {
        out.push_str(" (fused)");
    }
    out
}

fn details(kind: &LayerKind) -> String {
    match kind {
        LayerKind::Conv(b) => block(b),
        LayerKind::RepConv(r) => match &r.form {
            RepConvForm::Branches {
                dense, identity, ..
            } => format!(
                "{} {}, {} branches",
                kernel(dense.conv.kernel, dense.conv.stride, dense.conv.groups),
                activation(&r.act),
                if identity.is_some() { 3 } else { 2 }
            ),
            RepConvForm::Reparam { conv } => format!(
                "{} {}, re-parameterized",
                kernel(conv.kernel, conv.stride, conv.groups),
                activation(&r.act)
            ),
        },
        LayerKind::MaxPool { pool, .. } => {
            format!(
                "k{} s{} p{}",
                pool.kernel[0], pool.stride[0], pool.padding[0]
            )
        }
        LayerKind::SppCspc(s) => {
            let kernels: Vec<String> = s.pools.iter().map(|p| p.kernel[0].to_string()).collect();
            format!("pools {} {}", kernels.join(","), activation(&s.cv1.act))
        }
        LayerKind::Concat { dim } => format!("dim {dim}"),
        LayerKind::Upsample { scale_factor, mode } => format!(
            "x{scale_factor} {}",
            match mode {
                UpsampleMode::Nearest => "nearest",
                UpsampleMode::Bilinear => "bilinear",
            }
        ),
        LayerKind::ReOrg => "space-to-depth 2x2".into(),
        LayerKind::DownC(d) => format!("/{} {}", d.pool.stride[0], activation(&d.cv1.act)),
        LayerKind::Shortcut => "sum".into(),
        LayerKind::Detect(h) => {
            let mut out = format!("{} levels x {} anchors, nc {}", h.nl, h.na, h.nc);
            if !h.aux_convs.is_empty() {
                out.push_str(&format!(", {} aux", h.aux_convs.len()));
            }
            if let Some(k) = &h.keypoints {
                let branch = if k.depthwise {
                    "depth-wise branch"
                } else {
                    "1x1 branch"
                };
                out.push_str(&format!(", {} keypoints ({branch})", k.nkpt));
            }
            if h.fused {
                out.push_str(" (fused)");
            }
            out
        }
    }
}

fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = match self.width_multiple {
            Some(w) if w != 1.0 => format!(" (width x{w})"),
            _ => String::new(),
        };
        let source = self.source.as_str();
        writeln!(
            f,
            "{} {}{width}, described from `{source}`",
            self.model,
            self.variant.as_str()
        )?;
        let strides: Vec<String> = self.strides.iter().map(|s| number(*s)).collect();
        let na = self.anchors.first().map_or(0, Vec::len);
        writeln!(
            f,
            "  head        {}, {} levels (strides {}), {na} anchors per level",
            self.head.as_str(),
            self.strides.len(),
            strides.join(", ")
        )?;
        let anchors: Vec<String> = self
            .anchors
            .iter()
            .map(|level| {
                level
                    .iter()
                    .map(|[w, h]| format!("{}x{}", number(f64::from(*w)), number(f64::from(*h))))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        writeln!(f, "  anchors     {}", anchors.join(" | "))?;
        const SHOWN: usize = 8;
        let mut names = self
            .names
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if self.names.len() > SHOWN {
            names.push_str(&format!(", ... ({} more)", self.names.len() - SHOWN));
        }
        writeln!(f, "  task        {}", self.task)?;
        writeln!(f, "  classes     {}: {names}", self.nc)?;
        if self.nkpt > 0 {
            let layout = if self.keypoint_names.is_empty() {
                "custom layout".to_string()
            } else {
                format!(
                    "COCO: {}, ...",
                    self.keypoint_names
                        .iter()
                        .take(3)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            writeln!(f, "  keypoints   {} per detection ({layout})", self.nkpt)?;
        }
        writeln!(
            f,
            "  parameters  {} ({} weights, {})",
            thousands(self.parameters),
            serde_json::to_value(self.weights_dtype)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            if self.fused { "fused" } else { "not fused" }
        )?;
        match self.epoch {
            Some(-1) => writeln!(f, "  epoch       -1 (stripped weights)")?,
            Some(e) => writeln!(f, "  epoch       {e}")?,
            None => writeln!(f, "  epoch       not recorded")?,
        }
        writeln!(f, "  input       {} channels", self.input_channels)?;
        writeln!(f, "  layers      {}", self.layers.len())?;
        writeln!(f)?;
        writeln!(
            f,
            "  {:>4}  {:<16} {:<10} {:>6} {:>11}  details",
            "idx", "from", "type", "out", "params"
        )?;
        for row in &self.layers {
            let from = match row.from.as_slice() {
                [one] => one.to_string(),
                many => format!(
                    "[{}]",
                    many.iter()
                        .map(i64::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            };
            writeln!(
                f,
                "  {:>4}  {:<16} {:<10} {:>6} {:>11}  {}",
                row.index,
                from,
                row.kind,
                row.out_channels,
                thousands(row.parameters),
                row.details
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(37_622_682), "37,622,682");
        assert_eq!(number(8.0), "8");
        assert_eq!(number(0.5), "0.5");
    }
}
