//! libtorch's CUDA backend, loaded only when a CUDA device can be used.
//!
//! The PyPI libtorch splits into `libtorch_cpu` (linked) and `libtorch_cuda`, which pulls
//! in cuBLAS, cuDNN, NCCL and the rest of the CUDA stack: loading it costs about 350 MB
//! of resident memory and 0.4 s even on a machine without a GPU. So the converter does not
//! link it; the first question about CUDA devices loads it, and only when the NVIDIA
//! driver (`libcuda.so.1`) is present. Loading registers libtorch's CUDA hooks from the
//! library's static initialisers, as linking it would. libtorch caches its hooks on
//! first use, so every CUDA query goes through [`ensure_loaded`] first
//! (`runtime::cuda_device_count`).

use std::ffi::{CStr, CString};
use std::sync::OnceLock;

/// What became of the CUDA backend in this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CudaBackend {
    /// `libtorch_cuda` is loaded; libtorch sees the CUDA devices the driver offers.
    Loaded,
    /// No NVIDIA driver: nothing loaded, CPU only.
    NoDriver,
    /// The driver is present but `libtorch_cuda` could not be loaded (a CPU-only
    /// libtorch, or a broken CUDA install); the reason from the dynamic loader.
    Unavailable(String),
}

const DRIVER: &str = "libcuda.so.1";
const TORCH_CUDA: &str = "libtorch_cuda.so";

/// Loads the CUDA backend once if the driver is present; later calls return the first
/// outcome.
pub fn ensure_loaded() -> &'static CudaBackend {
    static BACKEND: OnceLock<CudaBackend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        if open_global(DRIVER).is_err() {
            return CudaBackend::NoDriver;
        }
        let outcome = match open_global(TORCH_CUDA) {
            Ok(()) => CudaBackend::Loaded,
            Err(reason) => CudaBackend::Unavailable(reason),
        };
        tracing::debug!(?outcome, "CUDA backend");
        outcome
    })
}

/// Loads `name` for the life of the process, its symbols visible to later libraries.
///
/// The name is looked up like a linked dependency (the binary's run path, then
/// `LD_LIBRARY_PATH` and the system folders), so the backend comes from the same
/// libtorch folder as `libtorch_cpu`.
fn open_global(name: &str) -> Result<(), String> {
    let c_name = CString::new(name).map_err(|e| e.to_string())?;
    // SAFETY: `c_name` is a valid C string; the handle is deliberately never closed, so
    // code and data of the library stay mapped for the life of the process.
    let handle = unsafe { libc::dlopen(c_name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if handle.is_null() {
        // SAFETY: dlerror returns null or a C string valid until the next dl* call on
        // this thread, which we copy at once.
        let reason = unsafe {
            let message = libc::dlerror();
            if message.is_null() {
                format!("{name} could not be loaded")
            } else {
                CStr::from_ptr(message).to_string_lossy().into_owned()
            }
        };
        return Err(reason);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backend_is_loaded_only_where_a_driver_is() {
        let driver = open_global(DRIVER).is_ok();
        let outcome = ensure_loaded();
        if driver {
            assert_ne!(*outcome, CudaBackend::NoDriver);
        } else {
            assert_eq!(*outcome, CudaBackend::NoDriver);
        }
    }

    #[test]
    fn a_missing_library_is_reported_with_the_loader_reason() {
        let reason = open_global("libyolots-no-such-library.so").unwrap_err();
        assert!(reason.contains("libyolots-no-such-library.so"), "{reason}");
    }
}
