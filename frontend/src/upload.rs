//! The upload: `multipart/form-data` (an `options` JSON part and the `file` part) through
//! `XMLHttpRequest`, because `fetch` reports no upload progress. Dropping the [`Upload`]
//! aborts it.

use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{File, FormData, ProgressEvent, XmlHttpRequest};
use yew::Callback;

use crate::api::{self, ApiError};
use crate::model::Job;

/// What an upload reports.
#[derive(Debug, Clone, PartialEq)]
pub enum UploadEvent {
    /// Bytes of the request body sent so far, of `total`.
    Progress { sent: f64, total: f64 },
    /// Every byte is sent; the service is reading the file.
    Sent,
    /// The service created the job.
    Created(Box<Job>),
    /// The service refused, or the network failed.
    Failed(ApiError),
    /// Cancelled by the user.
    Aborted,
}

/// A running upload.
pub struct Upload {
    xhr: XmlHttpRequest,
    // Kept alive as long as the request may call them.
    _handlers: Vec<Closure<dyn FnMut(ProgressEvent)>>,
}

impl Upload {
    /// Starts uploading `file` with `options` (JSON) to `POST /api/v1/jobs`.
    pub fn start(
        file: &File,
        options_json: &str,
        on_event: Callback<UploadEvent>,
    ) -> Result<Upload, ApiError> {
        let fail = |e: wasm_bindgen::JsValue| ApiError {
            status: 0,
            code: "browser".to_owned(),
            message: format!("the browser could not start the upload: {e:?}"),
        };
        let form = FormData::new().map_err(fail)?;
        form.append_with_str("options", options_json)
            .map_err(fail)?;
        form.append_with_blob_and_filename("file", file, &file.name())
            .map_err(fail)?;

        let xhr = XmlHttpRequest::new().map_err(fail)?;
        xhr.open("POST", "/api/v1/jobs").map_err(fail)?;
        xhr.set_request_header("Accept", "application/json, application/problem+json")
            .map_err(fail)?;
        if let Some(bearer) = api::bearer() {
            xhr.set_request_header("Authorization", &bearer)
                .map_err(fail)?;
        }

        let mut handlers = Vec::new();
        let upload = xhr.upload().map_err(fail)?;

        let cb = on_event.clone();
        let progress = Closure::<dyn FnMut(ProgressEvent)>::new(move |e: ProgressEvent| {
            if e.length_computable() {
                cb.emit(UploadEvent::Progress {
                    sent: e.loaded(),
                    total: e.total(),
                });
            }
        });
        upload.set_onprogress(Some(progress.as_ref().unchecked_ref()));
        handlers.push(progress);

        let cb = on_event.clone();
        let sent = Closure::<dyn FnMut(ProgressEvent)>::new(move |_| cb.emit(UploadEvent::Sent));
        upload.set_onload(Some(sent.as_ref().unchecked_ref()));
        handlers.push(sent);

        let cb = on_event.clone();
        let request = xhr.clone();
        let done = Closure::<dyn FnMut(ProgressEvent)>::new(move |_| {
            cb.emit(answer(&request));
        });
        xhr.set_onload(Some(done.as_ref().unchecked_ref()));
        handlers.push(done);

        let cb = on_event.clone();
        let error = Closure::<dyn FnMut(ProgressEvent)>::new(move |_| {
            cb.emit(UploadEvent::Failed(ApiError {
                status: 0,
                code: crate::api::NETWORK.to_owned(),
                message: "the connection to the server was lost during the upload".to_owned(),
            }));
        });
        xhr.set_onerror(Some(error.as_ref().unchecked_ref()));
        handlers.push(error);

        let cb = on_event;
        let aborted = Closure::<dyn FnMut(ProgressEvent)>::new(move |_| {
            cb.emit(UploadEvent::Aborted);
        });
        xhr.set_onabort(Some(aborted.as_ref().unchecked_ref()));
        handlers.push(aborted);

        xhr.send_with_opt_form_data(Some(&form)).map_err(fail)?;
        Ok(Upload {
            xhr,
            _handlers: handlers,
        })
    }

    /// Stops sending; the service never sees a complete file, so no job is made.
    pub fn cancel(&self) {
        let _ = self.xhr.abort();
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // Detach the handlers before they are freed, then stop a request still running.
        self.xhr.set_onload(None);
        self.xhr.set_onerror(None);
        self.xhr.set_onabort(None);
        if let Ok(upload) = self.xhr.upload() {
            upload.set_onprogress(None);
            upload.set_onload(None);
        }
        if self.xhr.ready_state() != XmlHttpRequest::DONE {
            let _ = self.xhr.abort();
        }
    }
}

/// The service's answer to the upload.
fn answer(xhr: &XmlHttpRequest) -> UploadEvent {
    let status = xhr.status().unwrap_or(0);
    let body = xhr.response_text().ok().flatten().unwrap_or_default();
    if (200..300).contains(&status) {
        match serde_json::from_str::<Job>(&body) {
            Ok(job) => UploadEvent::Created(Box::new(job)),
            Err(error) => UploadEvent::Failed(ApiError {
                status,
                code: "bad_answer".to_owned(),
                message: format!("the server's answer could not be read: {error}"),
            }),
        }
    } else {
        UploadEvent::Failed(ApiError::from_answer(status, &body))
    }
}

/// Upload speed and time left from the progress samples `(milliseconds, bytes sent)`,
/// over the last few seconds so a stall shows quickly.
pub fn rate(samples: &[(f64, f64)], total: f64) -> (f64, f64) {
    const WINDOW_MS: f64 = 3000.0;
    let Some(&(t_last, b_last)) = samples.last() else {
        return (0.0, f64::INFINITY);
    };
    let last = samples.len() - 1;
    let mut start = samples
        .iter()
        .position(|(t, _)| t_last - t <= WINDOW_MS)
        .unwrap_or(last);
    if start == last {
        // Nothing else in the window: the sample before it still gives a rate.
        start = start.saturating_sub(1);
    }
    let (t0, b0) = samples.get(start).copied().unwrap_or((t_last, b_last));
    let seconds = (t_last - t0) / 1000.0;
    if seconds <= 0.0 {
        return (0.0, f64::INFINITY);
    }
    let speed = (b_last - b0) / seconds;
    let left = if speed > 0.0 {
        (total - b_last).max(0.0) / speed
    } else {
        f64::INFINITY
    };
    (speed, left)
}

#[cfg(test)]
mod tests {
    use super::rate;

    #[test]
    fn speed_and_time_left_follow_the_recent_samples() {
        let (speed, left) = rate(&[(0.0, 0.0), (1000.0, 1e6), (2000.0, 2e6)], 10e6);
        assert!((speed - 1e6).abs() < 1.0);
        assert!((left - 8.0).abs() < 1e-9);
        let (speed, left) = rate(&[(0.0, 0.0)], 10.0);
        assert_eq!(speed, 0.0);
        assert!(left.is_infinite());
        // Only the last three seconds count.
        let (speed, _) = rate(&[(0.0, 0.0), (10_000.0, 9e6), (12_000.0, 10e6)], 20e6);
        assert!((speed - 0.5e6).abs() < 1.0);
    }
}
