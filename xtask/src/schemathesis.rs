//! schemathesis (PyPI) for the API's property-based test, in a cached Python environment
//! pinned to one version (`<cache>/tools/schemathesis-<version>/`).

use std::path::PathBuf;

use crate::pytools::{self, Tool};

/// The pinned release.
pub const VERSION: &str = "4.32.5";

/// The `schemathesis` executable, installed on first use.
pub fn ensure() -> anyhow::Result<PathBuf> {
    pytools::ensure(&Tool {
        name: "schemathesis",
        version: VERSION,
        extras: "",
        also: &[],
        executable: "schemathesis",
        purpose: "the API's property-based test",
    })
}
