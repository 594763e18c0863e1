//! What a conversion is asked to do: the request, what its option types mean to libtorch,
//! and the checks of a request against the model it converts.
//!
//! The option types live in `yolots-protocol` (shared with the programs that do not load
//! libtorch); each parses from and prints as its CLI spelling (`FromStr` / `Display`) and
//! serialises the same way, so the CLI, the REST API and the report agree.

use tch::Device;
use yolots_checkpoint::model::ModelDescription;

use crate::error::{ConvertError, Result};

pub use yolots_protocol::{
    ConvertRequest, DeviceChoice, Format, ImageSize, Mode, Optimize, Output, ParseOptionError,
    Perturbation, Precision, TestFault, limits,
};

/// What a precision means to libtorch.
pub(crate) trait PrecisionKind {
    /// The tensor element type.
    fn kind(self) -> tch::Kind;
}

impl PrecisionKind for Precision {
    fn kind(self) -> tch::Kind {
        match self {
            Precision::Fp32 => tch::Kind::Float,
            Precision::Fp16 => tch::Kind::Half,
        }
    }
}

/// What a device choice means to the libtorch of this process.
pub trait ResolveDevice {
    /// The device this choice means on this machine.
    fn resolve(self) -> tch::Device;
}

impl ResolveDevice for DeviceChoice {
    fn resolve(self) -> tch::Device {
        // Only a choice that may mean CUDA asks about devices (which loads the CUDA
        // backend when a driver is present).
        let devices = match self {
            DeviceChoice::Cpu => 0,
            DeviceChoice::Auto | DeviceChoice::Cuda(_) => crate::runtime::cuda_device_count(),
        };
        match self.resolve_for(devices) {
            DeviceChoice::Cuda(n) => tch::Device::Cuda(n),
            DeviceChoice::Auto | DeviceChoice::Cpu => tch::Device::Cpu,
        }
    }
}

/// Checks the options against the model; returns the strides as integers.
pub(crate) fn check_request(
    desc: &ModelDescription,
    request: &ConvertRequest,
    device: Device,
) -> Result<Vec<i64>> {
    let bad = |m: String| Err(ConvertError::Options(m));
    let strides: Vec<i64> = desc.strides.iter().map(|s| s.round() as i64).collect();
    let Some(&max_stride) = strides.iter().max() else {
        return bad("the model has no output levels".into());
    };
    if max_stride <= 0
        || strides
            .iter()
            .zip(&desc.strides)
            .any(|(i, f)| (*i as f64 - f).abs() > 1e-6)
    {
        return Err(ConvertError::Unsupported(format!(
            "strides {:?}",
            desc.strides
        )));
    }
    let [h, w] = request.img_size.hw();
    if h % max_stride != 0 || w % max_stride != 0 {
        return bad(format!(
            "image size {h}x{w} is not a multiple of the largest stride {max_stride}"
        ));
    }
    limits::check(request.conf, request.iou, request.max_det, request.img_size)
        .map_err(|e| ConvertError::Options(e.to_string()))?;
    if let Some(budget) = request.latency_budget_s
        && !(budget.is_finite() && budget > 0.0)
    {
        return bad(format!(
            "latency budget {budget} s is not a positive duration"
        ));
    }
    if let Device::Cuda(n) = device {
        let count = crate::runtime::cuda_device_count();
        if n >= count {
            return bad(format!(
                "cuda:{n} requested, libtorch sees {count} CUDA device(s)"
            ));
        }
    }
    // The same rule the API applies before a job exists.
    limits::compatible(
        request.format,
        request.mode,
        request.precision,
        request.optimize,
    )
    .map_err(|e| ConvertError::Options(e.to_string()))?;
    Ok(strides)
}

pub(crate) fn device_name(d: Device) -> String {
    match d {
        Device::Cuda(n) => format!("cuda:{n}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
        _ => "cpu".into(),
    }
}
