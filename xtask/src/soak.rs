//! `cargo xtask soak`: the API (`yolots serve --workers 0`) and two standalone workers on
//! a fresh database, fed uploads at a steady rate for minutes. Prints throughput, latency,
//! errors and memory; non-zero when a job fails or the server's memory keeps growing.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use chrono::{DateTime, FixedOffset};
use clap::Args;
use reqwest::blocking::multipart::{Form, Part};
use serde_json::Value;

use crate::process::{self, step};
use crate::setup::{self, SetupArgs};
use crate::{paths, web};

#[derive(Debug, Args)]
pub struct SoakArgs {
    /// How long uploads go on, in seconds.
    #[arg(long, default_value_t = 300)]
    duration_secs: u64,
    /// Uploads per second. On two cores a CPU conversion of the default fixture takes
    /// about 1.5 s and the two workers keep up with about 1 upload/s, so 0.5 leaves
    /// headroom: jobs must not pile up.
    #[arg(long, default_value_t = 0.5)]
    rate: f64,
    /// At most this many uploads, whatever the duration and rate.
    #[arg(long, default_value_t = 400)]
    max_jobs: u32,
    /// Conversion size (`img_size`, square; a multiple of the model's largest stride).
    #[arg(long, default_value_t = 160)]
    img_size: u32,
    /// The checkpoint to upload: a file of the fixtures folder, or a path.
    #[arg(long, default_value = "yolov7-tiny.pt")]
    fixture: PathBuf,
    /// After the last upload, how long to wait for the jobs to finish, in seconds.
    #[arg(long, default_value_t = 300)]
    drain_secs: u64,
    /// Finished jobs before the memory baseline is taken (at most half the uploads).
    #[arg(long, default_value_t = 10)]
    warmup_jobs: u32,
}

/// Server RSS may grow this much after the warm-up before the run counts as failed.
const MAX_SERVER_GROWTH: f64 = 0.10;
const WORKERS: usize = 2;
const POLL: Duration = Duration::from_secs(2);

pub fn soak(args: &SoakArgs) -> anyhow::Result<()> {
    let plan = Plan::new(args)?;
    let interrupted = interrupt_flag()?;
    let env = setup::setup(&SetupArgs {
        for_tests: false,
        no_web: true,
        no_database: false,
    })?;
    let result = build_and_soak(&plan, &env.database.url, &interrupted);
    env.database.stop_if_started();
    result
}

/// Ctrl-C only raises a flag: the run then stops what it started and drops its database.
fn interrupt_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let raised = Arc::clone(&flag);
    ctrlc::set_handler(move || raised.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;
    Ok(flag)
}

fn check_interrupt(flag: &AtomicBool) -> anyhow::Result<()> {
    if flag.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

fn build_and_soak(plan: &Plan, admin_url: &str, interrupted: &AtomicBool) -> anyhow::Result<()> {
    check_interrupt(interrupted)?;
    // The workers' conversions run in the converter beside the server binary.
    process::build_release_binaries()?;
    check_interrupt(interrupted)?;
    let binary = paths::target().join("release/yolots");
    // Declared before the fleet, so the processes stop before the database is dropped.
    let database = FreshDatabase::create(admin_url)?;
    let folders = tempfile::Builder::new().prefix("yolots-soak-").tempdir()?;
    let logs = paths::target().join("soak");
    std::fs::create_dir_all(&logs)?;
    step(format!("soak: logs in {}", logs.display()));
    let mut fleet = Fleet::start(&binary, &database.url, folders.path(), &logs, interrupted)?;
    let token = create_token(&binary, &database.url)?;
    let api = Api::new(&fleet.base, &token)?;
    let figures = drive(plan, &api, &mut fleet, interrupted)?;
    fleet.stop();
    figures.print(plan);
    figures.verdict()
}

/// What the run will send.
struct Plan {
    uploads: u32,
    rate: f64,
    duration: Duration,
    drain: Duration,
    warmup: u32,
    img_size: u32,
    fixture: PathBuf,
    bytes: Vec<u8>,
}

impl Plan {
    fn new(args: &SoakArgs) -> anyhow::Result<Self> {
        if !(args.rate.is_finite() && args.rate > 0.0) {
            bail!("--rate must be a positive number of uploads per second");
        }
        if args.duration_secs == 0 || args.max_jobs == 0 {
            bail!("--duration-secs and --max-jobs must be at least 1");
        }
        let fixture = if args.fixture.is_file() {
            args.fixture.clone()
        } else {
            paths::fixtures().join(&args.fixture)
        };
        let bytes = std::fs::read(&fixture)
            .with_context(|| format!("reading the fixture {}", fixture.display()))?;
        let uploads = planned_uploads(args.duration_secs, args.rate, args.max_jobs);
        Ok(Self {
            uploads,
            rate: args.rate,
            duration: Duration::from_secs(args.duration_secs),
            drain: Duration::from_secs(args.drain_secs),
            warmup: args.warmup_jobs.min(uploads / 2),
            img_size: args.img_size,
            fixture,
            bytes,
        })
    }

    /// When upload `index` is due, counted from the start of the run.
    fn due(&self, index: u32) -> Duration {
        Duration::from_secs_f64(f64::from(index) / self.rate)
    }

    fn file_name(&self) -> String {
        self.fixture.file_name().map_or_else(
            || "model.pt".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        )
    }
}

/// Uploads at `0, 1/rate, 2/rate, ...` before `duration`, capped at `max_jobs`.
fn planned_uploads(duration_secs: u64, rate: f64, max_jobs: u32) -> u32 {
    let uploads = (duration_secs as f64 * rate).ceil();
    (uploads.min(f64::from(max_jobs)) as u32).max(1)
}

/// Options of upload `index`: a distinct `conf` each, so no job reuses another's artifact
/// (reuse is keyed by owner, source and options) and every job is a real conversion.
fn options(index: u32, uploads: u32, img_size: u32) -> String {
    let conf = f64::from(index + 1) / f64::from(uploads + 1);
    serde_json::json!({ "img_size": [img_size, img_size], "conf": conf }).to_string()
}

/// A database of its own for the run, on the same server, dropped at the end.
struct FreshDatabase {
    admin: String,
    name: String,
    url: String,
}

impl FreshDatabase {
    fn create(admin: &str) -> anyhow::Result<Self> {
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let name = format!("yolots_soak_{}_{stamp}", std::process::id());
        step(format!("soak: creating database {name}"));
        psql(admin, &format!("CREATE DATABASE {name}"))?;
        let url = with_database(admin, &name)?;
        Ok(Self {
            admin: admin.to_owned(),
            name,
            url,
        })
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        step(format!("soak: dropping database {}", self.name));
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(error) = psql(&self.admin, &sql) {
            eprintln!("xtask: could not drop {}: {error:#}", self.name);
        }
    }
}

fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    process::output(
        Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
            .stdin(Stdio::null()),
    )
    .context("psql (the PostgreSQL client) is needed to create the soak database")?;
    Ok(())
}

/// Replaces the database name in a PostgreSQL URL, keeping any query.
fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let Some(slash) = base.rfind('/').filter(|&i| i > "postgres://".len()) else {
        bail!("the database URL has no database part: {url}");
    };
    Ok(match query {
        Some(query) => format!("{}/{name}?{query}", &base[..slash]),
        None => format!("{}/{name}", &base[..slash]),
    })
}

/// One process this run started. Only its own PID is ever signalled, and only before it
/// is reaped, so the PID cannot belong to anyone else.
struct Proc {
    name: String,
    log: PathBuf,
    child: Child,
}

impl Proc {
    fn spawn(name: &str, command: &mut Command, logs: &Path) -> anyhow::Result<Self> {
        let log = logs.join(format!("{name}.log"));
        let child = command
            .stdout(Stdio::null())
            .stderr(File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting the {name}"))?;
        Ok(Self {
            name: name.to_owned(),
            log,
            child,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "the {} exited with {status}; see {}",
                self.name,
                self.log.display()
            );
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after `grace`.
    fn stop(&mut self, grace: Duration) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "xtask: the {} did not stop in {grace:?}; killing it",
            self.name
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(15));
    }
}

/// The server and its workers, sharing one database and one object store; each has its
/// own data and scratch folders, as on separate machines.
struct Fleet {
    base: String,
    server: Proc,
    workers: Vec<Proc>,
    stopped: bool,
}

impl Fleet {
    fn start(
        binary: &Path,
        database_url: &str,
        folders: &Path,
        logs: &Path,
        interrupted: &AtomicBool,
    ) -> anyhow::Result<Self> {
        let storage = folders.join("storage");
        std::fs::create_dir_all(&storage)?;
        let storage = format!("file://{}", storage.display());
        let port = free_port()?;
        let base = format!("http://127.0.0.1:{port}");
        let mut server = binary_command(binary, database_url, &storage, &folders.join("server"))?;
        let bind = format!("127.0.0.1:{port}");
        server
            .args(["serve", "--workers", "0", "--bind", &bind, "--web-dir"])
            .arg(web::out_dir());
        let mut server = Proc::spawn("server", &mut server, logs)?;
        wait_healthy(&base, &mut server, interrupted)?;
        let threads = threads_per_worker();
        let mut workers = Vec::new();
        for n in 1..=WORKERS {
            let folder = folders.join(format!("worker-{n}"));
            let mut worker = binary_command(binary, database_url, &storage, &folder)?;
            // A short grace keeps the stop at the end quick; the run is over by then.
            worker
                .args(["worker", "--shutdown-grace-secs", "3"])
                .env("YOLOTS_CPU_THREADS", &threads);
            workers.push(Proc::spawn(&format!("worker-{n}"), &mut worker, logs)?);
        }
        step(format!(
            "soak: server on {base}, {WORKERS} workers (YOLOTS_CPU_THREADS={threads} each)"
        ));
        Ok(Self {
            base,
            server,
            workers,
            stopped: false,
        })
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        self.server.check_alive()?;
        self.workers.iter_mut().try_for_each(Proc::check_alive)
    }

    fn memory(&self) -> Vec<Memory> {
        std::iter::once(&self.server)
            .chain(&self.workers)
            .map(|p| Memory::of(p.pid()))
            .collect()
    }

    /// Workers first, so none is left polling a server that has gone.
    fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        step("soak: stopping the workers and the server");
        for worker in &mut self.workers {
            worker.stop(Duration::from_secs(15));
        }
        self.server.stop(Duration::from_secs(15));
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The workers stand for separate machines, so each gets its share of the cores, as the
/// README tells anyone who runs several workers on one machine to do (a worker alone
/// would give each conversion every core). `YOLOTS_CPU_THREADS` set by the user wins.
fn threads_per_worker() -> String {
    if let Ok(threads) = std::env::var("YOLOTS_CPU_THREADS") {
        return threads;
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (cores / WORKERS).max(1).to_string()
}

/// `yolots` with the run's database, the shared store and a data and scratch folder of
/// its own.
fn binary_command(
    binary: &Path,
    database_url: &str,
    storage: &str,
    folder: &Path,
) -> anyhow::Result<Command> {
    let data = folder.join("data");
    let scratch = folder.join("tmp");
    std::fs::create_dir_all(&data)?;
    std::fs::create_dir_all(&scratch)?;
    let mut command = Command::new(binary);
    command
        .env("DATABASE_URL", database_url)
        .env("YOLOTS_STORAGE", storage)
        .env("YOLOTS_DATA_DIR", &data)
        .env("TMPDIR", &scratch)
        .env("RUST_LOG", "warn")
        .current_dir(folder);
    Ok(command)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_healthy(base: &str, server: &mut Proc, interrupted: &AtomicBool) -> anyhow::Result<()> {
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        check_interrupt(interrupted)?;
        server.check_alive()?;
        let health = client.get(format!("{base}/api/v1/health")).send();
        if health.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("the server did not become healthy within 60 s")
}

fn create_token(binary: &Path, database_url: &str) -> anyhow::Result<String> {
    let token = process::output(
        Command::new(binary)
            .args(["token", "create", "--name", "soak"])
            .env("DATABASE_URL", database_url)
            .env("RUST_LOG", "warn"),
    )?;
    Ok(token.trim().to_owned())
}

/// The REST API with the run's token.
struct Api {
    base: String,
    token: String,
    client: reqwest::blocking::Client,
}

impl Api {
    fn new(base: &str, token: &str) -> anyhow::Result<Self> {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?;
        Ok(Self {
            base: format!("{base}/api/v1"),
            token: token.to_owned(),
            client,
        })
    }

    /// Posts one job: its id, or what went wrong (status and problem code, or the
    /// transport error).
    fn upload(&self, plan: &Plan, index: u32) -> Result<String, String> {
        let file = Part::bytes(plan.bytes.clone()).file_name(plan.file_name());
        // Options first: bad options are refused before the file is read.
        let form = Form::new()
            .text("options", options(index, plan.uploads, plan.img_size))
            .part("file", file);
        let response = self
            .client
            .post(format!("{}/jobs", self.base))
            .bearer_auth(&self.token)
            .multipart(form)
            .send()
            .map_err(|e| format!("upload failed: {e}"))?;
        let status = response.status().as_u16();
        let body: Value = response.json().unwrap_or(Value::Null);
        match body["id"].as_str() {
            Some(id) if status == 201 => Ok(id.to_owned()),
            _ => Err(format!(
                "upload {status} {}",
                body["code"].as_str().unwrap_or("(no code)")
            )),
        }
    }

    /// Every job of the run's owner (the database is fresh, so these are the run's).
    fn jobs(&self) -> anyhow::Result<Vec<Value>> {
        let mut jobs = Vec::new();
        for page in 1.. {
            let body: Value = self
                .client
                .get(format!("{}/jobs?page={page}&per_page=100", self.base))
                .bearer_auth(&self.token)
                .send()
                .and_then(reqwest::blocking::Response::error_for_status)
                .context("listing the jobs")?
                .json()?;
            let batch = body["jobs"].as_array().cloned().unwrap_or_default();
            let total = body["total"].as_u64().unwrap_or(0);
            let done = batch.is_empty();
            jobs.extend(batch);
            if done || jobs.len() as u64 >= total {
                break;
            }
        }
        Ok(jobs)
    }
}

/// What the run saw of one job (times as the server wrote them, one clock for all).
#[derive(Debug, Clone, Default, PartialEq)]
struct JobState {
    status: String,
    error: Option<String>,
    reused: bool,
    created: Option<Time>,
    started: Option<Time>,
    finished: Option<Time>,
}

type Time = DateTime<FixedOffset>;

impl JobState {
    fn queued() -> Self {
        Self {
            status: "queued".to_owned(),
            ..Self::default()
        }
    }

    fn from_json(job: &Value) -> Self {
        let time = |field: &str| {
            job[field]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        };
        Self {
            status: job["status"].as_str().unwrap_or("unknown").to_owned(),
            error: job["error"]["code"].as_str().map(str::to_owned),
            reused: !job["reused_from"].is_null(),
            created: time("created_at"),
            started: time("started_at"),
            finished: time("finished_at"),
        }
    }

    fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "succeeded" | "failed" | "cancelled")
    }

    /// Upload accepted to succeeded.
    fn latency(&self) -> Option<Duration> {
        between(self.created, self.finished)
    }

    /// Upload accepted to the (last) attempt's start: time spent in the queue.
    fn wait(&self) -> Option<Duration> {
        between(self.created, self.started)
    }

    /// The last attempt's start to its end.
    fn conversion(&self) -> Option<Duration> {
        between(self.started, self.finished)
    }
}

fn between(from: Option<Time>, to: Option<Time>) -> Option<Duration> {
    from.zip(to)
        .and_then(|(from, to)| (to - from).to_std().ok())
}

/// The run's state: uploads sent, refusals, failed polls, jobs as last seen.
#[derive(Default)]
struct Tracker {
    sent: u32,
    refused: Vec<String>,
    failed_polls: u32,
    /// The most jobs seen queued or running at once: stays small when the rate is
    /// sustainable.
    max_backlog: u32,
    jobs: HashMap<String, JobState>,
}

impl Tracker {
    /// A failed poll counts as an error but does not end the run: the next one may do.
    fn refresh(&mut self, api: &Api) {
        match api.jobs() {
            Ok(jobs) => {
                for job in jobs {
                    if let Some(id) = job["id"].as_str() {
                        self.jobs.insert(id.to_owned(), JobState::from_json(&job));
                    }
                }
                let backlog = self.jobs.values().filter(|j| !j.is_final()).count() as u32;
                self.max_backlog = self.max_backlog.max(backlog);
            }
            Err(error) => {
                eprintln!("xtask: soak: {error:#}");
                self.failed_polls += 1;
            }
        }
    }

    fn finished(&self) -> u32 {
        self.jobs.values().filter(|j| j.is_final()).count() as u32
    }

    fn all_finished(&self) -> bool {
        self.jobs.values().all(JobState::is_final)
    }
}

/// Uploads on schedule, polls the jobs, takes the memory baseline after the warm-up and
/// the final sample after the drain.
fn drive(
    plan: &Plan,
    api: &Api,
    fleet: &mut Fleet,
    interrupted: &AtomicBool,
) -> anyhow::Result<Figures> {
    step(format!(
        "soak: {} uploads of {} at {}/s, then up to {} s to finish",
        plan.uploads,
        plan.file_name(),
        plan.rate,
        plan.drain.as_secs()
    ));
    let started = Instant::now();
    let mut tracker = Tracker::default();
    let mut baseline = None;
    let mut next_poll = started;
    let drained = loop {
        check_interrupt(interrupted)?;
        fleet.check_alive()?;
        let uploading = tracker.sent < plan.uploads;
        if uploading && started.elapsed() >= plan.due(tracker.sent) {
            upload(plan, api, &mut tracker);
            continue;
        }
        if Instant::now() >= next_poll {
            next_poll = Instant::now() + POLL;
            tracker.refresh(api);
            if baseline.is_none() && tracker.finished() >= plan.warmup {
                step(format!(
                    "soak: {} jobs finished; memory baseline",
                    plan.warmup
                ));
                baseline = Some(fleet.memory());
            }
            if !uploading && tracker.all_finished() {
                break true;
            }
            if !uploading && started.elapsed() > plan.duration + plan.drain {
                break false;
            }
        }
        let wake = if uploading {
            next_poll.min(started + plan.due(tracker.sent))
        } else {
            next_poll
        };
        // Short naps, so Ctrl-C and a dead process are noticed quickly.
        let nap = wake.saturating_duration_since(Instant::now());
        std::thread::sleep(nap.min(Duration::from_millis(250)));
    };
    let end = fleet.memory();
    Ok(Figures {
        baseline: baseline.unwrap_or_else(|| end.clone()),
        end,
        elapsed: started.elapsed(),
        drained,
        tracker,
    })
}

fn upload(plan: &Plan, api: &Api, tracker: &mut Tracker) {
    let index = tracker.sent;
    tracker.sent += 1;
    match api.upload(plan, index) {
        Ok(id) => {
            // Known at once, so a job that finishes between two polls is still awaited.
            tracker.jobs.entry(id).or_insert_with(JobState::queued);
        }
        Err(refusal) => {
            eprintln!("xtask: soak: upload {index} refused: {refusal}");
            tracker.refused.push(refusal);
        }
    }
}

/// Resident memory of one process, in kB (0 when it cannot be read).
#[derive(Debug, Clone, Copy)]
struct Memory {
    rss_kb: u64,
    peak_kb: u64,
}

impl Memory {
    fn of(pid: u32) -> Self {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        Self {
            rss_kb: status_kb(&status, "VmRSS:"),
            peak_kb: status_kb(&status, "VmHWM:"),
        }
    }
}

/// A `kB` field of `/proc/PID/status`.
fn status_kb(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .unwrap_or(0)
}

/// Everything the run measured.
struct Figures {
    /// Server first, then the workers.
    baseline: Vec<Memory>,
    end: Vec<Memory>,
    elapsed: Duration,
    drained: bool,
    tracker: Tracker,
}

impl Figures {
    /// Every problem by kind: refused uploads, and jobs that did not succeed (or did
    /// not convert).
    fn errors(&self) -> BTreeMap<String, u32> {
        let mut errors = BTreeMap::new();
        for refusal in &self.tracker.refused {
            *errors.entry(refusal.clone()).or_default() += 1;
        }
        if self.tracker.failed_polls > 0 {
            errors.insert("job list failed".to_owned(), self.tracker.failed_polls);
        }
        for job in self.tracker.jobs.values() {
            let kind = match job.status.as_str() {
                "succeeded" if job.reused => "job reused an artifact".to_owned(),
                "succeeded" => continue,
                "queued" | "running" => format!("job unfinished ({})", job.status),
                status => match &job.error {
                    Some(code) => format!("job {status} {code}"),
                    None => format!("job {status}"),
                },
            };
            *errors.entry(kind).or_default() += 1;
        }
        errors
    }

    /// One duration of every succeeded job, sorted.
    fn sorted(&self, of: impl Fn(&JobState) -> Option<Duration>) -> Vec<Duration> {
        let mut values: Vec<Duration> = self
            .tracker
            .jobs
            .values()
            .filter(|j| j.status == "succeeded")
            .filter_map(of)
            .collect();
        values.sort();
        values
    }

    /// Succeeded jobs per minute, from the first upload accepted to the last job done.
    fn throughput(&self) -> Option<(f64, Duration)> {
        let succeeded = self
            .tracker
            .jobs
            .values()
            .filter(|j| j.status == "succeeded");
        let first = succeeded.clone().filter_map(|j| j.created).min()?;
        let last = succeeded.clone().filter_map(|j| j.finished).max()?;
        let span = (last - first).to_std().ok()?;
        let per_minute = succeeded.count() as f64 / span.as_secs_f64().max(1.0) * 60.0;
        Some((per_minute, span))
    }

    fn server_growth(&self) -> f64 {
        let server = self.baseline.first().zip(self.end.first());
        server.map_or(0.0, |(start, end)| growth(start.rss_kb, end.rss_kb))
    }

    fn print(&self, plan: &Plan) {
        let jobs = &self.tracker.jobs;
        let count = |status: &str| jobs.values().filter(|j| j.status == status).count();
        println!();
        println!(
            "soak: {} at {}x{}, {}/s for {} s, {WORKERS} workers ({:.0} s in all)",
            plan.file_name(),
            plan.img_size,
            plan.img_size,
            plan.rate,
            plan.duration.as_secs(),
            self.elapsed.as_secs_f64()
        );
        println!(
            "  uploads        {} sent, {} accepted (201)",
            self.tracker.sent,
            jobs.len()
        );
        println!(
            "  jobs           {} succeeded, {} failed, {} cancelled, {} unfinished{}",
            count("succeeded"),
            count("failed"),
            count("cancelled"),
            jobs.values().filter(|j| !j.is_final()).count(),
            if self.drained {
                ""
            } else {
                " (drain timed out)"
            }
        );
        self.print_timing();
        self.print_errors();
        self.print_memory(plan);
    }

    fn print_timing(&self) {
        let succeeded = self
            .tracker
            .jobs
            .values()
            .filter(|j| j.status == "succeeded")
            .count();
        match self.throughput() {
            Some((per_minute, span)) => println!(
                "  throughput     {per_minute:.2} jobs/min ({succeeded} succeeded in {:.0} s)",
                span.as_secs_f64()
            ),
            None => println!("  throughput     -"),
        }
        println!(
            "  latency        {} (upload accepted -> succeeded)",
            spread(&self.sorted(JobState::latency))
        );
        println!(
            "    queue wait   {} (accepted -> last attempt started)",
            spread(&self.sorted(JobState::wait))
        );
        println!(
            "    conversion   {} (last attempt)",
            spread(&self.sorted(JobState::conversion))
        );
        println!(
            "  backlog        at most {} jobs queued or running at a poll",
            self.tracker.max_backlog
        );
    }

    fn print_errors(&self) {
        let errors = self.errors();
        let total: u32 = errors.values().sum();
        println!("  errors         {total}");
        for (kind, n) in &errors {
            println!("                   {n} x {kind}");
        }
    }

    fn print_memory(&self, plan: &Plan) {
        println!(
            "  memory         {:<10} {:>10} {:>10} {:>8} {:>10}",
            "VmRSS", "warm-up", "end", "growth", "peak"
        );
        let names = std::iter::once("server".to_owned())
            .chain((1..=WORKERS).map(|n| format!("worker-{n}")));
        for ((name, start), end) in names.zip(&self.baseline).zip(&self.end) {
            println!(
                "                 {name:<10} {:>7} MB {:>7} MB {:>7.1}% {:>7} MB",
                start.rss_kb / 1024,
                end.rss_kb / 1024,
                growth(start.rss_kb, end.rss_kb) * 100.0,
                end.peak_kb / 1024
            );
        }
        println!(
            "                 (baseline after {} finished jobs; workers without their \
             conversion processes)",
            plan.warmup
        );
    }

    /// Non-zero exit on any error or when the server's memory grew past the limit.
    fn verdict(&self) -> anyhow::Result<()> {
        let errors: u32 = self.errors().values().sum();
        let growth = self.server_growth();
        if errors > 0 {
            bail!("soak failed: {errors} errors");
        }
        if growth > MAX_SERVER_GROWTH {
            bail!(
                "soak failed: server RSS grew {:.1}% after the warm-up (limit {:.0}%)",
                growth * 100.0,
                MAX_SERVER_GROWTH * 100.0
            );
        }
        step("soak passed");
        Ok(())
    }
}

/// Relative growth from `start` to `end` (0 when nothing was measured).
fn growth(start: u64, end: u64) -> f64 {
    if start == 0 {
        return 0.0;
    }
    (end as f64 - start as f64) / start as f64
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// `p50 .., p99 .., max ..` of sorted durations.
fn spread(sorted: &[Duration]) -> String {
    format!(
        "p50 {}, p99 {}, max {}",
        seconds(percentile(sorted, 0.50)),
        seconds(percentile(sorted, 0.99)),
        seconds(sorted.last().copied())
    )
}

fn seconds(value: Option<Duration>) -> String {
    value.map_or_else(|| "-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_follow_duration_rate_and_cap() {
        assert_eq!(planned_uploads(300, 0.1, 400), 30);
        assert_eq!(planned_uploads(60, 0.5, 400), 30);
        assert_eq!(planned_uploads(300, 10.0, 400), 400);
        assert_eq!(planned_uploads(5, 0.1, 400), 1);
    }

    #[test]
    fn every_upload_has_distinct_valid_options() {
        let all: Vec<String> = (0..400).map(|i| options(i, 400, 160)).collect();
        let distinct: std::collections::BTreeSet<&String> = all.iter().collect();
        assert_eq!(distinct.len(), all.len());
        for text in &all {
            let value: Value = serde_json::from_str(text).unwrap();
            let conf = value["conf"].as_f64().unwrap();
            assert!(conf > 0.0 && conf < 1.0, "{text}");
            assert_eq!(value["img_size"], serde_json::json!([160, 160]));
        }
    }

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5432/yolots", "soak").unwrap(),
            "postgres://u@127.0.0.1:5432/soak"
        );
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=disable", "soak").unwrap(),
            "postgres://u@h/soak?sslmode=disable"
        );
        assert!(with_database("postgres://u@h", "soak").is_err());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_secs).collect();
        assert_eq!(percentile(&values, 0.5), Some(Duration::from_secs(50)));
        assert_eq!(percentile(&values, 0.99), Some(Duration::from_secs(99)));
        assert_eq!(percentile(&values[..1], 0.99), Some(Duration::from_secs(1)));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn proc_status_fields() {
        let status = "Name:\tyolots\nVmHWM:\t  51200 kB\nVmRSS:\t  40960 kB\n";
        assert_eq!(status_kb(status, "VmRSS:"), 40960);
        assert_eq!(status_kb(status, "VmHWM:"), 51200);
        assert_eq!(status_kb(status, "VmSwap:"), 0);
    }

    #[test]
    fn job_latency_from_timestamps() {
        let job = serde_json::json!({
            "status": "succeeded", "error": null, "reused_from": null,
            "created_at": "2025-01-01T00:00:00.500Z",
            "started_at": "2025-01-01T00:00:02Z",
            "finished_at": "2025-01-01T00:00:09.750Z",
        });
        let state = JobState::from_json(&job);
        assert!(state.is_final());
        assert_eq!(state.latency(), Some(Duration::from_millis(9250)));
        assert_eq!(state.wait(), Some(Duration::from_millis(1500)));
        assert_eq!(state.conversion(), Some(Duration::from_millis(7750)));
    }
}
