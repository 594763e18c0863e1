//! Small pieces the views share: navigation, the clock, status badges, error boxes and a
//! copy button.

use yew::prelude::*;

use crate::route::Route;

/// Goes to `route` (the `hashchange` listener of the app renders it).
pub fn navigate(route: &Route) {
    if let Some(window) = web_sys::window() {
        let _ = window.location().set_hash(&route.hash());
    }
}

/// Milliseconds since the page loaded.
pub fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map_or(0.0, |p| p.now())
}

/// A job status as a coloured badge with its word (never colour alone).
#[derive(Properties, PartialEq)]
pub struct BadgeProps {
    pub status: AttrValue,
}

#[component]
pub fn StatusBadge(props: &BadgeProps) -> Html {
    let status = props.status.as_str();
    let class = match status {
        "succeeded" | "passed" => "badge ok",
        "failed" => "badge bad",
        "running" | "queued" => "badge busy",
        _ => "badge",
    };
    let label = match status {
        "not_validated" => "not validated",
        other => other,
    };
    html! { <span class={class} data-status={status.to_owned()}>{ label.to_owned() }</span> }
}

/// An error with its code and what to do about it.
#[derive(Properties, PartialEq)]
pub struct ErrorBoxProps {
    pub title: AttrValue,
    pub message: AttrValue,
    #[prop_or_default]
    pub code: Option<AttrValue>,
    #[prop_or_default]
    pub advice: Option<AttrValue>,
    #[prop_or_default]
    pub id: Option<AttrValue>,
}

#[component]
pub fn ErrorBox(props: &ErrorBoxProps) -> Html {
    html! {
        <div class="error-box" role="alert" id={props.id.clone()}>
            <p class="error-title"><strong>{ props.title.clone() }</strong>
                if let Some(code) = &props.code {
                    { " " }<code class="error-code">{ code.clone() }</code>
                }
            </p>
            <p class="error-message">{ props.message.clone() }</p>
            if let Some(advice) = &props.advice {
                <p class="error-advice">{ advice.clone() }</p>
            }
        </div>
    }
}

/// Copies `text` to the clipboard and says so.
#[derive(Properties, PartialEq)]
pub struct CopyProps {
    pub text: AttrValue,
    /// What is copied, for the button's accessible name.
    pub what: AttrValue,
}

#[component]
pub fn CopyButton(props: &CopyProps) -> Html {
    let copied = use_state(|| false);
    let onclick = {
        let text = props.text.clone();
        let copied = copied.clone();
        Callback::from(move |_| {
            if let Some(window) = web_sys::window() {
                let _ = window.navigator().clipboard().write_text(&text);
                copied.set(true);
            }
        })
    };
    html! {
        <button type="button" class="copy" {onclick}
            aria-label={format!("Copy the {} code", props.what)}>
            { if *copied { "Copied" } else { "Copy" } }
        </button>
    }
}
