//! Calls to the REST API under `/api/v1` with `fetch`. Same-origin requests carry the
//! session cookie; a token typed into the page (for servers without open sessions) is
//! sent as `Authorization: Bearer` instead. Failures come back as the service's
//! problem+json `code` and message.

use std::fmt;

use serde::de::DeserializeOwned;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Headers, RequestCredentials, RequestInit, Response};

use crate::model::{Job, JobList, Problem, Session};

/// The code of an [`ApiError`] for a request that got no answer (not a service code).
pub const NETWORK: &str = "network";

/// Where a typed token is kept: the tab's session storage, gone with the tab.
const TOKEN_KEY: &str = "yolots_token";

/// A failed call: the HTTP status (0 when no answer came), the service's code and message.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl ApiError {
    fn network(error: &JsValue) -> Self {
        let detail = error
            .dyn_ref::<js_sys::Error>()
            .map(|e| String::from(e.message()))
            .or_else(|| error.as_string())
            .unwrap_or_else(|| "no answer".to_owned());
        Self {
            status: 0,
            code: crate::api::NETWORK.to_owned(),
            message: format!("the server could not be reached ({detail})"),
        }
    }

    /// An error answer: the problem+json body when there is one.
    pub fn from_answer(status: u16, body: &str) -> Self {
        match serde_json::from_str::<Problem>(body) {
            Ok(problem) if !problem.code.is_empty() => Self {
                status,
                code: problem.code.clone(),
                message: problem.message(),
            },
            _ => Self {
                status,
                code: format!("http_{status}"),
                message: format!("the server answered HTTP {status}"),
            },
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window().and_then(|w| w.session_storage().ok().flatten())
}

/// The token typed into the page, if any.
pub fn token() -> Option<String> {
    storage().and_then(|s| s.get_item(TOKEN_KEY).ok().flatten())
}

/// Keeps (or with `None` forgets) the token typed into the page.
pub fn set_token(token: Option<&str>) {
    if let Some(storage) = storage() {
        let _ = match token {
            Some(token) => storage.set_item(TOKEN_KEY, token),
            None => storage.remove_item(TOKEN_KEY),
        };
    }
}

/// The `Authorization` header value for a typed token.
pub fn bearer() -> Option<String> {
    token().map(|t| format!("Bearer {t}"))
}

/// Sends a request; answers the status and the body text of a successful answer.
async fn send(method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), ApiError> {
    let window = web_sys::window().ok_or_else(|| ApiError::network(&JsValue::NULL))?;
    let headers = Headers::new().map_err(|e| ApiError::network(&e))?;
    let _ = headers.set("Accept", "application/json, application/problem+json");
    if body.is_some() {
        let _ = headers.set("Content-Type", "application/json");
    }
    if let Some(bearer) = bearer() {
        let _ = headers.set("Authorization", &bearer);
    }
    let init = RequestInit::new();
    init.set_method(method);
    init.set_credentials(RequestCredentials::SameOrigin);
    init.set_headers(&headers);
    if let Some(body) = body {
        init.set_body(&JsValue::from_str(body));
    }
    let answer = JsFuture::from(window.fetch_with_str_and_init(path, &init))
        .await
        .map_err(|e| ApiError::network(&e))?;
    let response: Response = answer.dyn_into().map_err(|e| ApiError::network(&e))?;
    let text = match response.text() {
        Ok(promise) => JsFuture::from(promise)
            .await
            .ok()
            .and_then(|t| t.as_string())
            .unwrap_or_default(),
        Err(_) => String::new(),
    };
    let status = response.status();
    if response.ok() {
        Ok((status, text))
    } else {
        Err(ApiError::from_answer(status, &text))
    }
}

fn parse<T: DeserializeOwned>(status: u16, text: &str) -> Result<T, ApiError> {
    serde_json::from_str(text).map_err(|error| ApiError {
        status,
        code: "bad_answer".to_owned(),
        message: format!("the server's answer could not be read: {error}"),
    })
}

/// `GET` a JSON document.
pub async fn get<T: DeserializeOwned>(path: &str) -> Result<T, ApiError> {
    let (status, text) = send("GET", path, None).await?;
    parse(status, &text)
}

/// `POST` with an optional JSON body, answering JSON.
pub async fn post<T: DeserializeOwned>(path: &str, body: Option<&str>) -> Result<T, ApiError> {
    let (status, text) = send("POST", path, body).await?;
    parse(status, &text)
}

/// The caller's session, creating one where the server allows it (`--open`).
pub async fn ensure_session() -> Result<Session, ApiError> {
    match get::<Session>("/api/v1/session").await {
        Err(error) if error.status == 401 && token().is_none() => {
            post::<Session>("/api/v1/sessions", None).await
        }
        other => other,
    }
}

/// `GET /api/v1/jobs?page=N`.
pub async fn jobs(page: u32, per_page: u32) -> Result<JobList, ApiError> {
    get(&format!("/api/v1/jobs?page={page}&per_page={per_page}")).await
}

/// `GET /api/v1/jobs/{id}`.
pub async fn job(id: &str) -> Result<Job, ApiError> {
    get(&format!("/api/v1/jobs/{id}")).await
}

/// `DELETE` a job: cancels a queued or running one (answers it), deletes a finished one
/// (answers `None`).
pub async fn delete_job(job: &Job) -> Result<Option<Job>, ApiError> {
    let (status, text) = send("DELETE", &job.self_link(), None).await?;
    if status == 204 || text.trim().is_empty() {
        Ok(None)
    } else {
        parse(status, &text).map(Some)
    }
}

/// `POST /api/v1/jobs/{id}/retry`.
pub async fn retry_job(job: &Job) -> Result<Job, ApiError> {
    post(&format!("{}/retry", job.self_link()), None).await
}

/// Downloads a file with the typed token (a plain link cannot send the header): fetches
/// it as a blob and saves it under `file_name`.
pub async fn download_with_token(url: &str, file_name: &str) -> Result<(), ApiError> {
    let window = web_sys::window().ok_or_else(|| ApiError::network(&JsValue::NULL))?;
    let headers = Headers::new().map_err(|e| ApiError::network(&e))?;
    if let Some(bearer) = bearer() {
        let _ = headers.set("Authorization", &bearer);
    }
    let init = RequestInit::new();
    init.set_headers(&headers);
    let answer = JsFuture::from(window.fetch_with_str_and_init(url, &init))
        .await
        .map_err(|e| ApiError::network(&e))?;
    let response: Response = answer.dyn_into().map_err(|e| ApiError::network(&e))?;
    if !response.ok() {
        let text = match response.text() {
            Ok(p) => JsFuture::from(p)
                .await
                .ok()
                .and_then(|t| t.as_string())
                .unwrap_or_default(),
            Err(_) => String::new(),
        };
        return Err(ApiError::from_answer(response.status(), &text));
    }
    let blob: web_sys::Blob = JsFuture::from(response.blob().map_err(|e| ApiError::network(&e))?)
        .await
        .and_then(|b| b.dyn_into())
        .map_err(|e| ApiError::network(&e))?;
    let object_url =
        web_sys::Url::create_object_url_with_blob(&blob).map_err(|e| ApiError::network(&e))?;
    let saved = window
        .document()
        .and_then(|d| d.create_element("a").ok())
        .and_then(|a| a.dyn_into::<web_sys::HtmlAnchorElement>().ok())
        .map(|a| {
            a.set_href(&object_url);
            a.set_download(file_name);
            a.click();
        });
    // Revoking at once can cancel the save in some browsers: give it a minute.
    let revoke = wasm_bindgen::closure::Closure::once_into_js(move || {
        let _ = web_sys::Url::revoke_object_url(&object_url);
    });
    let _ = window
        .set_timeout_with_callback_and_timeout_and_arguments_0(revoke.unchecked_ref(), 60_000);
    saved.ok_or_else(|| ApiError::network(&JsValue::from_str("no document")))
}
