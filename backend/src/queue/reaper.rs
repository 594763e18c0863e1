//! Expired leases: a worker that stopped heartbeating (killed, partitioned from the
//! database, frozen) loses its job. The job goes back to the queue at once, or to `failed`
//! when it had its last attempt, or to `cancelled` when its owner asked for that. Every
//! server and worker process runs a reaper; `SKIP LOCKED` keeps them out of each other's way.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Queue, QueueError, status_event};
use crate::model::JobRow;
use yolots_protocol::ErrorCode;

impl Queue {
    /// Requeues (or fails) the jobs whose lease expired; returns them.
    pub async fn reap_expired(&self) -> Result<Vec<JobRow>, QueueError> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<JobRow> = sqlx::query_as(concat!(
            "WITH expired AS ( \
               SELECT id FROM jobs WHERE status = 'running' AND lease_expires_at < now() \
               ORDER BY lease_expires_at LIMIT 100 FOR UPDATE SKIP LOCKED) \
             UPDATE jobs j SET \
               status = (CASE WHEN j.cancel_requested THEN 'cancelled' \
                         WHEN j.attempts >= j.max_attempts THEN 'failed' \
                         ELSE 'queued' END)::job_status, \
               error_code = CASE WHEN j.cancel_requested THEN $1 ELSE $2 END, \
               error_message = CASE WHEN j.cancel_requested \
                   THEN 'cancelled by its owner; its worker stopped responding' \
                   ELSE 'the worker running attempt ' || j.attempts || \
                        ' stopped renewing its lease (it crashed or lost the database)' END, \
               finished_at = CASE WHEN j.cancel_requested OR j.attempts >= j.max_attempts \
                             THEN now() ELSE NULL END, \
               run_after = now(), ",
            lease_clear!(),
            ", updated_at = now(), event_seq = j.event_seq + 1 \
             FROM expired WHERE j.id = expired.id RETURNING j.*"
        ))
        .bind(ErrorCode::Cancelled.as_str())
        .bind(ErrorCode::LeaseExpired.as_str())
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
