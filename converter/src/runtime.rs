//! Facts about the libtorch that is loaded at run time.

use crate::ffi;

/// The version of the libtorch library loaded in this process (for example `2.11.0`),
/// read from its build configuration rather than from what we compiled against.
pub fn libtorch_version() -> Option<String> {
    // SAFETY: the shim returns an owned string or null.
    let config = unsafe { ffi::take_string(ffi::yolots_show_config()) }?;
    parse_torch_version(&config)
}

fn parse_torch_version(config: &str) -> Option<String> {
    let start = config.find("TORCH_VERSION=")? + "TORCH_VERSION=".len();
    let rest = &config[start..];
    let end = rest.find([',', '\n', ' ']).unwrap_or(rest.len());
    Some(rest[..end].trim().to_owned())
}

/// The number of CUDA devices libtorch can use (0 without a GPU or CUDA runtime).
///
/// Loads libtorch's CUDA backend first when the driver is present (see
/// [`crate::cuda_backend`]).
pub fn cuda_device_count() -> usize {
    if *crate::cuda_backend::ensure_loaded() != crate::cuda_backend::CudaBackend::Loaded {
        return 0;
    }
    usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
}

/// The last error the shim recorded on this thread, for callers that map failures.
pub fn last_shim_error() -> String {
    ffi::last_error()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    #[test]
    fn parses_the_version_out_of_the_build_settings() {
        let config = "  - Build settings: BLAS_INFO=mkl, TORCH_VERSION=2.11.0, USE_CUDA=ON\n";
        assert_eq!(parse_torch_version(config).as_deref(), Some("2.11.0"));
    }

    #[test]
    fn loaded_libtorch_is_2_11_0() {
        assert_eq!(libtorch_version().as_deref(), Some("2.11.0"));
    }

    #[test]
    fn runs_a_real_convolution_on_cpu() {
        // A 3x3 box filter of ones over a 4x4 image of ones: the centre sees 9 ones,
        // an edge 6 and a corner 4.
        let input = Tensor::ones([1, 1, 4, 4], (Kind::Float, Device::Cpu));
        let weight = Tensor::ones([1, 1, 3, 3], (Kind::Float, Device::Cpu));
        let out = input.conv2d(&weight, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
        assert_eq!(out.size(), vec![1, 1, 4, 4]);
        let values: Vec<f32> = out.flatten(0, -1).try_into().expect("float tensor");
        assert_eq!(
            values,
            vec![
                4., 6., 6., 4., 6., 9., 9., 6., 6., 9., 9., 6., 4., 6., 6., 4.
            ]
        );
    }
}
