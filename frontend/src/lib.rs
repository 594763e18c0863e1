//! The yolots web page: a Yew single-page app compiled to WebAssembly.
//!
//! One wasm bundle serves two entry points: [`start`] renders the page, and [`inspect`]
//! runs the checkpoint reader inside the inspection worker (`static/inspect-worker.js`),
//! so a large file never blocks the page.
//!
//! Modules, each with one job:
//! - [`inspect`]: the reader and the service's limits, on bytes (runs in the worker);
//! - [`model`]: the JSON the page reads and writes (config, options, jobs, reports);
//! - [`api`]: `fetch` calls to `/api/v1` with problem+json errors;
//! - [`upload`]: the multipart upload through `XMLHttpRequest`, with progress and cancel;
//! - [`events`]: a job's live events through `EventSource`;
//! - [`worker`]: hands a chosen file to the inspection worker;
//! - [`route`]: the URL hash routes;
//! - [`format`]: numbers, sizes and durations for people;
//! - [`snippets`]: code that loads an artifact in Python, C++ and Rust;
//! - [`views`]: the components.

pub mod api;
pub mod events;
pub mod format;
pub mod inspect;
pub mod model;
pub mod route;
pub mod snippets;
pub mod snippets_onnx;
pub mod upload;
pub mod views;
pub mod worker;

use wasm_bindgen::prelude::wasm_bindgen;

/// Entry point called by `index.html` once the wasm module is loaded.
#[wasm_bindgen]
pub fn start() {
    yew::Renderer::<views::app::App>::new().render();
}

/// Entry point of the inspection worker: reads a checkpoint and answers JSON, either
/// `{"summary": ...}` (the reader's summary) or `{"error": {"code", "message"}}`.
#[wasm_bindgen]
pub fn inspect(bytes: &[u8]) -> String {
    inspect::inspect_json(bytes)
}
