//! `LISTEN/NOTIFY` fan-out. One connection per process listens on `yolots_queue` (a job
//! became claimable: wake the idle workers) and `yolots_events` (a job has a new event:
//! wake its live streams). Notifications are hints: after a lost connection everyone is
//! told to look again, and workers and streams also poll, so nothing depends on a
//! notification arriving.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Channel names (also in the migrations' triggers).
pub const QUEUE_CHANNEL: &str = "yolots_queue";
pub const EVENTS_CHANNEL: &str = "yolots_events";

/// A hint for live event streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSignal {
    /// `job` has event number `seq`.
    Job { job: Uuid, seq: i64 },
    /// Notifications may have been missed: everyone reads again.
    Resync,
}

/// What a process's listener feeds.
#[derive(Debug, Clone)]
pub struct Hub {
    /// Woken when a job becomes claimable.
    pub queue: Arc<Notify>,
    pub events: broadcast::Sender<EventSignal>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            queue: Arc::new(Notify::new()),
            events: broadcast::channel(1024).0,
        }
    }
}

impl Hub {
    /// Starts the listener task.
    pub fn spawn(pool: PgPool, stop: CancellationToken) -> Self {
        let hub = Self::default();
        tokio::spawn(listen(pool, hub.clone(), stop));
        hub
    }

    fn resync(&self) {
        self.queue.notify_waiters();
        let _ = self.events.send(EventSignal::Resync);
    }
}

async fn listen(pool: PgPool, hub: Hub, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let listener = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen_all([QUEUE_CHANNEL, EVENTS_CHANNEL]).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            () = stop.cancelled() => return,
            result = listener => match result {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::debug!(%error, "LISTEN: cannot connect; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            }
        };
        tracing::debug!("LISTEN: connected");
        backoff = Duration::from_millis(200);
        // Whatever happened while we were not listening is read again.
        hub.resync();
        loop {
            let received = tokio::select! {
                () = stop.cancelled() => return,
                received = listener.try_recv() => received,
            };
            match received {
                Ok(Some(notification)) => {
                    dispatch(&hub, notification.channel(), notification.payload())
                }
                Ok(None) => {
                    tracing::warn!("LISTEN: connection lost; reconnecting");
                    hub.resync();
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "LISTEN failed; reconnecting");
                    hub.resync();
                    break;
                }
            }
        }
    }
}

fn dispatch(hub: &Hub, channel: &str, payload: &str) {
    match channel {
        QUEUE_CHANNEL => hub.queue.notify_waiters(),
        EVENTS_CHANNEL => {
            if let Some(signal) = parse_event(payload) {
                let _ = hub.events.send(signal);
            }
        }
        _ => {}
    }
}

/// `"<job uuid>:<seq>"`.
fn parse_event(payload: &str) -> Option<EventSignal> {
    let (job, seq) = payload.split_once(':')?;
    Some(EventSignal::Job {
        job: job.parse().ok()?,
        seq: seq.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_event_payloads() {
        let id = Uuid::new_v4();
        assert_eq!(
            parse_event(&format!("{id}:42")),
            Some(EventSignal::Job { job: id, seq: 42 })
        );
        assert_eq!(parse_event("nonsense"), None);
    }
}
