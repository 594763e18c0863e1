//! The bounds on one request body, over all its parts: the bytes it may carry, and how long
//! it may go without sending one. A body past either ends the request at once (nothing more
//! is read, the connection is closed), so a stalled or endless upload holds no memory.

use std::time::Duration;

use actix_multipart::{Field, Multipart, MultipartError};
use actix_web::http::StatusCode;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use yolots_protocol::ErrorCode;

use super::problem::ApiError;

/// The budget of one body.
#[derive(Debug)]
pub struct BodyBudget {
    read: u64,
    limit: u64,
    idle: Duration,
}

impl BodyBudget {
    /// A body of at most `limit` bytes in all, each wait for the next bytes at most `idle`.
    pub fn new(limit: u64, idle: Duration) -> Self {
        Self {
            read: 0,
            limit,
            idle,
        }
    }

    /// The next part; an error ends the request.
    pub async fn next_field(
        &mut self,
        multipart: &mut Multipart,
    ) -> Result<Option<Result<Field, MultipartError>>, ApiError> {
        self.wait(multipart).await
    }

    /// The next bytes of a part, counted against the whole body; an error ends the request.
    pub async fn next_chunk(
        &mut self,
        field: &mut Field,
    ) -> Result<Option<Result<Bytes, MultipartError>>, ApiError> {
        let chunk = self.wait(field).await?;
        if let Some(Ok(bytes)) = &chunk {
            self.read = self.read.saturating_add(bytes.len() as u64);
            if self.read > self.limit {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::UploadTooLarge,
                    format!(
                        "the request body exceeds the limit of {} bytes (all parts together)",
                        self.limit
                    ),
                ));
            }
        }
        Ok(chunk)
    }

    async fn wait<S: Stream + Unpin>(&self, stream: &mut S) -> Result<Option<S::Item>, ApiError> {
        tokio::time::timeout(self.idle, stream.next())
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    ErrorCode::RequestTimeout,
                    format!(
                        "the request body sent nothing for {} s",
                        self.idle.as_secs_f64()
                    ),
                )
            })
    }
}
