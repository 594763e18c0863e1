//! `ReOrg` (space to depth): the four pixel phases of every 2x2 cell stacked on channels,
//! in the order (even row, even col), (odd, even), (even, odd), (odd, odd).

use tch::Tensor;

use super::{Emitter, Layer, Placement};
use crate::error::Result;
use crate::jit::ScriptModule;
use crate::onnx::emit::OnnxEmitter;

#[derive(Debug, Clone, Copy)]
pub(crate) struct ReOrg;

impl Layer for ReOrg {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let phase = |row: i64, col: i64| -> Result<Tensor> {
            Ok(x.f_slice(2, row, None, 2)?.f_slice(3, col, None, 2)?)
        };
        let parts = [phase(0, 0)?, phase(1, 0)?, phase(0, 1)?, phase(1, 1)?];
        Ok(Tensor::f_cat(&parts, 1)?)
    }

    fn script(&self, em: &mut Emitter) -> Result<ScriptModule> {
        const CLASS: &str = "ReOrg";
        let mut m = em.module(CLASS)?;
        em.finish(CLASS, &mut m, || {
            "def forward(self, x: Tensor) -> Tensor:\n    \
             return torch.cat([x[:, :, ::2, ::2], x[:, :, 1::2, ::2], x[:, :, ::2, 1::2], \
             x[:, :, 1::2, 1::2]], 1)\n"
                .to_owned()
        })?;
        Ok(m)
    }

    fn onnx(&self, e: &mut OnnxEmitter, x: &str, _name: &str) -> Result<String> {
        let mut phase = |row: i64, col: i64| {
            let r = e.slice_step(x, 2, row, None, 2);
            e.slice_step(&r, 3, col, None, 2)
        };
        let parts = [phase(0, 0), phase(1, 0), phase(0, 1), phase(1, 1)];
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        Ok(e.concat(&refs, 1))
    }

    fn fuse(self: Box<Self>) -> Result<Box<dyn Layer>> {
        Ok(self)
    }

    fn place(&self, _: Placement) -> Result<Box<dyn Layer>> {
        Ok(Box::new(*self))
    }
}
