//! What a model predicts ([`Task`]) and the keypoint layout of pose models.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::options::{ParseOptionError, spelled_enum};

/// What a model predicts: boxes (`detect`) or boxes with keypoints (`pose`, the `IKeypoint`
/// head of YOLOv7's pose models).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Task {
    #[default]
    Detect,
    Pose,
}

spelled_enum!(Task, "task", {
    Detect => "detect",
    Pose => "pose",
});

/// Values per keypoint in every output: x, y (pixels) and a confidence (sigmoid).
pub const KEYPOINT_VALUES: usize = 3;

/// The 17 COCO person keypoints, in the order COCO-trained pose models predict them.
pub const COCO_KEYPOINT_NAMES: [&str; 17] = [
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
];

/// The COCO person skeleton: pairs of keypoint indices (0-based) to join with a line.
pub const COCO_SKELETON: [[usize; 2]; 19] = [
    [15, 13],
    [13, 11],
    [16, 14],
    [14, 12],
    [11, 12],
    [5, 11],
    [6, 12],
    [5, 6],
    [5, 7],
    [6, 8],
    [7, 9],
    [8, 10],
    [1, 2],
    [0, 1],
    [0, 2],
    [1, 3],
    [2, 4],
    [3, 5],
    [4, 6],
];

/// Names and skeleton for a model with `nkpt` keypoints: COCO's for 17, none otherwise
/// (a custom layout's names are not in the checkpoint).
pub fn keypoint_layout(nkpt: usize) -> Option<(Vec<String>, Vec<[usize; 2]>)> {
    (nkpt == COCO_KEYPOINT_NAMES.len()).then(|| {
        (
            COCO_KEYPOINT_NAMES.iter().map(|s| s.to_string()).collect(),
            COCO_SKELETON.to_vec(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_spellings_round_trip() {
        for task in Task::ALL {
            assert_eq!(task.as_str().parse::<Task>(), Ok(*task));
        }
        assert!("keypoints".parse::<Task>().is_err());
    }

    #[test]
    fn skeleton_joins_known_keypoints_once() {
        let mut seen = std::collections::HashSet::new();
        for [a, b] in COCO_SKELETON {
            assert!(a < COCO_KEYPOINT_NAMES.len() && b < COCO_KEYPOINT_NAMES.len());
            assert!(seen.insert((a.min(b), a.max(b))), "pair {a}-{b} twice");
        }
        assert!(keypoint_layout(17).is_some());
        assert!(keypoint_layout(5).is_none());
    }
}
