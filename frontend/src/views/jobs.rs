//! The owner's jobs, newest first, a page at a time; refreshed while some are running.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use yew::prelude::*;

use crate::api::{self, ApiError};
use crate::format;
use crate::model::{JobList, JobStatus};
use crate::route::Route;
use crate::views::common::{ErrorBox, StatusBadge};
use yolots_protocol::Stage;

const PER_PAGE: u32 = 20;

/// Pages needed for `total` jobs (at least one).
pub fn page_count(total: u64, per_page: u32) -> u32 {
    let per_page = u64::from(per_page.max(1));
    u32::try_from(total.div_ceil(per_page).max(1)).unwrap_or(u32::MAX)
}

#[derive(Properties, PartialEq)]
pub struct JobsProps {
    pub page: u32,
}

#[component]
pub fn JobsView(props: &JobsProps) -> Html {
    let list = use_state(|| None::<Result<JobList, ApiError>>);
    {
        let list = list.clone();
        use_effect_with(props.page, move |page| {
            let alive = Rc::new(Cell::new(true));
            let (page, running) = (*page, alive.clone());
            yew::platform::spawn_local(async move {
                loop {
                    let fetched = api::jobs(page, PER_PAGE).await;
                    let busy = fetched
                        .as_ref()
                        .is_ok_and(|l| l.jobs.iter().any(|j| !j.is_final()));
                    if !running.get() {
                        break;
                    }
                    list.set(Some(fetched));
                    if !busy {
                        break;
                    }
                    yew::platform::time::sleep(Duration::from_secs(2)).await;
                    if !running.get() {
                        break;
                    }
                }
            });
            move || alive.set(false)
        });
    }

    let body = match &*list {
        None => {
            html! { <p class="working" role="status"><span class="spinner" aria-hidden="true"></span>{ "Loading your jobs…" }</p> }
        }
        Some(Err(error)) => html! {
            <ErrorBox title="Your jobs cannot be listed" message={error.message.clone()} code={Some(AttrValue::from(error.code.clone()))} />
        },
        Some(Ok(found)) if found.jobs.is_empty() && props.page <= 1 => html! {
            <p class="empty">{ "No conversions yet. " }<a href="#/">{ "Convert a checkpoint" }</a></p>
        },
        Some(Ok(found)) => {
            let pages = page_count(
                found.total,
                if found.per_page == 0 {
                    PER_PAGE
                } else {
                    found.per_page
                },
            );
            let page = props.page;
            html! {
                <>
                    <div class="table-wrap">
                        <table id="jobs">
                            <caption class="visually-hidden">{ "Your conversion jobs, newest first" }</caption>
                            <thead><tr>
                                <th scope="col">{ "File" }</th>
                                <th scope="col">{ "Status" }</th>
                                <th scope="col">{ "Options" }</th>
                                <th scope="col" class="num">{ "Size" }</th>
                                <th scope="col">{ "Created (UTC)" }</th>
                            </tr></thead>
                            <tbody>
                                { for found.jobs.iter().map(|j| {
                                    let name = if j.file_name().is_empty() { j.id.clone() } else { j.file_name().to_owned() };
                                    let o = &j.options;
                                    html! {
                                        <tr data-job-id={j.id.clone()}>
                                            <th scope="row"><a href={Route::Job { id: j.id.clone() }.hash()}>{ name }</a></th>
                                            <td><StatusBadge status={j.status.as_str()} />
                                                if j.status == JobStatus::Running {
                                                    <span class="muted small">{ format!(" {}", j.stage.map(Stage::as_str).unwrap_or_default()) }</span>
                                                }
                                            </td>
                                            <td class="small">{ format!("{} · {} · {} · {} · {}×{}", o.format, o.mode, o.head, format::dtype(o.precision.as_str()), o.img_size[0], o.img_size[1]) }</td>
                                            <td class="num">{ format::bytes(j.source.as_ref().map_or(0, |s| s.size)) }</td>
                                            <td>{ format::timestamp(&j.created_at) }</td>
                                        </tr>
                                    }
                                }) }
                            </tbody>
                        </table>
                    </div>
                    <nav class="pager" aria-label="Pages">
                        if page > 1 {
                            <a class="button secondary" href={Route::Jobs { page: page - 1 }.hash()} rel="prev">{ "← Newer" }</a>
                        }
                        <span aria-current="page">{ format!("Page {page} of {pages} · {} job{}", found.total, if found.total == 1 { "" } else { "s" }) }</span>
                        if page < pages {
                            <a class="button secondary" href={Route::Jobs { page: page + 1 }.hash()} rel="next">{ "Older →" }</a>
                        }
                    </nav>
                </>
            }
        }
    };

    html! {
        <div class="view jobs-view">
            <h1 tabindex="-1">{ "Your jobs" }</h1>
            { body }
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::page_count;

    #[test]
    fn pages() {
        assert_eq!(page_count(0, 20), 1);
        assert_eq!(page_count(20, 20), 1);
        assert_eq!(page_count(21, 20), 2);
        assert_eq!(page_count(5, 0), 5);
    }
}
