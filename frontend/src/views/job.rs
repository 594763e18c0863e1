//! One job: its live stages through the event stream, failures with the service's message
//! and what to do, then the report and the download once it succeeded.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use yew::prelude::*;

use crate::api::{self, ApiError};
use crate::events::{JobEvent, JobEvents};
use crate::format;
use crate::model::{Job, JobStatus, Progress, Report};
use crate::route::Route;
use crate::views::common::{ErrorBox, StatusBadge, navigate};
use crate::views::report::ReportView;
use yolots_protocol::{ErrorCode, Format, Mode, Optimize, Stage};

/// The converter's stages in the order they run, with their names for people.
const STAGES: [(Stage, &str); 11] = [
    (Stage::Reading, "Reading the checkpoint"),
    (Stage::Describing, "Describing the model"),
    (Stage::Building, "Building the network"),
    (Stage::Fusing, "Fusing layers"),
    (Stage::Scripting, "Generating TorchScript"),
    (Stage::Tracing, "Tracing the network"),
    (Stage::Exporting, "Writing the ONNX graph"),
    (Stage::Optimizing, "Optimising"),
    (Stage::Saving, "Saving the artifact"),
    (Stage::Validating, "Validating against the original"),
    (Stage::Timing, "Measuring latency"),
];

/// Where a stage stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageState {
    Pending,
    Active,
    Done,
    Failed,
}

/// The stages this job runs (by its options, plus whatever it reports) and their states.
pub fn timeline(job: &Job, current: Option<Stage>) -> Vec<(Stage, &'static str, StageState)> {
    let o = &job.options;
    let onnx = o.format == Format::Onnx;
    let expected = |stage: Stage| match stage {
        Stage::Fusing => o.fuse,
        Stage::Scripting => !onnx && o.mode != Mode::Trace,
        Stage::Tracing => !onnx && o.mode == Mode::Trace,
        Stage::Exporting => onnx,
        Stage::Optimizing => !onnx && o.optimize != Optimize::None,
        _ => true,
    };
    let current = current.or(job.stage);
    let at = current.and_then(|c| STAGES.iter().position(|(stage, _)| *stage == c));
    let done_all = job.status == JobStatus::Succeeded || current == Some(Stage::Done);
    STAGES
        .iter()
        .enumerate()
        .filter(|(i, (stage, _))| expected(*stage) || Some(*i) == at)
        .map(|(i, (stage, label))| {
            let state = if done_all {
                StageState::Done
            } else {
                match at {
                    Some(a) if i < a => StageState::Done,
                    Some(a) if i == a => match job.status {
                        JobStatus::Failed | JobStatus::Cancelled => StageState::Failed,
                        JobStatus::Queued => StageState::Pending,
                        _ => StageState::Active,
                    },
                    _ => StageState::Pending,
                }
            };
            (*stage, *label, state)
        })
        .collect()
}

/// What to do about a failed job, by its error code (the table of codes and their advice
/// is `yolots_protocol::ErrorCode`; a code this page does not know gets a generic line).
pub fn advice(code: &str) -> &'static str {
    ErrorCode::advice_for(code)
}

/// What the buttons of a job ask the service for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Stop a queued or running job.
    Cancel,
    /// Queue a failed or cancelled job again.
    Retry,
    /// Remove a finished job, its report and its artifact.
    Delete,
}

/// Everything the job view shows; changed only through [`JobAction`]s.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobState {
    pub job: Option<Job>,
    /// The last progress event of the live stream.
    pub progress: Option<Progress>,
    /// The report, once the job has one (fetched after it ended).
    pub report: Option<Result<Rc<Report>, ApiError>>,
    pub load_error: Option<ApiError>,
    pub command_error: Option<ApiError>,
    /// The live stream dropped and is reconnecting.
    pub reconnecting: bool,
    /// Bumped after a retry, to follow the job's new run.
    pub generation: u32,
}

/// What can happen to the job view.
#[derive(Debug, Clone, PartialEq)]
pub enum JobAction {
    /// The job as the service shows it now (a fetch, a poll or a status event).
    Loaded(Job),
    /// The job could not be fetched.
    LoadFailed(ApiError),
    /// A stage of the running conversion.
    Progressed(Progress),
    /// The live stream dropped; it reconnects by itself.
    Reconnecting,
    /// The live stream ended.
    StreamEnded,
    /// The report arrived (or could not be fetched).
    ReportFetched(Result<Rc<Report>, ApiError>),
    /// A button was pressed: forget the last command's error.
    CommandStarted,
    /// The service refused a command.
    CommandFailed(ApiError),
    /// A retry queued the job again: follow its new run from scratch.
    Retried(Job),
}

impl Reducible for JobState {
    type Action = JobAction;

    fn reduce(self: Rc<Self>, action: JobAction) -> Rc<Self> {
        let mut next = (*self).clone();
        match action {
            JobAction::Loaded(job) => {
                next.reconnecting = false;
                next.job = Some(job);
            }
            JobAction::LoadFailed(error) => next.load_error = Some(error),
            JobAction::Progressed(progress) => {
                next.reconnecting = false;
                next.progress = Some(progress);
            }
            JobAction::Reconnecting => next.reconnecting = true,
            JobAction::StreamEnded => next.reconnecting = false,
            JobAction::ReportFetched(report) => next.report = Some(report),
            JobAction::CommandStarted => next.command_error = None,
            JobAction::CommandFailed(error) => next.command_error = Some(error),
            JobAction::Retried(job) => {
                next.progress = None;
                next.report = None;
                next.generation += 1;
                next.job = Some(job);
            }
        }
        Rc::new(next)
    }
}

/// Follows job `id`: fetches it, then its live events (or polls, where a stream cannot be
/// opened), until the view goes away or `generation` changes.
#[hook]
fn use_job_feed(id: &str, generation: u32, dispatch: UseReducerDispatcher<JobState>) {
    use_effect_with((id.to_owned(), generation), move |(id, _)| {
        let alive = Rc::new(Cell::new(true));
        let id = id.clone();
        {
            let (dispatch, id) = (dispatch.clone(), id.clone());
            yew::platform::spawn_local(async move {
                dispatch.dispatch(match api::job(&id).await {
                    Ok(found) => JobAction::Loaded(found),
                    Err(error) => JobAction::LoadFailed(error),
                });
            });
        }
        let poll = {
            let (dispatch, alive, id) = (dispatch.clone(), alive.clone(), id.clone());
            move || {
                let (dispatch, alive, id) = (dispatch.clone(), alive.clone(), id.clone());
                yew::platform::spawn_local(async move {
                    while alive.get() {
                        yew::platform::time::sleep(Duration::from_millis(1500)).await;
                        if !alive.get() {
                            break;
                        }
                        if let Ok(found) = api::job(&id).await {
                            let last = found.is_final();
                            dispatch.dispatch(JobAction::Loaded(found));
                            if last {
                                break;
                            }
                        }
                    }
                });
            }
        };
        // EventSource cannot send a typed token: poll then.
        let stream = if api::token().is_some() {
            poll();
            None
        } else {
            let on_event = {
                let poll = poll.clone();
                Callback::from(move |event: JobEvent| match event {
                    JobEvent::Status(found) => dispatch.dispatch(JobAction::Loaded(*found)),
                    JobEvent::Progress(p) => dispatch.dispatch(JobAction::Progressed(p)),
                    JobEvent::End => dispatch.dispatch(JobAction::StreamEnded),
                    JobEvent::Reconnecting => dispatch.dispatch(JobAction::Reconnecting),
                    JobEvent::Closed => poll(),
                })
            };
            match JobEvents::open(&format!("/api/v1/jobs/{id}/events"), on_event) {
                Ok(stream) => Some(stream),
                Err(_) => {
                    poll();
                    None
                }
            }
        };
        move || {
            alive.set(false);
            drop(stream);
        }
    });
}

/// Fetches the report once the job ended with one (succeeded, or failed validation).
#[hook]
fn use_report(job: Option<&Job>, dispatch: UseReducerDispatcher<JobState>) {
    let ended = job.filter(|j| matches!(j.status, JobStatus::Succeeded | JobStatus::Failed));
    let link = ended.map(Job::report_link);
    use_effect_with(link, move |link| {
        if let Some(link) = link.clone() {
            yew::platform::spawn_local(async move {
                let fetched = api::get::<Report>(&link).await;
                dispatch.dispatch(JobAction::ReportFetched(fetched.map(Rc::new)));
            });
        }
    });
}

/// Runs a button's command against the service.
async fn run_command(command: Command, current: Job, dispatch: UseReducerDispatcher<JobState>) {
    dispatch.dispatch(JobAction::CommandStarted);
    let result = match command {
        Command::Retry => api::retry_job(&current).await.map(Some),
        Command::Cancel | Command::Delete => api::delete_job(&current).await,
    };
    match result {
        Ok(Some(updated)) if command == Command::Retry => {
            dispatch.dispatch(JobAction::Retried(updated));
        }
        Ok(Some(updated)) => dispatch.dispatch(JobAction::Loaded(updated)),
        Ok(None) => navigate(&Route::Jobs { page: 1 }),
        Err(error) => dispatch.dispatch(JobAction::CommandFailed(error)),
    }
}

#[derive(Properties, PartialEq)]
pub struct JobProps {
    pub id: String,
}

#[component]
pub fn JobView(props: &JobProps) -> Html {
    let state = use_reducer(JobState::default);
    use_job_feed(&props.id, state.generation, state.dispatcher());
    use_report(state.job.as_ref(), state.dispatcher());

    let act = |command: Command| {
        let (job, dispatch) = (state.job.clone(), state.dispatcher());
        Callback::from(move |_: MouseEvent| {
            let Some(current) = job.clone() else {
                return;
            };
            // Deleting a finished job removes its files for good: ask first.
            if command == Command::Delete {
                let sure = web_sys::window()
                    .and_then(|w| {
                        w.confirm_with_message("Delete this job, its report and its artifact?")
                            .ok()
                    })
                    .unwrap_or(false);
                if !sure {
                    return;
                }
            }
            yew::platform::spawn_local(run_command(command, current, dispatch.clone()));
        })
    };

    let short_id = props.id.get(..8).unwrap_or(&props.id).to_owned();
    let Some(current) = state.job.clone() else {
        return html! {
            <div class="view job-view">
                <h1 tabindex="-1">{ format!("Job {short_id}") }</h1>
                if let Some(error) = &state.load_error {
                    <ErrorBox title="This job cannot be shown" message={error.message.clone()}
                        code={Some(AttrValue::from(error.code.clone()))}
                        advice={Some(AttrValue::from(ErrorCode::NotFound.advice()))} />
                    <p><a href="#/jobs">{ "Your jobs" }</a></p>
                } else {
                    <p class="working" role="status"><span class="spinner" aria-hidden="true"></span>{ "Loading the job…" }</p>
                }
            </div>
        };
    };

    let progress = state.progress.as_ref();
    let stage_now = progress.and_then(|p| p.stage);
    let rows = timeline(&current, stage_now);
    let fraction = if current.status == JobStatus::Succeeded {
        1.0
    } else {
        progress
            .and_then(|p| p.fraction)
            .or(current.progress)
            .unwrap_or(0.0)
            .clamp(0.0, 1.0)
    };
    let message = progress.and_then(|p| p.message.clone());
    let active = current.status.is_active();
    let source = current.source.clone().unwrap_or_default();
    let headline = match current.status {
        JobStatus::Queued => "Waiting for a worker".to_owned(),
        JobStatus::Running => rows
            .iter()
            .find(|(_, _, s)| *s == StageState::Active)
            .map_or_else(
                || "Starting the conversion…".to_owned(),
                |(_, label, _)| format!("{label}…"),
            ),
        JobStatus::Succeeded => "Converted".to_owned(),
        JobStatus::Failed => "The conversion failed".to_owned(),
        JobStatus::Cancelled => "Cancelled".to_owned(),
        JobStatus::Unknown => "Status unknown to this page".to_owned(),
    };

    let failure = {
        let error = current.error.clone().unwrap_or_default();
        let message = if error.message.is_empty() {
            "The service gave no reason.".to_owned()
        } else {
            error.message.clone()
        };
        html! {
            <ErrorBox id={Some(AttrValue::from("job-error"))} title="Why it failed" {message}
                code={(!error.code.is_empty()).then(|| AttrValue::from(error.code.clone()))}
                advice={Some(AttrValue::from(advice(&error.code)))} />
        }
    };

    html! {
        <div class="view job-view" data-job-id={current.id.clone()} data-status={current.status.as_str()}>
            <p class="crumbs"><a href="#/jobs">{ "Jobs" }</a>{ " / " }{ short_id.clone() }</p>
            <h1 tabindex="-1">{ if source.name.is_empty() { format!("Job {short_id}") } else { source.name.clone() } }</h1>
            <div class="job-head">
                <span id="job-status"><StatusBadge status={current.status.as_str()} /></span>
                <span class="muted">{ format!("{} · created {}", format::bytes(source.size), format::timestamp(&current.created_at)) }</span>
                if current.attempts > 1 {
                    <span class="muted">{ format!("attempt {} of {}", current.attempts, current.max_attempts) }</span>
                }
                if let Some(from) = &current.reused_from {
                    <span class="muted">{ "reused the artifact of " }<a href={Route::Job { id: from.clone() }.hash()}>{ from.get(..8).unwrap_or(from) }</a></span>
                }
            </div>

            <section class="panel" aria-labelledby="stages-title">
                <h2 id="stages-title">{ headline }</h2>
                <progress id="job-progress" max="1" value={fraction.to_string()} aria-label="Conversion progress"
                    aria-valuetext={format!("{:.0}%", fraction * 100.0)}></progress>
                <p class="visually-hidden" aria-live="polite" role="status">
                    { format!("{}: {}", current.status.as_str(), stage_now.or(current.stage).map(Stage::as_str).unwrap_or_default()) }
                </p>
                if let Some(message) = message.filter(|_| active) {
                    <p class="muted stage-message">{ message }</p>
                }
                if state.reconnecting && active {
                    <p class="notice">{ "Connection lost; reconnecting…" }</p>
                }
                <ol class="stages" id="stages">
                    { for rows.iter().map(|(stage, label, stands)| {
                        let (class, mark, said) = match stands {
                            StageState::Done => ("done", "✓", "done"),
                            StageState::Active => ("active", "…", "in progress"),
                            StageState::Failed => ("failed", "✕", "stopped here"),
                            StageState::Pending => ("pending", "", "to do"),
                        };
                        html! {
                            <li class={class} data-stage={stage.as_str()}>
                                <span class="mark" aria-hidden="true">{ mark }</span>
                                <span>{ *label }</span>
                                <span class="visually-hidden">{ format!(" ({said})") }</span>
                            </li>
                        }
                    }) }
                </ol>
                <div class="actions">
                    if active {
                        <button type="button" class="secondary" id="cancel-job" onclick={act(Command::Cancel)}>{ "Cancel job" }</button>
                    }
                    if matches!(current.status, JobStatus::Failed | JobStatus::Cancelled) {
                        <button type="button" class="primary" id="retry-job" onclick={act(Command::Retry)}>{ "Retry" }</button>
                    }
                    if current.is_final() {
                        <button type="button" class="secondary danger" id="delete-job" onclick={act(Command::Delete)}>{ "Delete" }</button>
                    }
                </div>
                if let Some(error) = &state.command_error {
                    <ErrorBox title="That did not work" message={error.message.clone()} code={Some(AttrValue::from(error.code.clone()))} />
                }
            </section>

            if current.status == JobStatus::Failed {
                { failure }
            }

            if current.status == JobStatus::Succeeded {
                {
                    match &state.report {
                        None => html! { <p class="working" role="status"><span class="spinner" aria-hidden="true"></span>{ "Loading the report…" }</p> },
                        Some(Err(error)) => html! {
                            <ErrorBox title="The report cannot be shown" message={error.message.clone()} code={Some(AttrValue::from(error.code.clone()))} />
                        },
                        Some(Ok(found)) => html! { <ReportView job={current.clone()} report={found.clone()} downloadable=true /> },
                    }
                }
            }
            if current.status == JobStatus::Failed && let Some(Ok(found)) = &state.report {
                <ReportView job={current.clone()} report={found.clone()} downloadable=false />
            }
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(status: JobStatus, stage: Option<Stage>) -> Job {
        Job {
            status,
            stage,
            ..Job::default()
        }
    }

    #[test]
    fn stages_follow_the_options_and_the_current_stage() {
        let rows = timeline(&job(JobStatus::Running, Some(Stage::Saving)), None);
        let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "reading",
                "describing",
                "building",
                "fusing",
                "scripting",
                "saving",
                "validating",
                "timing"
            ]
        );
        assert_eq!(rows[4].2, StageState::Done);
        assert_eq!(rows[5].2, StageState::Active);
        assert_eq!(rows[6].2, StageState::Pending);

        let failed = timeline(&job(JobStatus::Failed, Some(Stage::Validating)), None);
        assert!(
            failed
                .iter()
                .any(|r| r.0 == Stage::Validating && r.2 == StageState::Failed)
        );

        let done = timeline(&job(JobStatus::Succeeded, None), None);
        assert!(done.iter().all(|r| r.2 == StageState::Done));

        let mut traced = job(JobStatus::Running, None);
        traced.options.mode = Mode::Trace;
        let rows = timeline(&traced, Some(Stage::Tracing));
        assert!(
            rows.iter()
                .any(|r| r.0 == Stage::Tracing && r.2 == StageState::Active)
        );
        assert!(!rows.iter().any(|r| r.0 == Stage::Scripting));
    }

    #[test]
    fn an_onnx_job_exports_instead_of_scripting() {
        let mut onnx = job(JobStatus::Running, Some(Stage::Exporting));
        onnx.options.format = Format::Onnx;
        let rows = timeline(&onnx, None);
        assert!(!rows.iter().any(|r| r.0 == Stage::Scripting));
        assert!(
            rows.iter()
                .any(|r| r.0 == Stage::Exporting && r.2 == StageState::Active)
        );
    }

    #[test]
    fn a_retry_forgets_the_last_run() {
        let state = Rc::new(JobState::default())
            .reduce(JobAction::Progressed(Progress {
                stage: Some(Stage::Validating),
                ..Progress::default()
            }))
            .reduce(JobAction::Reconnecting)
            .reduce(JobAction::ReportFetched(Ok(Rc::new(Report::default()))));
        assert!(state.reconnecting && state.progress.is_some() && state.report.is_some());
        let again = state.reduce(JobAction::Retried(job(JobStatus::Queued, None)));
        assert_eq!(again.generation, 1);
        assert!(again.progress.is_none() && again.report.is_none());
        assert_eq!(
            again.job.as_ref().map(|j| j.status),
            Some(JobStatus::Queued)
        );
        let loaded = again.reduce(JobAction::Loaded(job(JobStatus::Running, None)));
        assert!(!loaded.reconnecting);
    }

    #[test]
    fn statuses_and_stages_read_as_the_service_spells_them() {
        let found: Job =
            serde_json::from_str(r#"{"id": "j", "status": "running", "stage": "exporting"}"#)
                .unwrap();
        assert_eq!(found.status, JobStatus::Running);
        assert_eq!(found.stage, Some(Stage::Exporting));
        let newer: Job =
            serde_json::from_str(r#"{"status": "paused", "stage": "resting"}"#).unwrap();
        assert_eq!(newer.status, JobStatus::Unknown);
        assert!(!newer.is_final());
        assert_eq!(newer.stage, None);
    }
}
