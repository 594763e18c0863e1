//! The conversion options, each with a one-line explanation; defaults come from the
//! service's `/config`.

use web_sys::{HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

use yolots_protocol::{DeviceChoice, Format, Mode, Optimize, Output, Precision, limits};

use crate::model::Options;

/// A problem with one field: its id and the message.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

/// Checks the options against the model's largest stride; empty when all is well.
pub fn validate(options: &Options, max_stride: u32) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let stride = max_stride.max(1);
    let (low, high) = sides(stride);
    for (field, side, name) in [
        ("opt-height", options.img_size[0], "Height"),
        ("opt-width", options.img_size[1], "Width"),
    ] {
        if !(low..=high).contains(&side) || !side.is_multiple_of(stride) {
            errors.push(FieldError {
                field,
                message: format!(
                    "{name} must be a multiple of {stride} (the model's largest stride), from {low} to {high}."
                ),
            });
        }
    }
    if !limits::THRESHOLD.contains(&options.conf) {
        errors.push(FieldError {
            field: "opt-conf",
            message: "The confidence threshold is between 0 and 1.".to_owned(),
        });
    }
    if !limits::THRESHOLD.contains(&options.iou) {
        errors.push(FieldError {
            field: "opt-iou",
            message: "The IoU threshold is between 0 and 1.".to_owned(),
        });
    }
    if !limits::MAX_DET.contains(&i64::from(options.max_det)) {
        errors.push(FieldError {
            field: "opt-max-det",
            message: format!(
                "Keep between {} and {} detections per image.",
                limits::MAX_DET.start(),
                limits::MAX_DET.end()
            ),
        });
    }
    // The pairs the converter cannot honour, by the rule the API and the converter use.
    if let Err(refused) = limits::compatible(
        options.format,
        options.mode,
        options.precision,
        options.optimize,
    ) {
        errors.push(FieldError {
            field: match refused.option {
                "mode" => "opt-mode",
                "precision" => "opt-precision",
                _ => "opt-optimize",
            },
            message: format!("{refused}."),
        });
    }
    errors
}

/// The smallest and largest image side a model of this stride takes: the multiples of the
/// stride within the service's limits.
pub fn sides(stride: u32) -> (u32, u32) {
    let stride = stride.max(1);
    let limits = limits::IMAGE_SIDE;
    let low = limits.start().div_ceil(stride) * stride;
    (low, limits.end() / stride * stride)
}

#[derive(Properties, PartialEq)]
pub struct OptionsProps {
    pub value: Options,
    pub on_change: Callback<Options>,
    /// Devices the service offers (`cpu`, `cuda:0`, ...); `auto` is always offered.
    pub devices: Vec<String>,
    pub max_stride: u32,
    #[prop_or_default]
    pub disabled: bool,
}

/// The label of each value of a select (its value is the option's CLI spelling).
fn format_label(format: Format) -> &'static str {
    match format {
        Format::Torchscript => "TorchScript (.pt)",
        Format::Onnx => "ONNX (.onnx, opset 17)",
    }
}

fn mode_label(mode: Mode) -> &'static str {
    match mode {
        Mode::Script => "script: dynamic shapes",
        Mode::Trace => "trace: fixed size",
    }
}

fn head_label(head: Output) -> &'static str {
    match head {
        Output::Decoded => "decoded: boxes and scores",
        Output::Raw => "raw: tensors per level",
        Output::Detections => "detections: after NMS",
    }
}

/// The page says `float16` and `float32` (as the report's weights do); the values stay the
/// options' `fp16` and `fp32`.
fn precision_label(precision: Precision) -> &'static str {
    match precision {
        Precision::Fp32 => "float32",
        Precision::Fp16 => "float16 (half)",
    }
}

fn optimize_label(optimize: Optimize) -> &'static str {
    match optimize {
        Optimize::None => "none",
        Optimize::Freeze => "freeze",
        Optimize::Inference => "inference (frozen, fused)",
        Optimize::Mobile => "mobile (lite .ptl)",
    }
}

/// `(value, label)` of every value of an option.
fn choices<T: Copy + std::fmt::Display>(
    all: &[T],
    label: fn(T) -> &'static str,
) -> Vec<(String, String)> {
    all.iter()
        .map(|&v| (v.to_string(), label(v).to_owned()))
        .collect()
}

#[component]
pub fn OptionsForm(props: &OptionsProps) -> Html {
    let errors = validate(&props.value, props.max_stride);
    let error_for = |field: &str| {
        errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message.clone())
    };

    let select = |id: &'static str,
                  label: &'static str,
                  hint: &'static str,
                  current: &str,
                  choices: Vec<(String, String)>,
                  set: fn(&mut Options, &str) -> bool| {
        let value = props.value.clone();
        let on_change = props.on_change.clone();
        let onchange = Callback::from(move |e: Event| {
            if let Some(select) = e.target_dyn_into::<HtmlSelectElement>() {
                let mut next = value.clone();
                // Every offered value parses; one that does not leaves the options as they were.
                if set(&mut next, &select.value()) {
                    on_change.emit(next);
                }
            }
        });
        let hint_id = format!("{id}-hint");
        html! {
            <div class="field">
                <label for={id}>{ label }</label>
                <select id={id} name={id} {onchange} disabled={props.disabled} aria-describedby={hint_id.clone()}>
                    { for choices.into_iter().map(|(v, l)| {
                        let selected = v == current;
                        html! { <option value={v} {selected}>{ l }</option> }
                    }) }
                </select>
                <p class="hint" id={hint_id}>{ hint }</p>
            </div>
        }
    };

    let number = |id: &'static str,
                  label: &'static str,
                  hint: String,
                  value: String,
                  step: String,
                  min: String,
                  max: String,
                  set: fn(&mut Options, &str) -> bool| {
        let current = props.value.clone();
        let on_change = props.on_change.clone();
        let oninput = Callback::from(move |e: InputEvent| {
            if let Some(input) = e.target_dyn_into::<HtmlInputElement>() {
                let mut next = current.clone();
                if set(&mut next, &input.value()) {
                    on_change.emit(next);
                }
            }
        });
        let error = error_for(id);
        let hint_id = format!("{id}-hint");
        let error_id = format!("{id}-error");
        let described = if error.is_some() {
            format!("{hint_id} {error_id}")
        } else {
            hint_id.clone()
        };
        html! {
            <div class="field">
                <label for={id}>{ label }</label>
                <input id={id} name={id} type="number" inputmode="decimal" {value} {step} {min} {max}
                    {oninput} disabled={props.disabled}
                    aria-invalid={error.is_some().then_some("true")}
                    aria-describedby={described} />
                <p class="hint" id={hint_id}>{ hint }</p>
                if let Some(message) = error {
                    <p class="field-error" id={error_id}>{ message }</p>
                }
            </div>
        }
    };

    let auto = DeviceChoice::Auto.to_string();
    let mut devices: Vec<(String, String)> = vec![(auto.clone(), auto.clone())];
    devices.extend(
        props
            .devices
            .iter()
            .filter(|d| **d != auto)
            .map(|d| (d.clone(), d.clone())),
    );

    let fuse = {
        let value = props.value.clone();
        let on_change = props.on_change.clone();
        Callback::from(move |e: Event| {
            if let Some(input) = e.target_dyn_into::<HtmlInputElement>() {
                let mut next = value.clone();
                next.fuse = input.checked();
                on_change.emit(next);
            }
        })
    };
    let stride = props.max_stride.max(1);
    let (low, high) = sides(stride);
    let o = &props.value;

    html! {
        <fieldset class="panel options" id="options" disabled={props.disabled}>
            <legend>{ "Options" }</legend>
            <div class="grid">
                { select("opt-format", "Format", "TorchScript for LibTorch and PyTorch; ONNX for ONNX Runtime, TensorRT, OpenVINO and OpenCV (dynamic shapes, no TorchScript optimisation).",
                    o.format.as_str(), choices(Format::ALL, format_label),
                    |o, v| v.parse().map(|f| o.set_format(f)).is_ok()) }
                { select("opt-mode", "Mode", "Script keeps any input size, batch and device; trace bakes in the size like export.py.",
                    o.mode.as_str(), choices(Mode::ALL, mode_label),
                    |o, v| v.parse().map(|m| o.set_mode(m)).is_ok()) }
                { select("opt-head", "Output", "What forward() returns; every artifact also has detect() and detect_image().",
                    o.head.as_str(), choices(Output::ALL, head_label),
                    |o, v| v.parse().map(|h| o.head = h).is_ok()) }
                { select("opt-precision", "Precision", "float16 halves the file and speeds up GPUs; validated against float32.",
                    o.precision.as_str(), choices(Precision::ALL, precision_label),
                    |o, v| v.parse().map(|p| o.precision = p).is_ok()) }
                { select("opt-optimize", "Optimisation", "Freeze inlines the weights; mobile adds a lite-interpreter file.",
                    o.optimize.as_str(), choices(Optimize::ALL, optimize_label),
                    |o, v| v.parse().map(|p| o.set_optimize(p)).is_ok()) }
                { select("opt-device", "Device", "Where it is validated and timed (auto: a GPU when a worker has one); the artifact runs anywhere.",
                    &o.device.to_string(), devices,
                    |o, v| v.parse::<DeviceChoice>().map(|d| o.device = d).is_ok()) }
                <div class="field check">
                    <input id="opt-fuse" name="opt-fuse" type="checkbox" checked={o.fuse} onchange={fuse}
                        disabled={props.disabled} aria-describedby="opt-fuse-hint" />
                    <label for="opt-fuse">{ "Fuse layers" }</label>
                    <p class="hint" id="opt-fuse-hint">{ "Folds BatchNorm, RepConv branches and implicit layers into convolutions: faster, same results." }</p>
                </div>
                { number("opt-height", "Image height", format!("Pixels, a multiple of {stride} from {low} to {high}; validation and tracing use it."),
                    o.img_size[0].to_string(), stride.to_string(), low.to_string(), high.to_string(),
                    |o, v| v.parse().map(|n| o.img_size[0] = n).is_ok()) }
                { number("opt-width", "Image width", format!("Pixels, a multiple of {stride} from {low} to {high}."),
                    o.img_size[1].to_string(), stride.to_string(), low.to_string(), high.to_string(),
                    |o, v| v.parse().map(|n| o.img_size[1] = n).is_ok()) }
                { number("opt-conf", "Confidence threshold", "Boxes below this score are dropped by NMS (detections output).".to_owned(),
                    o.conf.to_string(), "0.01".to_owned(), "0".to_owned(), "1".to_owned(),
                    |o, v| v.parse().map(|n| o.conf = n).is_ok()) }
                { number("opt-iou", "IoU threshold", "Boxes overlapping a better one more than this are dropped by NMS.".to_owned(),
                    o.iou.to_string(), "0.01".to_owned(), "0".to_owned(), "1".to_owned(),
                    |o, v| v.parse().map(|n| o.iou = n).is_ok()) }
                { number("opt-max-det", "Max detections", "At most this many boxes per image after NMS.".to_owned(),
                    o.max_det.to_string(), "1".to_owned(), "1".to_owned(), limits::MAX_DET.end().to_string(),
                    |o, v| v.parse().map(|n| o.max_det = n).is_ok()) }
            </div>
        </fieldset>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_must_be_multiples_of_the_stride() {
        let mut o = Options::default();
        assert!(validate(&o, 32).is_empty());
        o.img_size = [640, 650];
        let errors = validate(&o, 32);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "opt-width");
        o.img_size = [608, 640];
        assert!(validate(&o, 32).is_empty());
        assert_eq!(validate(&o, 64).len(), 1);
        o.conf = 1.5;
        o.max_det = 0;
        assert_eq!(validate(&o, 64).len(), 3);
    }

    #[test]
    fn pairs_the_converter_refuses_are_refused_on_their_field() {
        let mobile_half = Options {
            precision: Precision::Fp16,
            optimize: Optimize::Mobile,
            ..Options::default()
        };
        let onnx_traced = Options {
            format: Format::Onnx,
            mode: Mode::Trace,
            ..Options::default()
        };
        for (options, field) in [(mobile_half, "opt-precision"), (onnx_traced, "opt-mode")] {
            let errors = validate(&options, 32);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].field, field, "{errors:?}");
            assert!(errors[0].message.contains("cannot go with"), "{errors:?}");
        }
    }

    #[test]
    fn the_size_message_names_sizes_that_exist() {
        assert_eq!(sides(64), (64, 8192));
        assert_eq!(sides(32), (32, 8192));
        assert_eq!(sides(96), (96, 8160));
        let o = Options {
            img_size: [32, 640],
            ..Options::default()
        };
        let errors = validate(&o, 64);
        assert_eq!(errors.len(), 1, "32 is not a multiple of 64");
        assert_eq!(
            errors[0].message,
            "Height must be a multiple of 64 (the model's largest stride), from 64 to 8192."
        );
    }
}
