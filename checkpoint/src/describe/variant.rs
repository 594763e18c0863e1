//! Which official configuration a model was built from.
//!
//! The heuristic, from the official `cfg/training` and `cfg/deploy` files:
//!
//! 1. The number of inference levels splits the family: 3 levels (P3-P5) for `yolov7-tiny`,
//!    `yolov7` and `yolov7x`; 4 levels (P3-P6) for `yolov7-w6`, `-e6`, `-d6` and `-e6e`.
//! 2. The layer count, not counting the auxiliary-head inputs of `IAuxDetect` (so training
//!    and deploy configurations agree), picks the member: 78, 106, 122, 119, 141, 163, 262.
//! 3. The widths of the layers feeding the head, compared with the official ones, give the
//!    width multiple; a model whose levels are not all scaled by the same factor (within the
//!    rounding to multiples of 8 that `parse_model` applies) is `Custom`.
//!
//! Pose models (the `IKeypoint` head) are compared with the pose configurations only.
//!
//! Anything else is `Custom`.

use crate::model::{HeadKind, Layer, LayerKind, ModelDescription, Variant};

struct Official {
    variant: Variant,
    /// Whether the configuration ends in the pose head `IKeypoint`.
    pose: bool,
    levels: usize,
    layers: usize,
    head_inputs: &'static [usize],
}

const OFFICIAL: &[Official] = &[
    Official {
        variant: Variant::Yolov7Tiny,
        pose: false,
        levels: 3,
        layers: 78,
        head_inputs: &[128, 256, 512],
    },
    Official {
        variant: Variant::Yolov7,
        pose: false,
        levels: 3,
        layers: 106,
        head_inputs: &[256, 512, 1024],
    },
    Official {
        variant: Variant::Yolov7x,
        pose: false,
        levels: 3,
        layers: 122,
        head_inputs: &[320, 640, 1280],
    },
    Official {
        variant: Variant::Yolov7W6,
        pose: false,
        levels: 4,
        layers: 119,
        head_inputs: &[256, 512, 768, 1024],
    },
    Official {
        variant: Variant::Yolov7E6,
        pose: false,
        levels: 4,
        layers: 141,
        head_inputs: &[320, 640, 960, 1280],
    },
    Official {
        variant: Variant::Yolov7D6,
        pose: false,
        levels: 4,
        layers: 163,
        head_inputs: &[384, 768, 1152, 1536],
    },
    Official {
        variant: Variant::Yolov7E6e,
        pose: false,
        levels: 4,
        layers: 262,
        head_inputs: &[320, 640, 960, 1280],
    },
    // `cfg/yolov7-w6-pose.yaml` of the official `pose` branch.
    Official {
        variant: Variant::Yolov7W6Pose,
        pose: true,
        levels: 4,
        layers: 119,
        head_inputs: &[256, 512, 768, 1024],
    },
];

/// The variant and the width multiple relative to it (`None` for `Custom`).
pub(crate) fn guess(
    layers: &[Layer],
    head_kind: HeadKind,
    nl: usize,
    head_inputs: &[usize],
) -> (Variant, Option<f64>) {
    let aux = match head_kind {
        HeadKind::IAuxDetect => head_inputs.len().saturating_sub(nl),
        HeadKind::Detect | HeadKind::IDetect | HeadKind::IKeypoint => 0,
    };
    let pose = head_kind == HeadKind::IKeypoint;
    let main_layers = layers.len().saturating_sub(aux);
    let main_inputs = head_inputs.get(..nl).unwrap_or(head_inputs);
    for official in OFFICIAL {
        if official.pose != pose || official.levels != nl || official.layers != main_layers {
            continue;
        }
        if let Some(width) = width_multiple(main_inputs, official.head_inputs) {
            return (official.variant, Some(width));
        }
    }
    (Variant::Custom, None)
}

/// The width multiple of a description, recomputed from its layers.
pub(crate) fn width_of(description: &ModelDescription) -> Option<f64> {
    let layers = &description.layers;
    let last = layers.last()?;
    let LayerKind::Detect(head) = &last.kind else {
        return None;
    };
    let index = i64::try_from(last.index).ok()?;
    let inputs = last
        .from
        .iter()
        .map(|&f| {
            let source = if f < 0 { index.checked_add(f)? } else { f };
            layers
                .get(usize::try_from(source).ok()?)
                .map(|l| l.out_channels)
        })
        .collect::<Option<Vec<_>>>()?;
    guess(layers, head.kind, head.nl, &inputs).1
}

/// The common factor between `actual` and `official` widths, if there is one.
fn width_multiple(actual: &[usize], official: &[usize]) -> Option<f64> {
    if actual.len() != official.len() {
        return None;
    }
    let (&a0, &o0) = (actual.first()?, official.first()?);
    let ratio = a0 as f64 / o0 as f64;
    let consistent = actual.iter().zip(official).all(|(&a, &o)| {
        // `make_divisible(c * width, 8)` rounds each width up to a multiple of 8.
        (a as f64 - o as f64 * ratio).abs() <= 8.0
    });
    consistent.then(|| (ratio * 1000.0).round() / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths() {
        assert_eq!(
            width_multiple(&[64, 128, 256], &[256, 512, 1024]),
            Some(0.25)
        );
        assert_eq!(
            width_multiple(&[256, 512, 1024], &[256, 512, 1024]),
            Some(1.0)
        );
        assert_eq!(width_multiple(&[64, 512, 256], &[256, 512, 1024]), None);
    }
}
