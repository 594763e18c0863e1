//! Bearer tokens and the caller they name.
//!
//! A token is `yolots_` and 64 hex digits of randomness; only its SHA-256 is stored. The
//! web page carries the same token in the `yolots_token` cookie (HttpOnly, SameSite=Strict,
//! `Secure` behind an `https` public address) that `POST /api/v1/sessions` sets in `--open`
//! mode. [`Caller`] is the extractor every job route takes: no, an unknown, a revoked or an
//! expired token (unused for longer than `--token-ttl-days`, 30 by default: every use
//! renews it) is a 401 problem.
//!
//! `SameSite=Strict` treats another port of the same host as the same site, so a request
//! that changes something and is authenticated by the cookie must also come from this
//! origin: a browser's `Sec-Fetch-Site` must say `same-origin` (or `none`, typed by the
//! user), else its `Origin` must name this server's `Host` (or `--public-url`'s host).
//! Anything else is refused, 403 `cross_site_request`. A bearer token in a header is
//! never sent by a browser on its own, so it needs no such check.

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

/// The owner of a token that is neither revoked nor expired (unused for longer than
/// `ttl`), and notes its use, at most once a minute (which renews it).
pub async fn lookup(
    pool: &PgPool,
    token: &str,
    ttl: Option<std::time::Duration>,
) -> Result<Option<Owner>, sqlx::Error> {
    if !token.starts_with(PREFIX) || token.len() > 200 {
        return Ok(None);
    }
    let ttl_secs = ttl.map(|t| t.as_secs_f64());
    sqlx::query_as!(
        Owner,
        r#"WITH t AS (
           SELECT id, owner_id, last_used_at FROM api_tokens
           WHERE token_sha256 = $1 AND revoked_at IS NULL
             AND ($2::float8 IS NULL
                  OR coalesce(last_used_at, created_at) > now() - make_interval(secs => $2))),
         touched AS (
           UPDATE api_tokens SET last_used_at = now() WHERE id IN (
             SELECT id FROM t WHERE last_used_at IS NULL
             OR last_used_at < now() - interval '1 minute'))
         SELECT o.id AS "id!", o.name AS "name!", o.is_admin AS "is_admin!"
         FROM t JOIN owners o ON o.id = t.owner_id"#,
        &hash_token(token)[..],
        ttl_secs,
    )
    .fetch_optional(pool)
    .await
}

/// Revokes a token; returns whether it was valid until now.
pub async fn revoke_token(pool: &PgPool, token: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE api_tokens SET revoked_at = now() WHERE token_sha256 = $1 AND revoked_at IS NULL",
        &hash_token(token)[..],
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Revokes every token of the owners named `name`; returns how many.
pub async fn revoke_owner(pool: &PgPool, name: &str) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE api_tokens SET revoked_at = now() WHERE revoked_at IS NULL \
         AND owner_id IN (SELECT id FROM owners WHERE name = $1)",
        name,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// How a request carried its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    /// `Authorization: Bearer`: set by a program, never by a browser on its own.
    Header,
    /// The session cookie: a browser sends it with whatever page made the request.
    Cookie,
}

/// `host[:port]` in lower case, without the scheme's default port (80, or 443 for
/// `https`), so `Origin` and `Host` compare as equal when they name one server.
pub fn normal_authority(authority: &str, https: bool) -> String {
    let lower = authority.trim().to_ascii_lowercase();
    let default = if https { ":443" } else { ":80" };
    match lower.strip_suffix(default) {
        Some(bare) => bare.to_owned(),
        None => lower,
    }
}

/// Refuses a request a browser made for a page of another origin (another site, or
/// another port of this host): its `Sec-Fetch-Site`, else its `Origin`, against the
/// request's `Host` and the public address. A request with neither header (not a browser's
/// cross-origin request) passes.
pub fn check_same_origin(
    req: &HttpRequest,
    public_authority: Option<&str>,
) -> Result<(), ApiError> {
    let refuse = |why: String| {
        ApiError::new(
            actix_web::http::StatusCode::FORBIDDEN,
            ErrorCode::CrossSiteRequest,
            format!("{why}: this service's session cookie only acts for its own pages"),
        )
    };
    let header_text = |name: &str| {
        req.headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
    };
    if let Some(site) = header_text("sec-fetch-site") {
        return match site.as_str() {
            "same-origin" | "none" => Ok(()),
            other => Err(refuse(format!("a {other} request"))),
        };
    }
    let Some(origin) = header_text("origin") else {
        return Ok(());
    };
    let (https, authority) = match origin.split_once("://") {
        Some((scheme, rest)) => (scheme == "https", rest),
        None => return Err(refuse(format!("a request from origin {origin:?}"))),
    };
    let origin_authority = normal_authority(authority, https);
    let host = header_text("host").map(|h| normal_authority(&h, https));
    let own = host.as_deref() == Some(origin_authority.as_str())
        || public_authority == Some(origin_authority.as_str());
    if own {
        Ok(())
    } else {
        Err(refuse(format!("a request from {origin}")))
    }
}

/// The token a request carries: `Authorization: Bearer`, else the cookie.
pub fn request_token(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    Ok(carried_token(req)?.map(|(token, _)| token))
}

/// The token a request carries and how: `Authorization: Bearer`, else the cookie.
pub fn carried_token(req: &HttpRequest) -> Result<Option<(String, Carried)>, ApiError> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let text = value.to_str().unwrap_or_default().trim();
        let token = text
            .strip_prefix("Bearer ")
            .or_else(|| text.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        return match token {
            Some(token) => Ok(Some((token.to_owned(), Carried::Header))),
            None => Err(ApiError::unauthorized(
                ErrorCode::InvalidToken,
                "the Authorization header must be `Bearer <token>`",
            )),
        };
    }
    Ok(req
        .cookie(COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty())
        .map(|token| (token, Carried::Cookie)))
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let carried = carried_token(req);
        // A cookie goes with whatever page made the request: one that changes something
        // must come from this origin.
        let origin = match (&carried, &state) {
            (Ok(Some((_, Carried::Cookie))), Some(state)) if !req.method().is_safe() => {
                check_same_origin(req, state.settings.public_authority.as_deref())
            }
            _ => Ok(()),
        };
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("no application state"))?;
            origin?;
            let token = carried?.map(|(token, _)| token).ok_or_else(|| {
                ApiError::unauthorized(
                    ErrorCode::Unauthorized,
                    "send `Authorization: Bearer <token>` (yolots token create) or get a \
                     session cookie from POST /api/v1/sessions",
                )
            })?;
            if crate::db::known_down() {
                return Err(ApiError::unavailable());
            }
            match lookup(&state.queue.pool, &token, state.settings.token_ttl).await? {
                Some(owner) => Ok(Caller { owner, token }),
                None => Err(ApiError::unauthorized(
                    ErrorCode::InvalidToken,
                    "the token is unknown, revoked or expired",
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

    #[test]
    fn origins_and_hosts_compare_without_default_ports() {
        assert_eq!(normal_authority("Example.COM:443", true), "example.com");
        assert_eq!(
            normal_authority("example.com:443", false),
            "example.com:443"
        );
        assert_eq!(normal_authority("127.0.0.1:8080", false), "127.0.0.1:8080");
        assert_eq!(normal_authority("127.0.0.1:80", false), "127.0.0.1");
    }

    #[test]
    fn cross_origin_requests_are_refused() {
        use actix_web::test::TestRequest;
        let check = |headers: &[(&str, &str)]| {
            let mut req = TestRequest::post().insert_header(("host", "127.0.0.1:8080"));
            for &(name, value) in headers {
                req = req.insert_header((name, value));
            }
            check_same_origin(&req.to_http_request(), Some("yolots.example.com")).is_ok()
        };
        assert!(check(&[]));
        assert!(check(&[("origin", "http://127.0.0.1:8080")]));
        assert!(check(&[("origin", "https://yolots.example.com")]));
        assert!(check(&[("sec-fetch-site", "same-origin")]));
        // Another port of the same host is another origin.
        assert!(!check(&[("origin", "http://127.0.0.1:9090")]));
        assert!(!check(&[("origin", "null")]));
        assert!(!check(&[("sec-fetch-site", "same-site")]));
        assert!(!check(&[("sec-fetch-site", "cross-site")]));
        // The browser's Sec-Fetch-Site wins over an Origin a proxy may have rewritten.
        assert!(!check(&[
            ("sec-fetch-site", "cross-site"),
            ("origin", "http://127.0.0.1:8080")
        ]));
    }
}
