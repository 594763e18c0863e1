//! ONNX Runtime from PyPI, pinned, in a cached Python environment of its own
//! (`<cache>/tools/onnxruntime-<version>/`): its shared library is what the converter
//! loads to validate ONNX artifacts (`YOLOTS_ONNXRUNTIME`), and its Python package, with
//! the `onnx` checker beside it, is the outside client the ONNX tests run
//! (`YOLOTS_ONNX_PYTHON`). Installed by every setup, since the service converts to ONNX.

use std::path::PathBuf;

use anyhow::Context;

use crate::pytools::{self, Tool};

/// The pinned release (the converter's `ONNXRUNTIME_VERSION`).
pub const VERSION: &str = "1.31.1";

/// The `onnx` package, for `onnx.checker` in the tests.
const ONNX: &str = "onnx==1.23.2";

/// The installed runtime.
#[derive(Debug, Clone)]
pub struct OnnxRuntime {
    /// `libonnxruntime.so.<version>` inside the wheel.
    pub library: PathBuf,
    /// The environment's Python, with `onnxruntime` and `onnx`.
    pub python: PathBuf,
}

/// The runtime, installed on first use.
pub fn ensure() -> anyhow::Result<OnnxRuntime> {
    let python = pytools::ensure(&Tool {
        name: "onnxruntime",
        version: VERSION,
        extras: "",
        also: &[ONNX],
        executable: "python",
        purpose: "validating ONNX artifacts, and the ONNX tests' outside client",
    })?;
    let venv = python
        .parent()
        .and_then(|bin| bin.parent())
        .context("the onnxruntime environment has no root")?;
    let lib = std::fs::read_dir(venv.join("lib"))?
        .filter_map(Result::ok)
        .map(|python_dir| {
            python_dir
                .path()
                .join("site-packages/onnxruntime/capi")
                .join(format!("libonnxruntime.so.{VERSION}"))
        })
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "onnxruntime {VERSION} is installed in {} but its libonnxruntime.so.{VERSION} is missing",
                venv.display()
            )
        })?;
    Ok(OnnxRuntime {
        library: lib,
        python,
    })
}
