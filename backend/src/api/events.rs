//! `GET /api/v1/jobs/{id}/events`: Server-Sent Events. The job's log is replayed from the
//! database (from `Last-Event-ID` when the client reconnects), then new events follow as
//! `LISTEN/NOTIFY` announces them (with a slow poll as a safety net). After a final state
//! the stream sends `event: end` and closes.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, web};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::problem::{ApiError, Problem};
use crate::auth::Caller;
use crate::model::JobStatus;
use crate::queue::notify::EventSignal;
use crate::queue::{EventRow, Queue};
use crate::server::AppState;

/// How often a live stream looks at the log without a notification, and sends a comment
/// that keeps proxies from closing an idle connection.
const POLL: Duration = Duration::from_secs(10);

/// Live events of a job.
///
/// `event: status` (data: the job), `event: progress` (data: `{"stage", "fraction",
/// "message"}`), and after a final state `event: end`. Each event's `id` is its number in
/// the job's log; a client that reconnects with `Last-Event-ID` gets what it missed.
#[utoipa::path(
    tag = "jobs",
    params(
        ("id" = Uuid, Path, description = "Job id"),
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event"),
    ),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "malformed_id", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("cookie" = []))
)]
#[get("/jobs/{id}/events")]
pub async fn job_events(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = *id;
    // Subscribe before reading, so nothing between the read and the subscription is lost.
    let signals = state.hub.events.subscribe();
    let row = match state.queue.get(id).await? {
        Some(row) if caller.may_see(row.owner_id) => row,
        _ => return Err(ApiError::not_found()),
    };
    let after = req
        .headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0);
    // The row was read before the log: if it is final, the log read next holds its last
    // status event.
    let replay = state.queue.events_after(id, after).await?;
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let queue = state.queue.clone();
    let finished = row.status.is_final();
    actix_web::rt::spawn(async move {
        stream(queue, id, after, replay, finished, signals, tx).await;
    });
    let body = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, actix_web::Error>);
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

/// One event in the wire format.
fn frame(event: &EventRow) -> Bytes {
    let data = serde_json::to_string(&event.data).unwrap_or_else(|_| "null".into());
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {data}\n\n",
        event.seq, event.kind
    ))
}

fn is_final_status(event: &EventRow) -> bool {
    event.kind == "status"
        && event
            .data
            .get("status")
            .and_then(|s| serde_json::from_value::<JobStatus>(s.clone()).ok())
            .is_some_and(JobStatus::is_final)
}

const END: &[u8] = b"event: end\ndata: {}\n\n";

async fn stream(
    queue: Queue,
    job: Uuid,
    mut last: i64,
    replay: Vec<EventRow>,
    finished: bool,
    mut signals: tokio::sync::broadcast::Receiver<EventSignal>,
    tx: mpsc::Sender<Bytes>,
) {
    let mut ended = finished;
    for event in &replay {
        last = event.seq;
        if event.kind == "status" {
            ended = finished || is_final_status(event);
        }
        if tx.send(frame(event)).await.is_err() {
            return;
        }
    }
    if ended {
        let _ = tx.send(Bytes::from_static(END)).await;
        return;
    }
    loop {
        let look = tokio::select! {
            signal = signals.recv() => match signal {
                Ok(EventSignal::Job { job: j, seq }) => j == job && seq > last,
                Ok(EventSignal::Resync) | Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => return,
            },
            () = tokio::time::sleep(POLL) => {
                if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                    return;
                }
                true
            }
            () = tx.closed() => return,
        };
        if !look {
            continue;
        }
        let events = match queue.events_after(job, last).await {
            Ok(events) => events,
            Err(error) => {
                tracing::debug!(%error, "event stream: cannot read the log");
                continue;
            }
        };
        for event in &events {
            last = event.seq;
            if tx.send(frame(event)).await.is_err() {
                return;
            }
            if is_final_status(event) {
                let _ = tx.send(Bytes::from_static(END)).await;
                return;
            }
        }
        if events.is_empty() {
            // The job may have been deleted.
            if let Ok(None) = queue.get(job).await {
                let _ = tx.send(Bytes::from_static(END)).await;
                return;
            }
        }
    }
}
