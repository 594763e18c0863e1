//! `Shortcut`: the sum of two layers' outputs.

use tch::Tensor;

use super::Emitter;
use crate::error::{ConvertError, Result};
use crate::jit::ScriptModule;
use crate::onnx::emit::OnnxEmitter;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Shortcut;

impl Shortcut {
    pub(crate) fn forward(&self, xs: &[&Tensor]) -> Result<Tensor> {
        match xs {
            [a, b, ..] => Ok(a.f_add(b)?),
            _ => Err(ConvertError::Unsupported(
                "Shortcut with fewer than two inputs".into(),
            )),
        }
    }

    pub(crate) fn script(&self, em: &mut Emitter) -> Result<ScriptModule> {
        const CLASS: &str = "Shortcut";
        let mut m = em.module(CLASS)?;
        em.finish(CLASS, &mut m, || {
            "def forward(self, xs: List[Tensor]) -> Tensor:\n    return xs[0] + xs[1]\n".to_owned()
        })?;
        Ok(m)
    }

    pub(crate) fn onnx(&self, e: &mut OnnxEmitter, xs: &[&str]) -> Result<String> {
        match xs {
            [a, b, ..] => Ok(e.g.op("Add", &[a, b], vec![])),
            _ => Err(ConvertError::Unsupported(
                "Shortcut with fewer than two inputs".into(),
            )),
        }
    }
}
