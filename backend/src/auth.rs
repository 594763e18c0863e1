//! Bearer tokens and the caller they name.
//!
//! A token is `yolots_` and 64 hex digits of randomness; only its SHA-256 is stored. The
//! web page carries the same token in the `yolots_token` cookie (HttpOnly, SameSite=Strict)
//! that `POST /api/v1/sessions` sets in `--open` mode. [`Caller`] is the extractor every
//! job route takes: no or an unknown token is a 401 problem.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::problem::ApiError;
use crate::server::AppState;
use yolots_protocol::ErrorCode;

/// The cookie the web page's token travels in.
pub const COOKIE: &str = "yolots_token";

const PREFIX: &str = "yolots_";

/// An owner of jobs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Owner {
    pub id: Uuid,
    pub name: String,
    pub is_admin: bool,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub owner: Owner,
    /// The token the request carried (a session hands it back).
    pub token: String,
}

impl Caller {
    /// Whether the caller may see `owner`'s jobs.
    pub fn may_see(&self, owner: Uuid) -> bool {
        self.owner.is_admin || self.owner.id == owner
    }
}

/// A fresh token.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    format!("{PREFIX}{}", hex::encode(bytes))
}

/// What is stored of a token.
pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Creates an owner with a first token; returns both.
pub async fn create_owner(
    pool: &PgPool,
    name: &str,
    is_admin: bool,
    token_name: &str,
) -> Result<(Owner, String), sqlx::Error> {
    let owner = Owner {
        id: Uuid::new_v4(),
        name: name.to_owned(),
        is_admin,
    };
    let token = generate_token();
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "INSERT INTO owners (id, name, is_admin) VALUES ($1, $2, $3)",
        owner.id,
        owner.name,
        owner.is_admin,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "INSERT INTO api_tokens (id, owner_id, token_sha256, name) VALUES ($1, $2, $3, $4)",
        Uuid::new_v4(),
        owner.id,
        &hash_token(&token)[..],
        token_name,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((owner, token))
}

/// The owner of a token (and notes its use, at most once a minute).
pub async fn lookup(pool: &PgPool, token: &str) -> Result<Option<Owner>, sqlx::Error> {
    if !token.starts_with(PREFIX) || token.len() > 200 {
        return Ok(None);
    }
    sqlx::query_as!(
        Owner,
        r#"WITH t AS (
           SELECT id, owner_id, last_used_at FROM api_tokens
           WHERE token_sha256 = $1 AND revoked_at IS NULL),
         touched AS (
           UPDATE api_tokens SET last_used_at = now() WHERE id IN (
             SELECT id FROM t WHERE last_used_at IS NULL
             OR last_used_at < now() - interval '1 minute'))
         SELECT o.id AS "id!", o.name AS "name!", o.is_admin AS "is_admin!"
         FROM t JOIN owners o ON o.id = t.owner_id"#,
        &hash_token(token)[..],
    )
    .fetch_optional(pool)
    .await
}

/// The token a request carries: `Authorization: Bearer`, else the cookie.
pub fn request_token(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let text = value.to_str().unwrap_or_default().trim();
        let token = text
            .strip_prefix("Bearer ")
            .or_else(|| text.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        return match token {
            Some(token) => Ok(Some(token.to_owned())),
            None => Err(ApiError::unauthorized(
                ErrorCode::InvalidToken,
                "the Authorization header must be `Bearer <token>`",
            )),
        };
    }
    Ok(req
        .cookie(COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty()))
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = request_token(req);
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("no application state"))?;
            let token = token?.ok_or_else(|| {
                ApiError::unauthorized(
                    ErrorCode::Unauthorized,
                    "send `Authorization: Bearer <token>` (yolots token create) or get a \
                     session cookie from POST /api/v1/sessions",
                )
            })?;
            if crate::db::known_down() {
                return Err(ApiError::unavailable());
            }
            match lookup(&state.queue.pool, &token).await? {
                Some(owner) => Ok(Caller { owner, token }),
                None => Err(ApiError::unauthorized(
                    ErrorCode::InvalidToken,
                    "the token is unknown or revoked",
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = generate_token();
        let b = generate_token();
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 64);
        assert_eq!(hash_token(&a).len(), 32);
        assert_eq!(hash_token(&a), hash_token(&a));
    }
}
