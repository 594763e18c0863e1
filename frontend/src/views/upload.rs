//! The first view: choose or drop a checkpoint, read it in the browser (in the inspection
//! worker), refuse what the service would refuse, set the options, upload with progress.

use std::cell::RefCell;
use std::rc::Rc;

use web_sys::{DragEvent, File, HtmlInputElement};
use yew::prelude::*;

use crate::api::ApiError;
use crate::format;
use crate::inspect::{check_limits, check_size};
use crate::model::{Config, Inspection, Options, Refusal};
use crate::route::Route;
use crate::upload::{Upload, UploadEvent, rate};
use crate::views::common::{ErrorBox, navigate, now_ms};
use crate::views::inspection::InspectionCard;
use crate::views::options::{OptionsForm, validate};
use crate::worker::Inspector;

/// Where the view stands.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Empty,
    Inspecting,
    Refused(Refusal),
    Ready,
    Uploading {
        sent: f64,
        total: f64,
        speed: f64,
        left: f64,
    },
    /// Every byte is sent; the service is reading the file.
    Processing,
    Failed(ApiError),
}

/// What to do about a refusal, by code: the service's codes take their advice from
/// `yolots_protocol::ErrorCode`; `network` is this page's own (the request never got an
/// answer).
pub fn advice(code: &str) -> &'static str {
    match code {
        crate::api::NETWORK => "Check the connection to the server and try again.",
        _ => yolots_protocol::ErrorCode::parse(code).map_or(
            "Choose the .pt file written by YOLOv7's train.py (best.pt or last.pt).",
            yolots_protocol::ErrorCode::advice,
        ),
    }
}

#[derive(Properties, PartialEq)]
pub struct UploadProps {
    pub config: Rc<Config>,
}

#[component]
pub fn UploadView(props: &UploadProps) -> Html {
    let phase = use_state(|| Phase::Empty);
    let chosen = use_state(|| None::<(String, u64)>);
    let inspection = use_state(|| None::<(Rc<Inspection>, f64)>);
    let options = use_state(|| props.config.defaults.clone());
    let drag_over = use_state(|| false);
    let cancelled = use_state(|| false);
    let announce = use_state(String::new);
    let file: Rc<RefCell<Option<File>>> = use_mut_ref(|| None);
    let inspector: Rc<RefCell<Option<Inspector>>> = use_mut_ref(|| None);
    let upload: Rc<RefCell<Option<Upload>>> = use_mut_ref(|| None);
    let samples: Rc<RefCell<Vec<(f64, f64)>>> = use_mut_ref(Vec::new);
    let announced_step: Rc<RefCell<i32>> = use_mut_ref(|| -1);

    let choose = {
        let (phase, chosen, inspection, cancelled) = (
            phase.clone(),
            chosen.clone(),
            inspection.clone(),
            cancelled.clone(),
        );
        let (file_ref, inspector, config) = (file.clone(), inspector.clone(), props.config.clone());
        Callback::from(move |picked: File| {
            drop(inspector.borrow_mut().take());
            let size = picked.size() as u64;
            chosen.set(Some((picked.name(), size)));
            inspection.set(None);
            cancelled.set(false);
            *file_ref.borrow_mut() = Some(picked.clone());
            if let Err(refusal) = check_size(size, &config) {
                phase.set(Phase::Refused(refusal));
                return;
            }
            phase.set(Phase::Inspecting);
            let started = now_ms();
            let done = {
                let (phase, inspection, inspector, config) = (
                    phase.clone(),
                    inspection.clone(),
                    inspector.clone(),
                    config.clone(),
                );
                Callback::from(move |result: Result<Inspection, Refusal>| {
                    // The worker's handler is running: stop the worker right after it.
                    let inspector = inspector.clone();
                    yew::platform::spawn_local(async move {
                        drop(inspector.borrow_mut().take());
                    });
                    match result {
                        Ok(found) => {
                            let verdict = check_limits(&found, &config);
                            inspection.set(Some((Rc::new(found), now_ms() - started)));
                            phase.set(match verdict {
                                Ok(()) => Phase::Ready,
                                Err(refusal) => Phase::Refused(refusal),
                            });
                        }
                        Err(refusal) => phase.set(Phase::Refused(refusal)),
                    }
                })
            };
            match Inspector::start(&picked, done) {
                Ok(started) => *inspector.borrow_mut() = Some(started),
                Err(refusal) => phase.set(Phase::Refused(refusal)),
            }
        })
    };

    let onchange = {
        let choose = choose.clone();
        Callback::from(move |e: Event| {
            if let Some(input) = e.target_dyn_into::<HtmlInputElement>() {
                if let Some(picked) = input.files().and_then(|files| files.get(0)) {
                    choose.emit(picked);
                }
                // Choosing the same file again must fire `change` again.
                input.set_value("");
            }
        })
    };
    let ondragover = {
        let drag_over = drag_over.clone();
        Callback::from(move |e: DragEvent| {
            e.prevent_default();
            drag_over.set(true);
        })
    };
    let ondragleave = {
        let drag_over = drag_over.clone();
        Callback::from(move |_: DragEvent| drag_over.set(false))
    };
    let ondrop = {
        let (drag_over, choose) = (drag_over.clone(), choose.clone());
        Callback::from(move |e: DragEvent| {
            e.prevent_default();
            drag_over.set(false);
            let dropped = e
                .data_transfer()
                .and_then(|t| t.files())
                .and_then(|files| files.get(0));
            if let Some(dropped) = dropped {
                choose.emit(dropped);
            }
        })
    };

    let max_stride = inspection.as_ref().map_or(32, |(i, _)| i.max_stride());

    let start_upload = {
        let (phase, cancelled, announce, options) = (
            phase.clone(),
            cancelled.clone(),
            announce.clone(),
            options.clone(),
        );
        let (file_ref, upload, samples, announced_step) = (
            file.clone(),
            upload.clone(),
            samples.clone(),
            announced_step.clone(),
        );
        Callback::from(move |_: MouseEvent| {
            let Some(picked) = file_ref.borrow().clone() else {
                return;
            };
            if !validate(&options, max_stride).is_empty() {
                return;
            }
            let json = serde_json::to_string(&*options).unwrap_or_else(|_| "{}".to_owned());
            samples.borrow_mut().clear();
            *announced_step.borrow_mut() = -1;
            cancelled.set(false);
            let on_event = {
                let (phase, cancelled, announce) =
                    (phase.clone(), cancelled.clone(), announce.clone());
                let (upload, samples, announced_step) =
                    (upload.clone(), samples.clone(), announced_step.clone());
                Callback::from(move |event: UploadEvent| {
                    let finish = || {
                        let upload = upload.clone();
                        yew::platform::spawn_local(async move {
                            drop(upload.borrow_mut().take());
                        });
                    };
                    match event {
                        UploadEvent::Progress { sent, total } => {
                            let mut s = samples.borrow_mut();
                            s.push((now_ms(), sent));
                            let (speed, left) = rate(&s, total);
                            let step = if total > 0.0 {
                                (sent / total * 10.0) as i32
                            } else {
                                0
                            };
                            if step != *announced_step.borrow() {
                                *announced_step.borrow_mut() = step;
                                announce.set(format!("Uploaded {}%", step * 10));
                            }
                            phase.set(Phase::Uploading {
                                sent,
                                total,
                                speed,
                                left,
                            });
                        }
                        UploadEvent::Sent => {
                            announce.set(
                                "Upload complete; the service is checking the file.".to_owned(),
                            );
                            phase.set(Phase::Processing);
                        }
                        UploadEvent::Created(job) => {
                            finish();
                            navigate(&Route::Job { id: job.id });
                        }
                        UploadEvent::Failed(error) => {
                            finish();
                            announce.set(format!("Upload failed: {}", error.message));
                            phase.set(Phase::Failed(error));
                        }
                        UploadEvent::Aborted => {
                            finish();
                            announce.set("Upload cancelled.".to_owned());
                            cancelled.set(true);
                            phase.set(Phase::Ready);
                        }
                    }
                })
            };
            let total = picked.size();
            match Upload::start(&picked, &json, on_event) {
                Ok(started) => {
                    *upload.borrow_mut() = Some(started);
                    phase.set(Phase::Uploading {
                        sent: 0.0,
                        total,
                        speed: 0.0,
                        left: f64::INFINITY,
                    });
                }
                Err(error) => phase.set(Phase::Failed(error)),
            }
        })
    };
    let cancel_upload = {
        let upload = upload.clone();
        Callback::from(move |_: MouseEvent| {
            if let Some(running) = upload.borrow().as_ref() {
                running.cancel();
            }
        })
    };
    // When the upload starts the Convert button goes away: bring its panel into view and
    // give its Cancel button the focus, so keyboard users keep their place.
    let cancel_ref = use_node_ref();
    {
        let cancel_ref = cancel_ref.clone();
        let uploading = matches!(*phase, Phase::Uploading { .. });
        use_effect_with(uploading, move |uploading| {
            if *uploading && let Some(button) = cancel_ref.cast::<web_sys::HtmlElement>() {
                let _ = button.focus();
                button.scroll_into_view_with_bool(false);
            }
        });
    }
    let back_to_ready = {
        let phase = phase.clone();
        Callback::from(move |_: MouseEvent| phase.set(Phase::Ready))
    };

    let busy = matches!(*phase, Phase::Uploading { .. } | Phase::Processing);
    let (name, size) = chosen.as_ref().cloned().unwrap_or_default();
    let options_valid = validate(&options, max_stride).is_empty();

    // Reading and refusals show by the drop zone; the upload by the button that started it.
    let status = match &*phase {
        Phase::Inspecting => html! {
            <p class="working" id="inspecting" role="status">
                <span class="spinner" aria-hidden="true"></span>
                { format!("Reading {name} ({}) in your browser…", format::bytes(size)) }
            </p>
        },
        Phase::Refused(refusal) => html! {
            <ErrorBox id={Some(AttrValue::from("refusal"))} title={format!("{name} cannot be converted")}
                message={refusal.message.clone()} code={Some(AttrValue::from(refusal.code.clone()))}
                advice={Some(AttrValue::from(advice(&refusal.code)))} />
        },
        _ => html! {},
    };
    let transfer = match &*phase {
        Phase::Ready => html! {
            if *cancelled {
                <p class="notice" role="status">{ "Upload cancelled: nothing was kept on the server." }</p>
            }
        },
        Phase::Uploading {
            sent,
            total,
            speed,
            left,
        } => {
            let percent = if *total > 0.0 {
                sent / total * 100.0
            } else {
                0.0
            };
            html! {
                <section class="panel upload" id="upload" aria-labelledby="upload-title">
                    <h2 id="upload-title">{ format!("Uploading {name}") }</h2>
                    <progress id="upload-progress" max={total.to_string()} value={sent.to_string()}
                        aria-label="Upload progress" aria-valuetext={format!("{percent:.0}%")}></progress>
                    <p class="upload-figures" id="upload-figures">
                        <span>{ format!("{} of {} ({percent:.0}%)", format::bytes(*sent as u64), format::bytes(*total as u64)) }</span>
                        <span>{ format::speed(*speed) }</span>
                        <span>{ if left.is_finite() { format!("{} left", format::duration(*left)) } else { "estimating…".to_owned() } }</span>
                    </p>
                    <button type="button" class="secondary" id="cancel-upload" ref={cancel_ref.clone()} onclick={cancel_upload}>{ "Cancel upload" }</button>
                </section>
            }
        }
        Phase::Processing => html! {
            <p class="working" id="upload" role="status"><span class="spinner" aria-hidden="true"></span>
                { "Upload complete. The service is checking the file and queueing the job…" }</p>
        },
        Phase::Failed(error) => html! {
            <>
                <ErrorBox id={Some(AttrValue::from("upload-error"))} title="The service refused the upload"
                    message={error.message.clone()} code={Some(AttrValue::from(error.code.clone()))}
                    advice={Some(AttrValue::from(advice(&error.code)))} />
                <button type="button" class="secondary" onclick={back_to_ready}>{ "Back to the options" }</button>
            </>
        },
        _ => html! {},
    };

    let show_details = matches!(
        *phase,
        Phase::Ready | Phase::Uploading { .. } | Phase::Processing | Phase::Refused(_)
    );
    let on_options = {
        let options = options.clone();
        Callback::from(move |next: Options| options.set(next))
    };

    html! {
        <div class="view upload-view">
            <h1 tabindex="-1">{ "Convert a YOLOv7 checkpoint" }</h1>
            <p class="lead">{ "Get a TorchScript module that loads in Python, C++ (LibTorch), Rust (tch) and PyTorch Mobile, with dynamic input sizes, checked against the original model." }</p>
            <div class={classes!("drop", drag_over.then_some("over"), busy.then_some("disabled"))}
                ondragover={ondragover.clone()} ondragenter={ondragover} {ondragleave} {ondrop}>
                <input type="file" id="file" class="visually-hidden" accept=".pt,.pth" {onchange} disabled={busy}
                    aria-describedby="drop-hint" />
                <label for="file">
                    <span class="drop-title">{ "Drop a .pt checkpoint here" }</span>
                    <span class="drop-or">{ "or" }</span>
                    <span class="button-like">{ "Choose a file" }</span>
                </label>
                <p class="hint" id="drop-hint">{ "It is read in your browser first; nothing is sent until you press Convert." }</p>
            </div>
            { status }
            if show_details {
                if let Some((found, millis)) = &*inspection {
                    <InspectionCard inspection={found.clone()} file_name={name.clone()} file_size={size} millis={*millis} />
                }
            }
            if matches!(*phase, Phase::Ready | Phase::Uploading { .. } | Phase::Processing) {
                <OptionsForm value={(*options).clone()} on_change={on_options}
                    devices={props.config.devices.clone()} {max_stride} disabled={busy} />
            }
            if matches!(*phase, Phase::Ready) {
                <div class="actions">
                    <button type="button" class="primary" id="convert" onclick={start_upload}
                        disabled={!options_valid}>{ "Convert" }</button>
                    <span class="hint">{ format!("Uploads {} to the service.", format::bytes(size)) }</span>
                </div>
            }
            { transfer }
            <p class="visually-hidden" aria-live="polite" role="status">{ (*announce).clone() }</p>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::advice;

    #[test]
    fn every_refusal_has_advice() {
        for code in [
            "empty_file",
            "not_an_archive",
            "unsupported_model",
            "whatever",
        ] {
            assert!(!advice(code).is_empty());
        }
    }
}
