//! The worker's side of the queue. A claim takes the oldest claimable job with
//! `FOR UPDATE SKIP LOCKED` and gives it a lease: a fresh token and an expiry. Every later
//! write (heartbeat, progress, finish, release) names the token and the `running` status,
//! so a worker whose lease expired (and whose job went to another worker) writes nothing:
//! a job is never completed twice.

use std::time::Duration;

use uuid::Uuid;
use yolots_protocol::ProgressEvent;

use super::{Queue, QueueError, insert_event, status_event};
use crate::model::JobRow;
use yolots_protocol::ErrorCode;

/// The hold a worker has on a job.
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
        report: serde_json::Value,
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
        report: Option<serde_json::Value>,
    },
    /// Stopped on the owner's request.
    Cancelled,
}

/// Which jobs a worker on `device` may take.
pub fn device_classes(cuda: bool) -> Vec<String> {
    let mut classes = vec!["any".to_owned(), "cpu".to_owned()];
    if cuda {
        classes.push("cuda".to_owned());
    }
    classes
}

fn interval(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Queue {
    /// Claims the oldest claimable job this worker may run.
    pub async fn claim(
        &self,
        worker: &str,
        classes: &[String],
    ) -> Result<Option<(JobRow, Lease)>, QueueError> {
        let token = Uuid::new_v4();
        let mut tx = self.pool.begin().await?;
        let row: Option<JobRow> = sqlx::query_as(
            "WITH next AS ( \
               SELECT id FROM jobs \
               WHERE status = 'queued' AND run_after <= now() AND device_class = ANY($3) \
               ORDER BY run_after, created_at \
               LIMIT 1 FOR UPDATE SKIP LOCKED) \
             UPDATE jobs j SET status = 'running', attempts = j.attempts + 1, \
               lease_owner = $1, lease_token = $2, \
               lease_expires_at = now() + make_interval(secs => $4), \
               started_at = now(), updated_at = now(), stage = NULL, progress = 0, \
               event_seq = j.event_seq + 1 \
             FROM next WHERE j.id = next.id RETURNING j.*",
        )
        .bind(worker)
        .bind(token)
        .bind(classes)
        .bind(interval(self.settings.lease))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        status_event(&mut tx, &row).await?;
        tx.commit().await?;
        let lease = Lease { job: row.id, token };
        Ok(Some((row, lease)))
    }

    /// Extends the lease; says whether the owner asked to cancel.
    pub async fn heartbeat(&self, lease: Lease) -> Result<Heartbeat, QueueError> {
        let cancel: Option<bool> = sqlx::query_scalar(concat!(
            "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $3) ",
            lease_fence!(),
            "RETURNING cancel_requested"
        ))
        .bind(lease.job)
        .bind(lease.token)
        .bind(interval(self.settings.lease))
        .fetch_optional(&self.pool)
        .await?;
        match cancel {
            None => Err(QueueError::LeaseLost(lease.job)),
            Some(true) => Ok(Heartbeat::CancelRequested),
            Some(false) => Ok(Heartbeat::Continue),
        }
    }

    /// Records a stage of the conversion.
    pub async fn progress(&self, lease: Lease, event: &ProgressEvent) -> Result<(), QueueError> {
        let mut tx = self.pool.begin().await?;
        let seq: Option<i64> = sqlx::query_scalar(concat!(
            "UPDATE jobs SET stage = $3, progress = $4, updated_at = now(), \
             event_seq = event_seq + 1 ",
            lease_fence!(),
            " RETURNING event_seq"
        ))
        .bind(lease.job)
        .bind(lease.token)
        .bind(event.stage.as_str())
        .bind(event.fraction.clamp(0.0, 1.0) as f32)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(seq) = seq else {
            return Err(QueueError::LeaseLost(lease.job));
        };
        let data = serde_json::to_value(event).unwrap_or_default();
        insert_event(&mut tx, lease.job, seq, "progress", &data).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends the attempt. Fails with [`QueueError::LeaseLost`] when the lease is gone, in
    /// which case nothing was written.
    pub async fn finish(&self, lease: Lease, outcome: &Outcome) -> Result<JobRow, QueueError> {
        let mut tx = self.pool.begin().await?;
        let row: Option<JobRow> = match outcome {
            Outcome::Succeeded {
                report,
                artifact_key,
                artifact_name,
                artifact_size,
                artifact_sha256,
            } => {
                sqlx::query_as(concat!(
                    "UPDATE jobs SET status = 'succeeded', stage = 'done', progress = 1, \
                     report = $3, artifact_key = $4, artifact_name = $5, artifact_size = $6, \
                     artifact_sha256 = $7, error_code = NULL, error_message = NULL, ",
                    lease_clear!(),
                    ", \
                     finished_at = now(), updated_at = now(), event_seq = event_seq + 1 ",
                    lease_fence!(),
                    " RETURNING *"
                ))
                .bind(lease.job)
                .bind(lease.token)
                .bind(report)
                .bind(artifact_key)
                .bind(artifact_name)
                .bind(artifact_size)
                .bind(artifact_sha256)
                .fetch_optional(&mut *tx)
                .await?
            }
            Outcome::Failed {
                code,
                message,
                retry,
                report,
            } => {
                sqlx::query_as(concat!(
                    "UPDATE jobs SET \
                       status = (CASE WHEN $5 AND attempts < max_attempts AND NOT cancel_requested \
                                 THEN 'queued' ELSE 'failed' END)::job_status, \
                       run_after = now() + make_interval(secs => \
                                   $6 * power(2, GREATEST(attempts - 1, 0))), \
                       finished_at = CASE WHEN $5 AND attempts < max_attempts \
                                     AND NOT cancel_requested THEN NULL ELSE now() END, \
                       error_code = $3, error_message = $4, report = $7, ",
                    lease_clear!(),
                    ", \
                       updated_at = now(), event_seq = event_seq + 1 ",
                    lease_fence!(),
                    " RETURNING *"
                ))
                .bind(lease.job)
                .bind(lease.token)
                .bind(code.as_str())
                .bind(message)
                .bind(retry)
                .bind(interval(self.settings.retry_backoff))
                .bind(report)
                .fetch_optional(&mut *tx)
                .await?
            }
            Outcome::Cancelled => {
                sqlx::query_as(concat!(
                    "UPDATE jobs SET status = 'cancelled', error_code = $3, \
                     error_message = 'cancelled by its owner while it ran', ",
                    lease_clear!(),
                    ", \
                     finished_at = now(), updated_at = now(), event_seq = event_seq + 1 ",
                    lease_fence!(),
                    " RETURNING *"
                ))
                .bind(lease.job)
                .bind(lease.token)
                .bind(ErrorCode::Cancelled.as_str())
                .fetch_optional(&mut *tx)
                .await?
            }
        };
        let Some(row) = row else {
            return Err(QueueError::LeaseLost(lease.job));
        };
        status_event(&mut tx, &row).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Hands a job back to the queue without counting the attempt (graceful shutdown).
    pub async fn release(&self, lease: Lease) -> Result<JobRow, QueueError> {
        let mut tx = self.pool.begin().await?;
        let row: Option<JobRow> = sqlx::query_as(concat!(
            "UPDATE jobs SET status = 'queued', attempts = GREATEST(attempts - 1, 0), \
             run_after = now(), stage = NULL, progress = 0, started_at = NULL, ",
            lease_clear!(),
            ", \
             updated_at = now(), event_seq = event_seq + 1 ",
            lease_fence!(),
            " RETURNING *"
        ))
        .bind(lease.job)
        .bind(lease.token)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(QueueError::LeaseLost(lease.job));
        };
        status_event(&mut tx, &row).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Announces a worker (or refreshes its last-seen time).
    pub async fn register_worker(
        &self,
        id: &str,
        device: &str,
        hostname: &str,
    ) -> Result<(), QueueError> {
        sqlx::query(
            "INSERT INTO workers (id, device, hostname, pid) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET last_seen_at = now(), device = EXCLUDED.device",
        )
        .bind(id)
        .bind(device)
        .bind(hostname)
        .bind(std::process::id() as i32)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets a worker that stops.
    pub async fn unregister_worker(&self, id: &str) -> Result<(), QueueError> {
        sqlx::query("DELETE FROM workers WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Devices of the workers seen within `window`.
    pub async fn live_devices(&self, window: Duration) -> Result<Vec<String>, QueueError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT device FROM workers \
             WHERE last_seen_at > now() - make_interval(secs => $1) ORDER BY device",
        )
        .bind(interval(window))
        .fetch_all(&self.pool)
        .await?)
    }
}
