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

/// Everything the upload view shows; changed only through [`UploadAction`]s.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadState {
    phase: Phase,
    /// The chosen file's name and size.
    chosen: Option<(String, u64)>,
    /// What the browser read in the file, and how long that took (ms).
    inspection: Option<(Rc<Inspection>, f64)>,
    options: Options,
    /// A file is dragged over the drop zone.
    drag_over: bool,
    /// The last upload was cancelled by its user.
    cancelled: bool,
    /// The last line for screen readers.
    announce: String,
}

/// What can happen to the upload view.
#[derive(Debug, Clone, PartialEq)]
pub enum UploadAction {
    /// A file was chosen or dropped (its reading starts unless refused).
    Chosen {
        name: String,
        size: u64,
    },
    /// The browser reads the file.
    Inspecting,
    /// The browser read it; `verdict` is whether the service's limits allow it.
    Inspected {
        found: Rc<Inspection>,
        millis: f64,
        verdict: Result<(), Refusal>,
    },
    /// The file cannot be converted (before any byte is sent).
    Refused(Refusal),
    DragOver(bool),
    OptionsChanged(Options),
    /// Bytes went out (`announce`: a new tenth of the file, for screen readers).
    Uploading {
        sent: f64,
        total: f64,
        speed: f64,
        left: f64,
        announce: Option<String>,
    },
    /// Every byte is sent; the service reads the file.
    Sent,
    UploadFailed(ApiError),
    /// The user cancelled the upload.
    UploadCancelled,
    /// Back from a failed upload to the options.
    BackToReady,
}

impl UploadState {
    fn new(options: Options) -> Self {
        Self {
            phase: Phase::Empty,
            chosen: None,
            inspection: None,
            options,
            drag_over: false,
            cancelled: false,
            announce: String::new(),
        }
    }
}

impl Reducible for UploadState {
    type Action = UploadAction;

    fn reduce(self: Rc<Self>, action: UploadAction) -> Rc<Self> {
        let mut next = (*self).clone();
        match action {
            UploadAction::Chosen { name, size } => {
                next.chosen = Some((name, size));
                next.inspection = None;
                next.cancelled = false;
            }
            UploadAction::Inspecting => next.phase = Phase::Inspecting,
            UploadAction::Inspected {
                found,
                millis,
                verdict,
            } => {
                next.inspection = Some((found, millis));
                next.phase = match verdict {
                    Ok(()) => Phase::Ready,
                    Err(refusal) => Phase::Refused(refusal),
                };
            }
            UploadAction::Refused(refusal) => next.phase = Phase::Refused(refusal),
            UploadAction::DragOver(over) => next.drag_over = over,
            UploadAction::OptionsChanged(options) => next.options = options,
            UploadAction::Uploading {
                sent,
                total,
                speed,
                left,
                announce,
            } => {
                next.cancelled = false;
                if let Some(line) = announce {
                    next.announce = line;
                }
                next.phase = Phase::Uploading {
                    sent,
                    total,
                    speed,
                    left,
                };
            }
            UploadAction::Sent => {
                next.announce = "Upload complete; the service is checking the file.".to_owned();
                next.phase = Phase::Processing;
            }
            UploadAction::UploadFailed(error) => {
                next.announce = format!("Upload failed: {}", error.message);
                next.phase = Phase::Failed(error);
            }
            UploadAction::UploadCancelled => {
                next.announce = "Upload cancelled.".to_owned();
                next.cancelled = true;
                next.phase = Phase::Ready;
            }
            UploadAction::BackToReady => next.phase = Phase::Ready,
        }
        Rc::new(next)
    }
}

#[derive(Properties, PartialEq)]
pub struct UploadProps {
    pub config: Rc<Config>,
}

#[component]
pub fn UploadView(props: &UploadProps) -> Html {
    let state = {
        let defaults = props.config.defaults.clone();
        use_reducer(move || UploadState::new(defaults))
    };
    let file: Rc<RefCell<Option<File>>> = use_mut_ref(|| None);
    let inspector: Rc<RefCell<Option<Inspector>>> = use_mut_ref(|| None);
    let upload: Rc<RefCell<Option<Upload>>> = use_mut_ref(|| None);
    let samples: Rc<RefCell<Vec<(f64, f64)>>> = use_mut_ref(Vec::new);
    let announced_step: Rc<RefCell<i32>> = use_mut_ref(|| -1);

    let choose = {
        let dispatch = state.dispatcher();
        let (file_ref, inspector, config) = (file.clone(), inspector.clone(), props.config.clone());
        Callback::from(move |picked: File| {
            drop(inspector.borrow_mut().take());
            let size = picked.size() as u64;
            dispatch.dispatch(UploadAction::Chosen {
                name: picked.name(),
                size,
            });
            *file_ref.borrow_mut() = Some(picked.clone());
            if let Err(refusal) = check_size(size, &config) {
                dispatch.dispatch(UploadAction::Refused(refusal));
                return;
            }
            dispatch.dispatch(UploadAction::Inspecting);
            let started = now_ms();
            let done = {
                let (dispatch, inspector, config) =
                    (dispatch.clone(), inspector.clone(), config.clone());
                Callback::from(move |result: Result<Inspection, Refusal>| {
                    // The worker's handler is running: stop the worker right after it.
                    let inspector = inspector.clone();
                    yew::platform::spawn_local(async move {
                        drop(inspector.borrow_mut().take());
                    });
                    dispatch.dispatch(match result {
                        Ok(found) => UploadAction::Inspected {
                            verdict: check_limits(&found, &config),
                            found: Rc::new(found),
                            millis: now_ms() - started,
                        },
                        Err(refusal) => UploadAction::Refused(refusal),
                    });
                })
            };
            match Inspector::start(&picked, done) {
                Ok(started) => *inspector.borrow_mut() = Some(started),
                Err(refusal) => dispatch.dispatch(UploadAction::Refused(refusal)),
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
        let dispatch = state.dispatcher();
        Callback::from(move |e: DragEvent| {
            e.prevent_default();
            dispatch.dispatch(UploadAction::DragOver(true));
        })
    };
    let ondragleave = {
        let dispatch = state.dispatcher();
        Callback::from(move |_: DragEvent| dispatch.dispatch(UploadAction::DragOver(false)))
    };
    let ondrop = {
        let (dispatch, choose) = (state.dispatcher(), choose.clone());
        Callback::from(move |e: DragEvent| {
            e.prevent_default();
            dispatch.dispatch(UploadAction::DragOver(false));
            let dropped = e
                .data_transfer()
                .and_then(|t| t.files())
                .and_then(|files| files.get(0));
            if let Some(dropped) = dropped {
                choose.emit(dropped);
            }
        })
    };

    let max_stride = state
        .inspection
        .as_ref()
        .map_or(32, |(i, _)| i.max_stride());

    let start_upload = {
        let (dispatch, options) = (state.dispatcher(), state.options.clone());
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
            let json = serde_json::to_string(&options).unwrap_or_else(|_| "{}".to_owned());
            samples.borrow_mut().clear();
            *announced_step.borrow_mut() = -1;
            let on_event = {
                let dispatch = dispatch.clone();
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
                            // A new tenth of the file is said once, for screen readers.
                            let last = announced_step.replace(step);
                            let announce =
                                (step != last).then(|| format!("Uploaded {}%", step * 10));
                            dispatch.dispatch(UploadAction::Uploading {
                                sent,
                                total,
                                speed,
                                left,
                                announce,
                            });
                        }
                        UploadEvent::Sent => dispatch.dispatch(UploadAction::Sent),
                        UploadEvent::Created(job) => {
                            finish();
                            navigate(&Route::Job { id: job.id });
                        }
                        UploadEvent::Failed(error) => {
                            finish();
                            dispatch.dispatch(UploadAction::UploadFailed(error));
                        }
                        UploadEvent::Aborted => {
                            finish();
                            dispatch.dispatch(UploadAction::UploadCancelled);
                        }
                    }
                })
            };
            let total = picked.size();
            match Upload::start(&picked, &json, on_event) {
                Ok(started) => {
                    *upload.borrow_mut() = Some(started);
                    dispatch.dispatch(UploadAction::Uploading {
                        sent: 0.0,
                        total,
                        speed: 0.0,
                        left: f64::INFINITY,
                        announce: None,
                    });
                }
                Err(error) => dispatch.dispatch(UploadAction::UploadFailed(error)),
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
        let uploading = matches!(state.phase, Phase::Uploading { .. });
        use_effect_with(uploading, move |uploading| {
            if *uploading && let Some(button) = cancel_ref.cast::<web_sys::HtmlElement>() {
                let _ = button.focus();
                button.scroll_into_view_with_bool(false);
            }
        });
    }
    let back_to_ready = {
        let dispatch = state.dispatcher();
        Callback::from(move |_: MouseEvent| dispatch.dispatch(UploadAction::BackToReady))
    };

    let phase = &state.phase;
    let busy = matches!(phase, Phase::Uploading { .. } | Phase::Processing);
    let (name, size) = state.chosen.clone().unwrap_or_default();
    let options_valid = validate(&state.options, max_stride).is_empty();

    // Reading and refusals show by the drop zone; the upload by the button that started it.
    let status = match phase {
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
    let transfer = match phase {
        Phase::Ready => html! {
            if state.cancelled {
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
        phase,
        Phase::Ready | Phase::Uploading { .. } | Phase::Processing | Phase::Refused(_)
    );
    let on_options = {
        let dispatch = state.dispatcher();
        Callback::from(move |next: Options| dispatch.dispatch(UploadAction::OptionsChanged(next)))
    };

    html! {
        <div class="view upload-view">
            <h1 tabindex="-1">{ "Convert a YOLOv7 checkpoint" }</h1>
            <p class="lead">{ "Get a TorchScript module for Python, C++ (LibTorch), Rust (tch) and PyTorch Mobile, or an ONNX model for ONNX Runtime, TensorRT and OpenVINO: dynamic input sizes, checked against the original model." }</p>
            <div class={classes!("drop", state.drag_over.then_some("over"), busy.then_some("disabled"))}
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
                if let Some((found, millis)) = &state.inspection {
                    <InspectionCard inspection={found.clone()} file_name={name.clone()} file_size={size} millis={*millis} />
                }
            }
            if matches!(phase, Phase::Ready | Phase::Uploading { .. } | Phase::Processing) {
                <OptionsForm value={state.options.clone()} on_change={on_options}
                    devices={props.config.devices.clone()} {max_stride} disabled={busy} />
            }
            if matches!(phase, Phase::Ready) {
                <div class="actions">
                    <button type="button" class="primary" id="convert" onclick={start_upload}
                        disabled={!options_valid}>{ "Convert" }</button>
                    <span class="hint">{ format!("Uploads {} to the service.", format::bytes(size)) }</span>
                </div>
            }
            { transfer }
            <p class="visually-hidden" aria-live="polite" role="status">{ state.announce.clone() }</p>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_goes_from_reading_to_ready_or_refused() {
        let chosen = Rc::new(UploadState::new(Options::default()))
            .reduce(UploadAction::Chosen {
                name: "best.pt".into(),
                size: 10,
            })
            .reduce(UploadAction::Inspecting);
        assert_eq!(chosen.phase, Phase::Inspecting);
        assert_eq!(chosen.chosen, Some(("best.pt".to_owned(), 10)));
        let found = Rc::new(Inspection::default());
        let ready = chosen.clone().reduce(UploadAction::Inspected {
            found: found.clone(),
            millis: 5.0,
            verdict: Ok(()),
        });
        assert_eq!(ready.phase, Phase::Ready);
        let refusal = Refusal::new("too_many_classes", "over the limit");
        let refused = chosen.reduce(UploadAction::Inspected {
            found,
            millis: 5.0,
            verdict: Err(refusal.clone()),
        });
        assert_eq!(refused.phase, Phase::Refused(refusal));
        assert!(refused.inspection.is_some());
    }

    #[test]
    fn a_cancelled_upload_goes_back_to_ready_and_says_so() {
        let uploading =
            Rc::new(UploadState::new(Options::default())).reduce(UploadAction::Uploading {
                sent: 5.0,
                total: 10.0,
                speed: 1.0,
                left: 5.0,
                announce: Some("Uploaded 50%".into()),
            });
        assert_eq!(uploading.announce, "Uploaded 50%");
        let cancelled = uploading.reduce(UploadAction::UploadCancelled);
        assert_eq!(cancelled.phase, Phase::Ready);
        assert!(cancelled.cancelled);
        let again = cancelled.reduce(UploadAction::Uploading {
            sent: 0.0,
            total: 10.0,
            speed: 0.0,
            left: f64::INFINITY,
            announce: None,
        });
        assert!(!again.cancelled);
        assert_eq!(again.announce, "Upload cancelled.");
    }

    #[test]
    fn every_refusal_gets_its_own_codes_advice() {
        let generic = advice("a_code_no_server_sends");
        for code in yolots_protocol::ErrorCode::ALL {
            assert_eq!(advice(code.as_str()), code.advice(), "{code}");
            assert_ne!(
                advice(code.as_str()),
                generic,
                "{code} gets the generic advice"
            );
        }
        let network = advice(crate::api::NETWORK);
        assert_ne!(network, generic);
        assert!(network.contains("connection"), "{network}");
    }
}
