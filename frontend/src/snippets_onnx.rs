//! Code that runs an ONNX artifact with ONNX Runtime, for the report page: Python
//! (`onnxruntime`) and C++ (the ONNX Runtime C++ API). The file has one input, `images`
//! (float32 `[B, 3, H, W]`, RGB in 0..1, any batch and size that is a multiple of the
//! largest stride), and the outputs of its head: `decoded`, `raw_0`, `raw_1`, ... or
//! `detections` (`[K, 7]`: image index, x1, y1, x2, y2, score, class; NMS inside).

use yolots_protocol::KEYPOINT_VALUES;

use crate::snippets::{Artifact, Snippet};

/// The two snippets, in the order the page shows them.
pub fn all(artifact: &Artifact<'_>) -> Vec<Snippet> {
    vec![
        Snippet {
            language: "Python (onnxruntime)",
            id: "python",
            code: python(artifact),
        },
        Snippet {
            language: "C++ (ONNX Runtime)",
            id: "cpp",
            code: cpp(artifact),
        },
    ]
}

/// The outputs of the file, as a comment.
fn outputs(a: &Artifact<'_>) -> String {
    let (kpt_values, kpt_text) = match a.keypoints() {
        Some(nkpt) => (
            format!(" + {KEYPOINT_VALUES}*{nkpt}"),
            ", then x, y, conf per keypoint",
        ),
        None => (String::new(), ""),
    };
    match a.head {
        "raw" => format!(
            "raw_0, raw_1, ...: [B, anchors, ny, nx, 5 + nc{kpt_values}] pre-activation, one per level"
        ),
        "detections" => format!(
            "detections: [K, 7{kpt_values}] = image index, x1, y1, x2, y2, score, class{kpt_text}"
        ),
        _ => format!(
            "decoded: [B, N, 5 + nc{kpt_values}] = cx, cy, w, h, objectness, class probabilities{kpt_text}"
        ),
    }
}

fn python(a: &Artifact<'_>) -> String {
    let [h, w] = a.img_size;
    let read = match a.head {
        "detections" => {
            let keypoints = match a.keypoints() {
                Some(nkpt) => format!(
                    "kpts = dets[:, 7:].reshape(len(dets), {nkpt}, {KEYPOINT_VALUES}) * [sx, sy, 1]  # x, y (pixels), conf\n"
                ),
                None => String::new(),
            };
            format!(
                r#"(dets,) = session.run(["detections"], {{"images": x}})  # NMS inside: conf {conf}, IoU {iou}, at most {max_det} per image
{keypoints}for image_index, x1, y1, x2, y2, score, cls in dets[:, :7].tolist():
    print(names[int(cls)], f"{{score:.2f}}", [round(x1 * sx), round(y1 * sy), round(x2 * sx), round(y2 * sy)])
"#,
                conf = a.conf,
                iou = a.iou,
                max_det = a.max_det,
            )
        }
        "raw" => "raw = session.run(None, {\"images\": x})  # one array per level\n".to_owned(),
        _ => "(decoded,) = session.run([\"decoded\"], {\"images\": x})\n".to_owned(),
    };
    format!(
        r#"import json
import numpy as np
import onnxruntime as ort
from PIL import Image

session = ort.InferenceSession("{file}", providers=["CPUExecutionProvider"])
names = json.loads(session.get_modelmeta().custom_metadata_map["names"])

# RGB in 0..1, float32 [B, 3, H, W]; any batch, sides multiples of the largest stride.
original = Image.open("image.jpg").convert("RGB")
x = np.asarray(original.resize(({w}, {h})), dtype=np.float32).transpose(2, 0, 1)[None] / 255.0
sx, sy = original.width / {w}, original.height / {h}  # back to the image's pixels

# {out}
{read}"#,
        file = a.file_name,
        out = outputs(a),
    )
}

fn cpp(a: &Artifact<'_>) -> String {
    let [h, w] = a.img_size;
    let output = match a.head {
        "raw" => "raw_0",
        "detections" => "detections",
        _ => "decoded",
    };
    let read = if a.head == "detections" {
        let columns = 7 + a.keypoints().map_or(0, |n| KEYPOINT_VALUES * n);
        format!(
            r#"  const int64_t count = shape[0], columns = {columns};
  for (int64_t k = 0; k < count; ++k) {{
    const float* r = rows + k * columns;  // image index, x1, y1, x2, y2, score, class{kpts}
    std::cout << "class " << r[6] << " score " << r[5] << " box " << r[1] << "," << r[2]
              << " " << r[3] << "," << r[4] << "\n";
  }}
"#,
            kpts = if a.keypoints().is_some() {
                ", keypoints"
            } else {
                ""
            },
        )
    } else {
        "  std::cout << \"shape \" << shape[0] << \" x \" << shape[1] << \" x ...\\n\";\n"
            .to_owned()
    };
    format!(
        r#"#include <onnxruntime_cxx_api.h>

#include <array>
#include <iostream>
#include <vector>

int main() {{
  Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "yolots");
  Ort::Session session(env, "{file}", Ort::SessionOptions{{}});

  // RGB in 0..1, float32 [1, 3, {h}, {w}] (planar): fill from your image resized to {w}x{h}.
  std::vector<float> pixels(3 * {h} * {w}, 0.5f);
  std::array<int64_t, 4> dims{{1, 3, {h}, {w}}};
  auto memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  Ort::Value input = Ort::Value::CreateTensor<float>(memory, pixels.data(), pixels.size(),
                                                     dims.data(), dims.size());
  const char* inputs[] = {{"images"}};
  const char* outputs[] = {{"{output}"}};  // {out}
  auto result = session.Run(Ort::RunOptions{{nullptr}}, inputs, &input, 1, outputs, 1);
  const float* rows = result[0].GetTensorData<float>();
  auto shape = result[0].GetTensorTypeAndShapeInfo().GetShape();
  (void)rows;
{read}  return 0;
}}
"#,
        file = a.file_name,
        out = outputs(a),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use yolots_protocol::Task;

    fn onnx(head: &'static str) -> Artifact<'static> {
        Artifact {
            file_name: "best.onnx",
            head,
            half: false,
            img_size: [480, 640],
            conf: 0.25,
            iou: 0.45,
            max_det: 300,
            task: Task::Detect,
            nkpt: 0,
            onnx: true,
        }
    }

    #[test]
    fn snippets_run_the_file_with_onnx_runtime() {
        for head in ["decoded", "raw", "detections"] {
            let snippets = crate::snippets::all(&onnx(head));
            assert_eq!(snippets.len(), 2);
            for s in &snippets {
                assert!(s.code.contains("best.onnx"), "{}", s.language);
                assert!(s.code.contains("\"images\""), "{}", s.language);
                assert!(!s.code.contains("detect_image"), "{}", s.language);
                assert!(s.code.contains("480") && s.code.contains("640"));
            }
            assert!(snippets[0].code.contains("import onnxruntime"));
            assert!(snippets[1].code.contains("Ort::Session"));
        }
        let python = &all(&onnx("detections"))[0].code;
        assert!(
            python.contains("conf 0.25, IoU 0.45, at most 300"),
            "{python}"
        );
    }

    #[test]
    fn pose_detections_read_their_keypoints() {
        let pose = Artifact {
            task: Task::Pose,
            nkpt: 17,
            ..onnx("detections")
        };
        let snippets = all(&pose);
        assert!(
            snippets[0]
                .code
                .contains("dets[:, 7:].reshape(len(dets), 17, 3)")
        );
        assert!(snippets[1].code.contains("columns = 58"));
        assert!(snippets[0].code.contains("[K, 7 + 3*17]"));
    }
}
