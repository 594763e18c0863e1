//! Helpers shared by the fixture tests: fixture files and their official outputs,
//! conversions into temporary folders, comparisons, a plain NMS, and the Python client.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use safetensors::SafeTensors;
use tch::{Device, Kind, Tensor};
use yolots_converter::{
    ArtifactMetadata, ConversionReport, ConvertRequest, DeviceChoice, ImageSize, METADATA_FILE,
    convert,
};

/// The shared fixtures: `YOLOTS_FIXTURES`, else `<project>/../shared/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("YOLOTS_FIXTURES").map_or_else(
        || manifest_dir().join("../../shared/fixtures"),
        PathBuf::from,
    )
}

/// This package's folder. Cargo's run-time value comes first: a build folder shared between
/// clones may hold a test binary compiled in another clone, whose compile-time path is gone.
pub fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The fixtures that come with official outputs.
pub const MODELS: &[&str] = &[
    "yolov7-tiny",
    "yolov7-w25-c3",
    "yolov7-w6-w25-c3",
    "yolov7-deploy-w25-c3",
];

pub const RAW_TOL: f64 = 1e-4;
pub const BOX_TOL: f64 = 1e-3;
pub const PROB_TOL: f64 = 1e-5;

pub fn checkpoint(name: &str) -> PathBuf {
    fixtures_dir().join(format!("{name}.pt"))
}

/// A fixture's official inputs and outputs, and its metadata.
pub struct Expected {
    pub tensors: HashMap<String, Tensor>,
    pub meta: serde_json::Value,
}

impl Expected {
    pub fn load(name: &str) -> Self {
        Self::from_file(&fixtures_dir().join(format!("{name}.expected.safetensors")))
    }

    /// Outputs in the fixtures' layout at any path (files a test wrote itself).
    pub fn from_file(path: &Path) -> Self {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get("meta"))
            .map(|s| serde_json::from_str(s).unwrap())
            .unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let tensors = st
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                assert_eq!(view.dtype(), safetensors::Dtype::F32);
                let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
                (
                    name,
                    Tensor::from_data_size(view.data(), &shape, Kind::Float),
                )
            })
            .collect();
        Expected { tensors, meta }
    }

    pub fn get(&self, key: &str) -> &Tensor {
        self.tensors.get(key).unwrap_or_else(|| panic!("no {key}"))
    }

    /// `a.raw.0`, `a.raw.1`, ... in order.
    pub fn raw(&self, input: &str) -> Vec<&Tensor> {
        (0..)
            .map_while(|i| self.tensors.get(&format!("{input}.raw.{i}")))
            .collect()
    }

    /// `(H, W)` of an input.
    pub fn size(&self, input: &str) -> ImageSize {
        let s = self.get(&format!("{input}.input")).size();
        ImageSize::new(s[2] as u32, s[3] as u32)
    }

    pub fn names(&self) -> Vec<String> {
        serde_json::from_value(self.meta["names"].clone()).unwrap()
    }

    pub fn strides(&self) -> Vec<i64> {
        let s: Vec<f64> = serde_json::from_value(self.meta["stride"].clone()).unwrap();
        s.into_iter().map(|v| v as i64).collect()
    }
}

/// A CPU request into `dir`, at the size of input `a`, without validation or timing
/// (the tests compare with the official outputs themselves).
pub fn request(name: &str, dir: &Path, file: &str, size: ImageSize) -> ConvertRequest {
    let mut r = ConvertRequest::new(checkpoint(name), dir.join(file));
    r.img_size = size;
    r.device = DeviceChoice::Cpu;
    r.validate = false;
    r.latency_runs = 0;
    r
}

pub fn run(r: &ConvertRequest) -> ConversionReport {
    convert(r, &mut |_| {}).unwrap_or_else(|e| panic!("{}: {e}", r.input.display()))
}

pub fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

/// Compares a decoded `[B, N, 5 + nc]` output with boxes and probabilities separately.
pub fn assert_decoded(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.size(), want.size(), "{what}: shapes");
    let boxes = max_abs(&got.narrow(2, 0, 4), &want.narrow(2, 0, 4));
    let n = want.size()[2] - 4;
    let probs = max_abs(&got.narrow(2, 4, n), &want.narrow(2, 4, n));
    assert!(boxes <= BOX_TOL, "{what}: box error {boxes:e} px");
    assert!(probs <= PROB_TOL, "{what}: probability error {probs:e}");
}

pub fn assert_raw(what: &str, got: &[Tensor], want: &[&Tensor]) {
    assert_eq!(got.len(), want.len(), "{what}: levels");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let e = max_abs(g, w);
        assert!(e <= RAW_TOL, "{what}: raw.{i} error {e:e}");
    }
}

/// Flattens a TorchScript method result into tensors.
pub fn tensors(v: tch::IValue) -> Vec<Tensor> {
    match v {
        tch::IValue::Tensor(t) => vec![t],
        tch::IValue::TensorList(ts) => ts,
        tch::IValue::GenericList(vs) | tch::IValue::Tuple(vs) => {
            vs.into_iter().flat_map(tensors).collect()
        }
        other => panic!("not tensors: {other:?}"),
    }
}

pub fn call(m: &tch::CModule, method: &str, args: &[tch::IValue]) -> Vec<Tensor> {
    let _g = tch::no_grad_guard();
    tensors(m.method_is(method, args).unwrap())
}

pub fn load(path: &Path) -> tch::CModule {
    tch::CModule::load_on_device(path, Device::Cpu).unwrap()
}

/// One detection row.
#[derive(Debug, Clone, Copy)]
pub struct Det {
    pub b: [f32; 4],
    pub score: f32,
    pub class: f32,
}

pub fn rows(t: &Tensor) -> Vec<Det> {
    let v: Vec<f32> = Vec::try_from(t.to_kind(Kind::Float).contiguous().view(-1)).unwrap();
    v.chunks_exact(6)
        .map(|r| Det {
            b: [r[0], r[1], r[2], r[3]],
            score: r[4],
            class: r[5],
        })
        .collect()
}

/// The test's own plain greedy NMS with the official semantics, over one image's
/// decoded rows `[N, 5 + nc]`.
pub fn plain_nms(decoded: &Tensor, conf: f32, iou: f32, max_det: usize) -> Vec<Det> {
    let nc = decoded.size()[1] as usize - 5;
    plain_nms_kept(decoded, nc, conf, iou, max_det)
        .into_iter()
        .map(|(_, d)| d)
        .collect()
}

/// [`plain_nms`] over rows of `nc` classes, with the row index of each kept box (to read
/// its keypoints). Several classes, or keypoints after the classes (the pose code), score
/// objectness x class probability; one class alone scores objectness.
pub fn plain_nms_kept(
    decoded: &Tensor,
    nc: usize,
    conf: f32,
    iou: f32,
    max_det: usize,
) -> Vec<(usize, Det)> {
    let no = decoded.size()[1] as usize;
    let v: Vec<f32> = Vec::try_from(decoded.contiguous().view(-1)).unwrap();
    let mut c: Vec<(usize, Det)> = Vec::new();
    for (index, r) in v.chunks_exact(no).enumerate() {
        if r[4] <= conf {
            continue;
        }
        let (mut score, mut class) = (r[4], 0usize);
        if nc > 1 || no > nc + 5 {
            score = f32::MIN;
            for (k, p) in r[5..nc + 5].iter().enumerate() {
                if p * r[4] > score {
                    score = p * r[4];
                    class = k;
                }
            }
        }
        if score <= conf {
            continue;
        }
        let det = Det {
            b: [
                r[0] - r[2] / 2.0,
                r[1] - r[3] / 2.0,
                r[0] + r[2] / 2.0,
                r[1] + r[3] / 2.0,
            ],
            score,
            class: class as f32,
        };
        c.push((index, det));
    }
    // A stable sort keeps equal scores in index order, as torchvision does.
    c.sort_by(|a, b| b.1.score.partial_cmp(&a.1.score).unwrap());
    let mut keep: Vec<(usize, Det)> = Vec::new();
    let mut dead = vec![false; c.len()];
    for i in 0..c.len() {
        if dead[i] {
            continue;
        }
        keep.push(c[i]);
        if keep.len() == max_det {
            break;
        }
        let off = |d: &(usize, Det)| d.1.b.map(|x| x + d.1.class * 4096.0);
        let bi = off(&c[i]);
        for j in i + 1..c.len() {
            let bj = off(&c[j]);
            let w = (bi[2].min(bj[2]) - bi[0].max(bj[0])).max(0.0);
            let h = (bi[3].min(bj[3]) - bi[1].max(bj[1])).max(0.0);
            let inter = w * h;
            let area = |b: &[f32; 4]| (b[2] - b[0]) * (b[3] - b[1]);
            if inter / (area(&bi) + area(&bj) - inter) > iou {
                dead[j] = true;
            }
        }
    }
    keep
}

pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
}

/// Same boxes, in the same order: same class, IoU >= 0.99, scores within 1e-4.
pub fn assert_same_detections(what: &str, got: &[Det], want: &[Det]) {
    assert!(
        !want.is_empty(),
        "{what}: the reference has no box, the test proves nothing"
    );
    assert_eq!(got.len(), want.len(), "{what}: box counts");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.class, w.class, "{what}: class of box {k}");
        let o = iou(&g.b, &w.b);
        assert!(o >= 0.99, "{what}: box {k} IoU {o} ({g:?} vs {w:?})");
        assert!(
            (g.score - w.score).abs() <= 1e-4,
            "{what}: score of box {k}"
        );
    }
}

/// Writes a float32 tensor as raw little-endian bytes (readable by `torch.frombuffer`).
pub fn write_f32(t: &Tensor, path: &Path) {
    let v: Vec<f32> = Vec::try_from(t.to_kind(Kind::Float).contiguous().view(-1)).unwrap();
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

/// The setup's Python with torch, if present (`.yolots/venv`).
pub fn python() -> Option<PathBuf> {
    let p = manifest_dir().join("../.yolots/venv/bin/python");
    p.exists().then_some(p)
}

/// Runs `tests/python/check.py` with a JSON spec; returns its JSON answer.
pub fn python_check(spec: &serde_json::Value, dir: &Path) -> serde_json::Value {
    let python = python().expect("the setup's Python environment (.yolots/venv) is missing");
    let spec_path = dir.join("spec.json");
    std::fs::write(&spec_path, serde_json::to_vec(spec).unwrap()).unwrap();
    let script = manifest_dir().join("tests/python/check.py");
    let out = Command::new(python)
        .arg(script)
        .arg(&spec_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// `extra/yolots.json` read straight from the archive.
pub fn metadata_in_archive(path: &Path) -> ArtifactMetadata {
    use std::io::Read;
    let file = std::fs::File::open(path).unwrap();
    let mut zip = zip::ZipArchive::new(file).unwrap();
    let name = zip
        .file_names()
        .map(|n| n.unwrap().into_owned())
        .find(|n| n.ends_with(&format!("extra/{METADATA_FILE}")))
        .expect("no extra/yolots.json in the archive");
    let mut text = String::new();
    zip.by_name(&name)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Set to `1` by `cargo xtask test`, which installs every tool the tests use: a test whose
/// tool is missing then fails instead of skipping.
pub const REQUIRE_TOOLS_VAR: &str = "YOLOTS_REQUIRE_TOOLS";

/// A test's tool is missing: a failure under `cargo xtask test` (which installs every
/// tool, so a missing one means the setup is broken); elsewhere the test says it skips.
pub fn tool_missing(what: &str) {
    if std::env::var_os(REQUIRE_TOOLS_VAR).is_some_and(|v| v == "1") {
        panic!("{what}: cargo xtask test installs every tool, so this test must run");
    }
    eprintln!("skipped: {what} (cargo xtask test installs it, and fails here without it)");
}
