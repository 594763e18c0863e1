//! Activations: eager, and the TorchScript expression that computes the same.

use tch::Tensor;
use yolots_checkpoint::model::Activation;

use crate::error::Result;
use crate::jit::ScriptModule;

/// A short name for class names (`ConvSiLU`, `RepConvLeakyReLU`, ...).
pub(crate) fn tag(act: Activation) -> &'static str {
    match act {
        Activation::Identity => "Identity",
        Activation::Silu => "SiLU",
        Activation::Relu => "ReLU",
        Activation::LeakyRelu { .. } => "LeakyReLU",
        Activation::Hardswish => "Hardswish",
        Activation::Sigmoid => "Sigmoid",
        Activation::Tanh => "Tanh",
        Activation::Mish => "Mish",
    }
}

/// Eager activation.
pub(crate) fn forward(act: Activation, x: Tensor) -> Result<Tensor> {
    Ok(match act {
        Activation::Identity => x,
        Activation::Silu => x.f_silu()?,
        Activation::Relu => x.f_relu()?,
        // tch exposes leaky_relu only with its default slope; this is the same
        // elementwise rule (x if x > 0 else x * slope) as the aten kernel.
        Activation::LeakyRelu { negative_slope } => {
            let scaled = x.f_mul_scalar(negative_slope)?;
            x.f_where_self(&x.f_gt(0.0)?, &scaled)?
        }
        Activation::Hardswish => x.f_hardswish()?,
        Activation::Sigmoid => x.f_sigmoid()?,
        Activation::Tanh => x.f_tanh()?,
        Activation::Mish => x.f_mish()?,
    })
}

/// The TorchScript expression applying `act` to `expr` inside a method of a module on
/// which [`register`] was called.
pub(crate) fn script(act: Activation, expr: &str) -> String {
    match act {
        Activation::Identity => expr.to_owned(),
        Activation::Silu => format!("torch.silu({expr})"),
        Activation::Relu => format!("torch.relu({expr})"),
        Activation::LeakyRelu { .. } => format!("torch.leaky_relu({expr}, self.negative_slope)"),
        Activation::Hardswish => format!("torch.hardswish({expr})"),
        Activation::Sigmoid => format!("torch.sigmoid({expr})"),
        Activation::Tanh => format!("torch.tanh({expr})"),
        Activation::Mish => format!("torch.mish({expr})"),
    }
}

/// Registers what the activation's expression reads (the leaky slope).
pub(crate) fn register(act: Activation, m: &mut ScriptModule) -> Result<()> {
    if let Activation::LeakyRelu { negative_slope } = act {
        m.set_float("negative_slope", negative_slope)?;
    }
    Ok(())
}
