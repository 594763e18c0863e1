//! The yolots web page: a Yew single-page app compiled to WebAssembly.

use wasm_bindgen::prelude::wasm_bindgen;
use yew::prelude::*;

/// The page's root component.
#[function_component(App)]
fn app() -> Html {
    html! {
        <main>
            <h1>{ "yolots" }</h1>
            <p>{ "YOLOv7 checkpoints to TorchScript." }</p>
        </main>
    }
}

/// Entry point called by `index.html` once the wasm module is loaded.
#[wasm_bindgen]
pub fn start() {
    yew::Renderer::<App>::new().render();
}
