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
        "detections" => python_detections(a),
        "raw" => format!("{PYTHON_DECODE_RAW}{}", python_nms(a, false)),
        _ => format!(
            "(decoded,) = session.run([\"decoded\"], {{\"images\": x}})\n{}",
            python_nms(a, true)
        ),
    };
    format!(
        r#"# pip install onnxruntime numpy pillow
import json
import numpy as np
import onnxruntime as ort
from PIL import Image

session = ort.InferenceSession("{file}", providers=["CPUExecutionProvider"])
names = json.loads(session.get_modelmeta().custom_metadata_map["names"])

# RGB in 0..1, float32 [B, 3, H, W]; any batch, sides multiples of the largest stride.
original = Image.open("image.jpg").convert("RGB")
pixels = np.array(original.resize(({w}, {h})), dtype=np.float32) / 255.0  # [H, W, 3]
x = np.ascontiguousarray(pixels.transpose(2, 0, 1)[None])  # [1, 3, H, W]
sx, sy = original.width / {w}, original.height / {h}  # back to the image's pixels

# {out}
{read}"#,
        file = a.file_name,
        out = outputs(a),
    )
}

/// The `detections` head: NMS ran inside, the rows only need scaling to the image.
fn python_detections(a: &Artifact<'_>) -> String {
    let (keypoints, rows, print_keypoints) = match a.keypoints() {
        Some(nkpt) => (
            format!(
                "kpts = dets[:, 7:].reshape(len(dets), {nkpt}, {KEYPOINT_VALUES}) * [sx, sy, 1]  # x, y (pixels), conf\n"
            ),
            "det, box, points in zip(dets.tolist(), boxes.tolist(), kpts.tolist())",
            "    print(\"  keypoints:\", [(round(x), round(y), round(conf, 2)) for x, y, conf in points])\n",
        ),
        None => (
            String::new(),
            "det, box in zip(dets.tolist(), boxes.tolist())",
            "",
        ),
    };
    format!(
        r#"(dets,) = session.run(["detections"], {{"images": x}})  # NMS inside: conf {conf}, IoU {iou}, at most {max_det} per image
# Rows of image index, x1, y1, x2, y2, score, class: boxes back to the image's pixels.
boxes = (dets[:, 1:5] * [sx, sy, sx, sy]).clip(0, [original.width, original.height] * 2)
{keypoints}print(len(dets), "detection" if len(dets) == 1 else "detections")
for {rows}:
    print(names[int(det[6])], f"{{det[5]:.2f}}", [round(v) for v in box])
{print_keypoints}"#,
        conf = a.conf,
        iou = a.iou,
        max_det = a.max_det,
    )
}

/// The `raw` head decoded as the model's own head does it, into the rows of `decoded`
/// (boxes, objectness, class probabilities; a pose model's keypoints are left out).
const PYTHON_DECODE_RAW: &str = r#"raw = session.run(None, {"images": x})  # one array per level
meta = session.get_modelmeta().custom_metadata_map
levels = []
for r, stride, anchors in zip(raw, json.loads(meta["stride"]), json.loads(meta["anchors"])):
    b, na, ny, nx, _ = r.shape
    y = 0.5 + 0.5 * np.tanh(r[..., :5 + len(names)] / 2)  # sigmoid
    gy, gx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    y[..., 0:2] = (y[..., 0:2] * 2 - 0.5 + np.stack([gx, gy], -1)) * stride  # centre, pixels
    y[..., 2:4] = (y[..., 2:4] * 2) ** 2 * np.array(anchors)[None, :, None, None]  # size
    levels.append(y.reshape(b, -1, y.shape[-1]))
decoded = np.concatenate(levels, 1)  # [B, N, 5 + nc], as the decoded head gives
"#;

/// Thresholds, per-class NMS and the print of the first image's rows of `decoded`.
fn python_nms(a: &Artifact<'_>, with_keypoints: bool) -> String {
    let keypoints = a.keypoints().filter(|_| with_keypoints);
    let (take_keypoints, print_keypoints) = match keypoints {
        Some(nkpt) => (
            format!(
                "kpts = rows[:, 5 + nc:].reshape(len(rows), {nkpt}, {KEYPOINT_VALUES}) * [sx, sy, 1]  # x, y (pixels), conf\n"
            ),
            "    print(\"  keypoints:\", [(round(x), round(y), round(c, 2)) for x, y, c in kpts[i].tolist()])\n",
        ),
        None => (String::new(), ""),
    };
    format!(
        r#"
def nms(boxes, scores, iou):
    """Indices of the boxes kept, best first: each drops the later ones it overlaps."""
    order, keep = scores.argsort()[::-1], []
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        wh = np.minimum(boxes[i, 2:], boxes[rest, 2:]) - np.maximum(boxes[i, :2], boxes[rest, :2])
        inter = wh.clip(0).prod(1)
        order = rest[inter / (area[i] + area[rest] - inter) <= iou]
    return np.array(keep, dtype=int)

nc = len(names)
rows = decoded[0]  # the first image
scores = rows[:, 5:5 + nc] * rows[:, 4:5]  # class probability x objectness
cls, score = scores.argmax(1), scores.max(1)
above = score > {conf}
rows, cls, score = rows[above], cls[above], score[above]
boxes = np.concatenate([rows[:, :2] - rows[:, 2:4] / 2, rows[:, :2] + rows[:, 2:4] / 2], 1)
# Per class: boxes moved apart by class, so boxes of two classes never suppress each other.
kept = nms(boxes + cls[:, None] * 10000.0, score, {iou})[:{max_det}]
boxes = (boxes * [sx, sy, sx, sy]).clip(0, [original.width, original.height] * 2)  # image pixels
{take_keypoints}print(len(kept), "detection" if len(kept) == 1 else "detections")
for i in kept:
    print(names[cls[i]], f"{{score[i]:.2f}}", [round(v) for v in boxes[i].tolist()])
{print_keypoints}"#,
        conf = a.conf,
        iou = a.iou,
        max_det = a.max_det,
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
  std::cout << count << (count == 1 ? " detection\n" : " detections\n");
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
    } else if a.head == "raw" {
        "  (void)rows;\n  std::cout << \"raw_0: \" << shape[0] << \" x \" << shape[1] << \" x \" << shape[2] << \" x \"\n            << shape[3] << \" x \" << shape[4] << \"\\n\";\n"
            .to_owned()
    } else {
        format!(
            r#"  // Rows of cx, cy, w, h, objectness, class probabilities: score = objectness x
  // probability; keep those above {conf}, then NMS at IoU {iou} (as the Python snippet does).
  const int64_t count = shape[1], columns = shape[2];
  int64_t candidates = 0;
  for (int64_t k = 0; k < count; ++k) {{
    const float* r = rows + k * columns;
    float best = 0.0f;
    for (int64_t c = 5; c < columns{classes_end}; ++c) best = std::max(best, r[4] * r[c]);
    candidates += best > {conf} ? 1 : 0;
  }}
  std::cout << candidates << " candidates above " << {conf} << " before NMS\n";
"#,
            conf = a.conf,
            iou = a.iou,
            classes_end = match a.keypoints() {
                Some(nkpt) => format!(" - {KEYPOINT_VALUES} * {nkpt}"),
                None => String::new(),
            },
        )
    };
    format!(
        r#"// Link the ONNX Runtime C++ API: target_link_libraries(app onnxruntime)
#include <onnxruntime_cxx_api.h>

#include <algorithm>
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
        assert!(
            snippets[0]
                .code
                .contains("boxes = (dets[:, 1:5] * [sx, sy, sx, sy]).clip(0, [original.width, original.height] * 2)")
        );
        assert!(snippets[0].code.contains("[K, 7 + 3*17]"));
    }

    #[test]
    fn the_python_snippet_says_what_it_needs_and_prints_a_count() {
        for head in ["decoded", "raw", "detections"] {
            for nkpt in [0, 17] {
                let artifact = Artifact {
                    task: if nkpt > 0 { Task::Pose } else { Task::Detect },
                    nkpt,
                    ..onnx(head)
                };
                let python = &all(&artifact)[0].code;
                assert!(
                    python.starts_with("# pip install onnxruntime numpy pillow\n"),
                    "{python}"
                );
                assert!(!python.contains("np.asarray"), "{python}");
                assert!(
                    python.contains(r#"print(len("#) && python.contains(r#""detection" if len("#),
                    "{head}: {python}"
                );
            }
        }
    }

    #[test]
    fn the_decoded_snippet_applies_nms_and_scales_back_to_the_image() {
        for head in ["decoded", "raw"] {
            let python = &all(&onnx(head))[0].code;
            assert!(python.contains("def nms(boxes, scores, iou):"), "{python}");
            assert!(
                python.contains("nms(boxes + cls[:, None] * 10000.0, score, 0.45)[:300]"),
                "{python}"
            );
            assert!(python.contains("above = score > 0.25"), "{python}");
            assert!(
                python.contains("boxes = (boxes * [sx, sy, sx, sy]).clip(0, [original.width, original.height] * 2)"),
                "{python}"
            );
        }
        let raw = &all(&onnx("raw"))[0].code;
        assert!(raw.contains(r#"json.loads(meta["anchors"])"#), "{raw}");
        let pose = &all(&Artifact {
            task: Task::Pose,
            nkpt: 17,
            ..onnx("decoded")
        })[0]
            .code;
        assert!(
            pose.contains("kpts = rows[:, 5 + nc:].reshape(len(rows), 17, 3) * [sx, sy, 1]"),
            "{pose}"
        );
    }
}
