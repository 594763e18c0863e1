//! The web page in a real browser: Debian's headless Chromium, driven through ChromeDriver,
//! against the real `yolots serve --open` with its embedded worker. Screenshots of every
//! view go to `$YOLOTS_TEST_OUTPUT/browser/`.
//!
//! 1. A YOLOv7 checkpoint: inspected in the browser (class names shown), uploaded with a
//!    progress bar that moves, followed to `succeeded`, the parity table read, the artifact
//!    downloaded and its SHA-256 checked against the report. The bundle size and the time
//!    until the page is interactive are measured and printed.
//! 2. A file that is not a YOLOv7 checkpoint: refused in the browser with the reader's code
//!    and message, and no byte uploaded (no job exists).
//! 3. The full YOLOv7 (75 MB) is read without blocking the page, and its upload can be
//!    cancelled without leaving a job.
//! 4. A server without open sessions: the page asks for a token and works with it.
//! 5. The reports of a detection, a pose and an ONNX job, saved at 1280 and 500 pixels
//!    wide (`report-<kind>-<width>.png`): at 500 the report fits the window, and each
//!    report's Python snippet runs as printed against the artifact and prints a count.
//!
//! The tests of this file run one at a time: each starts a server and a browser, and the
//! timings they print mean little on a machine shared with the others.

#[path = "browser/chrome.rs"]
mod chrome;

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use chrome::{Browser, Tools};
use serde_json::Value;
use thirtyfour::By;
use yolots_e2e::{Server, TestDatabase, fixtures};

/// The page must be interactive this soon after navigation starts.
const INTERACTIVE_BUDGET_MS: f64 = 1000.0;
/// Most bytes of gzip-compressed code the page may download.
const GZIP_BUDGET: usize = 1_500_000;
/// Upload speed while the progress bar is watched: the 10 MB fixture takes a few seconds.
const THROTTLED_UPLOAD: f64 = 3_000_000.0;

/// One browser test at a time (see the module documentation).
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

async fn serve(
    tools: &Tools,
    db: &TestDatabase,
    data: &tempfile::TempDir,
) -> anyhow::Result<Server> {
    serve_with(tools, db, data, &["--open"]).await
}

async fn serve_with(
    tools: &Tools,
    db: &TestDatabase,
    data: &tempfile::TempDir,
    args: &[&str],
) -> anyhow::Result<Server> {
    let web_dir = tools.web_dir.to_string_lossy().into_owned();
    let mut all = vec!["--web-dir", &web_dir, "--latency-runs", "3"];
    all.extend_from_slice(args);
    Server::start(&db.url, data.path(), &all).await
}

fn gzip_len(bytes: &[u8]) -> anyhow::Result<usize> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?.len())
}

/// Loads the page and returns (ready, first render) in milliseconds since navigation start.
async fn load_timed(browser: &Browser, url: &str) -> anyhow::Result<(f64, f64)> {
    browser.driver.goto(url).await?;
    let marks = browser
        .wait_for(
            "the page to be interactive",
            "const r = performance.getEntriesByName('yolots-ready')[0];
             const f = performance.getEntriesByName('yolots-rendered')[0];
             return r && f && document.getElementById('file') ? [r.startTime, f.startTime] : null;",
            Duration::from_secs(30),
        )
        .await?;
    let ready = marks[0].as_f64().context("ready mark")?;
    let rendered = marks[1].as_f64().context("render mark")?;
    Ok((ready, rendered))
}

/// Narrowest window the report is laid out for without sideways scrolling of the page.
const NARROW: u32 = 500;

/// The report at 1280 and at 500 pixels wide, saved as `report-<what>-1280.png` and
/// `report-<what>-500.png`; at 500 the report must fit the window: every parity result
/// visible and nothing wider than the window except inside a box that scrolls.
async fn report_at_two_widths(browser: &Browser, what: &str) -> anyhow::Result<()> {
    browser
        .screenshot_full_at(&format!("report-{what}-1280"), 1280)
        .await?;
    browser.set_width(NARROW).await?;
    let found = browser
        .js("const width = window.innerWidth;
             const report = document.getElementById('report');
             const scrolls = e => { for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) {
                 const o = getComputedStyle(p).overflowX; if (o === 'auto' || o === 'scroll') return true; }
                 return false; };
             const name = e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
                 (e.className && typeof e.className === 'string' ? '.' + e.className.trim().replace(/ +/g, '.') : '');
             const wide = [...report.querySelectorAll('*')]
                 .filter(e => e.getBoundingClientRect().right > width + 0.5 && !scrolls(e)).map(name);
             const results = [...document.querySelectorAll('#parity td.result')];
             const hidden = results.filter(c => { const b = c.getBoundingClientRect();
                 return b.left < 0 || b.right > width + 0.5; }).length;
             return {width, report: report.getBoundingClientRect().right,
                     page: document.documentElement.scrollWidth, wide, results: results.length, hidden};")
        .await?;
    println!("report at {NARROW} px: {found}");
    assert_eq!(
        found["width"], NARROW,
        "the window is not {NARROW} px wide: {found}"
    );
    let width = f64::from(NARROW) + 0.5;
    assert!(
        found["report"].as_f64().unwrap_or(f64::MAX) <= width,
        "the report runs past the window: {found}"
    );
    assert!(
        found["page"].as_f64().unwrap_or(f64::MAX) <= width,
        "the page scrolls sideways: {found}"
    );
    assert_eq!(
        found["wide"],
        serde_json::json!([]),
        "wider than the window: {found}"
    );
    assert!(
        found["results"].as_u64().unwrap_or(0) > 0,
        "no parity results: {found}"
    );
    assert_eq!(found["hidden"], 0, "parity results off-screen: {found}");
    browser
        .screenshot_full_at(&format!("report-{what}-{NARROW}"), NARROW)
        .await?;
    browser
        .cdp(
            "Emulation.clearDeviceMetricsOverride",
            serde_json::json!({}),
        )
        .await?;
    Ok(())
}

/// Runs the report's Python snippet as the page prints it, beside the artifact, with the
/// interpreter that `python_var` names (skipped when it is not set); returns the count of
/// detections it printed.
async fn run_python_snippet(
    browser: &Browser,
    artifact: &std::path::Path,
    artifact_name: &str,
    python_var: &str,
) -> anyhow::Result<Option<u64>> {
    let Some(python) = std::env::var_os(python_var) else {
        yolots_e2e::tool_missing(&format!(
            "{python_var} is not set: the page's Python snippet was not run"
        ));
        return Ok(None);
    };
    let code = browser
        .js("const c = document.querySelector('#snippet-python pre'); return c && c.innerText;")
        .await?;
    let code = code
        .as_str()
        .context("the report shows no Python snippet")?;
    let (count, printed) = yolots_e2e::run_python_snippet(&python, code, artifact, artifact_name)?;
    let shown: Vec<&str> = printed.lines().take(3).collect();
    println!(
        "page's Python snippet, run as printed: {}",
        shown.join(" | ")
    );
    Ok(Some(count))
}

#[tokio::test(flavor = "multi_thread")]
async fn converts_a_checkpoint_in_the_browser() -> anyhow::Result<()> {
    let Some(tools) = Tools::from_env() else {
        yolots_e2e::tool_missing(Tools::skip_note());
        return Ok(());
    };
    let _turn = one_at_a_time().await;
    let pkg = tools.web_dir.join("pkg");
    let mut gzip = 0;
    for name in ["yolots_web_bg.wasm", "yolots_web.js"] {
        let bytes = std::fs::read(pkg.join(name))
            .with_context(|| format!("the built page has no {name}: run `cargo xtask setup`"))?;
        gzip += gzip_len(&bytes)?;
    }
    println!("web bundle (wasm + JS), gzip: {:.3} MB", gzip as f64 / 1e6);
    assert!(gzip < GZIP_BUDGET, "the bundle is {gzip} bytes gzipped");

    let db = TestDatabase::create().await?;
    let data = tempfile::tempdir()?;
    let server = serve(&tools, &db, &data).await?;
    let browser = Browser::start(&tools).await?;
    let page = format!("{}/", server.base);

    // Time to interactive: a cold load (nothing cached), then a warm one.
    let (cold, cold_render) = load_timed(&browser, &page).await?;
    let (warm, warm_render) = load_timed(&browser, &format!("{page}?warm")).await?;
    println!(
        "time to interactive (session and limits loaded): cold {cold:.0} ms (first render {cold_render:.0} ms), warm {warm:.0} ms (first render {warm_render:.0} ms)"
    );
    assert!(
        cold < INTERACTIVE_BUDGET_MS,
        "the page took {cold:.0} ms to become interactive"
    );
    browser.screenshot("1-upload").await?;

    // Choose the file: the browser reads it and shows its classes.
    // ChromeDriver wants a plain absolute path (no `..`).
    let fixture = fixtures().join("yolov7-w25-c3.pt").canonicalize()?;
    let input = browser.driver.find(By::Id("file")).await?;
    input.send_keys(fixture.to_string_lossy()).await?;
    let names = browser
        .wait_for(
            "the inspected class names",
            "const n = document.getElementById('inspect-names'); return n && n.innerText;",
            Duration::from_secs(60),
        )
        .await?;
    let names = names.as_str().unwrap_or_default();
    assert!(
        names.lines().any(|l| l.trim() == "helmet"),
        "no `helmet` among the class names: {names}"
    );
    browser.screenshot_full("2-inspected").await?;

    // Upload, slowed down so the progress bar is seen moving.
    browser
        .js("window.__progress = [];
             new MutationObserver(() => {
               const p = document.getElementById('upload-progress');
               if (p) window.__progress.push([Number(p.value), Number(p.max)]);
             }).observe(document.body, {subtree: true, childList: true, attributes: true});
             return true;")
        .await?;
    browser.throttle_upload(Some(THROTTLED_UPLOAD)).await?;
    browser
        .driver
        .find(By::Id("convert"))
        .await?
        .click()
        .await?;
    browser
        .wait_for(
            "the upload progress past a quarter",
            "const p = document.getElementById('upload-progress');
             return p && p.value > p.max / 4 && p.value < p.max;",
            Duration::from_secs(30),
        )
        .await?;
    browser.screenshot("3-uploading").await?;
    browser
        .wait_for(
            "the job page",
            "return location.hash.startsWith('#/jobs/') && document.querySelector('.job-view[data-status]') !== null;",
            Duration::from_secs(120),
        )
        .await?;
    browser.throttle_upload(None).await?;
    let progress = browser.js("return window.__progress").await?;
    let observed: Vec<(f64, f64)> = progress
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    let between: Vec<f64> = observed
        .iter()
        .filter(|(v, max)| *v > 0.0 && v < max)
        .map(|(v, max)| v / max * 100.0)
        .collect();
    println!(
        "upload progress: {} updates, {} strictly between 0 and 100% (first {:.0}%, last {:.0}%)",
        observed.len(),
        between.len(),
        between.first().copied().unwrap_or(0.0),
        between.last().copied().unwrap_or(0.0),
    );
    assert!(
        !between.is_empty(),
        "the progress bar never moved: {observed:?}"
    );

    // Follow the job to the end.
    let mut saw_running = false;
    let started = std::time::Instant::now();
    let status = loop {
        let status = browser
            .js("const v = document.querySelector('.job-view'); return v && v.dataset.status;")
            .await?;
        let status = status.as_str().unwrap_or_default().to_owned();
        if status == "running" && !saw_running {
            saw_running = true;
            browser.screenshot("4-job-running").await?;
        }
        if matches!(status.as_str(), "succeeded" | "failed" | "cancelled") {
            break status;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the job is still {status} after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if status != "succeeded" {
        browser.screenshot_full("4-job-failed").await?;
        let error = browser
            .js("const e = document.getElementById('job-error'); return e && e.innerText;")
            .await?;
        anyhow::bail!("the job ended {status}: {error}");
    }

    // The report: parity figures, all passing.
    let rows = browser
        .wait_for(
            "the parity table",
            "const rows = [...document.querySelectorAll('#parity tbody tr')];
             return rows.length ? rows.map(r => [r.className, r.innerText]) : null;",
            Duration::from_secs(60),
        )
        .await?;
    let rows = rows.as_array().cloned().unwrap_or_default();
    assert!(!rows.is_empty());
    for row in &rows {
        println!(
            "parity: {}",
            row[1].as_str().unwrap_or_default().replace('\t', " | ")
        );
        assert_eq!(row[0], "pass", "a parity check failed: {row}");
    }
    let latency = browser
        .js("const l = document.getElementById('latency-p50'); return l && l.innerText;")
        .await?;
    println!("latency shown: {latency}");
    browser.screenshot_full("5-report").await?;
    report_at_two_widths(&browser, "detection").await?;
    // The same on a phone-sized screen.
    browser
        .cdp(
            "Emulation.setDeviceMetricsOverride",
            serde_json::json!({"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true}),
        )
        .await?;
    browser.screenshot("5-report-phone").await?;
    browser
        .cdp(
            "Emulation.clearDeviceMetricsOverride",
            serde_json::json!({}),
        )
        .await?;

    // The report as the API serves it, fetched with the page's own session.
    let report: Value = browser
        .js(
            "const id = document.querySelector('.job-view').dataset.jobId;
             return fetch(`/api/v1/jobs/${id}/report`).then(r => r.json());",
        )
        .await?;
    let expected_sha = report["artifact"]["sha256"]
        .as_str()
        .context("the report has no artifact.sha256")?
        .to_owned();
    let shown_sha = browser
        .driver
        .find(By::Id("artifact-sha256"))
        .await?
        .text()
        .await?;
    assert_eq!(shown_sha.trim(), expected_sha);

    // Download through the page's button.
    browser
        .driver
        .find(By::Id("download"))
        .await?
        .click()
        .await?;
    let file = browser.downloaded(Duration::from_secs(60)).await?;
    let sha = chrome::sha256_file(&file)?;
    println!(
        "downloaded {} ({} bytes), SHA-256 {sha}",
        file.file_name().unwrap_or_default().to_string_lossy(),
        std::fs::metadata(&file)?.len()
    );
    assert_eq!(
        sha, expected_sha,
        "the downloaded artifact is not the reported one"
    );
    let name = report["artifact"]["file_name"]
        .as_str()
        .context("the report has no artifact.file_name")?;
    run_python_snippet(&browser, &file, name, "YOLOTS_PYTHON").await?;

    // The jobs list has it.
    browser.driver.goto(format!("{page}#/jobs")).await?;
    browser
        .wait_for(
            "the jobs list",
            "return document.querySelectorAll('#jobs tbody tr').length > 0;",
            Duration::from_secs(30),
        )
        .await?;
    browser.screenshot("6-jobs").await?;

    browser.quit().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_a_file_that_is_not_yolov7_before_uploading() -> anyhow::Result<()> {
    let Some(tools) = Tools::from_env() else {
        yolots_e2e::tool_missing(Tools::skip_note());
        return Ok(());
    };
    let _turn = one_at_a_time().await;
    // A safetensors file named like a checkpoint: a plausible mistake.
    let source = fixtures().join("yolov7-w25-c3.expected.safetensors");
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("weights.pt");
    std::fs::copy(&source, &file)?;
    let bytes = std::fs::read(&file)?;
    let expected = yolots_checkpoint::Checkpoint::from_bytes(&bytes)
        .and_then(|c| c.describe())
        .err()
        .context("the reader accepted the file")?;

    let db = TestDatabase::create().await?;
    let data = tempfile::tempdir()?;
    let server = serve(&tools, &db, &data).await?;
    let browser = Browser::start(&tools).await?;
    load_timed(&browser, &format!("{}/", server.base)).await?;

    let input = browser.driver.find(By::Id("file")).await?;
    input.send_keys(file.to_string_lossy()).await?;
    let refusal = browser
        .wait_for(
            "the refusal",
            "const r = document.getElementById('refusal');
             return r && [r.querySelector('.error-code').innerText, r.querySelector('.error-message').innerText];",
            Duration::from_secs(30),
        )
        .await?;
    println!("refused: {refusal}");
    assert_eq!(refusal[0], expected.code().as_str());
    assert_eq!(refusal[1], expected.to_string());
    assert!(
        browser.driver.find_all(By::Id("convert")).await?.is_empty(),
        "a refused file can still be uploaded"
    );
    browser.screenshot("7-refused").await?;

    // Nothing was sent: no upload request, no job.
    let uploads = browser
        .js("return performance.getEntriesByType('resource')
               .filter(e => e.initiatorType === 'xmlhttprequest').length;")
        .await?;
    assert_eq!(uploads, 0, "the page sent a request for a refused file");
    let jobs: Value = browser
        .js("return fetch('/api/v1/jobs').then(r => r.json());")
        .await?;
    assert_eq!(jobs["total"], 0, "a job exists: {jobs}");

    browser.quit().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_a_large_checkpoint_without_blocking_and_cancels_its_upload() -> anyhow::Result<()> {
    let Some(tools) = Tools::from_env() else {
        yolots_e2e::tool_missing(Tools::skip_note());
        return Ok(());
    };
    let _turn = one_at_a_time().await;
    let db = TestDatabase::create().await?;
    let data = tempfile::tempdir()?;
    let server = serve(&tools, &db, &data).await?;
    let browser = Browser::start(&tools).await?;
    load_timed(&browser, &format!("{}/", server.base)).await?;

    // Main-thread tasks over 50 ms while the file is read.
    let observed = browser
        .js("window.__long = [];
             new PerformanceObserver(l => l.getEntries().forEach(e => window.__long.push(e.duration)))
               .observe({type: 'longtask'});
             return PerformanceObserver.supportedEntryTypes.includes('longtask');")
        .await?;
    assert_eq!(observed, true, "this browser cannot observe long tasks");
    let fixture = fixtures().join("yolov7-full.pt").canonicalize()?;
    let size = std::fs::metadata(&fixture)?.len();
    browser
        .driver
        .find(By::Id("file"))
        .await?
        .send_keys(fixture.to_string_lossy())
        .await?;
    let names = browser
        .wait_for(
            "the inspected class names",
            "const n = document.getElementById('inspect-names'); return n && n.innerText;",
            Duration::from_secs(120),
        )
        .await?;
    // Its 80 classes are named `class_0` to `class_79`; the page lists 60, then a count.
    let names = names.as_str().unwrap_or_default();
    assert!(
        names.contains("class_0") && names.contains("and 20 more"),
        "unexpected class names: {names}"
    );
    let read = browser
        .js("return document.querySelector('#inspection .muted').innerText;")
        .await?;
    let long: Vec<f64> = browser
        .js("return window.__long;")
        .await?
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    let longest = long.iter().copied().fold(0.0, f64::max);
    println!(
        "large file ({size} bytes): {read}; main-thread tasks over 50 ms: {} (longest {longest:.0} ms)",
        long.len()
    );
    assert!(
        longest < 1000.0,
        "the page was blocked for {longest:.0} ms while reading the file"
    );
    browser.screenshot("8-large-inspected").await?;

    // Start uploading it slowly, then cancel.
    browser.throttle_upload(Some(1_000_000.0)).await?;
    browser
        .driver
        .find(By::Id("convert"))
        .await?
        .click()
        .await?;
    browser
        .wait_for(
            "the upload to start",
            "const p = document.getElementById('upload-progress'); return p && p.value > 0;",
            Duration::from_secs(30),
        )
        .await?;
    browser
        .driver
        .find(By::Id("cancel-upload"))
        .await?
        .click()
        .await?;
    browser
        .wait_for(
            "the cancellation notice",
            "return [...document.querySelectorAll('.notice')].some(n => n.innerText.includes('cancelled'))
                && document.getElementById('convert') !== null;",
            Duration::from_secs(30),
        )
        .await?;
    browser.throttle_upload(None).await?;
    browser.screenshot("9-upload-cancelled").await?;
    let jobs: Value = browser
        .js("return fetch('/api/v1/jobs').then(r => r.json());")
        .await?;
    assert_eq!(jobs["total"], 0, "a cancelled upload left a job: {jobs}");

    browser.quit().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn asks_for_a_token_when_the_server_hands_out_no_sessions() -> anyhow::Result<()> {
    let Some(tools) = Tools::from_env() else {
        yolots_e2e::tool_missing(Tools::skip_note());
        return Ok(());
    };
    let _turn = one_at_a_time().await;
    let db = TestDatabase::create().await?;
    let data = tempfile::tempdir()?;
    let server = serve_with(&tools, &db, &data, &[]).await?;
    let token = yolots_e2e::create_token(&db.url, "pat", false)?;
    let browser = Browser::start(&tools).await?;
    browser.driver.goto(format!("{}/", server.base)).await?;

    let field = browser
        .wait_for(
            "the token form",
            "return document.getElementById('token') !== null;",
            Duration::from_secs(30),
        )
        .await;
    field?;
    browser.screenshot("10-token").await?;
    browser
        .driver
        .find(By::Id("token"))
        .await?
        .send_keys(&token)
        .await?;
    browser
        .driver
        .find(By::Css("form button[type=submit]"))
        .await?
        .click()
        .await?;
    let owner = browser
        .wait_for(
            "the upload view with the token's owner",
            "const o = document.querySelector('.owner');
             return document.getElementById('file') && o && o.innerText;",
            Duration::from_secs(30),
        )
        .await?;
    assert!(
        owner.as_str().unwrap_or_default().contains("pat"),
        "not signed in as the token's owner: {owner}"
    );

    browser
        .driver
        .goto(format!("{}/#/jobs", server.base))
        .await?;
    browser
        .wait_for(
            "the empty jobs list",
            "const e = document.querySelector('.empty'); return e && e.innerText.includes('No conversions');",
            Duration::from_secs(30),
        )
        .await?;

    browser.quit().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn shows_a_failed_job_with_the_services_message_and_advice() -> anyhow::Result<()> {
    let Some(tools) = Tools::from_env() else {
        yolots_e2e::tool_missing(Tools::skip_note());
        return Ok(());
    };
    let _turn = one_at_a_time().await;
    let db = TestDatabase::create().await?;
    let data = tempfile::tempdir()?;
    let server = serve_with(
        &tools,
        &db,
        &data,
        &["--open", "--allow-test-faults", "--max-attempts", "1"],
    )
    .await?;
    let browser = Browser::start(&tools).await?;
    load_timed(&browser, &format!("{}/", server.base)).await?;

    // A job of the page's owner whose conversion aborts (the service's fault hook).
    let token = browser.driver.get_named_cookie("yolots_token").await?.value;
    let client = server.client(&token);
    let fixture = fixtures().join("yolov7-w25-c3.pt");
    let job = client
        .create_job(&fixture, Some(r#"{"test_fault": "abort"}"#))
        .await?;
    let id = job["id"].as_str().context("job id")?.to_owned();
    browser
        .driver
        .goto(format!("{}/#/jobs/{id}", server.base))
        .await?;
    let shown = browser
        .wait_for(
            "the failure",
            "const v = document.querySelector('.job-view[data-status=failed]');
             const e = document.getElementById('job-error');
             return v && e && [e.querySelector('.error-code').innerText,
                               e.querySelector('.error-message').innerText,
                               e.querySelector('.error-advice').innerText];",
            Duration::from_secs(300),
        )
        .await?;
    let failed = client.job(&id).await?;
    println!("failure shown: {shown}");
    assert_eq!(shown[0], failed["error"]["code"]);
    assert_eq!(shown[1], failed["error"]["message"]);
    assert!(!shown[2].as_str().unwrap_or_default().is_empty());
    assert!(
        !browser
            .driver
            .find_all(By::Id("retry-job"))
            .await?
            .is_empty(),
        "a failed job offers no retry"
    );
    browser.screenshot_full("11-job-failed").await?;

    browser.quit().await?;
    Ok(())
}

/// A pose job's report: keypoint checks in the parity table, shapes on one line, the
/// layout at two widths, and its Python snippet run against the artifact.
#[tokio::test(flavor = "multi_thread")]
async fn shows_a_pose_report_that_fits_a_narrow_window() -> anyhow::Result<()> {
    let Some(tools) = Tools::from_env() else {
        yolots_e2e::tool_missing(Tools::skip_note());
        return Ok(());
    };
    let _turn = one_at_a_time().await;
    let db = TestDatabase::create().await?;
    let data = tempfile::tempdir()?;
    let server = serve(&tools, &db, &data).await?;
    let browser = Browser::start(&tools).await?;
    load_timed(&browser, &format!("{}/", server.base)).await?;

    // A job of the page's owner, made through the API (the page's upload is tested above).
    let token = browser.driver.get_named_cookie("yolots_token").await?.value;
    let client = server.client(&token);
    let fixture = fixtures().join("pose/yolov7-w6-pose-w25.pt");
    let job = client
        .create_job(&fixture, Some(r#"{"img_size": [256, 256]}"#))
        .await?;
    let id = job["id"].as_str().context("job id")?.to_owned();
    browser
        .driver
        .goto(format!("{}/#/jobs/{id}", server.base))
        .await?;
    let shown = browser
        .wait_for(
            "the pose report",
            "const v = document.querySelector('.job-view[data-status=succeeded]');
             const rows = [...document.querySelectorAll('#parity tbody tr')];
             const task = document.getElementById('report-task');
             if (!v || rows.length === 0 || !task || !document.querySelector('#snippet-python pre')) return null;
             // An inline element wrapped onto two lines has two boxes.
             return [task.innerText, rows.map(r => r.className),
                 [...document.querySelectorAll('#parity td.shape code')].map(c => c.getClientRects().length === 1)];",
            Duration::from_secs(600),
        )
        .await?;
    println!("pose report: {shown}");
    assert!(
        shown[0].as_str().unwrap_or_default().contains("pose"),
        "not a pose report: {shown}"
    );
    assert!(
        shown[1]
            .as_array()
            .is_some_and(|rows| rows.iter().all(|r| r == "pass")),
        "a parity check failed: {shown}"
    );
    assert!(
        shown[2]
            .as_array()
            .is_some_and(|cells| cells.iter().all(|c| c == true)),
        "a shape wraps onto more than one line: {shown}"
    );
    report_at_two_widths(&browser, "pose").await?;

    let report = client
        .get(&format!("/api/v1/jobs/{id}/report"))
        .send()
        .await?;
    let report: Value = report.json().await?;
    let name = report["artifact"]["file_name"]
        .as_str()
        .context("the report has no artifact.file_name")?
        .to_owned();
    let artifact = client
        .get(&format!("/api/v1/jobs/{id}/artifact"))
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join(&name);
    std::fs::write(&file, &artifact)?;
    run_python_snippet(&browser, &file, &name, "YOLOTS_PYTHON").await?;

    browser.quit().await?;
    Ok(())
}

/// The Format option: a checkpoint converted to ONNX from the page, its report naming
/// the format and its outputs, ONNX Runtime snippets, and the `.onnx` downloaded.
#[tokio::test(flavor = "multi_thread")]
async fn converts_to_onnx_in_the_browser() -> anyhow::Result<()> {
    let Some(tools) = Tools::from_env() else {
        yolots_e2e::tool_missing(Tools::skip_note());
        return Ok(());
    };
    let _turn = one_at_a_time().await;
    let db = TestDatabase::create().await?;
    let data = tempfile::tempdir()?;
    let server = serve(&tools, &db, &data).await?;
    let browser = Browser::start(&tools).await?;
    load_timed(&browser, &format!("{}/", server.base)).await?;

    let fixture = fixtures().join("yolov7-w25-c3.pt").canonicalize()?;
    let input = browser.driver.find(By::Id("file")).await?;
    input.send_keys(fixture.to_string_lossy()).await?;
    browser
        .wait_for(
            "the inspected file",
            "const n = document.getElementById('inspect-names'); return n && n.innerText;",
            Duration::from_secs(60),
        )
        .await?;
    // Trace mode first: choosing ONNX puts the mode back to script.
    let chosen = browser
        .js(
            "const pick = (id, v) => { const s = document.getElementById(id); s.value = v;
                 s.dispatchEvent(new Event('change', {bubbles: true})); };
             pick('opt-mode', 'trace');
             return true;",
        )
        .await?;
    assert_eq!(chosen, Value::Bool(true));
    browser
        .js(
            "const s = document.getElementById('opt-format'); s.value = 'onnx';
             s.dispatchEvent(new Event('change', {bubbles: true})); return true;",
        )
        .await?;
    let mode = browser
        .wait_for(
            "script mode after choosing ONNX",
            "const m = document.getElementById('opt-mode');
             const f = document.getElementById('opt-format');
             return f.value === 'onnx' && m.value === 'script' && m.value;",
            Duration::from_secs(10),
        )
        .await?;
    assert_eq!(mode, "script");
    browser.screenshot("12-onnx-options").await?;
    browser
        .driver
        .find(By::Id("convert"))
        .await?
        .click()
        .await?;
    let shown = browser
        .wait_for(
            "the ONNX report",
            "const v = document.querySelector('.job-view[data-status=succeeded]');
             const f = document.getElementById('artifact-format');
             const p = document.querySelector('#snippet-python');
             const rows = [...document.querySelectorAll('#parity tbody tr')];
             return v && f && p && rows.length &&
                 [f.innerText, p.innerText, rows.every(r => r.className === 'pass')];",
            Duration::from_secs(600),
        )
        .await?;
    assert_eq!(shown[0], "onnx");
    let python = shown[1].as_str().unwrap_or_default();
    assert!(python.contains("import onnxruntime"), "{python}");
    assert!(python.contains("yolov7-w25-c3.onnx"), "{python}");
    assert_eq!(shown[2], Value::Bool(true), "a parity check failed");
    browser.screenshot_full("13-onnx-report").await?;
    report_at_two_widths(&browser, "onnx").await?;
    let summary = browser
        .js("return document.getElementById('parity-summary').innerText;")
        .await?;
    let summary = summary.as_str().unwrap_or_default();
    assert!(
        summary.contains("ONNX Runtime") && !summary.contains("Build Info"),
        "ONNX Runtime by its build string: {summary}"
    );

    browser
        .driver
        .find(By::Id("download"))
        .await?
        .click()
        .await?;
    let file = browser.downloaded(Duration::from_secs(60)).await?;
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    assert_eq!(name, "yolov7-w25-c3.onnx");
    let bytes = std::fs::read(&file)?;
    assert_eq!(bytes.first(), Some(&0x08), "not an ONNX file");
    // The decoded head's snippet: NMS in numpy, boxes in the image's pixels, a count.
    run_python_snippet(&browser, &file, "yolov7-w25-c3.onnx", "YOLOTS_ONNX_PYTHON").await?;

    browser.quit().await?;
    Ok(())
}
