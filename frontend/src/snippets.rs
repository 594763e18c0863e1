//! Code that loads and runs a converted artifact, for the report page: Python
//! (`torch.jit.load`), C++ (LibTorch) and Rust (`tch`). Every snippet calls `detect_image`,
//! which every artifact has whatever its head: one RGB `uint8 [H, W, 3]` image in, boxes in
//! that image's pixels out.

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
}

/// A language and its snippet.
#[derive(Debug, Clone, PartialEq)]
pub struct Snippet {
    pub language: &'static str,
    /// Stable id for the element (`python`, `cpp`, `rust`).
    pub id: &'static str,
    pub code: String,
}

/// The three snippets, in the order the page shows them.
pub fn all(artifact: &Artifact<'_>) -> Vec<Snippet> {
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
fn forward_output(head: &str) -> &'static str {
    match head {
        "raw" => "list of [B, anchors, ny, nx, 5 + nc] pre-sigmoid tensors, one per level",
        "detections" => "list (one per image) of [K, 6] = x1, y1, x2, y2, score, class",
        _ => "[B, N, 5 + nc] = cx, cy, w, h, objectness, class probabilities",
    }
}

fn python(a: &Artifact<'_>) -> String {
    let [h, w] = a.img_size;
    let dtype = if a.half { ", dtype=torch.half" } else { "" };
    format!(
        r#"import numpy as np
import torch
from PIL import Image

device = "cuda" if torch.cuda.is_available() else "cpu"
model = torch.jit.load("{file}", map_location=device).eval()

# One RGB image of any size, uint8 [H, W, 3]; boxes come back in its pixels.
image = torch.from_numpy(np.asarray(Image.open("image.jpg").convert("RGB"))).to(device)
with torch.no_grad():
    boxes = model.detect_image(image, {conf}, {iou}, {max_det})  # [K, 6]
for x1, y1, x2, y2, score, cls in boxes.tolist():
    print(model.names[int(cls)], f"{{score:.2f}}", [round(v) for v in (x1, y1, x2, y2)])

# The network itself: RGB in 0..1, sides multiples of the largest stride.
x = torch.rand(1, 3, {h}, {w}, device=device{dtype})
y = model(x)  # {out}
"#,
        file = a.file_name,
        conf = a.conf,
        iou = a.iou,
        max_det = a.max_det,
        out = forward_output(a.head),
    )
}

fn cpp(a: &Artifact<'_>) -> String {
    let [h, w] = a.img_size;
    let dtype = if a.half {
        "torch::kHalf"
    } else {
        "torch::kFloat"
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
  torch::Tensor boxes =
      model.get_method("detect_image")({{image, {conf}, {iou}, int64_t{{{max_det}}}}}).toTensor();
  auto names = model.attr("names").toList();
  for (int64_t i = 0; i < boxes.size(0); ++i) {{
    auto row = boxes[i].to(torch::kCPU);  // x1, y1, x2, y2, score, class
    std::cout << names.get(row[5].item<int64_t>()).toStringRef() << " "
              << row[4].item<float>() << "\n";
  }}

  // The network itself: RGB in 0..1, sides multiples of the largest stride.
  torch::Tensor x = torch::rand({{1, 3, {h}, {w}}}, torch::TensorOptions().dtype({dtype}).device(device));
  auto y = model.forward({{x}});  // {out}
  return 0;
}}
"#,
        file = a.file_name,
        conf = a.conf,
        iou = a.iou,
        max_det = a.max_det,
        out = forward_output(a.head),
    )
}

fn rust(a: &Artifact<'_>) -> String {
    let [h, w] = a.img_size;
    let kind = if a.half { "Kind::Half" } else { "Kind::Float" };
    format!(
        r#"// Cargo.toml: tch = "0.24" (libtorch 2.11)
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
    if let IValue::Tensor(boxes) = model.method_is("detect_image", &args)? {{
        boxes.print(); // [K, 6] = x1, y1, x2, y2, score, class
    }}

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
        out = forward_output(a.head),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_snippet_names_the_file_and_the_thresholds() {
        let artifact = Artifact {
            file_name: "best.torchscript.pt",
            head: "decoded",
            half: false,
            img_size: [480, 640],
            conf: 0.25,
            iou: 0.45,
            max_det: 300,
        };
        let snippets = all(&artifact);
        assert_eq!(snippets.len(), 3);
        for s in &snippets {
            assert!(s.code.contains("best.torchscript.pt"), "{}", s.language);
            assert!(s.code.contains("detect_image"), "{}", s.language);
            assert!(s.code.contains("0.25") && s.code.contains("0.45"));
            assert!(s.code.contains("480") && s.code.contains("640"));
        }
    }
}
