//! The shell: session and configuration at start, the header, the hash router, focus and
//! title on every route change.

use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{Event, HtmlElement};
use yew::prelude::*;

use crate::api::{self, ApiError};
use crate::model::{Config, Session};
use crate::route::Route;
use crate::views::common::ErrorBox;
use crate::views::job::JobView;
use crate::views::jobs::JobsView;
use crate::views::upload::UploadView;

/// Where the start-up calls stand.
#[derive(Clone, PartialEq)]
enum Boot {
    Loading,
    Ready {
        session: Session,
        config: Rc<Config>,
        /// The service did not describe its limits: the page checks only what the reader checks.
        config_missing: bool,
    },
    /// The server has no open sessions: a token must be typed.
    NeedToken {
        message: Option<String>,
    },
    Failed(ApiError),
}

fn current_route() -> Route {
    web_sys::window()
        .and_then(|w| w.location().hash().ok())
        .map_or(Route::Upload, |h| Route::parse(&h))
}

/// Marks a moment on the page's timeline, read by the browser test.
fn mark(name: &str) {
    if let Some(performance) = web_sys::window().and_then(|w| w.performance()) {
        let _ = performance.mark(name);
    }
}

async fn boot() -> Boot {
    let session = match api::ensure_session().await {
        Ok(session) => session,
        Err(error) if error.status == 403 || error.status == 401 => {
            let message = api::token().map(|_| error.message.clone());
            return Boot::NeedToken { message };
        }
        Err(error) => return Boot::Failed(error),
    };
    let (config, config_missing) = match api::get::<Config>("/api/v1/config").await {
        Ok(config) => (config, false),
        Err(_) => (Config::default(), true),
    };
    Boot::Ready {
        session,
        config: Rc::new(config),
        config_missing,
    }
}

#[component]
pub fn App() -> Html {
    let route = use_state(current_route);
    let boot_state = use_state(|| Boot::Loading);
    let main_ref = use_node_ref();

    // Follow the hash.
    {
        let route = route.clone();
        use_effect_with((), move |_| {
            let listener = Closure::<dyn FnMut(Event)>::new(move |_| route.set(current_route()));
            let window = web_sys::window();
            if let Some(w) = &window {
                let _ = w.add_event_listener_with_callback(
                    "hashchange",
                    listener.as_ref().unchecked_ref(),
                );
            }
            mark("yolots-rendered");
            move || {
                if let Some(w) = &window {
                    let _ = w.remove_event_listener_with_callback(
                        "hashchange",
                        listener.as_ref().unchecked_ref(),
                    );
                }
                drop(listener);
            }
        });
    }

    // Session and configuration, once (and again after a token is typed).
    let reboot = {
        let boot_state = boot_state.clone();
        Callback::from(move |()| {
            let boot_state = boot_state.clone();
            boot_state.set(Boot::Loading);
            yew::platform::spawn_local(async move {
                let state = boot().await;
                if matches!(state, Boot::Ready { .. }) {
                    mark("yolots-ready");
                }
                boot_state.set(state);
            });
        })
    };
    {
        let reboot = reboot.clone();
        use_effect_with((), move |_| reboot.emit(()));
    }

    // A new route: its title, and focus to its heading so screen readers announce it.
    {
        let main_ref = main_ref.clone();
        use_effect_with((*route).clone(), move |route| {
            if let Some(document) = web_sys::window().and_then(|w| w.document()) {
                document.set_title(&route.title());
            }
            let heading = main_ref
                .cast::<HtmlElement>()
                .and_then(|main| main.query_selector("h1").ok().flatten())
                .and_then(|h| h.dyn_into::<HtmlElement>().ok());
            if let Some(heading) = heading
                && document_has_focus_elsewhere()
            {
                let _ = heading.focus();
            }
        });
    }

    let skip = {
        let main_ref = main_ref.clone();
        Callback::from(move |e: MouseEvent| {
            e.prevent_default();
            if let Some(main) = main_ref.cast::<HtmlElement>() {
                let _ = main.focus();
            }
        })
    };

    let body = match &*boot_state {
        Boot::Loading => html! {
            <p class="loading" role="status">{ "Connecting to the service…" }</p>
        },
        Boot::Failed(error) => html! {
            <ErrorBox title="The service is not answering" message={error.message.clone()}
                code={Some(AttrValue::from(error.code.clone()))}
                advice={Some(AttrValue::from("Check that `yolots serve` is running, then reload the page."))} />
        },
        Boot::NeedToken { message } => html! {
            <TokenForm message={message.clone()} on_done={reboot.clone()} />
        },
        Boot::Ready {
            session,
            config,
            config_missing,
        } => html! {
            <>
                if *config_missing {
                    <p class="notice" role="status">
                        { "This server does not publish its limits; the page checks the file with the reader only." }
                    </p>
                }
                {
                    match &*route {
                        Route::Upload => html! { <UploadView config={config.clone()} /> },
                        Route::Jobs { page } => html! { <JobsView page={*page} /> },
                        Route::Job { id } => html! { <JobView id={id.clone()} /> },
                    }
                }
                <p class="owner">{ format!("Signed in as {}", session.owner.name) }</p>
            </>
        },
    };

    let current = |r: &Route| -> Option<&'static str> {
        let same = matches!(
            (&*route, r),
            (Route::Upload, Route::Upload)
                | (Route::Jobs { .. } | Route::Job { .. }, Route::Jobs { .. })
        );
        same.then_some("page")
    };

    html! {
        <>
            <a class="skip" href="#main" onclick={skip}>{ "Skip to content" }</a>
            <header class="top">
                <a class="brand" href="#/">
                    <img src="favicon.svg" alt="" width="28" height="28" />
                    <span>{ "yolots" }</span>
                </a>
                <nav aria-label="Main">
                    <a href="#/" aria-current={current(&Route::Upload)}>{ "New conversion" }</a>
                    <a href="#/jobs" aria-current={current(&Route::Jobs { page: 1 })}>{ "Jobs" }</a>
                </nav>
            </header>
            <main id="main" ref={main_ref} tabindex="-1">{ body }</main>
            <footer class="bottom">
                <p>{ "yolots turns YOLOv7 checkpoints into TorchScript and ONNX, without Python and without running anything from the file. " }
                   <a href="/api/v1/openapi.json">{ "API" }</a></p>
            </footer>
        </>
    }
}

/// Whether focus sits on something other than a form control (moving it then would not
/// steal it from the user).
fn document_has_focus_elsewhere() -> bool {
    let active = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.active_element());
    match active {
        None => true,
        Some(element) => !matches!(
            element.tag_name().as_str(),
            "INPUT" | "SELECT" | "TEXTAREA" | "BUTTON"
        ),
    }
}

#[derive(Properties, PartialEq)]
struct TokenProps {
    message: Option<String>,
    on_done: Callback<()>,
}

/// For servers without open sessions: a token made with `yolots token create`.
#[component]
fn TokenForm(props: &TokenProps) -> Html {
    let input = use_node_ref();
    let onsubmit = {
        let input = input.clone();
        let on_done = props.on_done.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if let Some(field) = input.cast::<web_sys::HtmlInputElement>() {
                let token = field.value();
                let token = token.trim();
                api::set_token((!token.is_empty()).then_some(token));
                on_done.emit(());
            }
        })
    };
    html! {
        <section class="panel narrow" aria-labelledby="token-title">
            <h1 id="token-title" tabindex="-1">{ "Access token" }</h1>
            <p>{ "This server does not hand out sessions. Paste a token made with " }
               <code>{ "yolots token create --name NAME" }</code>{ "." }</p>
            if let Some(message) = &props.message {
                <ErrorBox title="The token was refused" message={message.clone()} />
            }
            <form {onsubmit}>
                <label for="token">{ "Token" }</label>
                <input id="token" ref={input} type="password" autocomplete="off" required=true />
                <button type="submit" class="primary">{ "Continue" }</button>
            </form>
        </section>
    }
}
