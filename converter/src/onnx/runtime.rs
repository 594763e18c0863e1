//! ONNX Runtime, loaded as a shared library at run time (the way libtorch's CUDA backend
//! is): the `onnxruntime` wheel's `libonnxruntime.so`, found through `YOLOTS_ONNXRUNTIME`
//! or next to the executable. Nothing is linked, so a build needs no ONNX Runtime and a
//! process that never validates an ONNX file never loads it.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;
use tch::{Device, Kind, Tensor};

use crate::error::{ConvertError, Result};

/// The variable naming the ONNX Runtime library (`libonnxruntime.so.*`).
pub const LIBRARY_VAR: &str = "YOLOTS_ONNXRUNTIME";

static ENVIRONMENT: OnceLock<std::result::Result<Loaded, String>> = OnceLock::new();

/// The loaded library: its environment and its own version.
struct Loaded {
    environment: Environment,
    version: String,
}

/// Where the library is: `YOLOTS_ONNXRUNTIME`, else `lib/libonnxruntime.so` beside the
/// executable's folder (the layout of `cargo xtask dist`).
fn library_path() -> std::result::Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(LIBRARY_VAR).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let beside = std::env::current_exe().ok().and_then(|exe| {
        let dir = exe.parent()?.to_path_buf();
        [dir.join("lib"), dir.join("../lib")]
            .into_iter()
            .map(|d| d.join("libonnxruntime.so"))
            .find(|p| p.is_file())
    });
    beside.ok_or_else(|| {
        format!(
            "no ONNX Runtime library: set {LIBRARY_VAR} to the libonnxruntime.so of the \
             onnxruntime {} wheel (cargo xtask setup installs it)",
            VERSION
        )
    })
}

/// The ONNX Runtime release yolots is built and tested against.
pub const VERSION: &str = "1.31.1";

/// The process's ONNX Runtime environment, loaded on first use.
fn environment() -> Result<&'static Environment> {
    loaded().map(|l| &l.environment)
}

fn loaded() -> Result<&'static Loaded> {
    ENVIRONMENT
        .get_or_init(|| {
            let path = library_path()?;
            let start = Instant::now();
            let env = ort::init_from(&path)
                .map_err(|e| format!("loading {}: {e}", path.display()))?
                .with_name("yolots")
                .build()
                .map_err(|e| e.to_string())?;
            tracing::debug!(
                ms = start.elapsed().as_secs_f64() * 1e3,
                library = %path.display(),
                "ONNX Runtime loaded"
            );
            let version = library_version(&path)?;
            Ok(Loaded {
                environment: env,
                version,
            })
        })
        .as_ref()
        .map_err(|e| ConvertError::OnnxRuntime(e.clone()))
}

/// The loaded library's version (`1.31.1`).
pub fn loaded_version() -> Result<String> {
    Ok(loaded()?.version.clone())
}

/// What the library at `path`, already loaded, says its version is
/// (`OrtGetApiBase()->GetVersionString()`; ort's own `info` gives the build string, which
/// names a git branch rather than the release).
fn library_version(path: &std::path::Path) -> std::result::Result<String, String> {
    use std::ffi::{CStr, CString};
    use std::os::unix::ffi::OsStrExt;
    let failed = |what: &str| format!("reading the version of {}: {what}", path.display());
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|e| failed(&e.to_string()))?;
    // SAFETY: `c_path` is a valid C string. RTLD_NOLOAD only returns the handle of a library
    // already loaded (ort loaded this one and keeps it), so nothing is initialised again;
    // the handle is not closed, which leaves ort's reference as it was.
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
    if handle.is_null() {
        return Err(failed("not loaded"));
    }
    // SAFETY: the symbol name is a C string; a non-null result is ONNX Runtime's
    // `OrtGetApiBase`, which takes nothing and returns a pointer to a static table whose
    // `GetVersionString` returns a static C string.
    unsafe {
        let symbol = libc::dlsym(handle, c"OrtGetApiBase".as_ptr());
        if symbol.is_null() {
            return Err(failed("no OrtGetApiBase"));
        }
        let get_api_base: unsafe extern "C" fn() -> *const ort::sys::OrtApiBase =
            std::mem::transmute::<
                *mut libc::c_void,
                unsafe extern "C" fn() -> *const ort::sys::OrtApiBase,
            >(symbol);
        let base = get_api_base();
        if base.is_null() {
            return Err(failed("no API base"));
        }
        let version = ((*base).GetVersionString)();
        if version.is_null() {
            return Err(failed("no version string"));
        }
        Ok(CStr::from_ptr(version).to_string_lossy().into_owned())
    }
}

/// A model loaded by ONNX Runtime on the CPU.
pub(crate) struct OnnxSession {
    session: Session,
}

impl OnnxSession {
    fn builder(threads: usize) -> Result<ort::session::builder::SessionBuilder> {
        let b = Session::builder(environment()?)?
            .with_optimization_level(GraphOptimizationLevel::Level3)?
            .with_intra_threads(threads.max(1))?;
        Ok(b)
    }

    /// The model in the file at `path`.
    pub(crate) fn from_file(path: &std::path::Path, threads: usize) -> Result<Self> {
        let session = Self::builder(threads)?.commit_from_file(path)?;
        Ok(OnnxSession { session })
    }

    /// Runs the model on `images` (float32 `[B, 3, H, W]`); every output as a float32 CPU
    /// tensor, in the model's output order.
    pub(crate) fn run(&mut self, images: &Tensor) -> Result<Vec<(String, Tensor)>> {
        let input = images
            .f_to_device(Device::Cpu)?
            .f_to_kind(Kind::Float)?
            .f_contiguous()?;
        let shape = input.size();
        let data: Vec<f32> = Vec::try_from(input.f_flatten(0, -1)?)?;
        let value = TensorRef::from_array_view((shape, &data[..]))?;
        let outputs = self
            .session
            .run(ort::inputs![super::export::IMAGES => value])?;
        let mut out = Vec::with_capacity(outputs.len());
        for (name, value) in outputs.iter() {
            let (shape, values) = value.try_extract_tensor::<f32>()?;
            let t = Tensor::from_slice(values).f_view(&shape[..])?;
            out.push((name.to_owned(), t));
        }
        Ok(out)
    }
}
