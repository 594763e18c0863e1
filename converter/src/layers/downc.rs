//! `DownC`: a strided two-conv path beside a max-pooled 1x1 path, concatenated:
//! `cat(cv2(cv1(x)), cv3(mp(x)))`.

use tch::Tensor;
use yolots_checkpoint::model;

use super::conv::Conv;
use super::pool::MaxPool;
use super::{Emitter, Layer, NamedTensors, Placement, WeightSource};
use crate::error::Result;
use crate::jit::ScriptModule;
use crate::onnx::emit::OnnxEmitter;

#[derive(Debug)]
pub(crate) struct DownC {
    pub cv1: Conv,
    pub cv2: Conv,
    pub cv3: Conv,
    pub pool: MaxPool,
}

impl DownC {
    pub(crate) fn load(d: &model::DownC, src: &dyn WeightSource) -> Result<Self> {
        Ok(DownC {
            cv1: Conv::load(&d.cv1, src)?,
            cv2: Conv::load(&d.cv2, src)?,
            cv3: Conv::load(&d.cv3, src)?,
            pool: MaxPool::new(&d.pool)?,
        })
    }

    pub(crate) fn map(self, f: impl Fn(Conv) -> Result<Conv>) -> Result<Self> {
        Ok(DownC {
            cv1: f(self.cv1)?,
            cv2: f(self.cv2)?,
            cv3: f(self.cv3)?,
            pool: self.pool,
        })
    }

    pub(crate) fn place(&self, p: Placement) -> Result<Self> {
        Ok(DownC {
            cv1: self.cv1.place(p)?,
            cv2: self.cv2.place(p)?,
            cv3: self.cv3.place(p)?,
            pool: self.pool,
        })
    }
}

impl Layer for DownC {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let a = self.cv2.forward(&self.cv1.forward(x)?)?;
        let b = self.cv3.forward(&self.pool.forward(x)?)?;
        Ok(Tensor::f_cat(&[a, b], 1)?)
    }

    fn named<'a>(&'a self, out: &mut NamedTensors<'a>) {
        out.scope("cv1", |o| self.cv1.named(o));
        out.scope("cv2", |o| self.cv2.named(o));
        out.scope("cv3", |o| self.cv3.named(o));
    }

    fn script(&self, em: &mut Emitter) -> Result<ScriptModule> {
        let cv1 = self.cv1.script(em)?;
        let cv2 = self.cv2.script(em)?;
        let cv3 = self.cv3.script(em)?;
        let mp = self.pool.script(em)?;
        let class = em.class_name("DownC", &[&cv1, &cv2, &cv3, &mp]);
        let mut m = em.module(&class)?;
        m.submodule("cv1", &cv1)?;
        m.submodule("cv2", &cv2)?;
        m.submodule("cv3", &cv3)?;
        m.submodule("mp", &mp)?;
        em.finish(&class, &mut m, || {
            "def forward(self, x: Tensor) -> Tensor:\n    \
             return torch.cat([self.cv2.forward(self.cv1.forward(x)), \
             self.cv3.forward(self.mp.forward(x))], 1)\n"
                .to_owned()
        })?;
        Ok(m)
    }

    fn onnx(&self, e: &mut OnnxEmitter, x: &str, name: &str) -> Result<String> {
        let a = self.cv1.onnx(e, x, &format!("{name}.cv1"))?;
        let a = self.cv2.onnx(e, &a, &format!("{name}.cv2"))?;
        let p = self.pool.onnx(e, x, &format!("{name}.m"))?;
        let b = self.cv3.onnx(e, &p, &format!("{name}.cv3"))?;
        Ok(e.concat(&[&a, &b], 1))
    }

    fn fuse(self: Box<Self>) -> Result<Box<dyn Layer>> {
        Ok(Box::new(self.map(Conv::fused)?))
    }

    fn place(&self, p: Placement) -> Result<Box<dyn Layer>> {
        Ok(Box::new(DownC::place(self, p)?))
    }
}
