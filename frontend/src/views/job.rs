//! One job: its live stages through the event stream, failures with the service's message
//! and what to do, then the report and the download once it succeeded.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use yew::prelude::*;

use crate::api::{self, ApiError};
use crate::events::{JobEvent, JobEvents};
use crate::format;
use crate::model::{Job, Progress, Report};
use crate::route::Route;
use crate::views::common::{ErrorBox, StatusBadge, navigate};
use crate::views::report::ReportView;
use yolots_protocol::{Mode, Optimize};

/// The converter's stages in the order they run, with their names for people.
const STAGES: [(&str, &str); 10] = [
    ("reading", "Reading the checkpoint"),
    ("describing", "Describing the model"),
    ("building", "Building the network"),
    ("fusing", "Fusing layers"),
    ("scripting", "Generating TorchScript"),
    ("tracing", "Tracing the network"),
    ("optimizing", "Optimising"),
    ("saving", "Saving the artifact"),
    ("validating", "Validating against the original"),
    ("timing", "Measuring latency"),
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
pub fn timeline(job: &Job, current: Option<&str>) -> Vec<(&'static str, &'static str, StageState)> {
    let o = &job.options;
    let expected = |name: &str| match name {
        "fusing" => o.fuse,
        "scripting" => o.mode != Mode::Trace,
        "tracing" => o.mode == Mode::Trace,
        "optimizing" => o.optimize != Optimize::None,
        _ => true,
    };
    let current = current.or(job.stage.as_deref());
    let at = current.and_then(|c| STAGES.iter().position(|(name, _)| *name == c));
    let done_all = job.status == "succeeded" || current == Some("done");
    STAGES
        .iter()
        .enumerate()
        .filter(|(i, (name, _))| expected(name) || Some(*i) == at)
        .map(|(i, (name, label))| {
            let state = if done_all {
                StageState::Done
            } else {
                match at {
                    Some(a) if i < a => StageState::Done,
                    Some(a) if i == a => match job.status.as_str() {
                        "failed" | "cancelled" => StageState::Failed,
                        "queued" => StageState::Pending,
                        _ => StageState::Active,
                    },
                    _ => StageState::Pending,
                }
            };
            (*name, *label, state)
        })
        .collect()
}

/// What to do about a failed job, by its error code (the table of codes and their advice
/// is `yolots_protocol::ErrorCode`; a code this page does not know gets a generic line).
pub fn advice(code: &str) -> &'static str {
    yolots_protocol::ErrorCode::advice_for(code)
}

#[derive(Properties, PartialEq)]
pub struct JobProps {
    pub id: String,
}

#[component]
pub fn JobView(props: &JobProps) -> Html {
    let job = use_state(|| None::<Job>);
    let progress = use_state(|| None::<Progress>);
    let report = use_state(|| None::<Result<Rc<Report>, ApiError>>);
    let load_error = use_state(|| None::<ApiError>);
    let action_error = use_state(|| None::<ApiError>);
    let reconnecting = use_state(|| false);
    // Bumped after a retry, to follow the job's new run.
    let generation = use_state(|| 0u32);

    {
        let (job, progress, load_error, reconnecting) = (
            job.clone(),
            progress.clone(),
            load_error.clone(),
            reconnecting.clone(),
        );
        use_effect_with((props.id.clone(), *generation), move |(id, _)| {
            let alive = Rc::new(Cell::new(true));
            let id = id.clone();
            {
                let (job, load_error) = (job.clone(), load_error.clone());
                let id = id.clone();
                yew::platform::spawn_local(async move {
                    match api::job(&id).await {
                        Ok(found) => job.set(Some(found)),
                        Err(error) => load_error.set(Some(error)),
                    }
                });
            }
            let poll = {
                let (job, alive, id) = (job.clone(), alive.clone(), id.clone());
                move || {
                    let (job, alive, id) = (job.clone(), alive.clone(), id.clone());
                    yew::platform::spawn_local(async move {
                        while alive.get() {
                            yew::platform::time::sleep(Duration::from_millis(1500)).await;
                            if !alive.get() {
                                break;
                            }
                            if let Ok(found) = api::job(&id).await {
                                let last = found.is_final();
                                job.set(Some(found));
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
                    let (job, progress, reconnecting) =
                        (job.clone(), progress.clone(), reconnecting.clone());
                    let poll = poll.clone();
                    Callback::from(move |event: JobEvent| match event {
                        JobEvent::Status(found) => {
                            reconnecting.set(false);
                            job.set(Some(*found));
                        }
                        JobEvent::Progress(p) => {
                            reconnecting.set(false);
                            progress.set(Some(p));
                        }
                        JobEvent::End => reconnecting.set(false),
                        JobEvent::Reconnecting => reconnecting.set(true),
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

    // The report, once the job succeeded (or failed validation, which writes one too).
    let succeeded = job.as_ref().is_some_and(|j| j.status == "succeeded");
    let failed = job.as_ref().is_some_and(|j| j.status == "failed");
    {
        let (report, job) = (report.clone(), job.clone());
        use_effect_with(
            (props.id.clone(), succeeded || failed),
            move |(_, finished)| {
                if *finished && let Some(found) = (*job).clone() {
                    yew::platform::spawn_local(async move {
                        let fetched = api::get::<Report>(&found.report_link()).await;
                        report.set(Some(fetched.map(Rc::new)));
                    });
                }
            },
        );
    }

    let act = |what: &'static str| {
        let (job, action_error, generation, progress, report) = (
            job.clone(),
            action_error.clone(),
            generation.clone(),
            progress.clone(),
            report.clone(),
        );
        Callback::from(move |_: MouseEvent| {
            let Some(current) = (*job).clone() else {
                return;
            };
            // Deleting a finished job removes its files for good: ask first.
            if what == "delete" && current.is_final() {
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
            let (job, action_error, generation, progress, report) = (
                job.clone(),
                action_error.clone(),
                generation.clone(),
                progress.clone(),
                report.clone(),
            );
            yew::platform::spawn_local(async move {
                action_error.set(None);
                let result = match what {
                    "retry" => api::retry_job(&current).await.map(Some),
                    _ => api::delete_job(&current).await,
                };
                match result {
                    Ok(Some(updated)) => {
                        if what == "retry" {
                            progress.set(None);
                            report.set(None);
                            generation.set(*generation + 1);
                        }
                        job.set(Some(updated));
                    }
                    Ok(None) => navigate(&Route::Jobs { page: 1 }),
                    Err(error) => action_error.set(Some(error)),
                }
            });
        })
    };

    let short_id = props.id.get(..8).unwrap_or(&props.id).to_owned();
    let Some(current) = (*job).clone() else {
        return html! {
            <div class="view job-view">
                <h1 tabindex="-1">{ format!("Job {short_id}") }</h1>
                if let Some(error) = &*load_error {
                    <ErrorBox title="This job cannot be shown" message={error.message.clone()}
                        code={Some(AttrValue::from(error.code.clone()))}
                        advice={Some(AttrValue::from(yolots_protocol::ErrorCode::NotFound.advice()))} />
                    <p><a href="#/jobs">{ "Your jobs" }</a></p>
                } else {
                    <p class="working" role="status"><span class="spinner" aria-hidden="true"></span>{ "Loading the job…" }</p>
                }
            </div>
        };
    };

    let stage_now = progress.as_ref().map(|p| p.stage.clone());
    let rows = timeline(&current, stage_now.as_deref());
    let fraction = if current.status == "succeeded" {
        1.0
    } else {
        progress
            .as_ref()
            .and_then(|p| p.fraction)
            .or(current.progress)
            .unwrap_or(0.0)
            .clamp(0.0, 1.0)
    };
    let message = progress.as_ref().and_then(|p| p.message.clone());
    let active = matches!(current.status.as_str(), "queued" | "running");
    let source = current.source.clone().unwrap_or_default();
    let headline = match current.status.as_str() {
        "queued" => "Waiting for a worker".to_owned(),
        "running" => rows
            .iter()
            .find(|(_, _, s)| *s == StageState::Active)
            .map_or_else(
                || "Starting the conversion…".to_owned(),
                |(_, label, _)| format!("{label}…"),
            ),
        "succeeded" => "Converted".to_owned(),
        "failed" => "The conversion failed".to_owned(),
        "cancelled" => "Cancelled".to_owned(),
        other => other.to_owned(),
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
        <div class="view job-view" data-job-id={current.id.clone()} data-status={current.status.clone()}>
            <p class="crumbs"><a href="#/jobs">{ "Jobs" }</a>{ " / " }{ short_id.clone() }</p>
            <h1 tabindex="-1">{ if source.name.is_empty() { format!("Job {short_id}") } else { source.name.clone() } }</h1>
            <div class="job-head">
                <span id="job-status"><StatusBadge status={current.status.clone()} /></span>
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
                    { format!("{}: {}", current.status, stage_now.clone().or(current.stage.clone()).unwrap_or_default()) }
                </p>
                if let Some(message) = message.filter(|_| active) {
                    <p class="muted stage-message">{ message }</p>
                }
                if *reconnecting && active {
                    <p class="notice">{ "Connection lost; reconnecting…" }</p>
                }
                <ol class="stages" id="stages">
                    { for rows.iter().map(|(name, label, state)| {
                        let (class, mark, said) = match state {
                            StageState::Done => ("done", "✓", "done"),
                            StageState::Active => ("active", "…", "in progress"),
                            StageState::Failed => ("failed", "✕", "stopped here"),
                            StageState::Pending => ("pending", "", "to do"),
                        };
                        html! {
                            <li class={class} data-stage={*name}>
                                <span class="mark" aria-hidden="true">{ mark }</span>
                                <span>{ *label }</span>
                                <span class="visually-hidden">{ format!(" ({said})") }</span>
                            </li>
                        }
                    }) }
                </ol>
                <div class="actions">
                    if active {
                        <button type="button" class="secondary" id="cancel-job" onclick={act("cancel")}>{ "Cancel job" }</button>
                    }
                    if matches!(current.status.as_str(), "failed" | "cancelled") {
                        <button type="button" class="primary" id="retry-job" onclick={act("retry")}>{ "Retry" }</button>
                    }
                    if current.is_final() {
                        <button type="button" class="secondary danger" id="delete-job" onclick={act("delete")}>{ "Delete" }</button>
                    }
                </div>
                if let Some(error) = &*action_error {
                    <ErrorBox title="That did not work" message={error.message.clone()} code={Some(AttrValue::from(error.code.clone()))} />
                }
            </section>

            if current.status == "failed" {
                { failure }
            }

            if succeeded {
                {
                    match &*report {
                        None => html! { <p class="working" role="status"><span class="spinner" aria-hidden="true"></span>{ "Loading the report…" }</p> },
                        Some(Err(error)) => html! {
                            <ErrorBox title="The report cannot be shown" message={error.message.clone()} code={Some(AttrValue::from(error.code.clone()))} />
                        },
                        Some(Ok(found)) => html! { <ReportView job={current.clone()} report={found.clone()} downloadable=true /> },
                    }
                }
            }
            if failed && let Some(Ok(found)) = &*report {
                <ReportView job={current.clone()} report={found.clone()} downloadable=false />
            }
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(status: &str, stage: Option<&str>) -> Job {
        Job {
            status: status.to_owned(),
            stage: stage.map(str::to_owned),
            ..Job::default()
        }
    }

    #[test]
    fn stages_follow_the_options_and_the_current_stage() {
        let rows = timeline(&job("running", Some("saving")), None);
        let names: Vec<&str> = rows.iter().map(|r| r.0).collect();
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

        let failed = timeline(&job("failed", Some("validating")), None);
        assert!(
            failed
                .iter()
                .any(|r| r.0 == "validating" && r.2 == StageState::Failed)
        );

        let done = timeline(&job("succeeded", None), None);
        assert!(done.iter().all(|r| r.2 == StageState::Done));

        let mut traced = job("running", None);
        traced.options.mode = Mode::Trace;
        let rows = timeline(&traced, Some("tracing"));
        assert!(
            rows.iter()
                .any(|r| r.0 == "tracing" && r.2 == StageState::Active)
        );
        assert!(!rows.iter().any(|r| r.0 == "scripting"));
    }
}
