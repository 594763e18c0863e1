//! What a conversion is asked to do: the request, and what its option types mean to
//! libtorch.
//!
//! The option types live in `yolots-protocol` (shared with the programs that do not load
//! libtorch); each parses from and prints as its CLI spelling (`FromStr` / `Display`) and
//! serialises the same way, so the CLI, the REST API and the report agree.

pub use yolots_protocol::{
    ConvertRequest, DeviceChoice, ImageSize, Mode, Optimize, Output, ParseOptionError,
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
