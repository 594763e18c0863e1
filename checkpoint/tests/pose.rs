//! The pose fixture (`pose/yolov7-w6-pose-w25.pt`, official `pose` branch): the `IKeypoint`
//! head is described with its keypoint branches, every shape checked, and the summary says
//! `task: pose`.

#![allow(clippy::unwrap_used)]

mod common;

use common::fixture;
use yolots_checkpoint::inspect::Summary;
use yolots_checkpoint::model::{HeadKind, LayerKind, ModelSource, Task, Variant};
use yolots_checkpoint::{Checkpoint, ModelDescription};

const POSE: &str = "pose/yolov7-w6-pose-w25";

fn describe() -> ModelDescription {
    let bytes = fixture(&format!("{POSE}.pt"));
    Checkpoint::from_bytes(&bytes).unwrap().describe().unwrap()
}

#[test]
fn pose_head_is_described_with_its_keypoint_branches() {
    let d = describe();
    let meta = common::meta(POSE);
    assert_eq!(d.task(), Task::Pose);
    assert_eq!(d.nkpt(), 17);
    assert_eq!(d.nc, 1);
    assert_eq!(d.names, ["person"]);
    assert_eq!(d.strides, [8.0, 16.0, 32.0, 64.0]);
    assert_eq!(d.source, ModelSource::Model);
    assert_eq!(d.variant, Variant::Yolov7W6Pose);
    assert_eq!(d.width_multiple(), Some(0.25));
    assert_eq!(d.parameters, meta["parameters"].as_u64().unwrap());
    assert!(!d.fused);

    let head = d.head().unwrap();
    assert_eq!(head.kind, HeadKind::IKeypoint);
    assert_eq!((head.nl, head.na, head.no_det(), head.no()), (4, 3, 6, 57));
    assert_eq!(head.implicit_a.len(), 4);
    assert_eq!(head.implicit_m[0].shape, [1, 18, 1, 1]);
    let kpt = head.keypoints.as_ref().unwrap();
    assert!(kpt.depthwise);
    assert_eq!(kpt.branches.len(), 4);
    for (i, branch) in kpt.branches.iter().enumerate() {
        // Six depth-wise 3x3 blocks, five point-wise between them, then the 1x1 output.
        assert_eq!(branch.blocks.len(), 11, "level {i}");
        let c = branch.out.in_channels;
        for (j, block) in branch.blocks.iter().enumerate() {
            let depthwise = j % 2 == 0;
            assert_eq!(block.conv.groups, if depthwise { c } else { 1 }, "{i}.{j}");
            assert_eq!(block.conv.kernel, if depthwise { [3, 3] } else { [1, 1] });
            assert!(block.bn.is_some());
        }
        assert_eq!(branch.out.out_channels, 3 * 17 * 3);
        assert_eq!(
            branch.out.weight.name,
            format!("model.118.m_kpt.{i}.11.weight")
        );
    }
    // The head layer's output width counts the keypoints too.
    let last = d.layers.last().unwrap();
    assert!(matches!(last.kind, LayerKind::Detect(_)));
    assert_eq!(last.out_channels, 57 * 3);
    // Every tensor of the keypoint branches is part of the description.
    let names: Vec<&str> = d.tensors().iter().map(|t| t.name.as_str()).collect();
    assert!(names.contains(&"model.118.m_kpt.3.0.bn.running_var"));
    assert!(names.contains(&"model.118.m_kpt.3.11.bias"));
}

#[test]
fn summary_shows_the_task_and_keypoints() {
    let d = describe();
    let summary = Summary::from(&d);
    assert_eq!(summary.task, Task::Pose);
    assert_eq!(summary.nkpt, 17);
    assert_eq!(summary.keypoint_names.len(), 17);
    assert_eq!(summary.keypoint_names[0], "nose");
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(json["task"], "pose");
    assert_eq!(json["variant"], "yolov7-w6-pose");
    assert_eq!(json["head"], "IKeypoint");
    let text = summary.to_string();
    assert!(text.contains("task        pose"), "{text}");
    assert!(
        text.contains("keypoints   17 per detection (COCO"),
        "{text}"
    );
    assert!(text.contains("17 keypoints (depth-wise branch)"), "{text}");
}

#[test]
fn detection_fixtures_stay_detection() {
    let bytes = fixture("yolov7-tiny.pt");
    let d = Checkpoint::from_bytes(&bytes).unwrap().describe().unwrap();
    assert_eq!(d.task(), Task::Detect);
    assert_eq!(d.nkpt(), 0);
    let json = serde_json::to_value(Summary::from(&d)).unwrap();
    assert_eq!(json["task"], "detect");
    assert_eq!(json["nkpt"], 0);
}
