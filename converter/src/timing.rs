//! Latency of the saved artifact: `forward` at the conversion size, batch 1, timed until a
//! time budget is spent or a number of runs is reached.
//!
//! Every call of the artifact goes through an [`Artifact`], which remembers it: the calls
//! validation made are timing's warm-up, and validation's own call of `forward` at the
//! conversion size is the first timed run when enough ran before it.

use std::time::Instant;

use tch::{Device, Tensor};

use crate::error::Result;
use crate::options::ConvertRequest;
use crate::report::Latency;
use crate::validate::{Arg, Loaded};

pub use yolots_protocol::limits::DEFAULT_LATENCY_BUDGET_S;

/// How many timed runs to make.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct TimingPlan {
    /// At most this many (0: no timing).
    pub max_runs: usize,
    /// Stop before a run that would take the timed runs past this many seconds, judged by
    /// their mean so far; `None`: exactly `max_runs`.
    pub budget_s: Option<f64>,
}

impl TimingPlan {
    pub(crate) fn of(request: &ConvertRequest) -> Self {
        TimingPlan {
            max_runs: request.latency_runs,
            budget_s: request.latency_budget_s,
        }
    }

    /// Whether to make another run after the runs timed so far (milliseconds): always
    /// the first, never past `max_runs`.
    pub(crate) fn wants_another(&self, ms: &[f64]) -> bool {
        if ms.len() >= self.max_runs {
            return false;
        }
        match (self.budget_s, ms.len()) {
            (None, _) | (_, 0) => true,
            (Some(budget), n) => {
                let spent = ms.iter().sum::<f64>() / 1e3;
                spent + spent / n as f64 <= budget
            }
        }
    }
}

/// One call of the artifact.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Call {
    pub method: String,
    /// Shape of its first argument.
    pub shape: Vec<i64>,
    /// The `[B, 3, H, W]` the network ran at (`detect_image` letterboxes to the conversion
    /// size).
    pub network_shape: Vec<i64>,
    pub ms: f64,
}

impl Call {
    /// `method@BxCxHxW`.
    pub(crate) fn label(&self) -> String {
        let dims: Vec<String> = self.shape.iter().map(i64::to_string).collect();
        format!("{}@{}", self.method, dims.join("x"))
    }
}

/// Whether `calls` are enough warm-up before timing `forward` on `shape`. TorchScript's
/// profiling executor records a method's first call and optimises its graph on the
/// second, so `forward` must have run twice; on the CPU the network must also have run at
/// `shape` (libtorch prepares convolution kernels per shape). On a GPU, where TorchScript
/// fuses operations for the shapes it recorded, both calls must be on `shape`.
pub(crate) fn is_enough(calls: &[Call], shape: &[i64], device: Device) -> bool {
    let forward = || calls.iter().filter(|c| c.method == "forward");
    if matches!(device, Device::Cuda(_)) {
        forward().filter(|c| c.shape == shape).count() >= 2
    } else {
        forward().count() >= 2 && calls.iter().any(|c| c.network_shape == shape)
    }
}

/// The loaded artifact and every call made of it.
pub(crate) struct Artifact {
    loaded: Loaded,
    device: Device,
    pub calls: Vec<Call>,
}

impl Artifact {
    pub(crate) fn new(loaded: Loaded, device: Device) -> Self {
        Artifact {
            loaded,
            device,
            calls: Vec::new(),
        }
    }

    pub(crate) fn loaded_with(&self) -> &'static str {
        self.loaded.loaded_with()
    }

    /// Calls `method`, timed to the end of its work on the device.
    pub(crate) fn call(
        &mut self,
        method: &str,
        network_shape: Vec<i64>,
        args: &[Arg<'_>],
    ) -> Result<Vec<Tensor>> {
        let shape = match args.first() {
            Some(Arg::Tensor(t)) => t.size(),
            _ => Vec::new(),
        };
        let start = Instant::now();
        let out = self.loaded.call(method, args)?;
        if let Device::Cuda(n) = self.device {
            tch::Cuda::synchronize(n as i64);
        }
        let ms = start.elapsed().as_secs_f64() * 1e3;
        tracing::debug!(method, ?shape, ms, "artifact call");
        self.calls.push(Call {
            method: method.to_owned(),
            shape,
            network_shape,
            ms,
        });
        Ok(out)
    }

    /// Calls a method on `input`, whose shape is the network's.
    pub(crate) fn run(&mut self, method: &str, input: &Tensor) -> Result<Vec<Tensor>> {
        self.call(method, input.size(), &[Arg::Tensor(input)])
    }
}

/// Times `forward` on `input`. When `validated` is the index in `artifact.calls` of
/// validation's call of `forward` on `input`, and the calls before it were enough
/// warm-up, that call is the first timed run; otherwise `forward` is first called
/// untimed (on `pre`, a cheaper input, then on `input`) until the warm-up is enough.
pub(crate) fn time_forward(
    artifact: &mut Artifact,
    input: &Tensor,
    pre: Option<&Tensor>,
    validated: Option<usize>,
    device_name: String,
    plan: TimingPlan,
) -> Result<Option<Latency>> {
    let shape = input.size();
    let device = artifact.device;
    let seed = validated.and_then(|i| {
        let before = artifact.calls.get(..i)?;
        let call = artifact.calls.get(i)?;
        (call.method == "forward" && call.shape == shape && is_enough(before, &shape, device))
            .then_some((i, call.ms))
    });
    let (warmup_calls, mut ms) = match seed {
        Some((i, ms)) => (
            artifact.calls.get(..i).unwrap_or_default().to_vec(),
            vec![ms],
        ),
        None => {
            if let (Some(pre), true) = (pre, artifact.calls.is_empty()) {
                drop(artifact.run("forward", pre)?);
            }
            while !is_enough(&artifact.calls, &shape, device) {
                drop(artifact.run("forward", input)?);
            }
            (artifact.calls.clone(), Vec::new())
        }
    };
    while plan.wants_another(&ms) {
        drop(artifact.run("forward", input)?);
        if let Some(call) = artifact.calls.last() {
            ms.push(call.ms);
        }
    }
    Ok(crate::report::latency_from_runs(
        device_name,
        "forward",
        shape,
        &warmup_calls,
        usize::from(seed.is_some()),
        plan,
        ms,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_plan_makes_exactly_its_runs() {
        let plan = TimingPlan {
            max_runs: 3,
            budget_s: None,
        };
        assert!(plan.wants_another(&[5000.0, 5000.0]));
        assert!(!plan.wants_another(&[1.0, 1.0, 1.0]));
        let none = TimingPlan {
            max_runs: 0,
            budget_s: None,
        };
        assert!(!none.wants_another(&[]));
    }

    #[test]
    fn a_budget_stops_before_a_run_that_would_overrun_it() {
        let plan = TimingPlan {
            max_runs: 10,
            budget_s: Some(1.0),
        };
        // The first run always happens, however slow.
        assert!(plan.wants_another(&[]));
        assert!(!plan.wants_another(&[800.0]));
        assert!(plan.wants_another(&[300.0, 300.0]));
        assert!(!plan.wants_another(&[300.0, 300.0, 300.0]));
        // Fast runs stop at the cap.
        assert!(!plan.wants_another(&[10.0; 10]));
        assert!(plan.wants_another(&[10.0; 9]));
    }

    #[test]
    fn warm_up_needs_two_forward_calls_and_the_network_at_the_timed_shape() {
        let full = vec![1, 3, 64, 64];
        let small = vec![2, 3, 64, 96];
        let call = |method: &str, shape: &Vec<i64>, network: &Vec<i64>| Call {
            method: method.into(),
            shape: shape.clone(),
            network_shape: network.clone(),
            ms: 1.0,
        };
        let fwd_small = call("forward", &small, &small);
        let fwd_full = call("forward", &full, &full);
        let image = call("detect_image", &vec![49, 35, 3], &full);
        let cpu = Device::Cpu;
        assert!(!is_enough(&[], &full, cpu));
        assert!(!is_enough(std::slice::from_ref(&fwd_full), &full, cpu));
        assert!(!is_enough(
            &[fwd_small.clone(), fwd_small.clone()],
            &full,
            cpu
        ));
        assert!(is_enough(
            &[fwd_small.clone(), fwd_small.clone(), image.clone()],
            &full,
            cpu
        ));
        assert!(is_enough(
            &[fwd_small.clone(), fwd_full.clone()],
            &full,
            cpu
        ));
        // No GPU needed: only the device's kind matters.
        let gpu = Device::Cuda(0);
        assert!(!is_enough(
            &[fwd_small.clone(), fwd_small, image],
            &full,
            gpu
        ));
        assert!(is_enough(&[fwd_full.clone(), fwd_full], &full, gpu));
    }
}
