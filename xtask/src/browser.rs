//! Chromium and ChromeDriver for the browser tests (Debian's packages).

use std::path::PathBuf;

use anyhow::Context;

use crate::process;

/// Paths of the browser and its driver.
#[derive(Debug, Clone)]
pub struct Browser {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
}

pub fn ensure() -> anyhow::Result<Browser> {
    if process::which("chromium").is_none() || process::which("chromedriver").is_none() {
        process::apt_install(
            &["chromium", "chromium-driver"],
            "the browser tests drive Chromium",
        )?;
    }
    Ok(Browser {
        chromium: process::which("chromium").context("chromium not found after installing it")?,
        chromedriver: process::which("chromedriver")
            .context("chromedriver not found after installing it")?,
    })
}
