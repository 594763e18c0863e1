//! The report's types live in `yolots-protocol` (the worker, the API and the page read
//! them too); what only the converter does with them is here: a skipped validation and
//! the latency summary of timed runs.

use crate::timing::{Call, TimingPlan};

pub use yolots_protocol::report::*;

/// Validation that did not run, and why.
pub(crate) fn validation_skipped(device: String, note: &str) -> Validation {
    Validation {
        status: ValidationStatus::Skipped,
        device,
        reference: String::new(),
        loaded_with: String::new(),
        note: Some(note.to_owned()),
        inputs: Vec::new(),
        checks: Vec::new(),
        failed_outputs: Vec::new(),
        seconds: 0.0,
    }
}

/// Summarises run times in milliseconds (nearest-rank percentiles).
pub(crate) fn latency_from_runs(
    device: String,
    method: &str,
    input_shape: Vec<i64>,
    warmup_calls: &[Call],
    validated_runs: usize,
    plan: TimingPlan,
    mut ms: Vec<f64>,
) -> Option<Latency> {
    if ms.is_empty() {
        return None;
    }
    ms.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let idx = ((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1;
        ms[idx]
    };
    Some(Latency {
        device,
        method: method.to_owned(),
        input_shape,
        warmup: warmup_calls.iter().filter(|c| c.method == method).count(),
        runs: ms.len(),
        p50_ms: rank(0.5),
        p90_ms: rank(0.9),
        mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
        min_ms: ms[0],
        max_ms: ms[ms.len() - 1],
        warmup_calls: warmup_calls.iter().map(Call::label).collect(),
        validated_runs,
        budget_s: plan.budget_s,
        max_runs: plan.max_runs,
        timed_s: ms.iter().sum::<f64>() / 1e3,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let plan = TimingPlan {
            max_runs: 10,
            budget_s: None,
        };
        let l = latency_from_runs(
            "cpu".into(),
            "forward",
            vec![1, 3, 64, 64],
            &[],
            0,
            plan,
            (1..=10).rev().map(f64::from).collect(),
        )
        .unwrap();
        assert_eq!(
            (l.p50_ms, l.p90_ms, l.min_ms, l.max_ms),
            (5.0, 9.0, 1.0, 10.0)
        );
        assert_eq!(l.mean_ms, 5.5);
        assert!((l.timed_s - 0.055).abs() < 1e-12);
        let none = latency_from_runs("cpu".into(), "forward", vec![], &[], 0, plan, vec![]);
        assert!(none.is_none());
    }
}
