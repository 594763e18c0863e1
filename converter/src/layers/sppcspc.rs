//! `SPPCSPC`: spatial pyramid pooling in a cross-stage-partial block,
//! `cv7(cat(cv6(cv5(cat(x1, pools(x1)...))), cv2(x)))` with `x1 = cv4(cv3(cv1(x)))`.

use tch::Tensor;
use yolots_checkpoint::model;

use super::conv::Conv;
use super::pool::MaxPool;
use super::{Emitter, Layer, NamedTensors, Placement, WeightSource};
use crate::error::Result;
use crate::jit::ScriptModule;
use crate::onnx::emit::OnnxEmitter;

#[derive(Debug)]
pub(crate) struct SppCspc {
    /// `cv1` to `cv7`.
    pub cv: [Conv; 7],
    pub pools: Vec<MaxPool>,
}

impl SppCspc {
    pub(crate) fn load(d: &model::SppCspc, src: &dyn WeightSource) -> Result<Self> {
        let l = |c: &model::ConvBlock| Conv::load(c, src);
        Ok(SppCspc {
            cv: [
                l(&d.cv1)?,
                l(&d.cv2)?,
                l(&d.cv3)?,
                l(&d.cv4)?,
                l(&d.cv5)?,
                l(&d.cv6)?,
                l(&d.cv7)?,
            ],
            pools: d.pools.iter().map(MaxPool::new).collect::<Result<_>>()?,
        })
    }

    pub(crate) fn map(self, f: impl Fn(Conv) -> Result<Conv>) -> Result<Self> {
        let [a, b, c, d, e, g, h] = self.cv;
        Ok(SppCspc {
            cv: [f(a)?, f(b)?, f(c)?, f(d)?, f(e)?, f(g)?, f(h)?],
            pools: self.pools,
        })
    }

    pub(crate) fn place(&self, p: Placement) -> Result<Self> {
        let c = |i: usize| self.cv[i].place(p);
        Ok(SppCspc {
            cv: [c(0)?, c(1)?, c(2)?, c(3)?, c(4)?, c(5)?, c(6)?],
            pools: self.pools.clone(),
        })
    }
}

impl Layer for SppCspc {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let [cv1, cv2, cv3, cv4, cv5, cv6, cv7] = &self.cv;
        let x1 = cv4.forward(&cv3.forward(&cv1.forward(x)?)?)?;
        let mut pyramid = vec![x1.shallow_clone()];
        for p in &self.pools {
            pyramid.push(p.forward(&x1)?);
        }
        let y1 = cv6.forward(&cv5.forward(&Tensor::f_cat(&pyramid, 1)?)?)?;
        let y2 = cv2.forward(x)?;
        cv7.forward(&Tensor::f_cat(&[y1, y2], 1)?)
    }

    fn named<'a>(&'a self, out: &mut NamedTensors<'a>) {
        for (i, cv) in self.cv.iter().enumerate() {
            out.scope(&format!("cv{}", i + 1), |o| cv.named(o));
        }
    }

    fn script(&self, em: &mut Emitter) -> Result<ScriptModule> {
        let convs = self
            .cv
            .iter()
            .map(|c| c.script(em))
            .collect::<Result<Vec<_>>>()?;
        let pools = self
            .pools
            .iter()
            .map(|p| p.script(em))
            .collect::<Result<Vec<_>>>()?;
        let n = pools.len();
        let pool_list = em.list("MaxPoolList", &pools)?;
        let mut children: Vec<&ScriptModule> = convs.iter().collect();
        children.push(&pool_list);
        let class = em.class_name("SPPCSPC", &children);
        let mut m = em.module(&class)?;
        for (i, c) in convs.iter().enumerate() {
            m.submodule(&format!("cv{}", i + 1), c)?;
        }
        m.submodule("m", &pool_list)?;
        em.finish(&class, &mut m, || {
            let pooled: String = (0..n)
                .map(|i| format!(", getattr(self.m, \"{i}\").forward(x1)"))
                .collect();
            format!(
                "def forward(self, x: Tensor) -> Tensor:\n    \
                 x1 = self.cv4.forward(self.cv3.forward(self.cv1.forward(x)))\n    \
                 y1 = self.cv6.forward(self.cv5.forward(torch.cat([x1{pooled}], 1)))\n    \
                 y2 = self.cv2.forward(x)\n    \
                 return self.cv7.forward(torch.cat([y1, y2], 1))\n"
            )
        })?;
        Ok(m)
    }

    fn onnx(&self, e: &mut OnnxEmitter, x: &str, name: &str) -> Result<String> {
        let cv = |e: &mut OnnxEmitter, i: usize, x: &str| {
            self.cv[i].onnx(e, x, &format!("{name}.cv{}", i + 1))
        };
        let x1 = cv(e, 0, x)?;
        let x1 = cv(e, 2, &x1)?;
        let x1 = cv(e, 3, &x1)?;
        let mut pyramid = vec![x1.clone()];
        for p in &self.pools {
            pyramid.push(p.onnx(e, &x1, name)?);
        }
        let refs: Vec<&str> = pyramid.iter().map(String::as_str).collect();
        let cat = e.concat(&refs, 1);
        let y1 = cv(e, 4, &cat)?;
        let y1 = cv(e, 5, &y1)?;
        let y2 = cv(e, 1, x)?;
        let cat = e.concat(&[&y1, &y2], 1);
        cv(e, 6, &cat)
    }

    fn fuse(self: Box<Self>) -> Result<Box<dyn Layer>> {
        Ok(Box::new(self.map(Conv::fused)?))
    }

    fn place(&self, p: Placement) -> Result<Box<dyn Layer>> {
        Ok(Box::new(SppCspc::place(self, p)?))
    }
}
