//! moto's server mode (PyPI) for the tests of S3 storage: a real S3-compatible HTTP server
//! that a test starts on loopback, in a cached Python environment pinned to one version
//! (`<cache>/tools/moto-<version>/`).

use std::path::PathBuf;

use crate::pytools::{self, Tool};

/// The pinned release.
pub const VERSION: &str = "5.2.5";

/// The `moto_server` executable, installed on first use.
pub fn ensure() -> anyhow::Result<PathBuf> {
    pytools::ensure(&Tool {
        name: "moto",
        version: VERSION,
        extras: "[server]",
        also: &[],
        executable: "moto_server",
        purpose: "an S3-compatible server for the storage tests",
    })
}
