//! Expired leases: a worker that stopped heartbeating (killed, partitioned from the
//! database, frozen) loses its job. The job goes back to the queue at once, or to `failed`
//! when it had its last attempt, or to `cancelled` when its owner asked for that. Every
//! server and worker process runs a reaper; `SKIP LOCKED` keeps them out of each other's way.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use sqlx::types::Json;
use yolots_protocol::report::ConversionReport;
use yolots_protocol::{DeviceClass, ErrorCode, Stage};

use super::{Queue, QueueError, status_event};
use crate::model::{JobOptions, JobRow, JobStatus};

/// The reaper's statement, with the lease-clearing assignments as `$clear`.
macro_rules! reap_statement {
    ($clear:literal,) => {
        returning_job!(
            "WITH expired AS ( \
               SELECT id AS expired_id FROM jobs \
               WHERE status = 'running' AND lease_expires_at < now() \
               ORDER BY lease_expires_at LIMIT 100 FOR UPDATE SKIP LOCKED) \
             UPDATE jobs SET \
               status = (CASE WHEN cancel_requested THEN 'cancelled' \
                         WHEN attempts >= max_attempts THEN 'failed' \
                         ELSE 'queued' END)::job_status, \
               error_code = CASE WHEN cancel_requested THEN $1 ELSE $2 END, \
               error_message = CASE WHEN cancel_requested \
                   THEN 'cancelled by its owner; its worker stopped responding' \
                   ELSE 'the worker running attempt ' || attempts || \
                        ' stopped renewing its lease (it crashed or lost the database)' END, \
               finished_at = CASE WHEN cancel_requested OR attempts >= max_attempts \
                             THEN now() ELSE NULL END, \
               run_after = now(), "
                + $clear
                + ", updated_at = now(), event_seq = event_seq + 1 \
             FROM expired WHERE id = expired.expired_id",
            ErrorCode::Cancelled as _,
            ErrorCode::LeaseExpired as _,
        )
    };
}

impl Queue {
    /// Requeues (or fails) the jobs whose lease expired; returns them.
    pub async fn reap_expired(&self) -> Result<Vec<JobRow>, QueueError> {
        let mut tx = self.pool.begin().await?;
        let rows = with_lease_clear!(reap_statement!())
            .fetch_all(&mut *tx)
            .await?;
        for row in &rows {
            status_event(&mut tx, row).await?;
        }
        tx.commit().await?;
        Ok(rows)
    }
}

/// Runs the reaper every `every` until `stop`.
pub async fn run(queue: Queue, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        match queue.reap_expired().await {
            Ok(rows) => {
                for row in rows {
                    tracing::warn!(job = %row.id, status = row.status.as_str(),
                        attempts = row.attempts, "lease expired");
                }
            }
            Err(error) if error.is_unavailable() => {
                tracing::debug!(%error, "reaper: database unavailable");
            }
            Err(error) => tracing::warn!(%error, "reaper failed"),
        }
    }
}
