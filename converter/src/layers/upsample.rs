//! `nn.Upsample` with a scale factor (nearest or bilinear), as `F.interpolate` runs it:
//! output size `floor(in * scale)`, source index from the scale itself.

use tch::Tensor;
use yolots_checkpoint::model::UpsampleMode;

use super::{Emitter, Layer, Placement};
use crate::error::Result;
use crate::jit::ScriptModule;
use crate::onnx::emit::OnnxEmitter;
use yolots_onnx::attr;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Upsample {
    pub scale: f64,
    pub mode: UpsampleMode,
}

impl Upsample {
    fn class(&self) -> &'static str {
        match self.mode {
            UpsampleMode::Nearest => "UpsampleNearest",
            UpsampleMode::Bilinear => "UpsampleBilinear",
        }
    }
}

impl Layer for Upsample {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let size = x.size();
        let out = |i: usize| -> i64 {
            // floor(in * scale), as interpolate computes the output size.
            (size.get(i).copied().unwrap_or(0) as f64 * self.scale).floor() as i64
        };
        let out_size = [out(2), out(3)];
        let s = Some(self.scale);
        Ok(match self.mode {
            UpsampleMode::Nearest => x.f_upsample_nearest2d(out_size, s, s)?,
            UpsampleMode::Bilinear => x.f_upsample_bilinear2d(out_size, false, s, s)?,
        })
    }

    fn script(&self, em: &mut Emitter) -> Result<ScriptModule> {
        let class = self.class();
        let mut m = em.module(class)?;
        m.set_float("scale_factor", self.scale)?;
        let call = match self.mode {
            UpsampleMode::Nearest => "torch.upsample_nearest2d(x, None, scale)",
            UpsampleMode::Bilinear => "torch.upsample_bilinear2d(x, None, False, scale)",
        };
        em.finish(class, &mut m, || {
            format!(
                "def forward(self, x: Tensor) -> Tensor:\n    \
                 scale = [self.scale_factor, self.scale_factor]\n    return {call}\n"
            )
        })?;
        Ok(m)
    }

    /// `Resize` by the scale factor: nearest takes the source index `floor(dst / scale)`
    /// (`asymmetric`, `floor`), bilinear samples at `(dst + 0.5) / scale - 0.5`
    /// (`pytorch_half_pixel`), as `F.interpolate` does without `align_corners`.
    fn onnx(&self, e: &mut OnnxEmitter, x: &str, _name: &str) -> Result<String> {
        let s = self.scale as f32;
        let scales = e.g.floats(&[1.0, 1.0, s, s], &[4]);
        let attrs = match self.mode {
            UpsampleMode::Nearest => vec![
                attr::string("mode", "nearest"),
                attr::string("coordinate_transformation_mode", "asymmetric"),
                attr::string("nearest_mode", "floor"),
            ],
            UpsampleMode::Bilinear => vec![
                attr::string("mode", "linear"),
                attr::string("coordinate_transformation_mode", "pytorch_half_pixel"),
            ],
        };
        Ok(e.g.op("Resize", &[x, "", &scales], attrs))
    }

    fn fuse(self: Box<Self>) -> Result<Box<dyn Layer>> {
        Ok(self)
    }

    fn place(&self, _: Placement) -> Result<Box<dyn Layer>> {
        Ok(Box::new(*self))
    }
}
