//! What `predict` says about one image: the JSON document (`--json`) and the rows it is
//! read from.

use serde::{Deserialize, Serialize};
use tch::Tensor;
use yolots_protocol::Task;

use crate::error::Result;
use crate::metadata::ArtifactMetadata;

/// One detection, in the original image's pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// `[x1, y1, x2, y2]`: corners in the image's pixels (as decoded, EXIF orientation
    /// applied).
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub score: f32,
    pub class_id: usize,
    pub class_name: String,
    /// Pose models: `[x, y, confidence]` per keypoint, in the image's pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keypoints: Option<Vec<[f32; 3]>>,
}

/// The document `--json` prints for one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The image file as given.
    pub image: String,
    pub width: u32,
    pub height: u32,
    pub task: Task,
    pub detections: Vec<Detection>,
    /// The annotated image written, when `-o` was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotated: Option<String>,
    /// Milliseconds the model took on this image (letterbox, network and NMS).
    pub inference_ms: f64,
}

/// The detections in `rows` (`[K, 6 + 3 nkpt]` float32 on the CPU).
pub fn detections(rows: &Tensor, meta: &ArtifactMetadata) -> Result<Vec<Detection>> {
    let nkpt = meta.kpt_shape.map_or(0, |[n, _]| n);
    let cols = 6 + 3 * nkpt;
    let values: Vec<f32> = Vec::try_from(rows.f_contiguous()?.f_view([-1])?)?;
    Ok(values
        .chunks_exact(cols)
        .map(|r| {
            let class_id = r[5].max(0.0) as usize;
            Detection {
                bbox: [r[0], r[1], r[2], r[3]],
                score: r[4],
                class_id,
                class_name: meta
                    .names
                    .get(class_id)
                    .cloned()
                    .unwrap_or_else(|| class_id.to_string()),
                keypoints: (nkpt > 0)
                    .then(|| r[6..].chunks_exact(3).map(|k| [k[0], k[1], k[2]]).collect()),
            }
        })
        .collect())
}
