//! `Concat`: concatenation of the listed layers' outputs along a dimension.

use tch::Tensor;

use super::Emitter;
use crate::error::Result;
use crate::jit::ScriptModule;
use crate::onnx::emit::OnnxEmitter;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Concat {
    pub dim: i64,
}

impl Concat {
    pub(crate) fn forward(&self, xs: &[&Tensor]) -> Result<Tensor> {
        Ok(Tensor::f_cat(xs, self.dim)?)
    }

    pub(crate) fn script(&self, em: &mut Emitter) -> Result<ScriptModule> {
        const CLASS: &str = "Concat";
        let mut m = em.module(CLASS)?;
        m.set_int("d", self.dim)?;
        em.finish(CLASS, &mut m, || {
            "def forward(self, xs: List[Tensor]) -> Tensor:\n    return torch.cat(xs, self.d)\n"
                .to_owned()
        })?;
        Ok(m)
    }

    pub(crate) fn onnx(&self, e: &mut OnnxEmitter, xs: &[&str]) -> String {
        e.concat(xs, self.dim)
    }
}
