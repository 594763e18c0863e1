//! The validation report of a succeeded job: verdict, download, parity per output, latency,
//! output shapes, the model, stage times, and code to load the artifact.

use std::rc::Rc;

use yew::prelude::*;

use crate::api;
use crate::format;
use crate::model::{self, Job, Report};
use crate::snippets::{self, Artifact};
use crate::views::common::{CopyButton, StatusBadge};
use yolots_protocol::{Precision, words};

#[derive(Properties, PartialEq)]
pub struct ReportProps {
    pub job: Job,
    pub report: Rc<Report>,
    /// Only a succeeded job's artifact can be downloaded.
    pub downloadable: bool,
}

#[component]
pub fn ReportView(props: &ReportProps) -> Html {
    let r = &props.report;
    let job = &props.job;
    let artifact_name = if r.artifact.file_name.is_empty() {
        job.artifact
            .as_ref()
            .map(|a| a.file_name.clone())
            .unwrap_or_default()
    } else {
        r.artifact.file_name.clone()
    };
    let options = &job.options;
    let snippet_list = snippets::all(&Artifact {
        file_name: &artifact_name,
        head: options.head.as_str(),
        half: options.precision == Precision::Fp16,
        img_size: options.img_size,
        conf: options.conf,
        iou: options.iou,
        max_det: options.max_det,
        task: r.source.task,
        nkpt: r.source.nkpt,
        onnx: r.artifact.format == "onnx",
    });
    let verdict = match r.status.as_str() {
        "passed" => "Every output matches the original model within tolerance.",
        "failed" => "Some outputs differ from the original model beyond tolerance.",
        _ => "The artifact was not validated.",
    };

    // A typed token cannot ride on a plain link: fetch the file instead.
    let download_link = job.artifact_link();
    let with_token = api::token().is_some();
    let on_download = {
        let (url, name) = (download_link.clone(), artifact_name.clone());
        Callback::from(move |e: MouseEvent| {
            if with_token {
                e.prevent_default();
                let (url, name) = (url.clone(), name.clone());
                yew::platform::spawn_local(async move {
                    let _ = api::download_with_token(&url, &name).await;
                });
            }
        })
    };

    // Output shapes at the requested size (the first input shape checked per output).
    let mut shapes: Vec<(String, String, String)> = Vec::new();
    for check in &r.validation.checks {
        let output = check
            .name
            .split('@')
            .next()
            .unwrap_or(&check.name)
            .to_owned();
        if !shapes.iter().any(|(name, _, _)| *name == output) {
            shapes.push((
                output,
                format::shape(&check.input_shape),
                format::shape(&check.shape),
            ));
        }
    }

    html! {
        <section class="report" id="report" aria-labelledby="report-title">
            <h2 id="report-title">{ "Report" }</h2>
            <div class={classes!("verdict", if r.status == "passed" { "ok" } else { "bad" })} id="verdict">
                <StatusBadge status={r.status.clone()} />
                <p>{ verdict }
                    if let Some(note) = &r.validation.note {
                        { " " }{ note.clone() }
                    }
                </p>
            </div>

            <div class="panel download">
                <div>
                    <h3>{ artifact_name.clone() }</h3>
                    <p class="muted">{ format!("{} · ", format::bytes(r.artifact.size_bytes)) }<span id="artifact-format">{ r.artifact.format.clone() }</span>{ format!(" · {}", if r.artifact.fused { "fused" } else { "not fused" }) }</p>
                    <p class="sha"><span class="muted">{ "SHA-256 " }</span><code id="artifact-sha256">{ r.artifact.sha256.clone() }</code></p>
                    if !r.artifact.methods.is_empty() {
                        <p class="muted">{ if r.artifact.format == "onnx" { "Outputs: " } else { "Methods: " } }{ r.artifact.methods.join(", ") }</p>
                    }
                </div>
                if props.downloadable {
                    <a class="button primary" id="download" href={download_link} download={artifact_name.clone()} onclick={on_download}>
                        { "Download" }
                    </a>
                }
            </div>

            <h3>{ "Parity with the original model" }</h3>
            <p class="muted" id="parity-summary">{ format!("{} on {}, loaded with {}, compared with {} ({}).",
                if r.validation.status.is_empty() { "validation" } else { r.validation.status.as_str() },
                r.validation.device, format::loaded_with(&r.validation.loaded_with), r.validation.reference, format::duration(r.validation.seconds)) }</p>
            <div class="table-wrap">
                <table id="parity" class="cards" aria-describedby="parity-legend">
                    <caption class="visually-hidden">{ "Parity of every output with the reference" }</caption>
                    <thead><tr>
                        <th scope="col">{ "Output" }</th>
                        <th scope="col">{ "Method" }</th>
                        <th scope="col">{ "Shape" }</th>
                        <th scope="col" class="num">{ "Max |error|" }</th>
                        <th scope="col" class="num">{ "Mean |error|" }</th>
                        <th scope="col" class="num" title="absolute + relative × |reference|">{ "Tolerance" }</th>
                        <th scope="col">{ "Result" }</th>
                    </tr></thead>
                    <tbody>
                        { for r.validation.checks.iter().map(|c| {
                            let (abs, rel) = (format::error(c.tolerance.abs), format::error(c.tolerance.rel));
                            html! {
                                <tr class={if c.passed { "pass" } else { "fail" }}>
                                    <th scope="row"><code title={check_title(&c.name, &c.input_shape)}>{ c.name.clone() }</code>
                                        if let Some(compares) = c.compares() { <div class="muted small">{ compares }</div> }
                                        if let Some(detail) = &c.detail { <div class="muted small">{ detail.clone() }</div> }
                                    </th>
                                    <td data-label="Method"><code>{ c.method.clone() }</code></td>
                                    <td data-label="Shape" class="shape"><code>{ format::shape(&c.shape) }</code></td>
                                    <td data-label="Max |error|" class="num">{ c.max_abs_error.map_or("—".to_owned(), format::error) }</td>
                                    <td data-label="Mean |error|" class="num">{ c.mean_abs_error.map_or("—".to_owned(), format::error) }</td>
                                    <td data-label="Tolerance" class="num" title={format!("absolute {abs} + relative {rel} × |reference|")}>{ format!("{abs} + {rel}·|ref|") }</td>
                                    <td data-label="Result" class="result">{ if c.passed { html! { <span class="badge ok">{ "pass" }</span> } } else { html! { <span class="badge bad">{ "fail" }</span> } } }</td>
                                </tr>
                            }
                        }) }
                    </tbody>
                </table>
            </div>
            <p class="muted small legend" id="parity-legend">
                <code>{ "output@shape" }</code>{ ": an output checked at an input of batch × height × width (detect_image: an image of height × width × 3). " }
                { "|error|: the absolute difference from the original model, per element. " }
                { "Tolerance: absolute + relative × |reference|; every element must be within it." }
            </p>

            <div class="two">
                <section class="panel" aria-labelledby="latency-title">
                    <h3 id="latency-title">{ "Latency" }</h3>
                    {
                        match &r.latency {
                            Some(l) => html! {
                                <>
                                    <p class="big" id="latency-p50">{ format::millis(l.p50_ms) }<span class="muted small">{ if l.runs > 1 { " median" } else { " one run" } }</span></p>
                                    <p class="muted" id="latency-runs">{ format!(
                                        "{} on {}, input {}, {} after {}",
                                        l.method,
                                        l.device,
                                        format::shape(&l.input_shape),
                                        words::count(l.runs as u64, "timed run", "timed runs"),
                                        words::count(l.warmup as u64, "warm-up call", "warm-up calls"),
                                    ) }</p>
                                    // One run has no spread: its p90, mean, min and max all equal it.
                                    if l.runs > 1 {
                                        <dl class="facts compact">
                                            <div><dt>{ "p90" }</dt><dd>{ format::millis(l.p90_ms) }</dd></div>
                                            <div><dt>{ "mean" }</dt><dd>{ format::millis(l.mean_ms) }</dd></div>
                                            <div><dt>{ "min" }</dt><dd>{ format::millis(l.min_ms) }</dd></div>
                                            <div><dt>{ "max" }</dt><dd>{ format::millis(l.max_ms) }</dd></div>
                                        </dl>
                                    }
                                </>
                            },
                            None => html! { <p class="muted">{ "Not measured." }</p> },
                        }
                    }
                </section>
                <section class="panel" aria-labelledby="shapes-title">
                    <h3 id="shapes-title">{ "Output shapes" }</h3>
                    <div class="table-wrap">
                        <table class="plain" id="output-shapes">
                            <thead><tr><th scope="col">{ "Output" }</th><th scope="col">{ "Input" }</th><th scope="col">{ "Shape" }</th></tr></thead>
                            <tbody>
                                { for shapes.iter().map(|(name, input, shape)| html! {
                                    <tr><td><code>{ name.clone() }</code></td><td class="shape"><code>{ input.clone() }</code></td><td class="shape"><code>{ shape.clone() }</code></td></tr>
                                }) }
                            </tbody>
                        </table>
                    </div>
                </section>
            </div>

            <div class="two">
                <section class="panel" aria-labelledby="model-title">
                    <h3 id="model-title">{ "Model" }</h3>
                    <dl class="facts compact">
                        <div><dt>{ "Variant" }</dt><dd>{ r.source.variant.clone() }</dd></div>
                        <div><dt>{ "Head" }</dt><dd>{ r.source.head.clone() }</dd></div>
                        <div><dt>{ "Task" }</dt><dd id="report-task">{ model::task_text(r.source.task) }</dd></div>
                        <div><dt>{ "Classes" }</dt><dd>{ r.source.classes }</dd></div>
                        if let Some(keypoints) = r.source.keypoints() {
                            <div><dt>{ "Keypoints" }</dt><dd id="report-keypoints">{ keypoints }</dd></div>
                        }
                        <div><dt>{ "Parameters" }</dt><dd>{ format::count(r.source.parameters) }</dd></div>
                        <div><dt>{ "Layers" }</dt><dd>{ r.source.layers }</dd></div>
                        <div><dt>{ "Strides" }</dt><dd>{ r.source.strides.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ") }</dd></div>
                        <div><dt>{ "Weights" }</dt><dd>{ format::dtype(&r.source.weights_dtype) }</dd></div>
                        <div><dt>{ "Source SHA-256" }</dt><dd><code class="small">{ r.source.sha256.get(..16).unwrap_or(&r.source.sha256).to_owned() }{ "…" }</code></dd></div>
                    </dl>
                    <p class="muted small">{ r.source.names.join(", ") }</p>
                </section>
                <section class="panel" aria-labelledby="run-title">
                    <h3 id="run-title">{ "Conversion" }</h3>
                    <dl class="facts compact">
                        { for r.stages.iter().map(|s| html! {
                            <div><dt>{ s.stage.clone() }</dt><dd>{ format::duration(s.seconds) }</dd></div>
                        }) }
                        <div><dt>{ "Device" }</dt><dd>{ r.environment.device.clone() }</dd></div>
                        <div><dt>{ "libtorch" }</dt><dd>{ r.environment.libtorch_version.clone().unwrap_or_default() }</dd></div>
                        <div><dt>{ "yolots" }</dt><dd>{ r.environment.yolots_version.clone() }</dd></div>
                    </dl>
                </section>
            </div>

            <h3>{ "Use it" }</h3>
            { for snippet_list.into_iter().map(|s| html! {
                <section class="snippet" id={format!("snippet-{}", s.id)} aria-label={s.language}>
                    <div class="snippet-head">
                        <h4>{ s.language }</h4>
                        <CopyButton text={s.code.clone()} what={s.language} />
                    </div>
                    <pre tabindex="0"><code>{ s.code }</code></pre>
                </section>
            }) }
        </section>
    }
}

/// What a check's name says: `raw.0@2x64x96` is the output `raw.0` at an input of batch 2,
/// height 64 and width 96.
fn check_title(name: &str, input_shape: &[i64]) -> String {
    let output = name.split('@').next().unwrap_or(name);
    match input_shape {
        [batch, _, height, width] => {
            format!("{output} at an input of batch {batch}, height {height}, width {width}")
        }
        [height, width, 3] => format!("{output} on an image of height {height}, width {width}"),
        _ => format!("{output} at an input of {}", format::shape(input_shape)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_name_is_spelled_out() {
        assert_eq!(
            check_title("raw.0@2x64x96", &[2, 3, 64, 96]),
            "raw.0 at an input of batch 2, height 64, width 96"
        );
        assert_eq!(
            check_title("detect_image@481x323x3", &[481, 323, 3]),
            "detect_image on an image of height 481, width 323"
        );
    }
}
