//! Building the [`ModelDescription`] from the unpickled graph: pick `ema` or `model`, walk
//! `Model.model` layer by layer, read each layer's hyper-parameters, and check tensor shapes,
//! the channels flowing between layers and the strides the head claims.

mod head;
mod keypoints;
mod layers;
mod module;
mod params;
pub(crate) mod variant;
mod walk;

use self::module::{Module, tensor_ref};
use self::params::ParamCounter;
use self::walk::Walk;
use crate::Checkpoint;
use crate::error::{Error, Result, clip};
use crate::model::{DType, HeadKind, Layer, LayerKind, ModelDescription, ModelSource, RepConvForm};
use crate::pickle::{Graph, Node, Value};

/// Most classes a head may have: far beyond any dataset (LVIS has 1,203), and a bound on
/// the class names built when the model has none.
pub(crate) const MAX_CLASSES: usize = 100_000;

/// What one layer of the description holds beyond its heap data (charged per entry of the
/// layer list before the walk), with its channel count and stride.
const BYTES_PER_LAYER: u64 = (std::mem::size_of::<Layer>()
    + std::mem::size_of::<usize>()
    + std::mem::size_of::<f64>()) as u64;

/// Charges the dict indexes built by lookups since the last call to the read's budget.
pub(super) fn charge_index_cost(ck: &Checkpoint<'_>) -> Result<()> {
    let (bytes, steps) = ck.graph().take_index_cost();
    let budget = ck.budget();
    budget.charge_memory("describe: attribute index", bytes)?;
    budget.charge_steps("describe: attribute index", steps)
}

/// Describes the model; everything it holds or does is charged to the read's budget
/// ([`Checkpoint::budget`]), so a hostile layer list, sharing or cycles end in
/// [`Error::BudgetExceeded`] instead of exhausting memory or time.
pub(crate) fn describe(ck: &Checkpoint<'_>) -> Result<ModelDescription> {
    let graph = ck.graph();
    let root = ck.root();
    let budget = ck.budget();
    let (model_value, source) = pick_model(graph, root)?;
    let epoch = graph
        .dict(root)
        .and_then(|_| graph.dict_get(root, "epoch"))
        .and_then(|v| graph.int(v));
    let where_ = source.as_str();
    let model = match (Module::new(graph, model_value), graph.object(model_value)) {
        (Some(model), _) => model,
        // An object whose "class" is not a class reference (a call result, a method...).
        (None, Some(object)) => {
            return Err(Error::UnsupportedModel {
                class: object
                    .class
                    .map_or("an unknown class".into(), |c| clip(&graph.describe(c))),
            });
        }
        (None, None) => {
            return Err(Error::NoModel {
                reason: format!("`{where_}` is a {}", clip(&graph.describe(model_value))),
            });
        }
    };
    if model.yolo_class() != Some("Model") {
        return Err(Error::UnsupportedModel {
            class: clip(&model.class_path()),
        });
    }
    let sequential = model
        .child("model")
        .and_then(|v| Module::new(graph, v))
        .filter(|m| m.torch_class() == Some("Sequential"))
        .ok_or_else(|| Error::NoModel {
            reason: format!("`{where_}` has no layer list (`model.model`)"),
        })?;
    let entries = sequential.children(budget)?;
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

    // The whole layer list is paid for before anything is built for it: a list of millions
    // of shared entries ends here, not after gigabytes.
    let count = entries.len();
    budget.charge_memory(
        "describe: layer list",
        (count as u64).saturating_mul(BYTES_PER_LAYER),
    )?;
    let mut walk = Walk {
        ck,
        input_channels,
        // Paid for just above.
        channels: Vec::with_capacity(count),
        strides: Vec::with_capacity(count),
        layers: Vec::with_capacity(count),
        head_inputs: Vec::new(),
        params: ParamCounter::new(graph, budget),
    };
    for (index, (key, value)) in entries.into_iter().enumerate() {
        walk.layer(index, key, value, index + 1 == count, model_stride.clone())?;
    }

    let Some(last) = walk.layers.last() else {
        return Err(Error::NoModel {
            reason: "no layers".into(),
        });
    };
    let last_index = last.index;
    let last_class = clip(&last.class);
    let LayerKind::Detect(head) = &last.kind else {
        return Err(Error::BadLayer {
            index: last_index,
            class: last_class,
            reason:
                "the last layer must be a detection head (Detect, IDetect, IAuxDetect or IKeypoint)"
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
    let names = names(ck, &model, head.nc, &head_error)?;
    let save = save_list(ck, &model, &walk.layers, &head_error)?;
    // Every layer counted its own; what else the model holds comes on top, each tensor once.
    let parameters = walk
        .layers
        .iter()
        .fold(0u64, |n, l| n.saturating_add(l.parameters))
        .saturating_add(walk.params.count(model_value)?);
    charge_index_cost(ck)?;
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
                let keys: Vec<String> = entries
                    .iter()
                    .filter_map(|(k, _)| graph.str(*k))
                    .take(12)
                    .map(clip)
                    .collect();
                return Err(Error::NoModel {
                    reason: format!("no `model` or `ema` entry (keys: {})", keys.join(", ")),
                });
            }
        },
        Some(Node::Object(_)) => (root, ModelSource::Model),
        _ => {
            return Err(Error::NoModel {
                reason: format!("the file holds a {}", clip(&graph.describe(root))),
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
/// (`"0"`, `"1"`, ...) when absent. Every name is paid for before it is copied, so one huge
/// name listed many times runs out of budget instead of memory.
fn names(
    ck: &Checkpoint<'_>,
    model: &Module<'_>,
    nc: usize,
    bad: &dyn Fn(String) -> Error,
) -> Result<Vec<String>> {
    const AT: &str = "describe: class names";
    const STRING_BYTES: u64 = std::mem::size_of::<String>() as u64;
    let graph = ck.graph();
    let budget = ck.budget();
    let Some(value) = model.attr("names") else {
        // `nc` is at most MAX_CLASSES (checked with the head); each default name fits 24 bytes.
        budget.charge_memory(AT, (nc as u64).saturating_mul(STRING_BYTES + 24))?;
        return Ok((0..nc).map(|i| i.to_string()).collect());
    };
    let copy = |v: Value| -> Result<Option<String>> {
        let Some(name) = graph.str(v) else {
            return Ok(None);
        };
        budget.charge_memory(AT, STRING_BYTES.saturating_add(name.len() as u64))?;
        Ok(Some(name.to_string()))
    };
    let count = if let Some(items) = graph.seq(value) {
        items.len()
    } else if let Some(entries) = graph.dict(value) {
        entries.len()
    } else {
        return Err(bad(format!(
            "`names` is a {}",
            clip(&graph.describe(value))
        )));
    };
    if count != nc {
        return Err(bad(format!("`names` has {count} names for {nc} classes")));
    }
    budget.charge_steps(AT, count as u64)?;
    if let Some(items) = graph.seq(value) {
        let mut names = Vec::new();
        for item in items {
            match copy(*item)? {
                Some(name) => names.push(name),
                None => return Err(bad("`names` holds something other than strings".into())),
            }
        }
        return Ok(names);
    }
    let mut pairs: Vec<(i64, String)> = Vec::new();
    for (k, v) in graph.dict(value).unwrap_or_default() {
        match (graph.int(*k), copy(*v)?) {
            (Some(k), Some(name)) => pairs.push((k, name)),
            _ => {
                return Err(bad(
                    "`names` is a dict that does not map integers to strings".into(),
                ));
            }
        }
    }
    pairs.sort_by_key(|(k, _)| *k);
    Ok(pairs.into_iter().map(|(_, v)| v).collect())
}

/// `Model.save`, checked; derived from the inputs when absent.
fn save_list(
    ck: &Checkpoint<'_>,
    model: &Module<'_>,
    layers: &[Layer],
    bad: &dyn Fn(String) -> Error,
) -> Result<Vec<usize>> {
    const AT: &str = "describe: save list";
    let graph = ck.graph();
    let budget = ck.budget();
    let mut save: Vec<usize> = match model.attr("save").and_then(|v| graph.seq(v)) {
        Some(items) => {
            budget.charge_steps(AT, items.len() as u64)?;
            budget.charge_memory(AT, (items.len() as u64).saturating_mul(8))?;
            crate::pickle::cost::collect_exact(
                items
                    .iter()
                    .map(|v| graph.int(*v).and_then(|i| usize::try_from(i).ok())),
            )
            .ok_or_else(|| bad("`save` holds something other than layer indices".into()))?
        }
        None => {
            // As long as the layers' input lists, which were paid for already.
            let inputs = layers.iter().map(|l| l.from.len() as u64).sum::<u64>();
            budget.charge_memory(AT, inputs.saturating_mul(8))?;
            layers
                .iter()
                .flat_map(|l| {
                    l.from.iter().filter(|f| **f != -1).filter_map(move |f| {
                        let index = i64::try_from(l.index).ok()?;
                        usize::try_from(if *f < 0 { index + f } else { *f }).ok()
                    })
                })
                .collect()
        }
    };
    save.sort_unstable();
    save.dedup();
    if let Some(bad_index) = save.iter().find(|i| **i >= layers.len()) {
        return Err(bad(format!(
            "`save` names layer {bad_index}, the model has {}",
            layers.len()
        )));
    }
    Ok(save)
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
            LayerKind::Detect(h) => {
                let implicit = match h.kind {
                    HeadKind::Detect => None,
                    HeadKind::IDetect | HeadKind::IAuxDetect | HeadKind::IKeypoint => {
                        Some((!h.fused, h.fused))
                    }
                };
                let keypoint_blocks = h
                    .keypoints
                    .iter()
                    .flat_map(|k| k.branches.iter().flat_map(|b| &b.blocks))
                    .map(block);
                implicit.into_iter().chain(keypoint_blocks).collect()
            }
            _ => vec![],
        };
        for (u, m) in states {
            unfused |= u;
            marks |= m;
        }
    }
    marks && !unfused
}
