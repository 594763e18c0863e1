//! The job queue: the `jobs` table is the queue and `job_events` its log.
//!
//! - this module: what the API does to jobs (enqueue, read, list, cancel, retry, delete)
//!   and the event log every change writes to;
//! - [`claim`]: what a worker does (claim with `FOR UPDATE SKIP LOCKED`, heartbeat,
//!   progress, finish, release), every write fenced by the lease token;
//! - [`reaper`]: expired leases back to the queue (or to `failed` after the last attempt);
//! - [`notify`]: `LISTEN/NOTIFY` fan-out that wakes idle workers and live event streams.
//!
//! Every status change bumps the job's `event_seq` and appends a `status` event holding the
//! job as the API shows it, in the same transaction, so the log and the row never disagree.

use std::time::Duration;

use sqlx::types::Json;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;
use yolots_protocol::report::ConversionReport;
use yolots_protocol::{DeviceClass, ErrorCode, Stage};

use crate::model::{JobOptions, JobRow, JobStatus, JobView};

/// Every column of `jobs` as [`JobRow`] reads it, typed (`status`, `options`, `stage`,
/// `error_code`, `report`) and with its nullability spelled out, handed as one string
/// literal to the macro `$then` before its other arguments: `query_as!` sees only
/// literals, so the list is written once here and spliced in at compile time.
macro_rules! with_job_columns {
    ($then:ident!($($args:tt)*)) => {
        $then!(
            r#"id AS "id!", owner_id AS "owner_id!", status AS "status!: JobStatus",
            options AS "options!: Json<JobOptions>", options_key AS "options_key!",
            device_class AS "device_class!: DeviceClass", source_name AS "source_name!",
            source_size AS "source_size!", source_sha256 AS "source_sha256!",
            source_key AS "source_key!", stage AS "stage?: Stage", progress AS "progress!",
            attempts AS "attempts!", max_attempts AS "max_attempts!", run_after AS "run_after!",
            lease_owner AS "lease_owner?", lease_token AS "lease_token?",
            lease_expires_at AS "lease_expires_at?", cancel_requested AS "cancel_requested!",
            error_code AS "error_code?: ErrorCode", error_message AS "error_message?",
            report AS "report?: Json<ConversionReport>", artifact_key AS "artifact_key?",
            artifact_name AS "artifact_name?", artifact_size AS "artifact_size?",
            artifact_sha256 AS "artifact_sha256?", reused_from AS "reused_from?",
            event_seq AS "event_seq!", created_at AS "created_at!", updated_at AS "updated_at!",
            started_at AS "started_at?", finished_at AS "finished_at?""#,
            $($args)*
        )
    };
}

/// `query_as!(JobRow, ...)` of a statement (string literals joined by `+`) that ends
/// `RETURNING` every column. The arguments are forwarded as written (`value as _` included).
macro_rules! returning_job {
    ($sql:literal $(+ $more:literal)* $(, $($args:tt)*)?) => {
        with_job_columns!(returning_job_with!($sql $(+ $more)* $(, $($args)*)?))
    };
}

macro_rules! returning_job_with {
    ($columns:literal, $sql:literal $(+ $more:literal)* $(, $($args:tt)*)?) => {
        sqlx::query_as!(JobRow, $sql $(+ $more)* + " RETURNING " + $columns $(, $($args)*)?)
    };
}

/// Gives the lease up (the job is finished, handed back or reaped): the assignments,
/// handed as a string literal to the macro `$then` before its other arguments.
macro_rules! with_lease_clear {
    ($then:ident!($($args:tt)*)) => {
        $then!("lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL", $($args)*)
    };
}

/// `query_as!(JobRow, "SELECT <every column> FROM jobs " + $rest, ...)`.
macro_rules! select_jobs {
    ($rest:literal $(, $($args:tt)*)?) => {
        with_job_columns!(select_jobs_with!($rest $(, $($args)*)?))
    };
}

macro_rules! select_jobs_with {
    ($columns:literal, $rest:literal $(, $($args:tt)*)?) => {
        sqlx::query_as!(JobRow, "SELECT " + $columns + " FROM jobs " + $rest $(, $($args)*)?)
    };
}

/// A statement of the lease holder: `UPDATE jobs SET $set` fenced by the lease `$lease`
/// (its job, its token, still running: `$1` and `$2`), `RETURNING` every column. A
/// statement whose fence no longer holds changes nothing, so a worker that lost its lease
/// can never overwrite the job's new run. With `clear_lease` first, it also gives the
/// lease up.
macro_rules! fenced_update {
    (clear_lease, $set:literal, $lease:ident $(, $($args:tt)*)?) => {
        with_lease_clear!(fenced_update!(cleared, $set, $lease $(, $($args)*)?))
    };
    ($clear:literal, cleared, $set:literal, $lease:ident $(, $($args:tt)*)?) => {
        with_job_columns!(fenced_update_with!($clear + ", " + $set, $lease $(, $($args)*)?))
    };
    ($set:literal, $lease:ident $(, $($args:tt)*)?) => {
        with_job_columns!(fenced_update_with!($set, $lease $(, $($args)*)?))
    };
}

macro_rules! fenced_update_with {
    ($columns:literal, $set:literal $(+ $more:literal)*, $lease:ident $(, $($args:tt)*)?) => {
        fenced_statement!(query_as(JobRow,), $set $(+ $more)*, $columns, $lease $(, $($args)*)?)
    };
}

/// The same fenced `UPDATE`, returning one value (`$returning`) instead of the row: the
/// writes that repeat while a conversion runs (heartbeats, progress) read back only what
/// they need.
macro_rules! fenced_scalar {
    ($set:literal, $returning:literal, $lease:ident $(, $($args:tt)*)?) => {
        fenced_statement!(query_scalar(), $set, $returning, $lease $(, $($args)*)?)
    };
}

/// The fence itself, written once: `sqlx::$query!` of `UPDATE jobs SET $set WHERE <fence>
/// RETURNING $returning`, with the lease's job and token as `$1` and `$2`.
macro_rules! fenced_statement {
    ($query:ident($($lead:tt)*), $set:literal $(+ $more:literal)*, $returning:literal,
     $lease:ident $(, $($args:tt)*)?) => {
        sqlx::$query!(
            $($lead)*
            "UPDATE jobs SET " + $set $(+ $more)*
                + " WHERE id = $1 AND lease_token = $2 AND status = 'running' RETURNING "
                + $returning,
            $lease.job,
            $lease.token
            $(, $($args)*)?
        )
    };
}

pub mod claim;
pub mod notify;
pub mod reaper;

/// A queue failure.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The lease was lost (it expired and the job went back to the queue, or it was
    /// cancelled and reaped): the worker must drop the job without writing anything.
    #[error("the lease on job {0} is no longer held")]
    LeaseLost(Uuid),
}

impl QueueError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, QueueError::Database(e) if crate::db::is_unavailable(e))
    }
}

/// How the queue treats jobs.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub lease: Duration,
    pub max_attempts: i32,
    pub retry_backoff: Duration,
}

impl From<&crate::config::QueueArgs> for QueueSettings {
    fn from(args: &crate::config::QueueArgs) -> Self {
        Self {
            lease: args.lease(),
            max_attempts: args.max_attempts.max(1),
            retry_backoff: args.retry_backoff(),
        }
    }
}

/// The queue over a pool.
#[derive(Debug, Clone)]
pub struct Queue {
    pub pool: PgPool,
    pub settings: QueueSettings,
}

/// A job about to be queued.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub options: JobOptions,
    pub options_key: String,
    pub device_class: DeviceClass,
    pub source_name: String,
    pub source_size: i64,
    pub source_sha256: String,
    pub source_key: String,
}

/// One entry of a job's event log.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub seq: i64,
    pub kind: String,
    pub data: serde_json::Value,
}

/// A page of jobs.
#[derive(Debug, Clone)]
pub struct Page {
    pub jobs: Vec<JobRow>,
    pub total: i64,
}

/// What a cancel request did.
#[derive(Debug, Clone)]
pub enum Cancel {
    /// The job was queued and is cancelled now.
    Cancelled(JobRow),
    /// The job runs; its worker stops it at its next heartbeat.
    Requested(JobRow),
    /// The job is over: nothing to cancel.
    Finished(JobRow),
}

impl Queue {
    pub fn new(pool: PgPool, settings: QueueSettings) -> Self {
        Self { pool, settings }
    }

    /// Queues a new job.
    pub async fn enqueue(&self, job: &NewJob) -> Result<JobRow, QueueError> {
        let mut tx = self.pool.begin().await?;
        let row = returning_job!(
            "INSERT INTO jobs (id, owner_id, status, options, options_key, device_class, \
             source_name, source_size, source_sha256, source_key, max_attempts, event_seq) \
             VALUES ($1, $2, 'queued', $3, $4, $5, $6, $7, $8, $9, $10, 1)",
            job.id,
            job.owner_id,
            Json(&job.options) as _,
            job.options_key,
            job.device_class as _,
            job.source_name,
            job.source_size,
            job.source_sha256,
            job.source_key,
            self.settings.max_attempts,
        )
        .fetch_one(&mut *tx)
        .await?;
        status_event(&mut tx, &row).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// A new job that is done at once, sharing the artifact and report of the newest
    /// succeeded job of the same owner with the same source and options; `None` when there
    /// is none. One statement: the source row is locked while it is read (`FOR KEY SHARE`),
    /// so a delete of it either waits until the new job exists (and then sees the artifact
    /// still used) or has already removed it (and the new job is not made).
    pub async fn insert_reused(&self, job: &NewJob) -> Result<Option<JobRow>, QueueError> {
        let mut tx = self.pool.begin().await?;
        let row = returning_job!(
            "WITH src AS (SELECT id, report, artifact_key, artifact_name, artifact_size, \
             artifact_sha256 FROM jobs \
             WHERE owner_id = $2 AND source_sha256 = $8 AND options_key = $4 \
             AND status = 'succeeded' AND artifact_key IS NOT NULL \
             ORDER BY finished_at DESC LIMIT 1 FOR KEY SHARE) \
             INSERT INTO jobs (id, owner_id, status, options, options_key, device_class, \
             source_name, source_size, source_sha256, source_key, max_attempts, stage, progress, \
             report, artifact_key, artifact_name, artifact_size, artifact_sha256, reused_from, \
             started_at, finished_at, event_seq) \
             SELECT $1, $2, 'succeeded', $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, \
             src.report, src.artifact_key, src.artifact_name, src.artifact_size, \
             src.artifact_sha256, src.id, now(), now(), 1 FROM src",
            job.id,
            job.owner_id,
            Json(&job.options) as _,
            job.options_key,
            job.device_class as _,
            job.source_name,
            job.source_size,
            job.source_sha256,
            job.source_key,
            self.settings.max_attempts,
            Stage::Done as _,
        )
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = &row {
            status_event(&mut tx, row).await?;
        }
        tx.commit().await?;
        Ok(row)
    }

    /// A job by id, whoever owns it.
    pub async fn get(&self, id: Uuid) -> Result<Option<JobRow>, QueueError> {
        Ok(select_jobs!("WHERE id = $1", id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Jobs newest first, of one owner (or of everyone), optionally of one status.
    pub async fn list(
        &self,
        owner: Option<Uuid>,
        status: Option<JobStatus>,
        page: i64,
        per_page: i64,
    ) -> Result<Page, QueueError> {
        let offset = (page.max(1) - 1).saturating_mul(per_page);
        let jobs = select_jobs!(
            "WHERE ($1::uuid IS NULL OR owner_id = $1) \
             AND ($2::job_status IS NULL OR status = $2) \
             ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4",
            owner,
            status as _,
            per_page,
            offset,
        )
        .fetch_all(&self.pool)
        .await?;
        let total = sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM jobs WHERE ($1::uuid IS NULL OR owner_id = $1)
             AND ($2::job_status IS NULL OR status = $2)"#,
            owner,
            status as _,
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Page { jobs, total })
    }

    /// Cancels a queued job now, or asks the worker of a running one to stop. Asking
    /// again changes nothing and logs no further event.
    pub async fn cancel(&self, id: Uuid) -> Result<Option<Cancel>, QueueError> {
        let mut tx = self.pool.begin().await?;
        let cancelled = returning_job!(
            "UPDATE jobs SET status = 'cancelled', finished_at = now(), updated_at = now(), \
             event_seq = event_seq + 1 WHERE id = $1 AND status = 'queued'",
            id,
        )
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = cancelled {
            status_event(&mut tx, &row).await?;
            tx.commit().await?;
            return Ok(Some(Cancel::Cancelled(row)));
        }
        let requested = returning_job!(
            "UPDATE jobs SET cancel_requested = TRUE, updated_at = now(), \
             event_seq = event_seq + 1 \
             WHERE id = $1 AND status = 'running' AND NOT cancel_requested",
            id,
        )
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = requested {
            status_event(&mut tx, &row).await?;
            tx.commit().await?;
            return Ok(Some(Cancel::Requested(row)));
        }
        tx.commit().await?;
        Ok(self.get(id).await?.map(|row| {
            if row.status == JobStatus::Running && row.cancel_requested {
                Cancel::Requested(row)
            } else {
                Cancel::Finished(row)
            }
        }))
    }

    /// Puts a failed or cancelled job back in the queue with fresh attempts; `None` when
    /// the job is in another state.
    pub async fn retry(&self, id: Uuid) -> Result<Option<JobRow>, QueueError> {
        let mut tx = self.pool.begin().await?;
        let row = returning_job!(
            "UPDATE jobs SET status = 'queued', attempts = 0, max_attempts = $2, \
             run_after = now(), cancel_requested = FALSE, error_code = NULL, \
             error_message = NULL, report = NULL, stage = NULL, progress = 0, \
             started_at = NULL, finished_at = NULL, updated_at = now(), \
             event_seq = event_seq + 1 \
             WHERE id = $1 AND status IN ('failed', 'cancelled')",
            id,
            self.settings.max_attempts,
        )
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = &row {
            status_event(&mut tx, row).await?;
        }
        tx.commit().await?;
        Ok(row)
    }

    /// Deletes a finished job; returns it (with the storage keys that no other job still
    /// uses, for the caller to delete) or `None` when it is not finished.
    pub async fn delete_finished(
        &self,
        id: Uuid,
    ) -> Result<Option<(JobRow, Vec<String>)>, QueueError> {
        let mut tx = self.pool.begin().await?;
        let row = returning_job!(
            "DELETE FROM jobs WHERE id = $1 AND status IN ('succeeded', 'failed', 'cancelled')",
            id,
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        let mut orphaned = vec![row.source_key.clone()];
        if let Some(key) = &row.artifact_key {
            let shared = sqlx::query_scalar!(
                r#"SELECT EXISTS (SELECT 1 FROM jobs WHERE artifact_key = $1) AS "shared!""#,
                key,
            )
            .fetch_one(&mut *tx)
            .await?;
            if !shared {
                orphaned.push(key.clone());
            }
        }
        tx.commit().await?;
        Ok(Some((row, orphaned)))
    }

    /// Events of a job after `after`, in order.
    pub async fn events_after(&self, job: Uuid, after: i64) -> Result<Vec<EventRow>, QueueError> {
        Ok(sqlx::query_as!(
            EventRow,
            "SELECT seq, kind, data FROM job_events WHERE job_id = $1 AND seq > $2 ORDER BY seq",
            job,
            after,
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Counts of jobs by status, and the jobs claimable now.
    pub async fn counts(&self) -> Result<(Vec<(JobStatus, i64)>, i64), QueueError> {
        let counts = sqlx::query!(
            r#"SELECT status AS "status!: JobStatus", count(*) AS "count!"
             FROM jobs GROUP BY status"#
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| (r.status, r.count))
        .collect();
        let depth = sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM jobs
             WHERE status = 'queued' AND run_after <= now()"#
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((counts, depth))
    }
}

/// Appends the `status` event of a row whose `event_seq` was just bumped.
pub(crate) async fn status_event(
    tx: &mut Transaction<'_, Postgres>,
    row: &JobRow,
) -> Result<(), sqlx::Error> {
    let data = serde_json::to_value(JobView::from(row)).unwrap_or_default();
    insert_event(tx, row.id, row.event_seq, "status", &data).await
}

pub(crate) async fn insert_event(
    tx: &mut Transaction<'_, Postgres>,
    job: Uuid,
    seq: i64,
    kind: &str,
    data: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO job_events (job_id, seq, kind, data) VALUES ($1, $2, $3, $4)",
        job,
        seq,
        kind,
        data,
    )
    .execute(&mut **tx)
    .await
    .map(|_| ())
}
