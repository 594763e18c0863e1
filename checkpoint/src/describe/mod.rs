//! Building the [`ModelDescription`] from the unpickled graph: pick `ema` or `model`, walk
//! `Model.model` layer by layer, read each layer's hyper-parameters, and check tensor shapes,
//! the channels flowing between layers and the strides the head claims.

mod head;
mod layers;
mod module;
pub(crate) mod variant;
mod walk;

use std::collections::HashSet;

use self::module::{Module, tensor_ref};
use self::walk::Walk;
use crate::Checkpoint;
use crate::error::{Error, Result};
use crate::model::{DType, HeadKind, Layer, LayerKind, ModelDescription, ModelSource, RepConvForm};
use crate::pickle::{Graph, Node, ObjId, Value};

pub(crate) fn describe(ck: &Checkpoint<'_>) -> Result<ModelDescription> {
    let graph = ck.graph();
    let root = ck.root();
    let (model_value, source) = pick_model(graph, root)?;
    let epoch = graph
        .dict(root)
        .and_then(|_| graph.dict_get(root, "epoch"))
        .and_then(|v| graph.int(v));
    let where_ = match source {
        ModelSource::Ema => "ema",
        ModelSource::Model => "model",
    };
    let model = match (Module::new(graph, model_value), graph.object(model_value)) {
        (Some(model), _) => model,
        // An object whose "class" is not a class reference (a call result, a method...).
        (None, Some(object)) => {
            return Err(Error::UnsupportedModel {
                class: object
                    .class
                    .map_or("an unknown class".into(), |c| graph.describe(c)),
            });
        }
        (None, None) => {
            return Err(Error::NoModel {
                reason: format!("`{where_}` is a {}", graph.describe(model_value)),
            });
        }
    };
    if model.yolo_class() != Some("Model") {
        return Err(Error::UnsupportedModel {
            class: model.class_path(),
        });
    }
    let sequential = model
        .child("model")
        .and_then(|v| Module::new(graph, v))
        .filter(|m| m.torch_class() == Some("Sequential"))
        .ok_or_else(|| Error::NoModel {
            reason: format!("`{where_}` has no layer list (`model.model`)"),
        })?;
    let entries = sequential.children();
    if entries.is_empty() {
        return Err(Error::NoModel {
            reason: format!("`{where_}.model` has no layers"),
        });
    }

    let input_channels = model
        .attr("yaml")
        .and_then(|y| graph.dict_get(y, "ch"))
        .and_then(|v| graph.int(v))
        .and_then(|c| usize::try_from(c).ok())
        .filter(|c| *c > 0)
        .unwrap_or(3);
    let model_stride = match model.attr("stride").filter(|v| graph.tensor(*v).is_some()) {
        Some(v) => Some(tensor_ref(ck, v, "stride")?),
        None => None,
    };

    let mut walk = Walk {
        ck,
        input_channels,
        channels: Vec::with_capacity(entries.len()),
        strides: Vec::with_capacity(entries.len()),
        layers: Vec::with_capacity(entries.len()),
        head_inputs: Vec::new(),
    };
    let count = entries.len();
    for (index, (key, value)) in entries.into_iter().enumerate() {
        walk.layer(index, key, value, index + 1 == count, model_stride.clone())?;
    }

    let Some(last) = walk.layers.last() else {
        return Err(Error::NoModel {
            reason: "no layers".into(),
        });
    };
    let last_index = last.index;
    let last_class = last.class.clone();
    let LayerKind::Detect(head) = &last.kind else {
        return Err(Error::BadLayer {
            index: last_index,
            class: last_class,
            reason: "the last layer must be a detection head (Detect, IDetect or IAuxDetect)"
                .into(),
        });
    };
    let head_error = |reason: String| Error::BadLayer {
        index: last_index,
        class: last_class.clone(),
        reason,
    };

    if let Some(nc) = model.int("nc")
        && usize::try_from(nc).ok() != Some(head.nc)
    {
        return Err(head_error(format!(
            "the model says nc = {nc}, the head {}",
            head.nc
        )));
    }
    let names = names(graph, &model, head.nc).map_err(head_error)?;
    let save = save_list(graph, &model, &walk.layers).map_err(head_error)?;
    let parameters = count_parameters(graph, model_value);
    let weights_dtype = weights_dtype(&walk.layers);
    let fused = is_fused(&walk.layers);
    let (variant, _) = variant::guess(&walk.layers, head.kind, head.nl, &walk.head_inputs);
    let strides = head.strides.clone();

    Ok(ModelDescription {
        source,
        variant,
        names,
        nc: head.nc,
        strides,
        layers: walk.layers,
        save,
        input_channels,
        epoch,
        weights_dtype,
        parameters,
        fused,
    })
}

/// The model to describe: `ema` when present and not `None`, else `model`; a pickled model
/// object on its own counts as `model`.
fn pick_model(graph: &Graph, root: Value) -> Result<(Value, ModelSource)> {
    let present = |key: &str| {
        graph
            .dict_get(root, key)
            .filter(|v| !matches!(v, Value::None))
    };
    let (value, source) = match graph.get(root) {
        Some(Node::Dict(entries)) => match (present("ema"), present("model")) {
            (Some(ema), _) => (ema, ModelSource::Ema),
            (None, Some(model)) => (model, ModelSource::Model),
            (None, None) => {
                if is_state_dict(graph, root)
                    || ["state_dict", "model_state_dict"]
                        .iter()
                        .any(|k| present(k).is_some_and(|v| is_state_dict(graph, v)))
                {
                    return Err(Error::StateDictOnly);
                }
                let keys: Vec<&str> = entries
                    .iter()
                    .filter_map(|(k, _)| graph.str(*k))
                    .take(12)
                    .collect();
                return Err(Error::NoModel {
                    reason: format!("no `model` or `ema` entry (keys: {})", keys.join(", ")),
                });
            }
        },
        Some(Node::Object(_)) => (root, ModelSource::Model),
        _ => {
            return Err(Error::NoModel {
                reason: format!("the file holds a {}", graph.describe(root)),
            });
        }
    };
    if is_state_dict(graph, value) {
        return Err(Error::StateDictOnly);
    }
    Ok((value, source))
}

/// A non-empty dict whose values are all tensors.
fn is_state_dict(graph: &Graph, value: Value) -> bool {
    graph.dict(value).is_some_and(|entries| {
        !entries.is_empty() && entries.iter().all(|(_, v)| graph.tensor(*v).is_some())
    })
}

/// `model.names` (a list, or a dict from index to name in some forks); the official default
/// (`"0"`, `"1"`, ...) when absent.
fn names(graph: &Graph, model: &Module<'_>, nc: usize) -> std::result::Result<Vec<String>, String> {
    let Some(value) = model.attr("names") else {
        return Ok((0..nc).map(|i| i.to_string()).collect());
    };
    let names: Vec<String> = if let Some(items) = graph.seq(value) {
        items
            .iter()
            .map(|v| graph.str(*v).map(str::to_string))
            .collect::<Option<_>>()
            .ok_or("`names` holds something other than strings")?
    } else if let Some(entries) = graph.dict(value) {
        let mut pairs: Vec<(i64, String)> = entries
            .iter()
            .map(|(k, v)| Some((graph.int(*k)?, graph.str(*v)?.to_string())))
            .collect::<Option<_>>()
            .ok_or("`names` is a dict that does not map integers to strings")?;
        pairs.sort_by_key(|(k, _)| *k);
        pairs.into_iter().map(|(_, v)| v).collect()
    } else {
        return Err(format!("`names` is a {}", graph.describe(value)));
    };
    if names.len() != nc {
        return Err(format!(
            "`names` has {} names for {nc} classes",
            names.len()
        ));
    }
    Ok(names)
}

/// `Model.save`, checked; derived from the inputs when absent.
fn save_list(
    graph: &Graph,
    model: &Module<'_>,
    layers: &[Layer],
) -> std::result::Result<Vec<usize>, String> {
    let mut save: Vec<usize> = match model.attr("save").and_then(|v| graph.seq(v)) {
        Some(items) => items
            .iter()
            .map(|v| graph.int(*v).and_then(|i| usize::try_from(i).ok()))
            .collect::<Option<_>>()
            .ok_or("`save` holds something other than layer indices")?,
        None => layers
            .iter()
            .flat_map(|l| {
                l.from.iter().filter(|f| **f != -1).filter_map(move |f| {
                    let index = i64::try_from(l.index).ok()?;
                    usize::try_from(if *f < 0 { index + f } else { *f }).ok()
                })
            })
            .collect(),
    };
    save.sort_unstable();
    save.dedup();
    if let Some(bad) = save.iter().find(|i| **i >= layers.len()) {
        return Err(format!(
            "`save` names layer {bad}, the model has {}",
            layers.len()
        ));
    }
    Ok(save)
}

/// Parameters of every module reachable from `root` through `_modules`, each tensor once.
pub(super) fn count_parameters(graph: &Graph, root: Value) -> u64 {
    let mut modules: HashSet<ObjId> = HashSet::new();
    let mut tensors: HashSet<ObjId> = HashSet::new();
    let mut stack = vec![root];
    let mut total: u64 = 0;
    while let Some(value) = stack.pop() {
        let Value::Ref(id) = value else { continue };
        if !modules.insert(id) {
            continue;
        }
        let Some(m) = Module::new(graph, value) else {
            continue;
        };
        for p in m.params() {
            if let (Value::Ref(pid), Some(t)) = (p, graph.tensor(p))
                && tensors.insert(pid)
            {
                let numel = t
                    .shape
                    .iter()
                    .fold(1u64, |n, d| n.saturating_mul(*d as u64));
                total = total.saturating_add(numel);
            }
        }
        stack.extend(m.children().into_iter().map(|(_, v)| v));
    }
    total
}

/// The element type of the first convolution's weights.
fn weights_dtype(layers: &[Layer]) -> DType {
    layers
        .iter()
        .find_map(|l| match &l.kind {
            LayerKind::Conv(block) => Some(block.conv.weight.dtype),
            LayerKind::RepConv(rep) => Some(match &rep.form {
                RepConvForm::Branches { dense, .. } => dense.conv.weight.dtype,
                RepConvForm::Reparam { conv } => conv.weight.dtype,
            }),
            LayerKind::Detect(head) => head.convs.first().map(|c| c.weight.dtype),
            _ => None,
        })
        .unwrap_or(DType::F32)
}

/// Fused when nothing is left to fuse (no BatchNorm, no RepConv branches, no implicit
/// layers) and the official `fuse()` left its marks somewhere.
fn is_fused(layers: &[Layer]) -> bool {
    // Per block: (something left to fuse, a mark of fusion).
    fn block(b: &crate::model::ConvBlock) -> (bool, bool) {
        (b.bn.is_some(), b.bn.is_none())
    }
    let mut unfused = false;
    let mut marks = false;
    for layer in layers {
        let states: Vec<(bool, bool)> = match &layer.kind {
            LayerKind::Conv(b) => vec![block(b)],
            LayerKind::SppCspc(s) => [&s.cv1, &s.cv2, &s.cv3, &s.cv4, &s.cv5, &s.cv6, &s.cv7]
                .into_iter()
                .map(block)
                .collect(),
            LayerKind::DownC(d) => [&d.cv1, &d.cv2, &d.cv3].into_iter().map(block).collect(),
            LayerKind::RepConv(r) => match r.form {
                RepConvForm::Branches { .. } => vec![(true, false)],
                RepConvForm::Reparam { .. } => vec![(false, true)],
            },
            LayerKind::Detect(h) => match h.kind {
                HeadKind::Detect => vec![],
                HeadKind::IDetect | HeadKind::IAuxDetect => vec![(!h.fused, h.fused)],
            },
            _ => vec![],
        };
        for (u, m) in states {
            unfused |= u;
            marks |= m;
        }
    }
    marks && !unfused
}
