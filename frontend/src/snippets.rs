//! Code that loads and runs a converted artifact, for the report page: Python
//! (`torch.jit.load`), C++ (LibTorch) and Rust (`tch`). Every snippet calls `detect_image`,
//! which every artifact has whatever its head: one RGB `uint8 [H, W, 3]` image in, boxes in
//! that image's pixels out (pose models: boxes, then x, y and a confidence per keypoint).

use yolots_protocol::{COCO_KEYPOINT_NAMES, KEYPOINT_VALUES, Task};

/// What the snippets need to know about the artifact.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact<'a> {
    pub file_name: &'a str,
    /// `decoded`, `raw` or `detections`: what `forward` returns.
    pub head: &'a str,
    pub half: bool,
    pub img_size: [u32; 2],
    pub conf: f64,
    pub iou: f64,
    pub max_det: u32,
    /// `pose` artifacts add `nkpt` keypoints to every output row.
    pub task: Task,
    pub nkpt: usize,
    /// An ONNX file (run with ONNX Runtime) rather than TorchScript.
    pub onnx: bool,
}

impl Artifact<'_> {
    /// Keypoints per row of a pose model; `None` for detection models (and for a pose
    /// report that does not say how many, which the snippets cannot write).
    pub(crate) fn keypoints(&self) -> Option<usize> {
        (self.task == Task::Pose && self.nkpt > 0).then_some(self.nkpt)
    }
}

/// A language and its snippet.
#[derive(Debug, Clone, PartialEq)]
pub struct Snippet {
    pub language: &'static str,
    /// Stable id for the element (`python`, `cpp`, `rust`).
    pub id: &'static str,
    pub code: String,
}

/// The snippets of the artifact, in the order the page shows them (three for
/// TorchScript, two for ONNX: [`crate::snippets_onnx`]).
pub fn all(artifact: &Artifact<'_>) -> Vec<Snippet> {
    if artifact.onnx {
        return crate::snippets_onnx::all(artifact);
    }
    vec![
        Snippet {
            language: "Python",
            id: "python",
            code: python(artifact),
        },
        Snippet {
            language: "C++ (LibTorch)",
            id: "cpp",
            code: cpp(artifact),
        },
        Snippet {
            language: "Rust (tch)",
            id: "rust",
            code: rust(artifact),
        },
    ]
}

/// What `forward` returns, as a comment.
fn forward_output(a: &Artifact<'_>) -> String {
    let Some(nkpt) = a.keypoints() else {
        return detection_forward_output(a.head).to_owned();
    };
    let values = KEYPOINT_VALUES;
    match a.head {
        "raw" => format!(
            "list of [B, anchors, ny, nx, 5 + nc + {values}*{nkpt}] pre-activation tensors, one per level"
        ),
        "detections" => format!(
            "list (one per image) of [K, 6 + {values}*{nkpt}] = x1, y1, x2, y2, score, class, then x, y, conf per keypoint"
        ),
        _ => format!(
            "[B, N, 5 + nc + {values}*{nkpt}] = cx, cy, w, h, objectness, class probabilities, then x, y, conf per keypoint"
        ),
    }
}

fn detection_forward_output(head: &str) -> &'static str {
    match head {
        "raw" => "list of [B, anchors, ny, nx, 5 + nc] pre-sigmoid tensors, one per level",
        "detections" => "list (one per image) of [K, 6] = x1, y1, x2, y2, score, class",
        _ => "[B, N, 5 + nc] = cx, cy, w, h, objectness, class probabilities",
    }
}

/// Where a pose model's keypoint names are, as a comment line (empty for a custom layout,
/// whose names the checkpoint does not hold).
fn keypoint_order(nkpt: usize, comment: &str) -> String {
    if nkpt != COCO_KEYPOINT_NAMES.len() {
        return String::new();
    }
    let first = COCO_KEYPOINT_NAMES[..3].join(", ");
    format!(
        "{comment} COCO order: {first}, ...; the archive's yolots.json lists all {nkpt} and the skeleton.\n"
    )
}

fn python(a: &Artifact<'_>) -> String {
    let [h, w] = a.img_size;
    let dtype = if a.half { ", dtype=torch.half" } else { "" };
    let read_rows = match a.keypoints() {
        None => format!(
            r#"# One RGB image of any size, uint8 [H, W, 3]; boxes come back in its pixels.
image = torch.from_numpy(np.array(Image.open("image.jpg").convert("RGB"))).to(device)
with torch.no_grad():
    boxes = model.detect_image(image, {conf}, {iou}, {max_det})  # [K, 6]
print(len(boxes), "detection" if len(boxes) == 1 else "detections")
for x1, y1, x2, y2, score, cls in boxes.tolist():
    print(model.names[int(cls)], f"{{score:.2f}}", [round(v) for v in (x1, y1, x2, y2)])
"#,
            conf = a.conf,
            iou = a.iou,
            max_det = a.max_det,
        ),
        Some(nkpt) => format!(
            r#"# One RGB image of any size, uint8 [H, W, 3]; boxes and keypoints come back in its pixels.
image = torch.from_numpy(np.array(Image.open("image.jpg").convert("RGB"))).to(device)
with torch.no_grad():
    dets = model.detect_image(image, {conf}, {iou}, {max_det})  # [K, 6 + {values}*{nkpt}]
print(len(dets), "detection" if len(dets) == 1 else "detections")
# After x1, y1, x2, y2, score, class: {nkpt} keypoints of x, y (pixels) and a confidence.
{order}kpts = dets[:, 6:].view(len(dets), {nkpt}, {values})  # not -1: view cannot infer it when K is 0
for det, points in zip(dets.tolist(), kpts.tolist()):
    x1, y1, x2, y2, score, cls = det[:6]
    print(model.names[int(cls)], f"{{score:.2f}}", [round(v) for v in (x1, y1, x2, y2)])
    print("  keypoints:", [(round(x), round(y), round(conf, 2)) for x, y, conf in points])
"#,
            conf = a.conf,
            iou = a.iou,
            max_det = a.max_det,
            values = KEYPOINT_VALUES,
            order = keypoint_order(nkpt, "#"),
        ),
    };
    format!(
        r#"# pip install torch numpy pillow
import numpy as np
import torch
from PIL import Image

device = "cuda" if torch.cuda.is_available() else "cpu"
model = torch.jit.load("{file}", map_location=device).eval()

{read_rows}
# The network itself: RGB in 0..1, sides multiples of the largest stride.
x = torch.rand(1, 3, {h}, {w}, device=device{dtype})
y = model(x)  # {out}
"#,
        file = a.file_name,
        out = forward_output(a),
    )
}

fn cpp(a: &Artifact<'_>) -> String {
    let [h, w] = a.img_size;
    let dtype = if a.half {
        "torch::kHalf"
    } else {
        "torch::kFloat"
    };
    let read_rows = match a.keypoints() {
        None => format!(
            r#"  torch::Tensor boxes =
      model.get_method("detect_image")({{image, {conf}, {iou}, int64_t{{{max_det}}}}}).toTensor();
  std::cout << boxes.size(0) << (boxes.size(0) == 1 ? " detection\n" : " detections\n");
  auto names = model.attr("names").toList();
  for (int64_t i = 0; i < boxes.size(0); ++i) {{
    auto row = boxes[i].to(torch::kCPU);  // x1, y1, x2, y2, score, class
    std::cout << names.get(row[5].item<int64_t>()).toStringRef() << " "
              << row[4].item<float>() << "\n";
  }}
"#,
            conf = a.conf,
            iou = a.iou,
            max_det = a.max_det,
        ),
        Some(nkpt) => format!(
            r#"  torch::Tensor dets =  // [K, 6 + {values}*{nkpt}]
      model.get_method("detect_image")({{image, {conf}, {iou}, int64_t{{{max_det}}}}}).toTensor().to(torch::kCPU);
  // After x1, y1, x2, y2, score, class: {nkpt} keypoints of x, y (pixels) and a confidence.
{order}  // dets.size(0), not -1: view cannot infer it when K is 0.
  torch::Tensor kpts = dets.slice(1, 6).view({{dets.size(0), {nkpt}, {values}}});
  std::cout << dets.size(0) << (dets.size(0) == 1 ? " detection\n" : " detections\n");
  auto names = model.attr("names").toList();
  for (int64_t i = 0; i < dets.size(0); ++i) {{
    auto row = dets[i];  // x1, y1, x2, y2, score, class, keypoints
    std::cout << names.get(row[5].item<int64_t>()).toStringRef() << " "
              << row[4].item<float>() << "\n";
    for (int64_t k = 0; k < {nkpt}; ++k) {{
      auto point = kpts[i][k];  // x, y, confidence
      std::cout << "  " << point[0].item<float>() << ", " << point[1].item<float>()
                << " (" << point[2].item<float>() << ")\n";
    }}
  }}
"#,
            conf = a.conf,
            iou = a.iou,
            max_det = a.max_det,
            values = KEYPOINT_VALUES,
            order = keypoint_order(nkpt, "  //"),
        ),
    };
    format!(
        r#"// CMake: find_package(Torch REQUIRED) and target_link_libraries(app "${{TORCH_LIBRARIES}}")
#include <torch/script.h>
#include <iostream>

int main() {{
  torch::Device device(torch::cuda::is_available() ? torch::kCUDA : torch::kCPU);
  torch::jit::Module model = torch::jit::load("{file}", device);
  model.eval();
  torch::NoGradGuard no_grad;

  // One RGB image, uint8 [H, W, 3]. From OpenCV: convert BGR to RGB, then
  // torch::from_blob(rgb.data, {{rgb.rows, rgb.cols, 3}}, torch::kUInt8).clone().
  torch::Tensor image = torch::zeros({{480, 640, 3}}, torch::kUInt8).to(device);
{read_rows}
  // The network itself: RGB in 0..1, sides multiples of the largest stride.
  torch::Tensor x = torch::rand({{1, 3, {h}, {w}}}, torch::TensorOptions().dtype({dtype}).device(device));
  auto y = model.forward({{x}});  // {out}
  return 0;
}}
"#,
        file = a.file_name,
        out = forward_output(a),
    )
}

fn rust(a: &Artifact<'_>) -> String {
    let [h, w] = a.img_size;
    let kind = if a.half { "Kind::Half" } else { "Kind::Float" };
    let read_rows = match a.keypoints() {
        None => r#"    if let IValue::Tensor(boxes) = model.method_is("detect_image", &args)? {
        let (count, _) = boxes.size2()?;
        println!("{count} {}", if count == 1 { "detection" } else { "detections" });
        boxes.print(); // [K, 6] = x1, y1, x2, y2, score, class
    }
"#
        .to_owned(),
        Some(nkpt) => format!(
            r#"    if let IValue::Tensor(dets) = model.method_is("detect_image", &args)? {{
        // [K, 6 + {values}*{nkpt}]: x1, y1, x2, y2, score, class, then {nkpt} keypoints of
        // x, y (pixels) and a confidence.
{order}        let (count, _) = dets.size2()?; // not -1: view cannot infer it when K is 0
        let kpts = dets.narrow(1, 6, {values} * {nkpt}).view([count, {nkpt}, {values}]);
        println!("{{count}} {{}}", if count == 1 {{ "detection" }} else {{ "detections" }});
        dets.narrow(1, 0, 6).print();
        kpts.print(); // [K, {nkpt}, {values}]
    }}
"#,
            values = KEYPOINT_VALUES,
            order = keypoint_order(nkpt, "        //"),
        ),
    };
    format!(
        r#"// Cargo.toml: tch = "0.24" (with libtorch 2.11: set LIBTORCH, or the download-libtorch feature)
use tch::{{CModule, Device, IValue, Kind, Tensor}};

fn main() -> Result<(), tch::TchError> {{
    let device = Device::cuda_if_available();
    let mut model = CModule::load_on_device("{file}", device)?;
    model.set_eval();
    let _no_grad = tch::no_grad_guard();

    // One RGB image, uint8 [H, W, 3] (image::load gives [3, H, W]).
    let image = tch::vision::image::load("image.jpg")?.permute([1, 2, 0]).to_device(device);
    let args = [
        IValue::Tensor(image),
        IValue::Double({conf:?}),
        IValue::Double({iou:?}),
        IValue::Int({max_det}),
    ];
{read_rows}
    // The network itself: RGB in 0..1, sides multiples of the largest stride.
    let x = Tensor::rand([1, 3, {h}, {w}], ({kind}, device));
    let _y = model.forward_is(&[IValue::Tensor(x)])?; // {out}
    Ok(())
}}
"#,
        file = a.file_name,
        conf = a.conf,
        iou = a.iou,
        max_det = a.max_det,
        out = forward_output(a),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detection() -> Artifact<'static> {
        Artifact {
            file_name: "best.torchscript.pt",
            head: "decoded",
            half: false,
            img_size: [480, 640],
            conf: 0.25,
            iou: 0.45,
            max_det: 300,
            task: Task::Detect,
            nkpt: 0,
            onnx: false,
        }
    }

    fn pose(nkpt: usize) -> Artifact<'static> {
        Artifact {
            file_name: "yolov7-w6-pose.torchscript.pt",
            task: Task::Pose,
            nkpt,
            ..detection()
        }
    }

    fn code(snippets: &[Snippet], id: &str) -> String {
        snippets
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.code.clone())
            .unwrap_or_default()
    }

    #[test]
    fn every_snippet_names_the_file_and_the_thresholds() {
        for artifact in [detection(), pose(17)] {
            let snippets = all(&artifact);
            assert_eq!(snippets.len(), 3);
            for s in &snippets {
                assert!(s.code.contains(artifact.file_name), "{}", s.language);
                assert!(s.code.contains("detect_image"), "{}", s.language);
                assert!(s.code.contains("0.25") && s.code.contains("0.45"));
                assert!(s.code.contains("480") && s.code.contains("640"));
            }
        }
    }

    #[test]
    fn detection_snippets_say_nothing_of_keypoints() {
        let snippets = all(&detection());
        for s in &snippets {
            assert!(!s.code.contains("keypoint"), "{}", s.language);
            assert!(!s.code.contains("6 + 3*"), "{}", s.language);
        }
        // A pose report that does not say how many keypoints gets the detection snippets.
        let pose_without_count = Artifact {
            task: Task::Pose,
            ..detection()
        };
        assert_eq!(all(&pose_without_count), snippets);
    }

    #[test]
    fn pose_snippets_read_the_keypoints_of_every_row() {
        let snippets = all(&pose(17));
        let python = code(&snippets, "python");
        assert!(python.contains("# [K, 6 + 3*17]"), "{python}");
        assert!(
            python.contains("kpts = dets[:, 6:].view(len(dets), 17, 3)"),
            "{python}"
        );
        assert!(python.contains("for x, y, conf in points"), "{python}");
        let cpp = code(&snippets, "cpp");
        assert!(
            cpp.contains("dets.slice(1, 6).view({dets.size(0), 17, 3})"),
            "{cpp}"
        );
        assert!(cpp.contains("k < 17"), "{cpp}");
        let rust = code(&snippets, "rust");
        assert!(rust.contains("let (count, _) = dets.size2()?;"), "{rust}");
        assert!(
            rust.contains("dets.narrow(1, 6, 3 * 17).view([count, 17, 3])"),
            "{rust}"
        );
        for s in &snippets {
            assert!(
                s.code
                    .contains("COCO order: nose, left_eye, right_eye, ...;"),
                "{}",
                s.language
            );
            assert!(
                s.code.contains("5 + nc + 3*17] = cx, cy, w, h"),
                "{}",
                s.language
            );
        }
    }

    #[test]
    fn a_custom_keypoint_layout_gets_its_own_count_and_no_coco_names() {
        let snippets = all(&Artifact {
            head: "detections",
            ..pose(5)
        });
        assert!(code(&snippets, "python").contains("view(len(dets), 5, 3)"));
        assert!(code(&snippets, "cpp").contains("view({dets.size(0), 5, 3})"));
        assert!(code(&snippets, "rust").contains("narrow(1, 6, 3 * 5).view([count, 5, 3])"));
        for s in &snippets {
            assert!(!s.code.contains("COCO"), "{}", s.language);
            assert!(s.code.contains("[K, 6 + 3*5] = x1, y1"), "{}", s.language);
        }
    }

    #[test]
    fn every_snippet_prints_how_many_it_found() {
        for artifact in [detection(), pose(17)] {
            let snippets = all(&artifact);
            let python = code(&snippets, "python");
            assert!(
                python.starts_with("# pip install torch numpy pillow\n"),
                "{python}"
            );
            // A writable array: torch.from_numpy warns about a read-only one.
            assert!(!python.contains("np.asarray"), "{python}");
            assert!(python.contains("torch.from_numpy(np.array(Image.open("));
            assert!(python.contains(r#""detection" if len("#), "{python}");
            assert!(code(&snippets, "cpp").contains(r#"== 1 ? " detection\n" : " detections\n""#));
            assert!(code(&snippets, "rust").contains(r#"println!("{count} {}", if count == 1"#));
        }
    }
}
