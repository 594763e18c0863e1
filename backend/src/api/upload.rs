//! Receiving a checkpoint: the multipart body streams into storage with its SHA-256
//! computed on the way and the size limit enforced as bytes arrive; nothing of a refused
//! upload stays behind. The stored file is then read by the same reader as the browser's,
//! in a child process under memory and time bounds, so a file that is not a YOLOv7
//! checkpoint is refused before any job exists and a hostile one ends only that child.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_multipart::{Field, Multipart};
use actix_web::body::{BodySize, MessageBody};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use bytes::Bytes;
use object_store::path::Path;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::body::BodyBudget;
use super::problem::ApiError;
use crate::model::{InvalidOptions, JobOptions};
use crate::server::AppState;
use crate::storage::Storage;
use crate::upload_check::{CheckError, ModelFacts};
use yolots_protocol::ErrorCode;

/// Most bytes of a refused upload read (and dropped) so the client still gets the answer.
const DRAIN_LIMIT: u64 = 64 << 20;
/// Longest time spent on that.
const DRAIN_TIME: Duration = Duration::from_secs(10);
/// Largest `options` part.
const OPTIONS_LIMIT: usize = 64 << 10;
/// What a body may carry besides the file: the options, other small parts, the framing.
const BODY_OVERHEAD: u64 = 1 << 20;

/// The bound on a whole upload body: the file's limit plus the rest.
pub fn body_limit(max_upload_bytes: u64) -> u64 {
    max_upload_bytes.saturating_add(BODY_OVERHEAD)
}

/// A stored, checked upload.
#[derive(Debug, Clone)]
pub struct Received {
    pub job_id: Uuid,
    pub key: Path,
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub options: JobOptions,
}

fn invalid(e: InvalidOptions) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidOptions, e.message).with_option(e.option)
}

/// How recently a worker must have announced itself to count as serving its device.
const LIVE_WORKERS: Duration = Duration::from_secs(60);

/// Refuses a CUDA device when no worker that converts on CUDA has announced itself
/// recently (such a job would wait in the queue for ever); `auto` and `cpu` always pass.
/// When the workers cannot be listed, nothing is refused.
async fn check_device(state: &AppState, options: &JobOptions) -> Result<(), ApiError> {
    if !matches!(options.device, yolots_protocol::DeviceChoice::Cuda(_)) {
        return Ok(());
    }
    let Ok(devices) = state.queue.live_devices(LIVE_WORKERS).await else {
        return Ok(());
    };
    if devices.iter().any(|d| d.starts_with("cuda")) {
        return Ok(());
    }
    let running = if devices.is_empty() {
        "no worker is running".to_owned()
    } else {
        format!("the workers convert on {}", devices.join(", "))
    };
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::DeviceUnavailable,
        format!(
            "device {} needs a worker with a CUDA GPU, and {running}",
            options.device
        ),
    )
    .with_option(Some("device")))
}

/// Reads the multipart body: an optional `options` part (JSON) and a `file` part. The
/// whole body is bounded ([`BodyBudget`]): past its bytes or its idle time the request ends
/// at once, and what was stored of it is removed.
pub async fn receive(state: &AppState, multipart: &mut Multipart) -> Result<Received, ApiError> {
    let job_id = Uuid::new_v4();
    let key = Storage::source_key(job_id);
    let mut budget = BodyBudget::new(
        body_limit(state.settings.max_upload_bytes),
        state.settings.body_idle_timeout,
    );
    let mut parts = Parts::default();
    if let Err(ended) = read_parts(state, &key, multipart, &mut budget, &mut parts).await {
        // Nothing more is read: the stalled or endless body goes with its connection.
        if parts.file.is_some() {
            delete_quietly(state, &key).await;
        }
        state.metrics.upload(ended.code.as_str());
        return Err(ended);
    }
    let Parts {
        options,
        file,
        refusal,
    } = parts;
    if let Some(refusal) = refusal {
        if refusal.code == "upload_too_large" {
            drain_rest(multipart, &mut budget).await;
        }
        if file.is_some() {
            delete_quietly(state, &key).await;
        }
        state.metrics.upload(refusal.code.as_str());
        return Err(refusal);
    }
    let Some((name, size, sha256)) = file else {
        state.metrics.upload("missing_file");
        return Err(ApiError::bad_request(
            ErrorCode::MissingFile,
            "the request has no `file` part (multipart/form-data with the .pt file)",
        ));
    };
    if size == 0 {
        delete_quietly(state, &key).await;
        state.metrics.upload("empty_file");
        return Err(ApiError::bad_request(
            ErrorCode::EmptyFile,
            "the uploaded file is empty",
        ));
    }
    let options = options.unwrap_or_default();
    let checked = check_model(state, &key).await.and_then(|facts| {
        options.check_for_model(&facts.strides).map_err(invalid)?;
        Ok(facts)
    });
    if let Err(error) = checked {
        delete_quietly(state, &key).await;
        state.metrics.upload(error.code.as_str());
        return Err(error);
    }
    state.metrics.upload("accepted");
    Ok(Received {
        job_id,
        key,
        name,
        size,
        sha256,
        options,
    })
}

/// What the parts of an upload said.
#[derive(Debug, Default)]
struct Parts {
    options: Option<JobOptions>,
    /// The stored file's name, size and SHA-256.
    file: Option<(String, u64, String)>,
    /// The first reason to refuse the upload (the rest of the body is then read and
    /// dropped, within its budget).
    refusal: Option<ApiError>,
}

/// The answer to a refused upload. Its body holds the request body until it is sent: the
/// server then closes the connection rather than reading (and discarding) whatever is
/// left of a body no one wants, which for a stalled or endless one would never end.
pub fn refusal(error: &ApiError, multipart: Multipart) -> HttpResponse {
    let json = serde_json::to_vec(&error.problem()).unwrap_or_default();
    error
        .error_response()
        .set_body(HoldingBody {
            json: Bytes::from(json),
            _request: multipart,
        })
        .map_into_boxed_body()
}

/// A problem document that keeps the request's body alive until it is written.
struct HoldingBody {
    json: Bytes,
    _request: Multipart,
}

impl MessageBody for HoldingBody {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.json.len() as u64)
    }

    fn poll_next(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let json = std::mem::take(&mut self.get_mut().json);
        Poll::Ready((!json.is_empty()).then_some(Ok(json)))
    }
}

/// Reads the parts; an error ends the request.
async fn read_parts(
    state: &AppState,
    key: &Path,
    multipart: &mut Multipart,
    budget: &mut BodyBudget,
    parts: &mut Parts,
) -> Result<(), ApiError> {
    while let Some(field) = budget.next_field(multipart).await? {
        let mut field = match field {
            Ok(field) => field,
            Err(error) => {
                parts.refusal.get_or_insert(ApiError::bad_request(
                    ErrorCode::InvalidMultipart,
                    format!("the body is not valid multipart/form-data: {error}"),
                ));
                break;
            }
        };
        if parts.refusal.is_some() {
            drain(&mut field, budget).await?;
            continue;
        }
        match field.name().unwrap_or_default() {
            "options" => match read_text(&mut field, budget, OPTIONS_LIMIT).await? {
                Ok(text) => match JobOptions::parse(&text).and_then(|o| {
                    o.check(state.settings.allow_test_faults)?;
                    o.check_pixels(state.settings.max_pixels)?;
                    Ok(o)
                }) {
                    Ok(o) => match check_device(state, &o).await {
                        Ok(()) => parts.options = Some(o),
                        Err(e) => parts.refusal = Some(e),
                    },
                    Err(e) => parts.refusal = Some(invalid(e)),
                },
                Err(e) => parts.refusal = Some(e),
            },
            "file" if parts.file.is_some() => {
                parts.refusal = Some(ApiError::bad_request(
                    ErrorCode::InvalidMultipart,
                    "more than one `file` part",
                ));
                drain(&mut field, budget).await?;
            }
            "file" => {
                let name = field
                    .content_disposition()
                    .and_then(|cd| cd.get_filename())
                    .map(crate::names::display_name)
                    .unwrap_or_else(|| "model.pt".to_owned());
                match store(state, key, &mut field, budget).await? {
                    Ok((size, sha256)) => parts.file = Some((name, size, sha256)),
                    Err(e) => {
                        parts.refusal = Some(e);
                        drain(&mut field, budget).await?;
                    }
                }
            }
            _ => drain(&mut field, budget).await?,
        }
    }
    Ok(())
}

/// Streams one part into storage; returns its size and SHA-256, or why it was refused
/// (inside); the outer error ends the request (nothing of the part is kept).
async fn store(
    state: &AppState,
    key: &Path,
    field: &mut Field,
    budget: &mut BodyBudget,
) -> Result<Result<(u64, String), ApiError>, ApiError> {
    let limit = state.settings.max_upload_bytes;
    let mut writer = state.storage.writer(key);
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        let chunk = match budget.next_chunk(field).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(ended) => {
                writer.abort().await;
                return Err(ended);
            }
        };
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => {
                writer.abort().await;
                return Ok(Err(ApiError::bad_request(
                    ErrorCode::InvalidMultipart,
                    format!("the upload broke off: {error}"),
                )));
            }
        };
        size += chunk.len() as u64;
        state.metrics.upload_bytes.inc_by(chunk.len() as u64);
        if size > limit {
            writer.abort().await;
            return Ok(Err(too_large(limit)));
        }
        hasher.update(&chunk);
        if let Err(error) = writer.put(chunk).await {
            writer.abort().await;
            return Ok(Err(ApiError::storage(&error)));
        }
    }
    Ok(writer
        .finish()
        .await
        .map(|()| (size, hex::encode(hasher.finalize())))
        .map_err(|e| ApiError::storage(&e)))
}

pub fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::UploadTooLarge,
        format!("the upload exceeds the limit of {limit} bytes"),
    )
}

/// Reads the stored file with the checkpoint reader (in a bounded child process, see
/// [`crate::upload_check`]) and applies the model limits.
async fn check_model(state: &AppState, key: &Path) -> Result<ModelFacts, ApiError> {
    // The child reads a local file: the stored one, or a copy of a remote object.
    let (file, _copy) = match state.storage.local_path(key) {
        Some(path) => (path, None),
        None => {
            let copy = tempfile::Builder::new()
                .prefix("yolots-upload-")
                .tempfile()
                .map_err(|e| ApiError::internal(format!("creating a scratch file: {e}")))?
                .into_temp_path();
            state
                .storage
                .download(key, &copy)
                .await
                .map_err(|e| ApiError::storage(&e))?;
            (copy.to_path_buf(), Some(copy))
        }
    };
    let facts = state
        .upload_check
        .check(&file)
        .await
        .map_err(check_refusal)?;
    let limits = &state.settings;
    if facts.parameters > limits.max_parameters {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::ModelTooLarge,
            format!(
                "the model has {} parameters; this service converts at most {}",
                facts.parameters, limits.max_parameters
            ),
        ));
    }
    if facts.layers > limits.max_layers {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::ModelTooLarge,
            format!(
                "the model has {} layers; this service converts at most {}",
                facts.layers, limits.max_layers
            ),
        ));
    }
    Ok(facts)
}

/// Most characters of the reader's message a problem quotes.
const DETAIL_CHARS: usize = 1000;

/// The problem a failed upload check is answered with.
fn check_refusal(error: CheckError) -> ApiError {
    match error {
        CheckError::Refused { code, message } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
            message.chars().take(DETAIL_CHARS).collect::<String>(),
        ),
        bound @ (CheckError::OutOfMemory { .. } | CheckError::OutOfTime { .. }) => {
            tracing::warn!(error = %bound, "an upload exceeded the check's bounds");
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::CheckResourcesExceeded,
                format!("{bound} (this service's bound for reading an upload)"),
            )
        }
        CheckError::Failed(reason) => {
            tracing::error!(%reason, "checking a stored upload failed");
            ApiError::internal("the stored upload could not be read")
        }
    }
}

/// Reads a small text part; the outer error ends the request.
async fn read_text(
    field: &mut Field,
    budget: &mut BodyBudget,
    limit: usize,
) -> Result<Result<String, ApiError>, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = budget.next_chunk(field).await? {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                return Ok(Err(ApiError::bad_request(
                    ErrorCode::InvalidMultipart,
                    format!("the body broke off: {e}"),
                )));
            }
        };
        if bytes.len() + chunk.len() > limit {
            drain(field, budget).await?;
            return Ok(Err(ApiError::bad_request(
                ErrorCode::InvalidOptions,
                format!("the options part exceeds {limit} bytes"),
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8(bytes).map_err(|_| {
        ApiError::bad_request(ErrorCode::InvalidOptions, "the options part is not UTF-8")
    }))
}

/// Reads and drops the rest of a part, within the body's budget; an error ends the
/// request (so the multipart reader never skips bytes no one counts).
async fn drain(field: &mut Field, budget: &mut BodyBudget) -> Result<(), ApiError> {
    while let Some(chunk) = budget.next_chunk(field).await? {
        if chunk.is_err() {
            break;
        }
    }
    Ok(())
}

/// Reads and drops what is left of the body (bounded), so the client reads the answer.
async fn drain_rest(multipart: &mut Multipart, budget: &mut BodyBudget) {
    let started = Instant::now();
    let mut dropped = 0u64;
    while let Ok(Some(Ok(mut field))) = budget.next_field(multipart).await {
        while let Ok(Some(Ok(chunk))) = budget.next_chunk(&mut field).await {
            dropped += chunk.len() as u64;
            if dropped > DRAIN_LIMIT || started.elapsed() > DRAIN_TIME {
                return;
            }
        }
    }
}

async fn delete_quietly(state: &AppState, key: &Path) {
    if let Err(error) = state.storage.delete(key).await {
        tracing::warn!(%error, %key, "could not delete a refused upload");
    }
}
