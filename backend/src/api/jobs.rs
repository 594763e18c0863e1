//! `/api/v1/jobs`: upload a checkpoint, list, read, cancel or delete, retry, and download
//! the report and the artifact. A job is visible to its owner (and admins) only; anyone
//! else gets 404, the same answer as for a job that does not exist.

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, Header};
use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::problem::{ApiError, Problem};
use super::upload;
use crate::auth::Caller;
use crate::model::{JobOptions, JobRow, JobStatus, JobView};
use crate::queue::{Cancel, NewJob};
use crate::server::AppState;
use yolots_protocol::ErrorCode;

/// The multipart body of `POST /api/v1/jobs`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The checkpoint (`.pt`) written by YOLOv7's training code.
    #[schema(value_type = String, format = Binary, content_media_type = "application/octet-stream")]
    pub file: Vec<u8>,
    /// Conversion options (JSON); every field is optional.
    pub options: Option<JobOptions>,
}

/// A page of jobs.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobView>,
    pub page: i64,
    pub per_page: i64,
    /// Jobs matching the filter, all pages together.
    pub total: i64,
}

/// Filter and page of `GET /api/v1/jobs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only jobs in this state.
    pub status: Option<JobStatus>,
    /// Page number, from 1.
    #[param(minimum = 1, maximum = 1000000)]
    pub page: Option<i64>,
    /// Jobs per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<i64>,
}

/// The job if the caller may see it; 404 otherwise.
async fn visible(state: &AppState, caller: &Caller, id: Uuid) -> Result<JobRow, ApiError> {
    match state.queue.get(id).await? {
        Some(row) if caller.may_see(row.owner_id) => Ok(row),
        _ => Err(ApiError::not_found()),
    }
}

/// Upload a checkpoint and queue its conversion.
///
/// The file streams to storage (SHA-256 on the way, size limit enforced while it arrives)
/// and is read by the checkpoint reader before a job exists: a file that is not a YOLOv7
/// checkpoint is answered 422 with the reader's code. When the same source and options
/// already have a succeeded artifact, the new job is `succeeded` at once (`reused_from`).
#[utoipa::path(
    tag = "jobs",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Job created", body = JobView),
        (status = 400, description = "missing_file, empty_file, invalid_options, invalid_multipart", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "request_timeout: the body sent nothing for the server's idle time", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "unauthorized, invalid_token", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "upload_too_large: the file, or the whole body, past its limit", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "too_many_uploads: the server's, or the owner's, uploads in flight at their limit", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a supported YOLOv7 checkpoint (the reader's code), model_too_large, check_resources_exceeded (reading the file needed more memory or time than the upload check allows), or device_unavailable (a CUDA device and no worker converts on one)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "database_unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = []))
)]
#[post("/jobs")]
pub async fn create_job(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    mut multipart: Multipart,
) -> Result<HttpResponse, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Multipart framing adds a little; anything declared beyond that cannot fit.
    if declared.is_some_and(|n| n > upload::body_limit(state.settings.max_upload_bytes)) {
        state.metrics.upload("upload_too_large");
        return Err(upload::too_large(state.settings.max_upload_bytes));
    }
    // Held until the request ends, however it ends.
    let _slot = state.uploads.take(caller.owner.id).map_err(|busy| {
        state.metrics.upload("too_many_uploads");
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyUploads,
            format!("{busy}; retry when one has finished"),
        )
    })?;
    let received = match upload::receive(&state, &mut multipart).await {
        Ok(received) => received,
        Err(error) => return Ok(upload::refusal(&error, multipart)),
    };
    let options_key = received.options.key();
    let new = NewJob {
        id: received.job_id,
        owner_id: caller.owner.id,
        options: received.options.clone(),
        device_class: received.options.device_class(),
        options_key,
        source_name: received.name.clone(),
        source_size: received.size as i64,
        source_sha256: received.sha256.clone(),
        source_key: received.key.to_string(),
    };
    let created = match state.queue.insert_reused(&new).await {
        Ok(Some(row)) => Ok(row),
        Ok(None) => state.queue.enqueue(&new).await,
        Err(error) => Err(error),
    };
    let row = match created {
        Ok(row) => row,
        Err(error) => {
            let _ = state.storage.delete(&received.key).await;
            return Err(error.into());
        }
    };
    tracing::info!(job = %row.id, owner = %caller.owner.id, size = received.size,
        reused = row.reused_from.is_some(), "job created");
    let view = JobView::from(&row);
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, view.links.self_.clone()))
        .json(view))
}

/// The caller's jobs, newest first (an admin sees everyone's).
#[utoipa::path(
    tag = "jobs",
    params(ListQuery),
    responses(
        (status = 200, body = JobList),
        (status = 400, description = "invalid_query", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = []))
)]
#[get("/jobs")]
pub async fn list_jobs(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = query.page.unwrap_or(1);
    let per_page = query.per_page.unwrap_or(20);
    if !(1..=1_000_000).contains(&page) || !(1..=100).contains(&per_page) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            "page must be within 1..1000000 and per_page within 1..100",
        ));
    }
    let owner = (!caller.owner.is_admin).then_some(caller.owner.id);
    let result = state
        .queue
        .list(owner, query.status, page, per_page)
        .await?;
    Ok(HttpResponse::Ok().json(JobList {
        jobs: result.jobs.iter().map(JobView::from).collect(),
        page,
        per_page,
        total: result.total,
    }))
}

/// One job.
#[utoipa::path(
    tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, body = JobView),
        (status = 400, description = "malformed_id", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_found", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = []))
)]
#[get("/jobs/{id}")]
pub async fn get_job(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let row = visible(&state, &caller, *id).await?;
    Ok(HttpResponse::Ok().json(JobView::from(&row)))
}

/// Cancel a queued or running job (202), or delete a finished one and its files (204).
#[utoipa::path(
    tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 202, description = "Cancelled, or cancel requested (the worker stops within one heartbeat)", body = JobView),
        (status = 204, description = "Deleted"),
        (status = 400, description = "malformed_id", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = []))
)]
#[delete("/jobs/{id}")]
pub async fn delete_job(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let row = visible(&state, &caller, *id).await?;
    if !row.status.is_final() {
        match state.queue.cancel(row.id).await? {
            Some(Cancel::Cancelled(row) | Cancel::Requested(row)) => {
                return Ok(HttpResponse::Accepted().json(JobView::from(&row)));
            }
            Some(Cancel::Finished(_)) => {}
            None => return Err(ApiError::not_found()),
        }
    }
    match state.queue.delete_finished(row.id).await? {
        Some((_, orphaned)) => {
            for key in orphaned {
                if let Err(error) = state.storage.delete(&key.as_str().into()).await {
                    tracing::warn!(%error, %key, "could not delete a file of a deleted job");
                }
            }
            Ok(HttpResponse::NoContent().finish())
        }
        // It was retried or deleted meanwhile.
        None => match state.queue.get(row.id).await? {
            Some(row) => Err(ApiError::conflict(
                ErrorCode::Conflict,
                format!("the job is {} now; try again", row.status.as_str()),
            )),
            None => Err(ApiError::not_found()),
        },
    }
}

/// Put a failed or cancelled job back in the queue.
#[utoipa::path(
    tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 202, body = JobView),
        (status = 400, description = "malformed_id", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "conflict: the job is not failed or cancelled", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = []))
)]
#[post("/jobs/{id}/retry")]
pub async fn retry_job(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let row = visible(&state, &caller, *id).await?;
    match state.queue.retry(row.id).await? {
        Some(row) => Ok(HttpResponse::Accepted().json(JobView::from(&row))),
        None => Err(ApiError::conflict(
            ErrorCode::Conflict,
            format!(
                "the job is {}; only failed or cancelled jobs can be retried",
                row.status.as_str()
            ),
        )),
    }
}

/// The converter's report (`report.json`, schema `yolots.report/v1`).
#[utoipa::path(
    tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "The report", body = Object),
        (status = 400, description = "malformed_id", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "not_ready", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = []))
)]
#[get("/jobs/{id}/report")]
pub async fn get_report(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let row = visible(&state, &caller, *id).await?;
    match row.report {
        Some(Json(report)) => Ok(HttpResponse::Ok().json(report)),
        None => Err(not_ready(&row)),
    }
}

fn not_ready(row: &JobRow) -> ApiError {
    ApiError::conflict(
        ErrorCode::NotReady,
        format!(
            "the job is {}; nothing to download yet",
            row.status.as_str()
        ),
    )
}

/// The TorchScript artifact (`ETag` is its SHA-256; `Range` supported).
#[utoipa::path(
    tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "The artifact", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "Part of the artifact", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 400, description = "malformed_id", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "not_ready", body = Problem, content_type = "application/problem+json"),
        (status = 416, description = "range_not_satisfiable", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = []))
)]
#[get("/jobs/{id}/artifact")]
pub async fn get_artifact(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let row = visible(&state, &caller, *id).await?;
    let (Some(key), Some(name), Some(size), Some(sha), JobStatus::Succeeded) = (
        &row.artifact_key,
        &row.artifact_name,
        row.artifact_size,
        &row.artifact_sha256,
        row.status,
    ) else {
        return Err(not_ready(&row));
    };
    let size = size.max(0) as u64;
    let etag = header::EntityTag::new_strong(sha.clone());
    if let Ok(header::IfNoneMatch::Items(tags)) = header::IfNoneMatch::parse(&req)
        && tags.iter().any(|t| t.weak_eq(&etag))
    {
        return Ok(HttpResponse::NotModified()
            .insert_header(header::ETag(etag))
            .finish());
    }
    let range = match header::Range::parse(&req) {
        Ok(header::Range::Bytes(specs)) if specs.len() == 1 => {
            match specs.first().and_then(|s| s.to_satisfiable_range(size)) {
                Some((start, end)) => Some(start..end + 1),
                None => {
                    let mut error = ApiError::new(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        ErrorCode::RangeNotSatisfiable,
                        format!("the artifact has {size} bytes"),
                    )
                    .error_response_with_header();
                    error.headers_mut().insert(
                        header::CONTENT_RANGE,
                        header::HeaderValue::from_str(&format!("bytes */{size}"))
                            .unwrap_or(header::HeaderValue::from_static("bytes */0")),
                    );
                    return Ok(error);
                }
            }
        }
        // No Range, several ranges or a malformed one: the whole file.
        _ => None,
    };
    let key = object_store::path::Path::from(key.as_str());
    let stream = state
        .storage
        .stream(&key, range.clone())
        .await
        .map_err(|e| ApiError::storage(&e))?
        .map(|chunk| chunk.map_err(actix_web::error::ErrorInternalServerError));
    let mut response = match &range {
        Some(r) => {
            let mut b = HttpResponse::PartialContent();
            b.insert_header((
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{size}", r.start, r.end - 1),
            ));
            b
        }
        None => HttpResponse::Ok(),
    };
    let length = range.as_ref().map_or(size, |r| r.end - r.start);
    Ok(response
        .insert_header(header::ETag(etag))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::CONTENT_TYPE, "application/octet-stream"))
        .insert_header(header::ContentDisposition {
            disposition: header::DispositionType::Attachment,
            parameters: vec![header::DispositionParam::Filename(name.clone())],
        })
        .no_chunking(length)
        .streaming(stream))
}

impl ApiError {
    fn error_response_with_header(&self) -> HttpResponse {
        actix_web::ResponseError::error_response(self)
    }
}
