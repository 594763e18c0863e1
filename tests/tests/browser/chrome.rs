//! Debian's Chromium through ChromeDriver for the browser tests: the driver on a free
//! port, a fresh profile, the headless flags, downloads into a folder of the test, and
//! small helpers (run a script, wait for a condition, screenshots, network throttling).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use thirtyfour::prelude::*;

/// Flags for a quiet, reproducible headless Chromium.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
];

/// What the browser tests need from the environment (`cargo xtask test` sets it all).
pub struct Tools {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
    pub web_dir: PathBuf,
}

impl Tools {
    /// `None` (the test is skipped with a message) outside `cargo xtask test`.
    pub fn from_env() -> Option<Tools> {
        let var = |name: &str| std::env::var_os(name).map(PathBuf::from);
        let tools = Tools {
            chromium: var("YOLOTS_CHROMIUM")?,
            chromedriver: var("YOLOTS_CHROMEDRIVER")?,
            web_dir: var("YOLOTS_WEB_DIR")?,
        };
        Some(tools)
    }

    pub fn skip_note() -> &'static str {
        "YOLOTS_CHROMIUM, YOLOTS_CHROMEDRIVER or YOLOTS_WEB_DIR is not set"
    }
}

/// Where screenshots go: `$YOLOTS_TEST_OUTPUT/browser`.
pub fn output_dir() -> PathBuf {
    std::env::var_os("YOLOTS_TEST_OUTPUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| yolots_e2e::workspace().join("target/test-output"))
        .join("browser")
}

/// A browser session; the driver (and the browser under it) is killed when dropped.
pub struct Browser {
    pub driver: WebDriver,
    chromedriver: Child,
    pub downloads: tempfile::TempDir,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start(tools: &Tools) -> anyhow::Result<Browser> {
        let port = yolots_e2e::free_port()?;
        let mut command = Command::new(&tools.chromedriver);
        command
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group, so the browser it starts can be killed with it.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let chromedriver = command
            .spawn()
            .with_context(|| format!("starting {}", tools.chromedriver.display()))?;
        let profile = tempfile::tempdir()?;
        let downloads = tempfile::tempdir()?;
        let url = format!("http://127.0.0.1:{port}");
        let mut browser_guard = DriverGuard(Some(chromedriver));
        wait_driver_ready(&url).await?;

        let mut caps = DesiredCapabilities::chrome();
        caps.set_binary(&tools.chromium.to_string_lossy())?;
        for flag in FLAGS {
            caps.add_arg(flag)?;
        }
        caps.add_arg(&format!("--user-data-dir={}", profile.path().display()))?;
        caps.add_experimental_option(
            "prefs",
            json!({
                "download.default_directory": downloads.path(),
                "download.prompt_for_download": false,
            }),
        )?;
        let driver = WebDriver::new(url, caps)
            .await
            .context("opening a ChromeDriver session")?;
        let browser = Browser {
            driver,
            chromedriver: browser_guard.take()?,
            downloads,
            _profile: profile,
        };
        browser
            .cdp(
                "Browser.setDownloadBehavior",
                json!({"behavior": "allow", "downloadPath": browser.downloads.path()}),
            )
            .await?;
        Ok(browser)
    }

    /// A DevTools command.
    pub async fn cdp(&self, command: &str, params: Value) -> anyhow::Result<Value> {
        self.driver
            .cdp()
            .send_raw(command, params)
            .await
            .with_context(|| format!("DevTools {command}"))
    }

    /// Runs a script (its `return` value, promises awaited) in the page.
    pub async fn js(&self, script: &str) -> anyhow::Result<Value> {
        let ret = self
            .driver
            .execute(script, Vec::new())
            .await
            .with_context(|| format!("running the script `{script}`"))?;
        Ok(ret.json().clone())
    }

    /// Polls `script` until it returns something other than `null`, `false`, `undefined`
    /// or `""`, and returns that.
    pub async fn wait_for(
        &self,
        what: &str,
        script: &str,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let started = Instant::now();
        loop {
            let value = self.js(script).await?;
            let truthy =
                !matches!(&value, Value::Null | Value::Bool(false)) && value.as_str() != Some("");
            if truthy {
                return Ok(value);
            }
            if started.elapsed() > timeout {
                let _ = self.screenshot(&format!("timeout-{}", slug(what))).await;
                bail!("waited {timeout:?} for {what}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a screenshot of the viewport as `<output>/browser/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = output_dir();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        let png = self.driver.screenshot_as_png().await?;
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// Saves the whole page (beyond the viewport) by growing the window to its height.
    pub async fn screenshot_full(&self, name: &str) -> anyhow::Result<PathBuf> {
        self.screenshot_full_at(name, 1280).await
    }

    /// The whole page as a window `width` pixels wide shows it.
    pub async fn screenshot_full_at(&self, name: &str, width: u32) -> anyhow::Result<PathBuf> {
        // The page's height at that width: set the width first, then measure.
        self.set_width(width).await?;
        let height = self
            .js("return Math.ceil(document.documentElement.scrollHeight)")
            .await?
            .as_u64()
            .unwrap_or(1000)
            .clamp(600, 12000);
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await?;
        let shot = self.screenshot(name).await;
        self.cdp("Emulation.clearDeviceMetricsOverride", json!({}))
            .await?;
        shot
    }

    /// Lays the page out as a desktop window `width` pixels wide (until
    /// `Emulation.clearDeviceMetricsOverride`).
    pub async fn set_width(&self, width: u32) -> anyhow::Result<()> {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await?;
        Ok(())
    }

    /// Slows uploads to `bytes_per_second` (`None`: no limit).
    pub async fn throttle_upload(&self, bytes_per_second: Option<f64>) -> anyhow::Result<()> {
        self.cdp("Network.enable", json!({})).await?;
        self.cdp(
            "Network.emulateNetworkConditions",
            json!({
                "offline": false,
                "latency": 0,
                "downloadThroughput": -1,
                "uploadThroughput": bytes_per_second.unwrap_or(-1.0),
            }),
        )
        .await?;
        Ok(())
    }

    /// Waits for a finished download (no `.crdownload` left) and returns its path.
    pub async fn downloaded(&self, timeout: Duration) -> anyhow::Result<PathBuf> {
        let started = Instant::now();
        loop {
            let mut done = None;
            let mut partial = false;
            for entry in std::fs::read_dir(self.downloads.path())? {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "crdownload") {
                    partial = true;
                } else {
                    done = Some(path);
                }
            }
            if let (Some(path), false) = (&done, partial) {
                return Ok(path.clone());
            }
            if started.elapsed() > timeout {
                bail!("no finished download in {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn quit(mut self) -> anyhow::Result<()> {
        let driver = self.driver.clone();
        driver.quit().await?;
        kill_group(&mut self.chromedriver);
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.chromedriver);
    }
}

/// Kills the driver if the session never opened.
struct DriverGuard(Option<Child>);

impl DriverGuard {
    fn take(&mut self) -> anyhow::Result<Child> {
        self.0.take().context("the driver is gone")
    }
}

impl Drop for DriverGuard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            kill_group(child);
        }
    }
}

/// Kills the driver and the browser it started: its process group, whose id is the
/// driver's pid (`process_group(0)`).
fn kill_group(child: &mut Child) {
    if let Ok(pgid) = i32::try_from(child.id())
        && pgid > 1
    {
        // SAFETY: kill(2) on the group this test created; no memory is involved.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

async fn wait_driver_ready(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        let status = client.get(format!("{url}/status")).send().await;
        if let Ok(response) = status
            && let Ok(body) = response.json::<Value>().await
            && body["value"]["ready"] == json!(true)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("ChromeDriver did not become ready at {url}")
}

fn slug(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    use sha2::Digest;
    let bytes = std::fs::read(path)?;
    Ok(hex::encode(sha2::Sha256::digest(&bytes)))
}
