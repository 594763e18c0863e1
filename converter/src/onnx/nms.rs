//! The `detections` head in ONNX: the official NMS semantics with the standard
//! `NonMaxSuppression` operator.
//!
//! Each box competes in its best class only (score = objectness x class probability;
//! objectness alone for one-class detection models), so the operator's per-class
//! suppression is the official class-aware NMS: the box's score goes to its best class
//! and every other class sees `-1`, below any threshold. The operator keeps up to
//! `max_det` boxes per class; the rows are then sorted by image and score and cut to
//! `max_det` per image. Rows: `batch, x1, y1, x2, y2, score, class`, then the keypoints.

use yolots_onnx::attr;
use yolots_onnx::proto::DataType;

use super::emit::OnnxEmitter;
use crate::validate::RowLayout;

/// What the NMS keeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Thresholds {
    pub conf: f64,
    pub iou: f64,
    pub max_det: i64,
}

/// Name of the detections output.
pub(crate) const DETECTIONS: &str = "detections";

/// Columns of a detections row before the keypoints: batch index, corners, score, class.
pub(crate) const DETECTION_COLUMNS: usize = 7;

/// The `detections` value `[K, 7 + 3 * nkpt]` from `decoded` `[B, N, no]` (float32).
pub(crate) fn detections(
    e: &mut OnnxEmitter,
    decoded: &str,
    images: &str,
    layout: RowLayout,
    t: Thresholds,
) -> String {
    let no_det = layout.no_det() as i64;
    let centres = e.slice(decoded, 2, 0, Some(2));
    let sizes = e.slice(decoded, 2, 2, Some(4));
    let two = e.g.float_scalar(2.0);
    let half = e.g.op("Div", &[&sizes, &two], vec![]);
    let top_left = e.g.op("Sub", &[&centres, &half], vec![]);
    let bottom_right = e.g.op("Add", &[&centres, &half], vec![]);
    let corners = e.concat(&[&top_left, &bottom_right], 2);

    let objectness = e.slice(decoded, 2, 4, Some(5));
    let (score, class_scores) = if layout.nc == 1 && layout.nkpt == 0 {
        let per_class = e.transpose(&objectness, &[0, 2, 1]);
        (objectness, per_class)
    } else {
        let probabilities = e.slice(decoded, 2, 5, Some(no_det));
        let product = e.g.op("Mul", &[&probabilities, &objectness], vec![]);
        let score = e.g.op(
            "ReduceMax",
            &[&product],
            vec![attr::ints("axes", &[2]), attr::int("keepdims", 1)],
        );
        // The first best class on ties, as a strict comparison keeps.
        let best = e.g.op(
            "ArgMax",
            &[&product],
            vec![attr::int("axis", 2), attr::int("keepdims", 1)],
        );
        let classes: Vec<i64> = (0..layout.nc as i64).collect();
        let classes = e.g.ints(&classes);
        let is_best = e.g.op("Equal", &[&best, &classes], vec![]);
        let below = e.g.float_scalar(-1.0);
        let masked = e.g.op("Where", &[&is_best, &score, &below], vec![]);
        let per_class = e.transpose(&masked, &[0, 2, 1]);
        (score, per_class)
    };

    let max_out = e.g.ints(&[t.max_det]);
    let iou = e.g.floats(&[t.iou as f32], &[1]);
    let conf = e.g.floats(&[t.conf as f32], &[1]);
    let selected = e.g.op(
        "NonMaxSuppression",
        &[&corners, &class_scores, &max_out, &iou, &conf],
        vec![attr::int("center_point_box", 0)],
    );
    let batch = e.slice(&selected, 1, 0, Some(1));
    let class = e.slice(&selected, 1, 1, Some(2));
    let index = e.slice(&selected, 1, 2, Some(3));
    let at = e.concat(&[&batch, &index], 1);
    let boxes = e.g.op("GatherND", &[&corners, &at], vec![]);
    let scores = e.g.op("GatherND", &[&score, &at], vec![]);
    let batch_f = e.cast(&batch, DataType::Float);
    let class_f = e.cast(&class, DataType::Float);
    let mut columns = vec![batch_f, boxes, scores.clone(), class_f];
    if layout.nkpt > 0 {
        let keypoints = e.slice(decoded, 2, no_det, None);
        columns.push(e.g.op("GatherND", &[&keypoints, &at], vec![]));
    }
    let refs: Vec<&str> = columns.iter().map(String::as_str).collect();
    let rows = e.concat(&refs, 1);

    // Sort by image, then by score (highest first): key = 2 * batch + (1 - score), in
    // float64 so that close scores keep their order; TopK keeps lower indices first on
    // ties.
    let batch_d = e.cast(&batch, DataType::Double);
    let score_d = e.cast(&scores, DataType::Double);
    let two_d = double_scalar(e, 2.0);
    let one_d = double_scalar(e, 1.0);
    let image_key = e.g.op("Mul", &[&batch_d, &two_d], vec![]);
    let score_key = e.g.op("Sub", &[&one_d, &score_d], vec![]);
    let key = e.g.op("Add", &[&image_key, &score_key], vec![]);
    let key = e.reshape(&key, &[-1]);
    let count = e.g.op("Shape", &[&key], vec![]);
    let order = e.g.op_n(
        "TopK",
        &[&key, &count],
        2,
        vec![
            attr::int("axis", 0),
            attr::int("largest", 0),
            attr::int("sorted", 1),
        ],
    );
    let order = &order[1];
    let rows =
        e.g.op("Gather", &[&rows, order], vec![attr::int("axis", 0)]);
    let batch = e.reshape(&batch, &[-1]);
    let batch =
        e.g.op("Gather", &[&batch, order], vec![attr::int("axis", 0)]);

    // Rank of each row within its image: a running count of the rows of each image.
    let batch = e.reshape(&batch, &[-1, 1]);
    let shape = e.g.op("Shape", &[images], vec![]);
    let zero = e.g.int_scalar(0);
    let one = e.g.int_scalar(1);
    let images_n =
        e.g.op("Gather", &[&shape, &zero], vec![attr::int("axis", 0)]);
    let image_ids = e.g.op("Range", &[&zero, &images_n, &one], vec![]);
    let of_image = e.g.op("Equal", &[&batch, &image_ids], vec![]);
    let of_image = e.cast(&of_image, DataType::Int64);
    let running = e.g.op("CumSum", &[&of_image, &zero], vec![]);
    let rank = e.g.op(
        "GatherElements",
        &[&running, &batch],
        vec![attr::int("axis", 1)],
    );
    let rank = e.reshape(&rank, &[-1]);
    let limit = e.g.int_scalar(t.max_det.saturating_add(1));
    let kept = e.g.op("Less", &[&rank, &limit], vec![]);
    let kept = e.g.op("NonZero", &[&kept], vec![]);
    let kept = e.reshape(&kept, &[-1]);
    e.g.op_into(
        "Gather",
        &[&rows, &kept],
        &[DETECTIONS],
        vec![attr::int("axis", 0)],
    );
    DETECTIONS.to_owned()
}

fn double_scalar(e: &mut OnnxEmitter, v: f64) -> String {
    let name = format!("double_{}", v.to_string().replace('.', "_"));
    e.g.tensor(&name, DataType::Double, &[], v.to_le_bytes().to_vec())
}
