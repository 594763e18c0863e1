//! The options of a conversion.
//!
//! Every option type parses from and prints as its CLI spelling (`FromStr` / `Display`)
//! and serialises the same way, so the CLI, the REST API and the report agree.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Implements `Display`, `FromStr` and serde for a fieldless enum from a spelling table.
macro_rules! spelled_enum {
    ($ty:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in the order the CLI lists them.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The CLI spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = ParseOptionError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    _ => Err(ParseOptionError::new($what, s, &[$($text),+])),
                }
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// The defaults and limits of the numeric options, and the options that cannot go
/// together: the one definition the CLI, the API, the worker, the converter and the page use.
pub mod limits {
    use std::ops::RangeInclusive;

    use super::{Format, ImageSize, Mode, Optimize, Precision};

    /// Confidence threshold of the `detections` head.
    pub const DEFAULT_CONF: f64 = 0.25;
    /// IoU threshold of the `detections` head.
    pub const DEFAULT_IOU: f64 = 0.45;
    /// Most detections per image of the `detections` head.
    pub const DEFAULT_MAX_DET: i64 = 300;
    /// Seconds of timed runs by default: about one run of a full-size YOLOv7 at 640x640
    /// on two CPU cores, many runs of a small model or on a GPU.
    pub const DEFAULT_LATENCY_BUDGET_S: f64 = 1.0;
    /// Most timed runs by default (within the budget).
    pub const DEFAULT_LATENCY_RUNS: usize = 10;
    /// `conf` and `iou` are probabilities.
    pub const THRESHOLD: RangeInclusive<f64> = 0.0..=1.0;
    /// `max_det`.
    pub const MAX_DET: RangeInclusive<i64> = 1..=100_000;
    /// Each side of `img_size`, in pixels (also a multiple of the model's largest stride).
    pub const IMAGE_SIDE: RangeInclusive<u32> = 32..=8192;

    /// A numeric option outside its limits.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[error("{option} must be within {range}, not {value}")]
    pub struct OutOfRange {
        /// The option refused, as the API spells it (`conf`, `iou`, `max_det`, `img_size`).
        pub option: &'static str,
        /// Its limits (`0..1`, `32..8192 pixels`).
        pub range: String,
        /// The value asked for.
        pub value: String,
    }

    /// Checks the numeric options against their limits; the first one out of range.
    pub fn check(conf: f64, iou: f64, max_det: i64, img_size: ImageSize) -> Result<(), OutOfRange> {
        let refuse = |option, range: String, value: String| {
            Err(OutOfRange {
                option,
                range,
                value,
            })
        };
        let probability = || format!("{}..{}", THRESHOLD.start(), THRESHOLD.end());
        if !THRESHOLD.contains(&conf) {
            return refuse("conf", probability(), conf.to_string());
        }
        if !THRESHOLD.contains(&iou) {
            return refuse("iou", probability(), iou.to_string());
        }
        if !MAX_DET.contains(&max_det) {
            let range = format!("{}..{}", MAX_DET.start(), MAX_DET.end());
            return refuse("max_det", range, max_det.to_string());
        }
        let ImageSize { height, width } = img_size;
        if !IMAGE_SIDE.contains(&height) || !IMAGE_SIDE.contains(&width) {
            let range = format!("{}..{} pixels", IMAGE_SIDE.start(), IMAGE_SIDE.end());
            return refuse("img_size", range, format!("{height}x{width}"));
        }
        Ok(())
    }

    /// An option refused because of another one it cannot go with.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[error("{option} {value} cannot go with {other} {other_value}: {reason}")]
    pub struct Incompatible {
        /// The option refused (`mode`, `optimize`, `precision`), as the API spells it.
        pub option: &'static str,
        /// Its value.
        pub value: String,
        /// The option it cannot go with.
        pub other: &'static str,
        /// That option's value.
        pub other_value: String,
        /// Why, and what to ask for instead.
        pub reason: &'static str,
    }

    /// Checks the options that depend on each other: every pair the converter cannot
    /// honour, refused with the option at fault named.
    pub fn compatible(
        format: Format,
        mode: Mode,
        precision: Precision,
        optimize: Optimize,
    ) -> Result<(), Incompatible> {
        if format == Format::Onnx && mode != Mode::Script {
            return Err(Incompatible {
                option: "mode",
                value: mode.to_string(),
                other: "format",
                other_value: format.to_string(),
                reason: "modes apply to TorchScript only; ONNX files are written with dynamic \
                         shapes (mode script)",
            });
        }
        if format == Format::Onnx && optimize != Optimize::None {
            return Err(Incompatible {
                option: "optimize",
                value: optimize.to_string(),
                other: "format",
                other_value: format.to_string(),
                reason: "graph optimisations apply to TorchScript only; ONNX Runtime, TensorRT \
                         and OpenVINO optimise an ONNX file when they load it (optimize none)",
            });
        }
        if optimize == Optimize::Mobile && precision == Precision::Fp16 {
            return Err(Incompatible {
                option: "precision",
                value: precision.to_string(),
                other: "optimize",
                other_value: optimize.to_string(),
                reason: "the mobile optimizer rewrites convolutions for float32 only \
                         (precision fp32)",
            });
        }
        Ok(())
    }
}

pub(crate) use spelled_enum;

/// An option value that is not one of the accepted spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: expected {expected}")]
pub struct ParseOptionError {
    what: &'static str,
    value: String,
    expected: String,
}

impl ParseOptionError {
    pub(crate) fn new(what: &'static str, value: &str, expected: &[&str]) -> Self {
        ParseOptionError {
            what,
            value: value.to_owned(),
            expected: expected.join("|"),
        }
    }
}

/// The artifact's file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// A TorchScript archive (`torch.jit.load`, `torch::jit::load`, `tch::CModule`).
    #[default]
    Torchscript,
    /// An ONNX model, opset 17 (ONNX Runtime, TensorRT, OpenVINO, OpenCV DNN).
    Onnx,
}
spelled_enum!(Format, "format", { Torchscript => "torchscript", Onnx => "onnx" });

impl Format {
    /// Whether this is the default format (options that do not name one).
    pub fn is_torchscript(&self) -> bool {
        *self == Format::Torchscript
    }

    /// What the format allows with the other options: ONNX files are written with
    /// dynamic shapes (script mode) and without TorchScript's graph optimisations (the
    /// format's part of [`limits::compatible`]).
    pub fn check(self, mode: Mode, optimize: Optimize) -> Result<(), limits::Incompatible> {
        limits::compatible(self, mode, Precision::Fp32, optimize)
    }
}

/// How the TorchScript is produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Generated TorchScript source: dynamic batch, size and device.
    #[default]
    Script,
    /// The eager network traced at the conversion size (fixed batch and size).
    Trace,
}
spelled_enum!(Mode, "mode", { Script => "script", Trace => "trace" });

/// What the artifact's `forward` returns (the `head` option: `--head`, `"head"` in the
/// API). Named for the output, not for the detection layer the model ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Output {
    /// `[B, N, 5 + nc]`: boxes (cx, cy, w, h in pixels), objectness, class probabilities.
    #[default]
    Decoded,
    /// One `[B, na, ny, nx, 5 + nc]` pre-sigmoid tensor per level.
    Raw,
    /// One `[K, 6]` tensor per image (x1, y1, x2, y2, score, class) after NMS.
    Detections,
}
spelled_enum!(Output, "head", { Decoded => "decoded", Raw => "raw", Detections => "detections" });

/// Element type of the artifact's weights and inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    #[default]
    Fp32,
    Fp16,
}
spelled_enum!(Precision, "precision", { Fp32 => "fp32", Fp16 => "fp16" });

/// Graph optimisation applied before saving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Optimize {
    #[default]
    None,
    /// `torch.jit.freeze`: parameters become constants, attribute reads disappear.
    Freeze,
    /// Channels-last weights and input layout, freeze, and the passes of
    /// `torch.jit.optimize_for_inference` that libtorch can save (not its MKLDNN
    /// conversion, which makes the module unsaveable).
    Inference,
    /// `optimize_for_mobile`, saved for the lite interpreter (`.ptl`).
    Mobile,
}
spelled_enum!(Optimize, "optimization", {
    None => "none", Freeze => "freeze", Inference => "inference", Mobile => "mobile",
});

/// Where the network is built, validated and timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeviceChoice {
    /// The first GPU when libtorch sees one, else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl DeviceChoice {
    /// The device this choice means on a machine with `cuda_devices` GPUs: `auto` is the
    /// first GPU when there is one, else the CPU.
    pub fn resolve_for(self, cuda_devices: usize) -> DeviceChoice {
        match self {
            DeviceChoice::Auto if cuda_devices > 0 => DeviceChoice::Cuda(0),
            DeviceChoice::Auto => DeviceChoice::Cpu,
            other => other,
        }
    }
}

/// Which workers may claim a job, by its `device` option: `any` (`auto`), `cpu`, or `cuda`
/// (any `cuda:N`; only workers with a GPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeviceClass {
    #[default]
    Any,
    Cpu,
    Cuda,
}
spelled_enum!(DeviceClass, "device class", { Any => "any", Cpu => "cpu", Cuda => "cuda" });

impl DeviceClass {
    /// The classes of the jobs a worker may claim: every worker takes `any` and `cpu`
    /// jobs; a worker with a GPU also `cuda` ones.
    pub fn claimable(gpu: bool) -> Vec<DeviceClass> {
        let mut classes = vec![DeviceClass::Any, DeviceClass::Cpu];
        if gpu {
            classes.push(DeviceClass::Cuda);
        }
        classes
    }
}

impl DeviceChoice {
    /// The workers that may run a job asking for this device.
    pub fn class(self) -> DeviceClass {
        match self {
            DeviceChoice::Auto => DeviceClass::Any,
            DeviceChoice::Cpu => DeviceClass::Cpu,
            DeviceChoice::Cuda(_) => DeviceClass::Cuda,
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for DeviceChoice {
    type Err = ParseOptionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseOptionError::new("device", s, &["auto", "cpu", "cuda", "cuda:N"]);
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => {
                let n = s.strip_prefix("cuda:").ok_or_else(err)?;
                n.parse().map(DeviceChoice::Cuda).map_err(|_| err())
            }
        }
    }
}

impl Serialize for DeviceChoice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Input image size `(height, width)` in pixels. Parses `640` (square) or `480,640`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImageSize {
    pub height: u32,
    pub width: u32,
}

impl ImageSize {
    pub const fn new(height: u32, width: u32) -> Self {
        ImageSize { height, width }
    }

    /// `[height, width]`, as tensor shapes want them.
    pub fn hw(self) -> [i64; 2] {
        [i64::from(self.height), i64::from(self.width)]
    }

    /// Height times width: what a conversion's memory and time grow with.
    pub fn pixels(self) -> u64 {
        u64::from(self.height) * u64::from(self.width)
    }
}

impl Default for ImageSize {
    fn default() -> Self {
        ImageSize::new(640, 640)
    }
}

impl fmt::Display for ImageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.height, self.width)
    }
}

impl FromStr for ImageSize {
    type Err = ParseOptionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseOptionError::new("image size", s, &["H", "H,W"]);
        // `640x480` is width x height to most people and height x width to others: only a
        // square one (`640x640`) says the same to everyone.
        if let Some((a, b)) = s.split_once(['x', 'X'])
            && a.trim() != b.trim()
        {
            return Err(ParseOptionError {
                what: "image size",
                value: s.to_owned(),
                expected: format!(
                    "H or H,W (height first, for example {},{} for a {}-wide, {}-high image;                      `AxB` is read by some as width x height, by others as height x width)",
                    b.trim(),
                    a.trim(),
                    a.trim(),
                    b.trim()
                ),
            });
        }
        let mut parts = s.split([',', 'x', 'X']).map(|p| p.trim().parse::<u32>());
        let h = parts.next().ok_or_else(err)?.map_err(|_| err())?;
        let w = match parts.next() {
            Some(w) => w.map_err(|_| err())?,
            None => h,
        };
        if parts.next().is_some() || h == 0 || w == 0 {
            return Err(err());
        }
        Ok(ImageSize::new(h, w))
    }
}

impl Serialize for ImageSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        [self.height, self.width].serialize(s)
    }
}

impl<'de> Deserialize<'de> for ImageSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let [height, width] = <[u32; 2]>::deserialize(d)?;
        Ok(ImageSize { height, width })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for m in Mode::ALL {
            assert_eq!(m.to_string().parse::<Mode>(), Ok(*m));
        }
        for f in Format::ALL {
            assert_eq!(f.to_string().parse::<Format>(), Ok(*f));
        }
        for h in Output::ALL {
            assert_eq!(h.to_string().parse::<Output>(), Ok(*h));
        }
        for p in Precision::ALL {
            assert_eq!(p.to_string().parse::<Precision>(), Ok(*p));
        }
        for o in Optimize::ALL {
            assert_eq!(o.to_string().parse::<Optimize>(), Ok(*o));
        }
        for d in [DeviceChoice::Auto, DeviceChoice::Cpu, DeviceChoice::Cuda(3)] {
            assert_eq!(d.to_string().parse::<DeviceChoice>(), Ok(d));
        }
        assert_eq!("cuda".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda(0)));
        assert!("gpu".parse::<DeviceChoice>().is_err());
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
        assert!("fp64".parse::<Precision>().is_err());
    }

    #[test]
    fn auto_resolves_to_the_first_gpu_when_there_is_one() {
        assert_eq!(DeviceChoice::Auto.resolve_for(2), DeviceChoice::Cuda(0));
        assert_eq!(DeviceChoice::Auto.resolve_for(0), DeviceChoice::Cpu);
        assert_eq!(DeviceChoice::Cuda(1).resolve_for(0), DeviceChoice::Cuda(1));
        assert_eq!(DeviceChoice::Cpu.resolve_for(1), DeviceChoice::Cpu);
    }

    #[test]
    fn limits_accept_the_defaults_and_refuse_each_bound() {
        use limits::*;
        let size = ImageSize::default();
        assert_eq!(
            check(DEFAULT_CONF, DEFAULT_IOU, DEFAULT_MAX_DET, size),
            Ok(())
        );
        // Each refusal names the option it refuses.
        let refused = |result: Result<(), OutOfRange>, option: &str| match result {
            Err(error) => {
                assert_eq!(error.option, option, "{error}");
                assert!(
                    error
                        .to_string()
                        .starts_with(&format!("{option} must be within "))
                );
            }
            Ok(()) => panic!("{option}: accepted"),
        };
        refused(check(1.5, DEFAULT_IOU, DEFAULT_MAX_DET, size), "conf");
        refused(check(DEFAULT_CONF, -0.1, DEFAULT_MAX_DET, size), "iou");
        refused(check(DEFAULT_CONF, DEFAULT_IOU, 0, size), "max_det");
        refused(check(DEFAULT_CONF, DEFAULT_IOU, 100_001, size), "max_det");
        refused(
            check(DEFAULT_CONF, DEFAULT_IOU, 1, ImageSize::new(16, 640)),
            "img_size",
        );
        refused(
            check(DEFAULT_CONF, DEFAULT_IOU, 1, ImageSize::new(640, 8224)),
            "img_size",
        );
        assert_eq!(check(0.0, 1.0, 100_000, ImageSize::new(32, 8192)), Ok(()));
    }

    #[test]
    fn incompatible_pairs_name_the_option_refused() {
        use limits::compatible;
        let refused = |f, m, p, o| compatible(f, m, p, o).map_err(|e| e.option);
        for f in Format::ALL {
            for m in Mode::ALL {
                for p in Precision::ALL {
                    for o in Optimize::ALL {
                        let expected = match (f, m, p, o) {
                            (Format::Onnx, Mode::Trace, _, _) => Err("mode"),
                            (Format::Onnx, _, _, o) if *o != Optimize::None => Err("optimize"),
                            (_, _, Precision::Fp16, Optimize::Mobile) => Err("precision"),
                            _ => Ok(()),
                        };
                        assert_eq!(refused(*f, *m, *p, *o), expected, "{f} {m} {p} {o}");
                    }
                }
            }
        }
        let error = compatible(
            Format::Torchscript,
            Mode::Script,
            Precision::Fp16,
            Optimize::Mobile,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("precision fp16 cannot go with optimize mobile"),
            "{error}"
        );
    }

    #[test]
    fn image_sizes_parse() {
        assert_eq!("640".parse(), Ok(ImageSize::new(640, 640)));
        assert_eq!("480,640".parse(), Ok(ImageSize::new(480, 640)));
        // Only a square size may be written with an `x`: `640x480` means different things
        // to different people, and the error says what to write.
        assert_eq!("640x640".parse(), Ok(ImageSize::new(640, 640)));
        let error = "640x480".parse::<ImageSize>().unwrap_err().to_string();
        assert!(error.contains("480,640"), "{error}");
        assert!("640X480".parse::<ImageSize>().is_err());
        assert!("0".parse::<ImageSize>().is_err());
        assert!("1,2,3".parse::<ImageSize>().is_err());
        assert!("a".parse::<ImageSize>().is_err());
    }

    #[test]
    fn options_serialise_as_spelled() {
        let json =
            serde_json::to_string(&(Output::Raw, DeviceChoice::Cuda(1), Optimize::Mobile)).unwrap();
        assert_eq!(json, r#"["raw","cuda:1","mobile"]"#);
        let back: (Output, DeviceChoice, Optimize) = serde_json::from_str(&json).unwrap();
        assert_eq!(back, (Output::Raw, DeviceChoice::Cuda(1), Optimize::Mobile));
    }
}
