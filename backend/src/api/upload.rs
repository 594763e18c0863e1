//! Receiving a checkpoint: the multipart body streams into storage with its SHA-256
//! computed on the way and the size limit enforced as bytes arrive; nothing of a refused
//! upload stays behind. The stored file is then read by the same reader as the browser's,
//! in a child process under memory and time bounds, so a file that is not a YOLOv7
//! checkpoint is refused before any job exists and a hostile one ends only that child.

use std::time::{Duration, Instant};

use actix_multipart::{Field, Multipart};
use actix_web::http::StatusCode;
use futures_util::StreamExt;
use object_store::path::Path;
use sha2::{Digest, Sha256};
use uuid::Uuid;

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

/// Reads the multipart body: an optional `options` part (JSON) and a `file` part.
pub async fn receive(state: &AppState, mut multipart: Multipart) -> Result<Received, ApiError> {
    let job_id = Uuid::new_v4();
    let key = Storage::source_key(job_id);
    let mut options: Option<JobOptions> = None;
    let mut file: Option<(String, u64, String)> = None;
    let mut refusal: Option<ApiError> = None;

    while let Some(field) = multipart.next().await {
        let mut field = match field {
            Ok(field) => field,
            Err(error) => {
                refusal.get_or_insert(ApiError::bad_request(
                    ErrorCode::InvalidMultipart,
                    format!("the body is not valid multipart/form-data: {error}"),
                ));
                break;
            }
        };
        if refusal.is_some() {
            drain(&mut field).await;
            continue;
        }
        match field.name().unwrap_or_default() {
            "options" => match read_text(&mut field, OPTIONS_LIMIT).await {
                Ok(text) => match JobOptions::parse(&text).and_then(|o| {
                    o.check(state.settings.allow_test_faults)?;
                    Ok(o)
                }) {
                    Ok(o) => options = Some(o),
                    Err(e) => refusal = Some(invalid(e)),
                },
                Err(e) => refusal = Some(e),
            },
            "file" if file.is_some() => {
                refusal = Some(ApiError::bad_request(
                    ErrorCode::InvalidMultipart,
                    "more than one `file` part",
                ));
                drain(&mut field).await;
            }
            "file" => {
                let name = field
                    .content_disposition()
                    .and_then(|cd| cd.get_filename())
                    .map(crate::names::display_name)
                    .unwrap_or_else(|| "model.pt".to_owned());
                match store(state, &key, &mut field).await {
                    Ok((size, sha256)) => file = Some((name, size, sha256)),
                    Err(e) => {
                        refusal = Some(e);
                        drain(&mut field).await;
                    }
                }
            }
            _ => drain(&mut field).await,
        }
    }
    if let Some(refusal) = refusal {
        if refusal.code == "upload_too_large" {
            drain_rest(&mut multipart).await;
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

/// Streams one part into storage; returns its size and SHA-256.
async fn store(state: &AppState, key: &Path, field: &mut Field) -> Result<(u64, String), ApiError> {
    let limit = state.settings.max_upload_bytes;
    let mut writer = state.storage.writer(key);
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = field.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => {
                writer.abort().await;
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidMultipart,
                    format!("the upload broke off: {error}"),
                ));
            }
        };
        size += chunk.len() as u64;
        state.metrics.upload_bytes.inc_by(chunk.len() as u64);
        if size > limit {
            writer.abort().await;
            return Err(too_large(limit));
        }
        hasher.update(&chunk);
        if let Err(error) = writer.put(chunk).await {
            writer.abort().await;
            return Err(ApiError::storage(&error));
        }
    }
    writer.finish().await.map_err(|e| ApiError::storage(&e))?;
    Ok((size, hex::encode(hasher.finalize())))
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

async fn read_text(field: &mut Field, limit: usize) -> Result<String, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(
                ErrorCode::InvalidMultipart,
                format!("the body broke off: {e}"),
            )
        })?;
        if bytes.len() + chunk.len() > limit {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidOptions,
                format!("the options part exceeds {limit} bytes"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| {
        ApiError::bad_request(ErrorCode::InvalidOptions, "the options part is not UTF-8")
    })
}

/// Reads and drops the rest of a part (bounded).
async fn drain(field: &mut Field) {
    let started = Instant::now();
    let mut dropped = 0u64;
    while let Some(Ok(chunk)) = field.next().await {
        dropped += chunk.len() as u64;
        if dropped > DRAIN_LIMIT || started.elapsed() > DRAIN_TIME {
            break;
        }
    }
}

/// Reads and drops what is left of the body (bounded), so the client reads the answer.
async fn drain_rest(multipart: &mut Multipart) {
    let started = Instant::now();
    let mut dropped = 0u64;
    while let Some(Ok(mut field)) = multipart.next().await {
        while let Some(Ok(chunk)) = field.next().await {
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
