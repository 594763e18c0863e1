//! The network's layer kinds. Each module holds, side by side, a kind's eager forward
//! (tch), the TorchScript class and the ONNX nodes that do the same, so one can be checked
//! against the other on one screen; fusion of a kind lives with it too. The one-input
//! kinds implement [`Layer`], which is all the network asks of them.
//!
//! Tensor names mirror the source checkpoint: a `Conv` at index 0 registers `conv` and
//! `bn` submodules, so the artifact's parameters read `model.0.conv.weight`,
//! `model.0.bn.running_mean`, ...

pub(crate) mod activation;
pub(crate) mod concat;
pub(crate) mod conv;
pub(crate) mod downc;
pub(crate) mod head;
pub(crate) mod keypoints;
pub(crate) mod pool;
pub(crate) mod reorg;
pub(crate) mod repconv;
pub(crate) mod shortcut;
pub(crate) mod sppcspc;
pub(crate) mod upsample;

use std::collections::HashMap;

use tch::{Device, Kind, Tensor};
use yolots_checkpoint::model::TensorRef;

use crate::error::{ConvertError, Result};
use crate::jit::{CompilationUnit, ScriptModule};
use crate::onnx::emit::OnnxEmitter;

/// A layer kind that maps one tensor to one (every kind but the list layers `Concat` and
/// `Shortcut` and the head): what the network asks of each layer, implemented in the
/// kind's own file beside its loading.
pub(crate) trait Layer: std::fmt::Debug {
    /// The eager forward (tch), the reference the artifact is checked against.
    fn forward(&self, x: &Tensor) -> Result<Tensor>;

    /// The layer with BatchNorm, RepConv branches and implicit knowledge folded into its
    /// convolutions; itself when it has nothing to fold.
    fn fuse(self: Box<Self>) -> Result<Box<dyn Layer>>;

    /// A copy with every tensor cast and moved as `p` says.
    fn place(&self, p: Placement) -> Result<Box<dyn Layer>>;

    /// Its tensors, named as the source checkpoint names them (none by default).
    fn named<'a>(&'a self, _out: &mut NamedTensors<'a>) {}

    /// Its TorchScript module.
    fn script(&self, em: &mut Emitter) -> Result<ScriptModule>;

    /// Its ONNX nodes applied to the value `x`, weights named under `name` (`model.3`);
    /// returns the name of its output.
    fn onnx(&self, e: &mut OnnxEmitter, x: &str, name: &str) -> Result<String>;
}

/// Where a layer's tensors come from: the checkpoint, or a test's synthetic tensors.
pub trait WeightSource {
    /// The tensor `r` names, as an owned float32 CPU tensor of `r.shape`.
    fn load(&self, r: &TensorRef) -> Result<Tensor>;

    /// No tensor will be loaded for a while: memory that only caches the source (pages
    /// of a mapped file) may be handed back; later loads read it again.
    fn release_cached(&self) {}
}

/// How tensors are prepared while building: fusion happens in float32 on the CPU, then
/// every tensor is cast and moved once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placement {
    pub kind: Kind,
    pub device: Device,
}

impl Placement {
    pub(crate) const CPU_F32: Placement = Placement {
        kind: Kind::Float,
        device: Device::Cpu,
    };

    /// `t` in this placement (no copy when it already is).
    pub(crate) fn put(self, t: &Tensor) -> Result<Tensor> {
        Ok(t.f_to_device(self.device)?.f_to_kind(self.kind)?)
    }
}

/// Converts a description's `usize` pair (kernel, stride, ...) to the `i64`s tch takes.
pub(crate) fn pair(v: [usize; 2]) -> Result<[i64; 2]> {
    Ok([int(v[0])?, int(v[1])?])
}

pub(crate) fn int(v: usize) -> Result<i64> {
    i64::try_from(v).map_err(|_| ConvertError::Unsupported(format!("value {v} out of range")))
}

/// Collects `(dotted name, tensor)` pairs in registration order.
pub(crate) struct NamedTensors<'a> {
    prefix: String,
    pub(crate) items: Vec<(String, &'a Tensor)>,
}

impl<'a> NamedTensors<'a> {
    pub(crate) fn new() -> Self {
        NamedTensors {
            prefix: String::new(),
            items: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, name: &str, t: &'a Tensor) {
        self.items.push((format!("{}{name}", self.prefix), t));
    }

    /// Runs `f` with `name.` appended to the prefix (like candle's `vb.pp(name)`).
    pub(crate) fn scope(&mut self, name: &str, f: impl FnOnce(&mut Self)) {
        let saved = self.prefix.len();
        self.prefix.push_str(name);
        self.prefix.push('.');
        f(self);
        self.prefix.truncate(saved);
    }
}

/// Creates the modules of one artifact: one TorchScript class per layer kind (and
/// variant), compiled once and shared by every instance of that kind.
pub(crate) struct Emitter<'cu> {
    cu: &'cu CompilationUnit,
    /// Class name -> an empty object of that class, to make more instances from.
    templates: HashMap<String, ScriptModule>,
    /// Base class name -> the child-class signatures seen under it, in order.
    variants: HashMap<String, Vec<String>>,
}

/// Namespace of every class yolots generates.
pub(crate) const NAMESPACE: &str = "__torch__.yolots";

impl<'cu> Emitter<'cu> {
    pub(crate) fn new(cu: &'cu CompilationUnit) -> Self {
        Emitter {
            cu,
            templates: HashMap::new(),
            variants: HashMap::new(),
        }
    }

    /// The class name for a composite module of kind `base` holding `children`: `base`
    /// for the first combination of child classes, `base_1`, `base_2`, ... for others
    /// (a class fixes the types of its submodules).
    pub(crate) fn class_name(&mut self, base: &str, children: &[&ScriptModule]) -> String {
        let signature = children
            .iter()
            .map(|c| c.class())
            .collect::<Vec<_>>()
            .join(",");
        let seen = self.variants.entry(base.to_owned()).or_default();
        let index = match seen.iter().position(|s| *s == signature) {
            Some(i) => i,
            None => {
                seen.push(signature);
                seen.len() - 1
            }
        };
        if index == 0 {
            base.to_owned()
        } else {
            format!("{base}_{index}")
        }
    }

    /// A new module of class `class`, with `training = False` already set. Register its
    /// tensors, attributes and submodules, then call [`Emitter::finish`].
    pub(crate) fn module(&mut self, class: &str) -> Result<ScriptModule> {
        let mut m = match self.templates.get(class) {
            Some(template) => ScriptModule::instance_of(template)?,
            None => ScriptModule::new(self.cu, &format!("{NAMESPACE}.{class}"))?,
        };
        m.set_bool("training", false)?;
        Ok(m)
    }

    /// Compiles `source` into `class` the first time the class is seen.
    pub(crate) fn finish(
        &mut self,
        class: &str,
        m: &mut ScriptModule,
        source: impl FnOnce() -> String,
    ) -> Result<()> {
        if self.templates.contains_key(class) {
            return Ok(());
        }
        let src = source();
        if !src.is_empty() {
            m.define(class, &src)?;
        }
        self.templates
            .insert(class.to_owned(), ScriptModule::instance_of(m)?);
        Ok(())
    }

    /// A module without methods holding `children` under `"0"`, `"1"`, ... (the
    /// TorchScript side of `nn.ModuleList` / `nn.Sequential` in the source).
    pub(crate) fn list(&mut self, base: &str, children: &[ScriptModule]) -> Result<ScriptModule> {
        let refs: Vec<&ScriptModule> = children.iter().collect();
        let class = self.class_name(base, &refs);
        let mut m = self.module(&class)?;
        for (i, child) in children.iter().enumerate() {
            m.submodule(&i.to_string(), child)?;
        }
        self.finish(&class, &mut m, String::new)?;
        Ok(m)
    }
}
