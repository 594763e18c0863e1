//! Hands a chosen file to the inspection worker (`inspect-worker.js`, a module worker
//! that loads this same wasm bundle and calls [`crate::inspect`]). The worker reads the
//! file itself, so the page stays responsive however large it is; it is terminated after
//! one answer, which also returns the memory the file took.

use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{Event, File, MessageEvent, Worker, WorkerOptions, WorkerType};
use yew::Callback;

use crate::inspect;
use crate::model::{Inspection, Refusal};

/// The worker script, next to `index.html`.
const SCRIPT: &str = "./inspect-worker.js";

/// An inspection in progress; dropping it stops the worker.
pub struct Inspector {
    worker: Worker,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(Event)>,
}

impl Inspector {
    pub fn start(
        file: &File,
        on_done: Callback<Result<Inspection, Refusal>>,
    ) -> Result<Inspector, Refusal> {
        let fail = |e: wasm_bindgen::JsValue| {
            Refusal::new(
                "browser",
                format!("the browser could not start the inspection: {e:?}"),
            )
        };
        let options = WorkerOptions::new();
        options.set_type(WorkerType::Module);
        let worker = Worker::new_with_options(SCRIPT, &options).map_err(fail)?;

        let cb = on_done.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            let answer = e.data().as_string().unwrap_or_default();
            cb.emit(inspect::parse_answer(&answer));
        });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));

        let cb = on_done;
        let on_error = Closure::<dyn FnMut(Event)>::new(move |_| {
            cb.emit(Err(Refusal::new(
                "browser",
                "the browser could not run the inspection (worker failed to load)",
            )));
        });
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));

        worker.post_message(file).map_err(fail)?;
        Ok(Inspector {
            worker,
            _on_message: on_message,
            _on_error: on_error,
        })
    }
}

impl Drop for Inspector {
    fn drop(&mut self) {
        self.worker.set_onmessage(None);
        self.worker.set_onerror(None);
        self.worker.terminate();
    }
}
