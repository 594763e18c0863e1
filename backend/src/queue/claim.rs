//! The worker's side of the queue. A claim takes the oldest claimable job with
//! `FOR UPDATE SKIP LOCKED` and gives it a lease: a fresh token and an expiry. Every later
//! write (heartbeat, progress, finish, release) names the token and the `running` status,
//! so a worker whose lease expired (and whose job went to another worker) writes nothing:
//! a job is never completed twice.

use std::time::Duration;

use sqlx::types::Json;
use uuid::Uuid;
use yolots_protocol::report::ConversionReport;
use yolots_protocol::{DeviceClass, ErrorCode, ProgressEvent, Stage};

use super::{Queue, QueueError, insert_event, status_event};
use crate::model::{JobOptions, JobRow, JobStatus};

/// The hold a worker has on a job: its id and the token of this attempt's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub job: Uuid,
    pub token: Uuid,
}

/// What a heartbeat learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// Keep going.
    Continue,
    /// The owner asked to cancel the job: stop it.
    CancelRequested,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The artifact is stored under `artifact_key`.
    Succeeded {
        report: Box<ConversionReport>,
        artifact_key: String,
        artifact_name: String,
        artifact_size: i64,
        artifact_sha256: String,
    },
    /// The attempt failed; `retry` when another attempt may succeed.
    Failed {
        code: ErrorCode,
        message: String,
        retry: bool,
        report: Option<Box<ConversionReport>>,
    },
    /// Stopped on the owner's request.
    Cancelled,
}

fn interval(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// A job this worker holds under a lease. While held it can be kept alive
/// ([`HeldJob::heartbeat`]) and report its stages ([`HeldJob::progress`]); it ends once,
/// by [`HeldJob::finish`] or [`HeldJob::release`], which take the handle. Every write is
/// fenced by the lease, so a handle whose lease expired writes nothing.
#[derive(Debug)]
pub struct HeldJob {
    queue: Queue,
    lease: Lease,
    row: JobRow,
}

/// A [`HeldJob::finish`] or [`HeldJob::release`] that wrote nothing: the handle comes
/// back with the error, so the caller may try again while the database is unavailable.
#[derive(Debug)]
pub struct Unrecorded {
    pub job: HeldJob,
    pub error: QueueError,
}

impl Queue {
    /// Claims the oldest claimable job this worker may run.
    pub async fn claim(
        &self,
        worker: &str,
        classes: &[DeviceClass],
    ) -> Result<Option<HeldJob>, QueueError> {
        let token = Uuid::new_v4();
        let mut tx = self.pool.begin().await?;
        let row = returning_job!(
            "WITH next AS ( \
               SELECT id AS next_id FROM jobs \
               WHERE status = 'queued' AND run_after <= now() AND device_class = ANY($3) \
               ORDER BY run_after, created_at \
               LIMIT 1 FOR UPDATE SKIP LOCKED) \
             UPDATE jobs SET status = 'running', attempts = attempts + 1, \
               lease_owner = $1, lease_token = $2, \
               lease_expires_at = now() + make_interval(secs => $4), \
               started_at = now(), updated_at = now(), stage = NULL, progress = 0, \
               event_seq = event_seq + 1 \
             FROM next WHERE id = next.next_id",
            worker,
            token,
            classes as _,
            interval(self.settings.lease),
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        status_event(&mut tx, &row).await?;
        tx.commit().await?;
        let lease = Lease { job: row.id, token };
        Ok(Some(HeldJob {
            queue: self.clone(),
            lease,
            row,
        }))
    }
    /// Announces a worker (or refreshes its last-seen time).
    pub async fn register_worker(
        &self,
        id: &str,
        device: &str,
        hostname: &str,
    ) -> Result<(), QueueError> {
        sqlx::query!(
            "INSERT INTO workers (id, device, hostname, pid) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET last_seen_at = now(), device = EXCLUDED.device",
            id,
            device,
            hostname,
            std::process::id() as i32,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets a worker that stops.
    pub async fn unregister_worker(&self, id: &str) -> Result<(), QueueError> {
        sqlx::query!("DELETE FROM workers WHERE id = $1", id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Devices of the workers seen within `window`.
    pub async fn live_devices(&self, window: Duration) -> Result<Vec<String>, QueueError> {
        Ok(sqlx::query_scalar!(
            r#"SELECT DISTINCT device AS "device!" FROM workers
             WHERE last_seen_at > now() - make_interval(secs => $1) ORDER BY 1"#,
            interval(window),
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

impl HeldJob {
    /// The job as it was claimed.
    pub fn row(&self) -> &JobRow {
        &self.row
    }

    /// The job's options.
    pub fn options(&self) -> &JobOptions {
        &self.row.options.0
    }

    pub fn lease(&self) -> Lease {
        self.lease
    }

    /// Extends the lease; says whether the owner asked to cancel.
    pub async fn heartbeat(&self) -> Result<Heartbeat, QueueError> {
        let lease = self.lease;
        let cancel = fenced_scalar!(
            "lease_expires_at = now() + make_interval(secs => $3)",
            r#"cancel_requested AS "cancel_requested!""#,
            lease,
            interval(self.queue.settings.lease),
        )
        .fetch_optional(&self.queue.pool)
        .await?
        .ok_or(QueueError::LeaseLost(lease.job))?;
        Ok(if cancel {
            Heartbeat::CancelRequested
        } else {
            Heartbeat::Continue
        })
    }

    /// Records a stage of the conversion.
    pub async fn progress(&self, event: &ProgressEvent) -> Result<(), QueueError> {
        let lease = self.lease;
        let mut tx = self.queue.pool.begin().await?;
        let seq = fenced_scalar!(
            "stage = $3, progress = $4, updated_at = now(), event_seq = event_seq + 1",
            r#"event_seq AS "event_seq!""#,
            lease,
            event.stage as _,
            event.fraction.clamp(0.0, 1.0) as f32,
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(QueueError::LeaseLost(lease.job))?;
        let data = serde_json::to_value(event).unwrap_or_default();
        insert_event(&mut tx, lease.job, seq, "progress", &data).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends the attempt with its outcome. When nothing was written (the lease is gone:
    /// [`QueueError::LeaseLost`]; or the database failed) the handle comes back.
    pub async fn finish(self, outcome: &Outcome) -> Result<JobRow, Unrecorded> {
        self.end(Ending::Outcome(outcome)).await
    }

    /// Hands the job back to the queue without counting the attempt (graceful shutdown).
    /// When nothing was written the handle comes back, as from [`HeldJob::finish`].
    pub async fn release(self) -> Result<JobRow, Unrecorded> {
        self.end(Ending::HandBack).await
    }

    async fn end(self, ending: Ending<'_>) -> Result<JobRow, Unrecorded> {
        match self.write_end(ending).await {
            Ok(row) => Ok(row),
            Err(error) => Err(Unrecorded { job: self, error }),
        }
    }

    /// The one fenced statement that ends the attempt, and its `status` event.
    async fn write_end(&self, ending: Ending<'_>) -> Result<JobRow, QueueError> {
        let (lease, settings) = (self.lease, &self.queue.settings);
        let mut tx = self.queue.pool.begin().await?;
        let row =
            match ending {
                Ending::Outcome(Outcome::Succeeded {
                    report,
                    artifact_key,
                    artifact_name,
                    artifact_size,
                    artifact_sha256,
                }) => {
                    fenced_update!(
                        clear_lease,
                        "status = 'succeeded', stage = $3, progress = 1, report = $4, \
                 artifact_key = $5, artifact_name = $6, artifact_size = $7, \
                 artifact_sha256 = $8, error_code = NULL, error_message = NULL, \
                 finished_at = now(), updated_at = now(), event_seq = event_seq + 1",
                        lease,
                        Stage::Done as _,
                        Json(report) as _,
                        artifact_key,
                        artifact_name,
                        *artifact_size,
                        artifact_sha256,
                    )
                    .fetch_optional(&mut *tx)
                    .await?
                }
                Ending::Outcome(Outcome::Failed {
                    code,
                    message,
                    retry,
                    report,
                }) => fenced_update!(
                    clear_lease,
                    "status = (CASE WHEN $5 AND attempts < max_attempts AND NOT cancel_requested \
                           THEN 'queued' ELSE 'failed' END)::job_status, \
                 run_after = now() + make_interval(secs => \
                             $6 * power(2, GREATEST(attempts - 1, 0))), \
                 finished_at = CASE WHEN $5 AND attempts < max_attempts \
                               AND NOT cancel_requested THEN NULL ELSE now() END, \
                 error_code = $3, error_message = $4, report = $7, \
                 updated_at = now(), event_seq = event_seq + 1",
                    lease,
                    *code as _,
                    message,
                    *retry,
                    interval(settings.retry_backoff),
                    report.as_ref().map(Json) as _,
                )
                .fetch_optional(&mut *tx)
                .await?,
                Ending::Outcome(Outcome::Cancelled) => {
                    fenced_update!(
                        clear_lease,
                        "status = 'cancelled', error_code = $3, \
                 error_message = 'cancelled by its owner while it ran', \
                 finished_at = now(), updated_at = now(), event_seq = event_seq + 1",
                        lease,
                        ErrorCode::Cancelled as _,
                    )
                    .fetch_optional(&mut *tx)
                    .await?
                }
                Ending::HandBack => {
                    fenced_update!(
                        clear_lease,
                        "status = 'queued', attempts = GREATEST(attempts - 1, 0), \
                 run_after = now(), stage = NULL, progress = 0, started_at = NULL, \
                 updated_at = now(), event_seq = event_seq + 1",
                        lease,
                    )
                    .fetch_optional(&mut *tx)
                    .await?
                }
            };
        let row = row.ok_or(QueueError::LeaseLost(lease.job))?;
        status_event(&mut tx, &row).await?;
        tx.commit().await?;
        Ok(row)
    }
}

/// How a held job ends: with the attempt's outcome, or handed back uncounted.
enum Ending<'a> {
    Outcome(&'a Outcome),
    HandBack,
}
