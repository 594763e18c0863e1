//! What the reader found in the chosen file: model, classes, size, precision, training.

use std::rc::Rc;

use yew::prelude::*;

use crate::format;
use crate::model::{self, Inspection};

/// How many class names show before "and N more".
const NAMES_SHOWN: usize = 60;

#[derive(Properties, PartialEq)]
pub struct InspectionProps {
    pub inspection: Rc<Inspection>,
    pub file_name: AttrValue,
    pub file_size: u64,
    /// Milliseconds the inspection took.
    pub millis: f64,
}

#[component]
pub fn InspectionCard(props: &InspectionProps) -> Html {
    let i = &props.inspection;
    let variant = match i.width_multiple {
        Some(w) if (w - 1.0).abs() > 1e-6 => format!("{} × {w:.2} width", i.variant),
        _ => i.variant.clone(),
    };
    let strides: Vec<String> = i.strides.iter().map(|s| format!("{s}")).collect();
    let epoch = match i.epoch {
        None => "not recorded".to_owned(),
        Some(-1) => "final (weights stripped)".to_owned(),
        Some(e) => e.to_string(),
    };
    let hidden = i.names.len().saturating_sub(NAMES_SHOWN);
    html! {
        <section class="panel" id="inspection" aria-labelledby="inspection-title">
            <h2 id="inspection-title">{ "What the file holds" }</h2>
            <p class="muted">
                { format!("{} · {} · read in your browser in {}", props.file_name, format::bytes(props.file_size), format::millis(props.millis)) }
            </p>
            <dl class="facts">
                <div><dt>{ "Model" }</dt><dd id="inspect-variant">{ format!("{} {}", i.model, variant) }</dd></div>
                <div><dt>{ "Head" }</dt><dd>{ &i.head }</dd></div>
                <div><dt>{ "Task" }</dt><dd id="inspect-task">{ model::task_text(i.task) }</dd></div>
                if let Some(keypoints) = i.keypoints() {
                    <div><dt>{ "Keypoints" }</dt><dd id="inspect-keypoints">{ keypoints }</dd></div>
                }
                <div><dt>{ "Parameters" }</dt><dd id="inspect-parameters">{ format::count(i.parameters) }</dd></div>
                <div><dt>{ "Layers" }</dt><dd>{ i.layers.len() }</dd></div>
                <div><dt>{ "Strides" }</dt><dd>{ strides.join(", ") }</dd></div>
                <div><dt>{ "Weights" }</dt><dd>{ format::dtype(&i.weights_dtype) }</dd></div>
                <div><dt>{ "Training epoch" }</dt><dd>{ epoch }</dd></div>
                <div><dt>{ "Already fused" }</dt><dd>{ if i.fused { "yes" } else { "no" } }</dd></div>
                <div><dt>{ "Weights from" }</dt><dd>{ &i.source }</dd></div>
            </dl>
            <h3>{ format!("{} classes", i.nc) }</h3>
            <ul class="names" id="inspect-names" aria-label="Class names">
                { for i.names.iter().take(NAMES_SHOWN).map(|n| html! { <li>{ n }</li> }) }
                if hidden > 0 {
                    <li class="more">{ format!("and {hidden} more") }</li>
                }
            </ul>
            if !i.keypoint_names.is_empty() {
                <h3>{ format!("{} keypoints", i.keypoint_names.len()) }</h3>
                <ul class="names" id="inspect-keypoint-names" aria-label="Keypoint names">
                    { for i.keypoint_names.iter().map(|n| html! { <li>{ n }</li> }) }
                </ul>
            }
            <details class="layers">
                <summary>{ format!("Layers ({})", i.layers.len()) }</summary>
                <div class="table-wrap">
                    <table>
                        <thead><tr>
                            <th scope="col">{ "#" }</th><th scope="col">{ "Type" }</th>
                            <th scope="col">{ "From" }</th><th scope="col">{ "Out" }</th>
                            <th scope="col">{ "Parameters" }</th><th scope="col">{ "Details" }</th>
                        </tr></thead>
                        <tbody>
                            { for i.layers.iter().map(|l| html! {
                                <tr>
                                    <td>{ l.index }</td><td>{ &l.kind }</td>
                                    <td>{ format!("{:?}", l.from) }</td><td>{ l.out_channels }</td>
                                    <td class="num">{ format::count(l.parameters) }</td><td>{ &l.details }</td>
                                </tr>
                            }) }
                        </tbody>
                    </table>
                </div>
            </details>
        </section>
    }
}
