//! Stage timing and progress: each stage of a conversion is announced to the caller's
//! progress callback and its wall time kept for the report.

use std::time::Instant;

use crate::progress::{ProgressEvent, Stage};
use crate::report::StageTime;

/// Times stages and reports them.
pub(crate) struct Clock<'p> {
    progress: &'p mut dyn FnMut(&ProgressEvent),
    current: Option<(Stage, Instant)>,
    pub(crate) stages: Vec<StageTime>,
}

impl<'p> Clock<'p> {
    pub(crate) fn new(progress: &'p mut dyn FnMut(&ProgressEvent)) -> Self {
        Clock {
            progress,
            current: None,
            stages: Vec::new(),
        }
    }

    fn fraction(stage: Stage) -> f64 {
        match stage {
            Stage::Reading => 0.0,
            Stage::Describing => 0.05,
            Stage::Building => 0.1,
            Stage::Fusing => 0.25,
            Stage::Scripting => 0.3,
            Stage::Tracing => 0.35,
            Stage::Exporting => 0.3,
            Stage::Optimizing => 0.4,
            Stage::Saving => 0.45,
            Stage::Validating => 0.55,
            Stage::Timing => 0.85,
            Stage::Done => 1.0,
        }
    }

    fn end(&mut self) {
        if let Some((stage, start)) = self.current.take() {
            self.stages.push(StageTime {
                stage,
                seconds: start.elapsed().as_secs_f64(),
            });
        }
    }

    pub(crate) fn begin(&mut self, stage: Stage, message: String) {
        self.end();
        // The progress line already says it; the log has it with `-v`.
        tracing::debug!(stage = %stage, "{message}");
        (self.progress)(&ProgressEvent::new(stage, Self::fraction(stage), message));
        self.current = Some((stage, Instant::now()));
    }

    pub(crate) fn done(&mut self, message: String) {
        self.end();
        (self.progress)(&ProgressEvent::new(Stage::Done, 1.0, message));
    }
}
