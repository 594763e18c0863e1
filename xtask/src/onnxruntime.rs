//! ONNX Runtime from PyPI, pinned, in a cached Python environment of its own
//! (`<cache>/tools/onnxruntime-<version>/`): its shared library is what the converter
//! loads to validate ONNX artifacts (`YOLOTS_ONNXRUNTIME`), and its Python package, with
//! the `onnx` checker and Pillow beside it, is the outside client the ONNX tests run
//! (`YOLOTS_ONNX_PYTHON`). Installed by every setup, since the service converts to ONNX.

use std::path::PathBuf;

use anyhow::Context;

use crate::pytools::{self, Tool};

/// The pinned release (the converter's `ONNXRUNTIME_VERSION`).
pub const VERSION: &str = "1.31.1";

/// The `onnx` package, for `onnx.checker` in the tests.
const ONNX: &str = "onnx==1.23.2";

/// Pillow, which the page's Python snippet reads its image with (the tests run it).
const PILLOW: &str = "pillow==13.0.0";

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
        also: &[ONNX, PILLOW],
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
    link_beside_the_binaries(&lib)?;
    Ok(OnnxRuntime {
        library: lib,
        python,
    })
}

/// Links `<target>/lib/libonnxruntime.so` to the installed library: the converter looks for
/// `../lib/libonnxruntime.so` beside its executable (the layout `dist` ships), so the
/// binaries this project builds find ONNX Runtime when run from a shell too, without
/// `YOLOTS_ONNXRUNTIME`.
fn link_beside_the_binaries(library: &std::path::Path) -> anyhow::Result<()> {
    let dir = crate::paths::target().join("lib");
    let link = dir.join("libonnxruntime.so");
    if std::fs::read_link(&link).is_ok_and(|to| to == library) {
        return Ok(());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    match std::fs::remove_file(&link) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("replacing {}", link.display())),
    }
    std::os::unix::fs::symlink(library, &link)
        .with_context(|| format!("linking {} to {}", link.display(), library.display()))?;
    crate::process::step(format!("ONNX Runtime linked at {}", link.display()));
    Ok(())
}
