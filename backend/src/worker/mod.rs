//! Workers: claim a job, run its conversion in a child process, follow it (progress to the
//! database, heartbeats that extend the lease and bring cancel requests), enforce the time
//! limit, store the artifact, and end the attempt.
//!
//! The same loop runs inside `yolots serve` (`--workers N`) and in `yolots worker`. A
//! worker waits for `LISTEN/NOTIFY` wake-ups and polls as a fallback. On shutdown a worker
//! lets its conversion finish for a grace period, then kills it and hands the job back.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;
use yolots_protocol::{DeviceChoice, DeviceClass};

use crate::metrics::Metrics;
use crate::model::{JobRow, artifact_name};
use crate::queue::claim::{Heartbeat, HeldJob, Outcome, Unrecorded};
use crate::queue::notify::Hub;
use crate::queue::{Queue, QueueError};
use crate::storage::Storage;

pub mod child;

use child::{ChildLimits, ChildSpec, ConversionChild};
use yolots_protocol::ConverterLine;
use yolots_protocol::ErrorCode;
use yolots_protocol::report::ConversionReport;

/// How workers behave.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The device conversions run on (`cpu` or `cuda:N`, resolved).
    pub device: DeviceChoice,
    pub latency_runs: Option<usize>,
    pub job_timeout: Duration,
    pub shutdown_grace: Duration,
    pub heartbeat: Duration,
    pub poll: Duration,
    pub allow_test_faults: bool,
    /// libtorch threads of one conversion child (`OMP_NUM_THREADS`), or none to leave
    /// the child's environment as it is.
    pub cpu_threads: Option<usize>,
    /// The memory and CPU bounds of each conversion, and the pixels it may ask for.
    pub bounds: ConversionBounds,
}

/// How a conversion's bounds are sized: a base plus a term per megapixel of its
/// `img_size` (activations grow with the image), plus, for memory, a multiple of the
/// checkpoint's size (the weights are held several times: read, reference, fused,
/// artifact).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConversionBounds {
    /// MiB before anything is asked; `None`: no memory bound.
    pub memory_base_mb: Option<u64>,
    pub memory_mb_per_megapixel: u64,
    /// CPU seconds before anything is asked; `None`: no CPU bound.
    pub cpu_base_secs: Option<u64>,
    pub cpu_secs_per_megapixel: u64,
    /// Most pixels (height x width) a conversion may ask for.
    pub max_pixels: u64,
}

/// The memory base of a conversion when none is configured, on the CPU.
pub const DEFAULT_CONVERSION_MEMORY_MB: u64 = 1024;
/// How many times the checkpoint's size a conversion's memory bound adds.
pub const SOURCE_SIZE_FACTOR: u64 = 8;

impl ConversionBounds {
    /// The bounds of one conversion of `pixels` pixels from a checkpoint of
    /// `source_bytes` bytes.
    pub fn for_job(&self, pixels: u64, source_bytes: u64) -> ChildLimits {
        // Per megapixel (10^6 pixels), rounded up; in u128 so no setting overflows.
        let per_pixels = |per_megapixel: u64| -> u64 {
            let scaled = (u128::from(per_megapixel) * u128::from(pixels)).div_ceil(1_000_000);
            u64::try_from(scaled).unwrap_or(u64::MAX)
        };
        ChildLimits {
            memory_bytes: self.memory_base_mb.map(|base| {
                base.saturating_add(per_pixels(self.memory_mb_per_megapixel))
                    .saturating_mul(1 << 20)
                    .saturating_add(source_bytes.saturating_mul(SOURCE_SIZE_FACTOR))
            }),
            cpu_secs: self
                .cpu_base_secs
                .map(|base| base.saturating_add(per_pixels(self.cpu_secs_per_megapixel))),
        }
    }
}

impl WorkerConfig {
    /// `conversions` is how many conversions this process runs at once.
    pub fn new(
        worker: &crate::config::WorkerArgs,
        queue: &crate::config::QueueArgs,
        limits: &crate::config::LimitArgs,
        cuda_devices: usize,
        conversions: usize,
    ) -> Self {
        let device = match worker.device {
            DeviceChoice::Auto if cuda_devices > 0 => DeviceChoice::Cuda(0),
            DeviceChoice::Auto => DeviceChoice::Cpu,
            other => other,
        };
        Self {
            device,
            latency_runs: worker.latency_runs,
            job_timeout: limits.job_timeout(),
            shutdown_grace: worker.shutdown_grace(),
            heartbeat: queue.heartbeat(),
            poll: queue.poll(),
            allow_test_faults: worker.allow_test_faults(),
            bounds: ConversionBounds {
                memory_base_mb: match worker.conversion_memory_mb {
                    Some(0) => None,
                    Some(mb) => Some(mb),
                    // The CUDA driver's host mappings count against RLIMIT_DATA: on a GPU
                    // the bound is the operator's explicit choice.
                    None if matches!(device, DeviceChoice::Cuda(_)) => None,
                    None => Some(DEFAULT_CONVERSION_MEMORY_MB),
                },
                memory_mb_per_megapixel: worker.conversion_memory_mb_per_megapixel,
                cpu_base_secs: Some(worker.conversion_cpu_secs).filter(|&s| s > 0),
                cpu_secs_per_megapixel: worker.conversion_cpu_secs_per_megapixel,
                max_pixels: limits.max_pixels,
            },
            cpu_threads: cpu_threads(
                worker.cpu_threads,
                conversions,
                std::env::var_os("OMP_NUM_THREADS").is_some(),
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            ),
        }
    }
}

/// The thread count each conversion child gets: the one asked for, else an equal share of
/// the cores; none when the user set `OMP_NUM_THREADS` for the process tree.
fn cpu_threads(asked: usize, conversions: usize, omp_set: bool, cores: usize) -> Option<usize> {
    if omp_set {
        None
    } else if asked > 0 {
        Some(asked)
    } else {
        Some((cores / conversions.max(1)).max(1))
    }
}

/// What the workers of a process share.
#[derive(Debug, Clone)]
pub struct WorkerContext {
    pub queue: Queue,
    pub storage: Storage,
    pub hub: Hub,
    pub metrics: Metrics,
    pub config: WorkerConfig,
    /// The converting binary (the child runs its `convert`).
    pub exe: PathBuf,
}

/// The name of this machine.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The process's workers' common id prefix: `host:pid`.
pub fn process_id() -> String {
    format!("{}:{}", hostname(), std::process::id())
}

/// Starts `count` workers and the process's registration; returns when all have stopped
/// (after `stop`).
pub async fn run_workers(ctx: Arc<WorkerContext>, count: usize, stop: CancellationToken) {
    let id = process_id();
    let announce = {
        let ctx = ctx.clone();
        let stop = stop.clone();
        let id = id.clone();
        tokio::spawn(async move { announce(&ctx, &id, stop).await })
    };
    let mut tasks = Vec::new();
    for index in 0..count {
        let ctx = ctx.clone();
        let stop = stop.clone();
        let name = format!("{id}:{index}");
        tasks.push(tokio::spawn(
            async move { worker_loop(ctx, name, stop).await },
        ));
    }
    for task in tasks {
        if let Err(error) = task.await {
            tracing::error!(%error, "a worker task ended abnormally");
        }
    }
    let _ = announce.await;
    if let Err(error) = ctx.queue.unregister_worker(&id).await {
        tracing::debug!(%error, "could not unregister the worker");
    }
}

/// Keeps this process listed in `workers` (what `GET /api/v1/config` offers as devices).
async fn announce(ctx: &WorkerContext, id: &str, stop: CancellationToken) {
    let host = hostname();
    let device = ctx.config.device.to_string();
    loop {
        if let Err(error) = ctx.queue.register_worker(id, &device, &host).await {
            tracing::debug!(%error, "could not announce the worker");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}

async fn worker_loop(ctx: Arc<WorkerContext>, name: String, stop: CancellationToken) {
    let classes = DeviceClass::claimable(matches!(ctx.config.device, DeviceChoice::Cuda(_)));
    tracing::info!(worker = %name, device = %ctx.config.device, "worker ready");
    let mut failures = 0u32;
    while !stop.is_cancelled() {
        // Register interest before looking, so a notification between the look and the
        // wait is not lost.
        let notified = ctx.hub.queue.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match ctx.queue.claim(&name, &classes).await {
            Ok(Some(job)) => {
                failures = 0;
                run_job(&ctx, &name, job, &stop).await;
                continue;
            }
            Ok(None) => failures = 0,
            Err(error) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(worker = %name, %error, "cannot claim jobs; retrying");
                }
                let wait = Duration::from_millis(250 * u64::from(failures.min(8)));
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(wait) => continue,
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = &mut notified => {}
            () = tokio::time::sleep(ctx.config.poll) => {}
        }
    }
    tracing::info!(worker = %name, "worker stopped");
}

/// The conversion's own account of its failure (its JSON error line).
struct ChildFailure {
    code: ErrorCode,
    message: String,
    /// The converter's exit status: 2 for a refused input or option, 3 for a failed
    /// validation, 1 otherwise.
    exit_code: u8,
    /// The report, when validation failed.
    report: Option<Box<ConversionReport>>,
}

/// How an attempt ended, for the worker to record.
enum Attempt {
    /// Write this outcome.
    Ended(Outcome),
    /// Hand the job back without counting the attempt (shutdown ran out of grace).
    HandBack,
    /// Write nothing: the lease is gone and the job belongs to another attempt.
    LeaseLost,
}

/// How following the child ended.
enum Followed {
    Exited {
        result: Option<Box<ConversionReport>>,
        error: Option<ChildFailure>,
    },
    TimedOut,
    Cancelled,
    LeaseLost,
    Released,
}

async fn run_job(ctx: &WorkerContext, worker: &str, job: HeldJob, stop: &CancellationToken) {
    let started = Instant::now();
    let id = job.row().id;
    tracing::info!(worker, job = %id, attempt = job.row().attempts, "conversion started");
    let outcome = match attempt(ctx, &job, stop).await {
        Ok(Attempt::Ended(outcome)) | Err(outcome) => outcome,
        Ok(Attempt::LeaseLost) => {
            tracing::warn!(job = %id, "lease lost; dropping the attempt");
            return;
        }
        Ok(Attempt::HandBack) => {
            match record(ctx, job, HeldJob::release).await {
                Ok(_) => tracing::info!(job = %id, "handed the job back (shutdown)"),
                Err(error) => {
                    tracing::warn!(job = %id, %error, "could not hand the job back; its lease will expire")
                }
            }
            return;
        }
    };
    let label = match &outcome {
        Outcome::Succeeded { .. } => "succeeded",
        Outcome::Failed { retry: true, .. } => "retried",
        Outcome::Failed { .. } => "failed",
        Outcome::Cancelled => "cancelled",
    };
    ctx.metrics
        .conversion(label, started.elapsed().as_secs_f64());
    if let Outcome::Succeeded { artifact_key, .. } = &outcome {
        // Before the record: once the job reads succeeded, only its artifact is stored.
        match ctx
            .storage
            .delete_other_artifacts(id, &artifact_key.as_str().into())
            .await
        {
            Ok(0) => {}
            Ok(removed) => {
                tracing::info!(worker, job = %id, removed, "removed artifacts of cut-short attempts");
            }
            Err(error) => {
                tracing::warn!(worker, job = %id, %error, "could not list the job's artifacts");
            }
        }
    }
    match record(ctx, job, |job| job.finish(&outcome)).await {
        Ok(done) => tracing::info!(worker, job = %id, status = done.status.as_str(),
            seconds = started.elapsed().as_secs_f64(), "attempt ended"),
        Err(error) => {
            tracing::warn!(worker, job = %id, %error, "could not record the outcome");
            if let Outcome::Succeeded { artifact_key, .. } = &outcome {
                let _ = ctx.storage.delete(&artifact_key.as_str().into()).await;
            }
        }
    }
}

/// Ends the held job with `end` (its outcome, or handing it back), retrying while the
/// database is unavailable, for at most two leases. During shutdown the HTTP server's
/// threads stop first, and pooled connections they opened fail: a retry takes a new one.
async fn record<End, Ended>(
    ctx: &WorkerContext,
    mut job: HeldJob,
    mut end: End,
) -> Result<JobRow, QueueError>
where
    End: FnMut(HeldJob) -> Ended,
    Ended: std::future::Future<Output = Result<JobRow, Unrecorded>>,
{
    let give_up = Instant::now() + ctx.queue.settings.lease * 2;
    loop {
        match end(job).await {
            Ok(row) => return Ok(row),
            Err(Unrecorded { job: held, error })
                if error.is_unavailable() && Instant::now() < give_up =>
            {
                tracing::debug!(job = %held.row().id, %error, "could not record the attempt; retrying");
                job = held;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(Unrecorded { error, .. }) => return Err(error),
        }
    }
}

/// Runs one attempt; `Err` is a failure of the worker's own steps.
async fn attempt(
    ctx: &WorkerContext,
    job: &HeldJob,
    stop: &CancellationToken,
) -> Result<Attempt, Outcome> {
    let row = job.row();
    let internal = |message: String| Outcome::Failed {
        code: ErrorCode::InternalError,
        message,
        retry: true,
        report: None,
    };
    let options = job.options().clone();
    // A job queued by an API with a higher ceiling than this worker's.
    if let Err(refused) = options.check_pixels(ctx.config.bounds.max_pixels) {
        return Ok(Attempt::Ended(Outcome::Failed {
            code: ErrorCode::ResourceExceeded,
            message: refused.message,
            retry: false,
            report: None,
        }));
    }
    let limits = ctx
        .config
        .bounds
        .for_job(options.img_size.pixels(), row.source_size.max(0) as u64);
    let scratch = tempfile::Builder::new()
        .prefix("yolots-job-")
        .tempdir()
        .map_err(|e| internal(format!("creating a scratch folder: {e}")))?;
    let source_key = object_store::path::Path::from(row.source_key.as_str());
    let input = match ctx.storage.local_path(&source_key).filter(|p| p.is_file()) {
        Some(path) => path,
        None => {
            let path = scratch.path().join("source.pt");
            ctx.storage
                .download(&source_key, &path)
                .await
                .map_err(|e| internal(format!("fetching the upload: {e}")))?;
            path
        }
    };
    let name = artifact_name(&row.source_name, options.format, options.optimize);
    let device = match options.device {
        DeviceChoice::Cpu => DeviceChoice::Cpu,
        _ => ctx.config.device,
    };
    let spec = ChildSpec {
        exe: ctx.exe.clone(),
        input,
        source_name: row.source_name.clone(),
        output: scratch.path().join(&name),
        report: scratch.path().join("report.json"),
        test_fault: options
            .test_fault()
            .filter(|_| ctx.config.allow_test_faults),
        options,
        device,
        latency_runs: ctx.config.latency_runs,
        cpu_threads: ctx.config.cpu_threads,
        limits,
    };
    let mut child = ConversionChild::spawn(&spec)
        .await
        .map_err(|e| internal(format!("starting the conversion process: {e}")))?;
    // Progress messages name files; show the client's names, not this machine's paths.
    let rename = vec![
        (spec.input.display().to_string(), row.source_name.clone()),
        (format!("{}/", scratch.path().display()), String::new()),
    ];
    let followed = follow(ctx, &mut child, job, stop, &rename).await;
    match &followed {
        Followed::Exited { .. } => {}
        _ => child.kill().await,
    }
    let (status, stderr, allocation_failed) = child.wait().await;
    // Ran into its bounds, however it then ended: final, never retried (it would only
    // run into them again).
    if let Followed::Exited {
        result: None,
        error,
    } = &followed
    {
        let said = error
            .as_ref()
            .is_some_and(|e| crate::bounds::allocation_failed(&e.message));
        if let Some(bound) =
            child::exceeded(&limits, status.as_ref().ok(), allocation_failed || said)
        {
            tracing::info!(job = %row.id, %bound, "the conversion ran into its bounds");
            return Ok(Attempt::Ended(Outcome::Failed {
                code: ErrorCode::ResourceExceeded,
                message: format!(
                    "{bound} (img_size {}); ask for a smaller img_size",
                    spec.options.img_size
                ),
                retry: false,
                report: None,
            }));
        }
    }
    match followed {
        Followed::LeaseLost => Ok(Attempt::LeaseLost),
        Followed::Released => Ok(Attempt::HandBack),
        Followed::Cancelled => Ok(Attempt::Ended(Outcome::Cancelled)),
        Followed::TimedOut => Ok(Attempt::Ended(Outcome::Failed {
            code: ErrorCode::Timeout,
            message: format!(
                "the conversion exceeded the time limit of {:.0} s and was killed",
                ctx.config.job_timeout.as_secs_f64()
            ),
            retry: false,
            report: None,
        })),
        Followed::Exited {
            result: Some(report),
            ..
        } => store_artifact(ctx, job, &spec, &name, report)
            .await
            .map(Attempt::Ended),
        Followed::Exited {
            error:
                Some(ChildFailure {
                    code,
                    message,
                    exit_code,
                    report,
                }),
            ..
        } => {
            // 2: the input is not a supported model; 3: validation failed; an invalid
            // option is also the request's fault. Other failures may be transient.
            Ok(Attempt::Ended(Outcome::Failed {
                code,
                message,
                retry: !ConverterLine::is_final_failure(code, exit_code),
                report,
            }))
        }
        Followed::Exited { .. } => {
            let mut message = match &status {
                Ok(status) => child::describe_exit(status),
                Err(e) => format!("the conversion process could not be waited for: {e}"),
            };
            if let Some(line) = child::last_line(&stderr) {
                message.push_str(": ");
                message.push_str(&line);
            }
            Ok(Attempt::Ended(Outcome::Failed {
                code: ErrorCode::ConversionCrashed,
                message,
                retry: true,
                report: None,
            }))
        }
    }
}

/// Follows the child until it ends, the time limit passes, the job is cancelled, the lease
/// is lost, or shutdown runs out of grace.
async fn follow(
    ctx: &WorkerContext,
    child: &mut ConversionChild,
    job: &HeldJob,
    stop: &CancellationToken,
    rename: &[(String, String)],
) -> Followed {
    let deadline = tokio::time::sleep(ctx.config.job_timeout);
    tokio::pin!(deadline);
    let mut heartbeat = tokio::time::interval(ctx.config.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    let grace = tokio::time::sleep(Duration::from_secs(365 * 86_400));
    tokio::pin!(grace);
    let mut stopping = false;
    let mut result = None;
    let mut error = None;
    loop {
        tokio::select! {
            line = child.next_line() => match line {
                Some(ConverterLine::Progress(mut event)) => {
                    for (from, to) in rename {
                        event.message = event.message.replace(from.as_str(), to);
                    }
                    match job.progress(&event).await {
                    Ok(()) => {}
                    Err(QueueError::LeaseLost(_)) => return Followed::LeaseLost,
                    Err(error) => tracing::debug!(%error, "could not record progress"),
                    }
                }
                Some(ConverterLine::Result { report }) => result = Some(report),
                Some(ConverterLine::Error { code, message, exit_code, report }) => {
                    error = Some(ChildFailure { code, message, exit_code, report });
                }
                None => return Followed::Exited { result, error },
            },
            _ = heartbeat.tick() => match job.heartbeat().await {
                Ok(Heartbeat::Continue) => {}
                Ok(Heartbeat::CancelRequested) => return Followed::Cancelled,
                Err(QueueError::LeaseLost(_)) => return Followed::LeaseLost,
                Err(error) => tracing::warn!(%error, "heartbeat failed; the conversion goes on"),
            },
            () = &mut deadline => return Followed::TimedOut,
            () = stop.cancelled(), if !stopping => {
                stopping = true;
                grace.as_mut().reset(tokio::time::Instant::now() + ctx.config.shutdown_grace);
                tracing::info!("shutting down: waiting for the running conversion");
            }
            () = &mut grace, if stopping => return Followed::Released,
        }
    }
}

/// Copies the artifact into the store, checking it against the report.
async fn store_artifact(
    ctx: &WorkerContext,
    job: &HeldJob,
    spec: &ChildSpec,
    name: &str,
    report: Box<ConversionReport>,
) -> Result<Outcome, Outcome> {
    let failed = |message: String| Outcome::Failed {
        code: ErrorCode::StorageError,
        message,
        retry: true,
        report: None,
    };
    let (size, sha256) = file_digest(&spec.output)
        .await
        .map_err(|e| failed(format!("reading the artifact: {e}")))?;
    let reported = &report.artifact.sha256;
    if *reported != sha256 {
        return Err(failed(format!(
            "the artifact's SHA-256 {sha256} differs from the report's {reported}"
        )));
    }
    let key = Storage::artifact_key(job.row().id, job.lease().token, name);
    ctx.storage
        .put_file(&key, &spec.output)
        .await
        .map_err(|e| failed(format!("storing the artifact: {e}")))?;
    Ok(Outcome::Succeeded {
        report,
        artifact_key: key.to_string(),
        artifact_name: name.to_owned(),
        artifact_size: size as i64,
        artifact_sha256: sha256,
    })
}

async fn file_digest(path: &std::path::Path) -> std::io::Result<(u64, String)> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok((size, hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::{ConversionBounds, cpu_threads};
    use crate::worker::child::ChildLimits;

    #[test]
    fn bounds_grow_with_the_pixels_and_the_checkpoint() {
        let bounds = ConversionBounds {
            memory_base_mb: Some(1024),
            memory_mb_per_megapixel: 768,
            cpu_base_secs: Some(600),
            cpu_secs_per_megapixel: 120,
            max_pixels: 4096 * 4096,
        };
        // 640x640 is 0.4096 megapixels: 315 MiB and 50 s more (rounded up), plus eight
        // times a 75 MB checkpoint.
        assert_eq!(
            bounds.for_job(640 * 640, 75_000_000),
            ChildLimits {
                memory_bytes: Some((1024 + 315) * (1 << 20) + 600_000_000),
                cpu_secs: Some(650),
            }
        );
        let unbounded = ConversionBounds {
            memory_base_mb: None,
            cpu_base_secs: None,
            ..bounds
        };
        assert_eq!(
            unbounded.for_job(u64::MAX, u64::MAX),
            ChildLimits::default()
        );
        // Settings that would overflow saturate.
        let huge = ConversionBounds {
            memory_mb_per_megapixel: u64::MAX,
            ..bounds
        };
        assert_eq!(huge.for_job(u64::MAX, 0).memory_bytes, Some(u64::MAX));
    }

    #[test]
    fn conversions_share_the_cores() {
        assert_eq!(cpu_threads(0, 1, false, 16), Some(16));
        assert_eq!(cpu_threads(0, 2, false, 16), Some(8));
        assert_eq!(cpu_threads(0, 3, false, 2), Some(1));
        assert_eq!(cpu_threads(4, 2, false, 16), Some(4));
        // The user's own OMP_NUM_THREADS is left alone.
        assert_eq!(cpu_threads(4, 2, true, 16), None);
    }
}
