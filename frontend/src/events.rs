//! A job's live events through `EventSource` (`GET /api/v1/jobs/{id}/events`): the past
//! events are replayed, then live ones. `status` carries the whole job, `progress` a stage
//! and its fraction, `end` closes the stream. The browser reconnects by itself after a
//! network hiccup; dropping [`JobEvents`] closes the stream.

use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{Event, EventSource, MessageEvent};
use yew::Callback;

use crate::model::{Job, Progress};

/// What the stream delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    Status(Box<Job>),
    Progress(Progress),
    /// The job reached a final state; the stream is closed.
    End,
    /// The connection dropped; the browser is trying again.
    Reconnecting,
    /// The stream could not be opened or was closed for good.
    Closed,
}

/// An open event stream.
pub struct JobEvents {
    source: EventSource,
    _listeners: Vec<Closure<dyn FnMut(MessageEvent)>>,
    _on_error: Closure<dyn FnMut(Event)>,
}

impl JobEvents {
    pub fn open(url: &str, on_event: Callback<JobEvent>) -> Result<JobEvents, String> {
        let source = EventSource::new(url).map_err(|e| format!("{e:?}"))?;
        let mut listeners = Vec::new();

        let cb = on_event.clone();
        let status = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            let data = e.data().as_string().unwrap_or_default();
            if let Ok(job) = serde_json::from_str::<Job>(&data) {
                cb.emit(JobEvent::Status(Box::new(job)));
            }
        });
        listen(&source, "status", &status);
        listeners.push(status);

        let cb = on_event.clone();
        let progress = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            let data = e.data().as_string().unwrap_or_default();
            if let Ok(progress) = serde_json::from_str::<Progress>(&data) {
                cb.emit(JobEvent::Progress(progress));
            }
        });
        listen(&source, "progress", &progress);
        listeners.push(progress);

        let cb = on_event.clone();
        let stream = source.clone();
        let end = Closure::<dyn FnMut(MessageEvent)>::new(move |_| {
            // Closing here stops the browser from reconnecting to a finished stream.
            stream.close();
            cb.emit(JobEvent::End);
        });
        listen(&source, "end", &end);
        listeners.push(end);

        let cb = on_event;
        let stream = source.clone();
        let on_error = Closure::<dyn FnMut(Event)>::new(move |_| {
            if stream.ready_state() == EventSource::CLOSED {
                cb.emit(JobEvent::Closed);
            } else {
                cb.emit(JobEvent::Reconnecting);
            }
        });
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));

        Ok(JobEvents {
            source,
            _listeners: listeners,
            _on_error: on_error,
        })
    }
}

fn listen(source: &EventSource, name: &str, handler: &Closure<dyn FnMut(MessageEvent)>) {
    let _ = source.add_event_listener_with_callback(name, handler.as_ref().unchecked_ref());
}

impl Drop for JobEvents {
    fn drop(&mut self) {
        self.source.close();
        self.source.set_onerror(None);
        for (name, handler) in ["status", "progress", "end"].iter().zip(&self._listeners) {
            let _ = self
                .source
                .remove_event_listener_with_callback(name, handler.as_ref().unchecked_ref());
        }
    }
}
