//! `MP`, `SP` and `nn.MaxPool2d`: max pooling.

use tch::Tensor;
use yolots_checkpoint::model;

use super::{Emitter, Layer, Placement, pair};
use crate::error::Result;
use crate::jit::ScriptModule;
use crate::onnx::emit::OnnxEmitter;

#[derive(Debug, Clone, Copy)]
pub(crate) struct MaxPool {
    pub kernel: [i64; 2],
    pub stride: [i64; 2],
    pub padding: [i64; 2],
    pub dilation: [i64; 2],
    pub ceil_mode: bool,
}

impl MaxPool {
    pub(crate) fn new(d: &model::MaxPool2d) -> Result<Self> {
        Ok(MaxPool {
            kernel: pair(d.kernel)?,
            stride: pair(d.stride)?,
            padding: pair(d.padding)?,
            dilation: pair(d.dilation)?,
            ceil_mode: d.ceil_mode,
        })
    }
}

impl Layer for MaxPool {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_max_pool2d(
            self.kernel,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
        )?)
    }

    fn script(&self, em: &mut Emitter) -> Result<ScriptModule> {
        const CLASS: &str = "MaxPool2d";
        let mut m = em.module(CLASS)?;
        m.set_ints("kernel_size", &self.kernel)?;
        m.set_ints("stride", &self.stride)?;
        m.set_ints("padding", &self.padding)?;
        m.set_ints("dilation", &self.dilation)?;
        m.set_bool("ceil_mode", self.ceil_mode)?;
        em.finish(CLASS, &mut m, || {
            "def forward(self, x: Tensor) -> Tensor:\n    \
             return torch.max_pool2d(x, self.kernel_size, self.stride, self.padding, \
             self.dilation, self.ceil_mode)\n"
                .to_owned()
        })?;
        Ok(m)
    }

    fn onnx(&self, e: &mut OnnxEmitter, x: &str, _name: &str) -> Result<String> {
        Ok(e.max_pool(x, self))
    }

    fn fuse(self: Box<Self>) -> Result<Box<dyn Layer>> {
        Ok(self)
    }

    fn place(&self, _: Placement) -> Result<Box<dyn Layer>> {
        Ok(Box::new(*self))
    }
}
